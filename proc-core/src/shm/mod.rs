//! Shared memory: anonymous segments that travel as handles, and named segments, as Python's
//! `multiprocessing.shared_memory`.
//!
//! - [`Segment`] is anonymous shared memory (a sealed memfd on Linux, an immediately unlinked POSIX
//!   object elsewhere). It has no name that could leak; it reaches a child only as a start argument
//!   (its descriptor travels with the bootstrap) and is freed when the last process unmaps it.
//!   The other multiproc crates build their locks, values and queues on it.
//! - [`SharedMemory`] is a named POSIX shared-memory object (mode 0600) that any process may open
//!   by name. Its creator registers it with a resource tracker, a helper process that unlinks it
//!   when every process of the program has exited without unlinking it, so a crashed creator
//!   leaks nothing past the end of the program.
//! - [`ShareableList`] is a fixed-length list of typed [`Item`]s (numbers, booleans, text, bytes,
//!   `None`) in one named segment, as Python's `ShareableList`.
//!
//! # Examples
//!
//! ```
//! use proc_core::shm::SharedMemory;
//! use proc_core::Process;
//!
//! fn child(name: String) {
//!     let shm = SharedMemory::open(&name).unwrap();
//!     shm.write(0, b"hello").unwrap();
//! }
//!
//! let shm = SharedMemory::create(4096).unwrap();
//! Process::new(child, (shm.name().to_string(),)).start().unwrap().join().unwrap();
//! let mut buf = [0u8; 5];
//! shm.read(0, &mut buf).unwrap();
//! assert_eq!(&buf, b"hello");
//! shm.unlink().unwrap();
//! ```

mod named;
mod segment;
mod shareable_list;
pub(crate) mod tracker;

pub use named::SharedMemory;
pub use segment::Segment;
pub use shareable_list::{Item, ShareableList};
#[doc(hidden)]
pub use tracker::{group_segment, new_group, purge_group, purge_group_at_exit, remove_dir_at_end};
