//! The seam between the primitives' protocols and the world they run in: the atomic words, the
//! clock, the process identity and liveness, and the wait/wake calls.
//!
//! Normally these are [`std`]'s and [`proc_os`]'s own items, re-exported: no change in behaviour
//! or speed. Built with `RUSTFLAGS="--cfg proc_sync_loom"`, they come from [`model`] instead: loom's
//! atomics, a model clock and a model of processes that can die at any step, so that
//! `tests/loom.rs` model-checks the very code of `lock.rs`, `semaphore.rs`, `condition.rs` and
//! `barrier.rs` on heap-backed regions. (A cfg of the crate's own, not `loom`: the crates that
//! depend on this one have loom models of their own, which must run over the real primitives.)

#[cfg(not(proc_sync_loom))]
pub(crate) use proc_os::{
    current_process_token, pid, process_alive, process_token_alive, thread_id, thread_token, wait, wake,
    wake_all, Backoff,
};
#[cfg(not(proc_sync_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(proc_sync_loom))]
pub(crate) use std::time::Instant;

#[cfg(proc_sync_loom)]
pub mod model;
#[cfg(proc_sync_loom)]
pub(crate) use model::{
    current_process_token, pid, process_alive, process_token_alive, thread_id, thread_token, wait, wake,
    wake_all, AtomicU32, AtomicU64, Backoff, Instant,
};
