//! The proxy of a queue kept by the manager: [`Queue`], joinable or not.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::handle::enc;
use crate::client::{Client, Undo};
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
        // Taken after this process gave up waiting (a stopped manager): put back at the front.
        let undo = Undo::Unget { queue: self.handle.id() };
        self.handle.value_undoable(Method::QueueGet { block, timeout: Client::millis(timeout) }, undo)
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

/// The async calls (feature `tokio`), which wait without blocking the runtime's thread (see
/// [`get_async`](Queue::get_async) for what a dropped future leaves).
#[cfg(feature = "tokio")]
impl<T: Serialize + DeserializeOwned> Queue<T> {
    async fn put_with_async(&self, value: T, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        let bytes = match enc(&value) {
            Ok(bytes) => bytes,
            Err(error) => return Err(PutError::Failed { value, error }),
        };
        let method = Method::QueuePut { value: bytes, block: true, timeout: Client::millis(timeout) };
        match self.handle.ok_async(method, Undo::Nothing).await {
            Ok(()) => Ok(()),
            Err(Error::Full) => Err(PutError::Full(value)),
            Err(error) => Err(PutError::Failed { value, error }),
        }
    }

    async fn get_with_async(&self, timeout: Option<Duration>) -> Result<T> {
        let undo = Undo::Unget { queue: self.handle.id() };
        self.handle
            .value_async(Method::QueueGet { block: true, timeout: Client::millis(timeout) }, undo)
            .await
    }

    /// Takes a value, waiting for one without blocking the runtime's thread: the async
    /// [`get`](Self::get).
    ///
    /// A future dropped before it is done takes nothing: had the manager already taken a value
    /// for it, that value goes back to the queue's front (within milliseconds of the drop; see
    /// "Async calls" in the crate's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let q = manager.queue::<u32>(0)?;
    /// let getter = tokio::spawn({
    ///     let q = q.clone();
    ///     async move { q.get_async().await }
    /// });
    /// q.put(7)?;
    /// assert_eq!(getter.await.unwrap()?, 7);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn get_async(&self) -> Result<T> {
        self.get_with_async(None).await
    }

    /// Takes a value, waiting at most `timeout` without blocking the runtime's thread: the async
    /// [`get_timeout`](Self::get_timeout). A dropped future takes nothing, as
    /// [`get_async`](Self::get_async)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let q = manager.queue::<u32>(0)?;
    /// let empty = q.get_timeout_async(Duration::from_millis(10)).await;
    /// assert!(matches!(empty, Err(proc_manager::Error::Empty)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout) ([`Error::Empty`] when nothing came in time); also
    /// [`Error::Connection`] when there is no tokio runtime here.
    pub async fn get_timeout_async(&self, timeout: Duration) -> Result<T> {
        self.get_with_async(Some(timeout)).await
    }

    /// Puts a value, waiting for room without blocking the runtime's thread: the async
    /// [`put`](Self::put).
    ///
    /// A future dropped before it is done may have put the value (the manager may have had room
    /// before it saw the call given up), as a message partly sent belongs to its connection.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = proc_manager::Manager::start()?;
    /// let q = manager.queue::<String>(1)?;
    /// q.put_async("a".into()).await?;
    /// assert_eq!(q.get_async().await?, "a");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put): [`PutError::Failed`], handing the value back (with
    /// [`Error::Connection`] also when there is no tokio runtime here).
    pub async fn put_async(&self, value: T) -> Result<(), PutError<T>> {
        self.put_with_async(value, None).await
    }

    /// Puts a value, waiting at most `timeout` for room without blocking the runtime's thread:
    /// the async [`put_timeout`](Self::put_timeout). A dropped future may have put the value, as
    /// [`put_async`](Self::put_async)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let q = manager.queue::<u8>(1)?;
    /// q.put(1)?;
    /// let full = q.put_timeout_async(2, Duration::from_millis(10)).await.unwrap_err();
    /// assert!(matches!(full, proc_manager::PutError::Full(2)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout): [`PutError::Full`] when there was no room in time,
    /// [`PutError::Failed`]; both hand the value back.
    pub async fn put_timeout_async(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_with_async(value, Some(timeout)).await
    }

    /// The async [`join`](Self::join): waits until every value put was marked done. A dropped
    /// future changes nothing (the server gives the wait up).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// let manager = proc_manager::Manager::start()?;
    /// let q = manager.joinable_queue::<u8>(0)?;
    /// q.put(1).map_err(proc_manager::Error::from)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join_async().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn join_async(&self) -> Result<()> {
        self.handle.ok_async(Method::QueueJoin { timeout: None }, Undo::Nothing).await
    }

    /// The async [`join_timeout`](Self::join_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = proc_manager::Manager::start()?;
    /// let q = manager.joinable_queue::<u8>(0)?;
    /// q.put(1).map_err(proc_manager::Error::from)?;
    /// let waited = q.join_timeout_async(Duration::from_millis(10)).await;
    /// assert!(matches!(waited, Err(proc_manager::Error::Timeout)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Self::join_timeout): also [`Error::Timeout`].
    pub async fn join_timeout_async(&self, timeout: Duration) -> Result<()> {
        self.handle
            .ok_async(Method::QueueJoin { timeout: Client::millis(Some(timeout)) }, Undo::Nothing)
            .await
    }
}

from_object!(Queue<T>, Kind::Queue { .. });
