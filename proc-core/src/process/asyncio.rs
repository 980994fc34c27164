//! `Process::join_async` (feature `tokio`): waiting for a child without blocking the runtime's
//! thread, with tokio's `AsyncFd`, on the descriptors `Shared::look` names: a direct child's pidfd
//! once its pid is known (Linux), else the sentinel and the control socket (through which a large
//! return value arrives while the parent waits), and a fork-server child's pid pipe while its pid
//! is on its way.

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

/// How often the end of a child no descriptor tells about is looked for (as `join` does).
const STALE_POLL: std::time::Duration = std::time::Duration::from_millis(10);
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
    /// Needs a runtime with its I/O and time drivers (`#[tokio::main]` and `Runtime::new` enable
    /// both): a child whose end no descriptor tells (it closed its end of the sentinel) is looked
    /// for every 10 ms.
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
                // No descriptor tells the end (a child that closed its end of the sentinel, or
                // whose descendant holds it: see `Shared::wait_ended`): look again after a pause, as
                // `join` does.
                tokio::time::sleep(STALE_POLL).await;
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
