//! The proxy of a queue kept by the manager: [`Queue`], joinable or not.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::handle::enc;
use crate::client::Client;
use crate::error::{Error, PutError, Result};
use crate::wire::{Kind, Method};

proxy! {
    /// A queue kept by the manager (Python's `manager.Queue()`): reachable by any client of
    /// the manager, also across machines.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let q = manager.queue::<String>(2)?;
    /// q.put("a".into())?;
    /// q.put("b".into())?;
    /// // Full: the value comes back in the error.
    /// let full = q.put_timeout("c".into(), Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(full, proc_manager::PutError::Full(v) if v == "c"));
    /// assert_eq!(q.get()?, "a");
    /// assert_eq!(q.qsize()?, 1);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Every method: [`Error::Connection`], [`Error::Serialize`]; `get_nowait`/`get_timeout`,
    /// [`Error::Empty`]; the blocking ones, [`Error::ShutDown`] when the manager shuts down
    /// meanwhile. The puts return a [`PutError`], which hands the value back:
    /// [`PutError::Full`] when `put_nowait`/`put_timeout` found no room, [`PutError::Failed`]
    /// with one of the errors above.
    Queue<T>
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn put_with(&self, value: T, block: bool, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        let bytes = match enc(&value) {
            Ok(bytes) => bytes,
            Err(error) => return Err(PutError::Failed { value, error }),
        };
        match self.handle.ok(Method::QueuePut { value: bytes, block, timeout: Client::millis(timeout) }) {
            Ok(()) => Ok(()),
            Err(Error::Full) => Err(PutError::Full(value)),
            Err(error) => Err(PutError::Failed { value, error }),
        }
    }

    fn get_with(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        self.handle.value(Method::QueueGet { block, timeout: Client::millis(timeout) })
    }

    /// Puts a value, waiting for room.
    ///
    /// # Errors
    ///
    /// [`PutError::Failed`], handing the value back.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_with(value, true, None)
    }

    /// Puts a value, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] when there was no room in time, [`PutError::Failed`]; both hand the
    /// value back.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_with(value, true, Some(timeout))
    }

    /// As [`put_timeout`](Self::put_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout).
    pub fn put_deadline(&self, value: T, deadline: Instant) -> Result<(), PutError<T>> {
        self.put_timeout(value, deadline.saturating_duration_since(Instant::now()))
    }

    /// Puts a value if there is room now.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] when there is no room, [`PutError::Failed`]; both hand the value back.
    pub fn put_nowait(&self, value: T) -> Result<(), PutError<T>> {
        self.put_with(value, false, None)
    }

    /// Takes a value, waiting for one.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits);
    /// [`Error::Serialize`] when the value held does not deserialize as the proxy's type.
    pub fn get(&self) -> Result<T> {
        self.get_with(true, None)
    }

    /// Takes a value, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read (also while this call waits);
    /// [`Error::Serialize`] when the value held does not deserialize as the proxy's type; [`Error::Empty`]
    /// when nothing came within `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(true, Some(timeout))
    }

    /// As [`get_timeout`](Self::get_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T> {
        self.get_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Takes a value if there is one now.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when the value
    /// held does not deserialize as the proxy's type; [`Error::Empty`] when the queue is empty.
    pub fn get_nowait(&self) -> Result<T> {
        self.get_with(false, None)
    }

    /// The number of values in the queue (a snapshot).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.handle.count(Method::QueueSize)? as usize)
    }

    /// Whether the queue is empty (a snapshot).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Marks one value taken as done (Python's `task_done`, for a joinable queue).
    ///
    /// # Errors
    ///
    /// Also [`Error::NotHeld`] when called more times than values were put, and
    /// [`Error::MethodNotAllowed`] for a queue that is not joinable.
    pub fn task_done(&self) -> Result<()> {
        self.handle.ok(Method::TaskDone)
    }

    /// Waits until every value put was marked done (Python's `join`, for a joinable queue).
    ///
    /// # Errors
    ///
    /// Also [`Error::MethodNotAllowed`] for a queue that is not joinable.
    pub fn join(&self) -> Result<()> {
        self.handle.ok(Method::QueueJoin { timeout: None })
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// Also [`Error::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.handle.ok(Method::QueueJoin { timeout: Client::millis(Some(timeout)) })
    }

    /// As [`join_timeout`](Self::join_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<()> {
        self.join_timeout(deadline.saturating_duration_since(Instant::now()))
    }
}

from_object!(Queue<T>, Kind::Queue { .. });
