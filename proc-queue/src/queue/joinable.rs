//! `JoinableQueue<T>`: a [`Queue`] that counts unfinished tasks, and the shared count itself.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::JoinError;
use super::handle::Queue;
use super::ring::Ring;
use super::wake::deadline;

/// Python's `JoinableQueue`: a [`Queue`] that counts unfinished tasks. Every `put` adds one;
/// [`task_done`](Self::task_done) removes one; [`join`](Self::join) waits until none is left.
/// The count is 64-bit and shared by every process. An item lost to a killed producer or
/// consumer counts as done, so `join` does not hang on it.
///
/// It dereferences to [`Queue`] for `put`, `get` and the rest.
///
/// # Examples
///
/// ```
/// let q = proc_queue::JoinableQueue::new(0).unwrap();
/// q.put(1u32).unwrap();
/// let item = q.get().unwrap();
/// q.task_done().unwrap();
/// q.join().unwrap();
/// assert!(q.task_done().is_err());
/// # let _ = item;
/// ```
pub struct JoinableQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { inner: self.inner.clone() }
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue holding at most `maxsize` items (`0`: "unbounded", as [`Queue::new`]).
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn new(maxsize: u32) -> proc_core::Result<Self> {
        let inner = Queue::new(maxsize)?;
        inner.ring.header().joinable.store(1, Ordering::SeqCst);
        Ok(JoinableQueue { inner })
    }

    /// Says that one item taken from the queue has been dealt with.
    ///
    /// # Errors
    ///
    /// [`JoinError::TooManyTaskDone`] if no task is unfinished.
    pub fn task_done(&self) -> Result<(), JoinError> {
        self.inner.ring.task_done()
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a shut-down queue.
    pub fn join(&self) -> Result<(), JoinError> {
        self.inner.ring.join_until(None)
    }

    /// As [`join`](Self::join), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinError::Timeout`] if tasks were still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.inner.ring.join_until(Some(deadline(Instant::now(), timeout)))
    }

    /// As [`join_timeout`](Self::join_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<(), JoinError> {
        self.join_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// The number of unfinished tasks (a snapshot).
    pub fn unfinished_tasks(&self) -> u64 {
        self.inner.ring.header().unfinished.load(Ordering::SeqCst)
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.inner
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.inner.qsize())
            .field("unfinished", &self.unfinished_tasks())
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue { inner: Queue::deserialize(d)? })
    }
}

impl<T> crate::Waitable for JoinableQueue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.inner.wait_fd()
    }

    fn arm(&self) -> Option<bool> {
        self.inner.arm()
    }

    fn fired(&self) -> bool {
        self.inner.fired()
    }
}

impl Ring {
    pub(super) fn task_done(&self) -> Result<(), JoinError> {
        let unfinished = &self.queue().unfinished;
        let mut cur = unfinished.load(Ordering::SeqCst);
        loop {
            if cur == 0 {
                return Err(JoinError::TooManyTaskDone);
            }
            match unfinished.compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            let done = &self.queue().done;
            done.fetch_add(1, Ordering::SeqCst);
            if self.queue().joiners.load(Ordering::SeqCst) > 0 {
                crate::loom::wake_all(done);
            }
        }
        Ok(())
    }

    pub(super) fn join_until(&self, deadline: Option<Instant>) -> Result<(), JoinError> {
        let done = &self.queue().done;
        let unfinished = &self.queue().unfinished;
        loop {
            let seen = done.load(Ordering::SeqCst);
            if unfinished.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(JoinError::Timeout);
            }
            let joiners = &self.queue().joiners;
            joiners.fetch_add(1, Ordering::SeqCst);
            crate::loom::wait(done, seen, deadline.map(|d| d - now));
            joiners.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
