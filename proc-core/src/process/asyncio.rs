//! `Process::join_async` (feature `tokio`): waiting for a child without blocking the runtime's
//! thread, on the descriptors a `join` polls (the sentinel and the control socket, through which
//! a large return value arrives while the parent waits), with tokio's `AsyncFd`.

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::task::Poll;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::Process;
use crate::error::{Error, Result};

impl<R: Serialize + DeserializeOwned> Process<R> {
    /// Waits for the process to end and returns what its target returned, without blocking the
    /// runtime's thread: the async [`join`](Self::join). Dropping the future before it completes
    /// loses nothing (a later `join` or `join_async` gets the outcome).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_core::Result<()> {
    /// let p = proc_core::Process::new(square, (12,)).start()?;
    /// assert_eq!(p.join_async().await?, 144);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join); also an I/O error ([`Error::io_kind`]) when there is no tokio
    /// runtime with I/O enabled here.
    pub async fn join_async(&self) -> Result<R> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::os("cannot wait for a child", io::Error::other("no tokio runtime here")));
        }
        loop {
            let Some((fds, poll)) = self.shared.look()? else { return self.shared.result() };
            if fds.is_empty() || poll {
                // No descriptor tells the end (rare, and brief: see `Shared::wait_ended`): look
                // again once the runtime has run its other tasks.
                tokio::task::yield_now().await;
                continue;
            }
            let watched = fds.into_iter().map(watch).collect::<io::Result<Vec<_>>>().map_err(wait_error)?;
            // Whichever becomes readable first.
            let mut futures: Vec<_> = watched.iter().map(|w| Box::pin(w.readable())).collect();
            let ready = poll_fn(|cx| {
                for f in &mut futures {
                    if let Poll::Ready(r) = f.as_mut().poll(cx) {
                        return Poll::Ready(r.map(drop));
                    }
                }
                Poll::Pending
            });
            pin!(ready).await.map_err(wait_error)?;
        }
    }
}

/// Watches `fd` for readability.
fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is an open descriptor the `AsyncFd` owns: it stays open, and is the same one,
    // until the `AsyncFd` is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

fn wait_error(e: io::Error) -> Error {
    Error::os("cannot wait for a child", e)
}
