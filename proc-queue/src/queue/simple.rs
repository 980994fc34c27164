//! `SimpleQueue<T>`: Python's `SimpleQueue`, an unbounded [`Queue`] with fewer methods.

use std::fmt;
use std::os::fd::BorrowedFd;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{GetError, PutError};
use super::handle::Queue;

/// Python's `SimpleQueue`: an unbounded [`Queue`] with only `put`, `get`, `empty` and `close`.
///
/// # Examples
///
/// ```
/// let q = proc_queue::SimpleQueue::new().unwrap();
/// q.put(7u8).unwrap();
/// assert_eq!(q.get().unwrap(), 7);
/// assert!(q.empty());
/// ```
pub struct SimpleQueue<T> {
    pub(crate) inner: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { inner: self.inner.clone() }
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    ///
    /// The system refuses the shared memory.
    pub fn new() -> proc_core::Result<Self> {
        Ok(SimpleQueue { inner: Queue::unbounded()? })
    }

    /// Puts `value` (never waits: the queue is unbounded).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.inner.put(value)
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.inner.get()
    }

    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }

    /// As [`Queue::close`].
    pub fn close(&self) {
        self.inner.close();
    }

    /// As [`Queue::unlink_segments`].
    pub fn unlink_segments(&self) {
        self.inner.unlink_segments();
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue").field("empty", &self.inner.empty()).finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue { inner: Queue::deserialize(d)? })
    }
}

impl<T> crate::Waitable for SimpleQueue<T> {
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
