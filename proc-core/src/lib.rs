//! Processes for [multiproc](https://docs.rs/multiproc): Python's `multiprocessing.Process`, typed.
//!
//! A target function runs in a child process with serde-serialized arguments and hands back a
//! typed value. Children start by fork server (the Linux default), spawn (re-executing the
//! binary; the macOS default) or fork; they are always reaped, daemon children die with their
//! parent even when it is SIGKILLed, and a panic in a child comes back as an error with its message
//! and location.
//!
//! ```
//! use proc_core::Process;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let p = Process::new(square, (7,)).start().unwrap();
//! assert_eq!(p.join().unwrap(), 49);
//! assert_eq!(p.exitcode(), Some(0));
//! ```
//!
//! No set-up is needed in `main`: a constructor that runs before `main` turns a re-executed
//! binary into the child, so this works in binaries, examples, tests, doctests and benches. Where
//! a linker drops that constructor, call [`init`] first thing in `main`.
//!
//! Python's misuse errors are compile errors here: [`ProcessBuilder::start`] consumes the builder
//! (no starting twice, no joining before start) and [`Process::close`] consumes the process
//! (nothing after close).
//!
//! Besides processes, this crate holds what the other multiproc crates build on: the [`handle`]
//! mechanism that passes descriptors to children, and shared memory ([`shm`]).
//!
//! # Bytes
//!
//! Arguments, return values and every message of the other crates travel in [`codec`]'s format
//! (postcard). A `Vec<u8>` or `[u8; N]` is a *sequence* to serde: it is written and read one
//! element at a time. [`ByteBuf`] (serde_bytes' owned byte buffer, re-exported here) is written
//! as a length and one copy, and so is a `Vec<u8>` field marked
//! `#[serde(with = "proc_core::serde_bytes")]`. For payloads of more than a few hundred bytes
//! prefer them: through a `Queue`, a `Vec<u8>` of 64 KiB takes 6–7 times as long as a `ByteBuf`
//! of the same bytes, one of 4 MiB 5–12 times (benches/README.md, `queue_vec` rows).
//!
//! ```
//! use proc_core::{ByteBuf, Process};
//!
//! fn checksum(data: ByteBuf) -> u64 {
//!     data.iter().map(|&b| u64::from(b)).sum()
//! }
//!
//! let data = ByteBuf::from(vec![1u8; 1 << 16]);
//! let p = Process::new(checksum, (data,)).start().unwrap();
//! assert_eq!(p.join().unwrap(), 1 << 16);
//! ```
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod child;
pub mod codec;
mod error;
mod globals;
pub mod handle;
mod info;
mod logging;
mod process;
pub mod shm;
mod start;
mod sys;
mod target;
mod wire;

pub use error::{Error, Result};
pub use info::{
    active_children, cpu_count, current_process, parent_process, process_cpu_count, ActiveChild,
    ParentProcess, ProcessInfo,
};
pub use logging::{forward_child_events, set_child_init};
pub use process::{CloseError, Process, ProcessBuilder, Run, Sentinel};
pub use start::forkserver::server_pid as fork_server_pid;
pub use start::{
    get_all_start_methods, get_context, get_start_method, set_start_method, Context, StartMethod,
};
pub use target::Target;

/// `#[serde(with = "proc_core::serde_bytes")]` on a `Vec<u8>` field gives it [`ByteBuf`]'s fast
/// encoding without changing its type.
pub use serde_bytes;
/// A byte buffer that serializes as bytes (one length and one copy), not element by element as a
/// `Vec<u8>` does: the type to use for binary payloads (see [Bytes](crate#bytes)).
pub use serde_bytes::ByteBuf;

/// Makes this binary able to run multiproc children, for where the linker dropped the
/// constructor that normally does it. Call it first thing in `main`: in a child process it runs
/// the child's target and never returns; in any other process it returns at once. Idempotent.
///
/// # Examples
///
/// ```
/// // First thing in `main`:
/// proc_core::init();
/// // ... then start processes.
/// ```
pub fn init() {
    child::dispatch::dispatch();
}

/// The name of the operating-system backend in use: `"linux"`, or `"portable"` (macOS, and Linux
/// with the `force-portable` feature).
pub fn backend() -> &'static str {
    proc_os::BACKEND
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
