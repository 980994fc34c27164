//! Which public types are `Send` and `Sync`: a change here is a breaking change, so it is pinned.

use proc_core::handle::Fd;
use proc_core::shm::{Segment, SharedMemory};
use proc_core::{
    ActiveChild, CloseError, Context, Error, ParentProcess, Process, ProcessBuilder, ProcessInfo, Sentinel,
    StartMethod,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types() {
    // A process can be watched from several threads: one joins while another terminates it.
    send_sync::<Process<()>>();
    send_sync::<Process<String>>();
    send_sync::<Sentinel>();
    send_sync::<ActiveChild>();
    send_sync::<ProcessInfo>();
    send_sync::<ParentProcess>();
    send_sync::<Context>();
    send_sync::<StartMethod>();
    send_sync::<Error>();
    send_sync::<CloseError<u8>>();
    send_sync::<Fd>();
    // Shared memory is shared: its users synchronize the bytes, the handle itself is thread-safe.
    send_sync::<Segment>();
    send_sync::<SharedMemory>();
    // A builder holds the target (which need only be `Send`) until it starts.
    send::<ProcessBuilder<()>>();
}
