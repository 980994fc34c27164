//! The result of one submission: [`AsyncResult`] (a cell that waiters sleep on), the
//! [`Callbacks`] run when it is set, and the `Done` closures that set it from the tasks' outcomes
//! (`single` for `apply_async`, `gather` for the chunks of a `map_async`).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::supervisor::{Callback, Done, Outcome};

/// The callbacks an [`Opts`](crate::Opts) holds once `on_result` or `on_error` is set:
/// `on_result` is called with the value when the submission succeeds, `on_error` with the error
/// otherwise (Python's `callback` and `error_callback`).
///
/// Exactly one of them is called, exactly once, on the pool's callback thread (never on the
/// thread that handles results, so a slow callback delays no other task), before the result is
/// ready to [`get`](AsyncResult::get), as in Python.
///
/// # Examples
///
/// ```
/// use proc_pool::{Opts, Pool};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let opts = Opts::new().on_result(move |v: &u64| tx.send(*v).unwrap());
/// let result = pool.apply_async_with(square, (7,), opts)?;
/// assert_eq!(result.get()?, 49);
/// assert_eq!(rx.recv().unwrap(), 49);
/// # Ok::<(), proc_pool::Error>(())
/// ```
pub struct Callbacks<R> {
    on_result: Option<OnResult<R>>,
    on_error: Option<OnError>,
}

/// A boxed result callback.
type OnResult<R> = Box<dyn FnOnce(&R) + Send>;

/// A boxed error callback.
type OnError = Box<dyn FnOnce(&Error) + Send>;

impl<R> Callbacks<R> {
    /// No callbacks.
    pub(crate) fn new() -> Self {
        Callbacks { on_result: None, on_error: None }
    }

    /// Called with the value when the submission succeeds (Python's `callback`).
    pub(crate) fn on_result(mut self, f: impl FnOnce(&R) + Send + 'static) -> Self {
        self.on_result = Some(Box::new(f));
        self
    }

    /// Called with the error when the submission fails (Python's `error_callback`).
    pub(crate) fn on_error(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    fn is_empty(&self) -> bool {
        self.on_result.is_none() && self.on_error.is_none()
    }
}

impl<R> fmt::Debug for Callbacks<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_result", &self.on_result.is_some())
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}

enum CellState<R> {
    Pending,
    Ready(Result<R>),
    Taken,
}

/// Where a result lands, and a condition variable to wait for it.
pub(crate) struct Cell<R> {
    state: Mutex<Slot<R>>,
    ready: Condvar,
}

/// A cell's state and how many threads wait on it (a notification costs a system call: only
/// when someone waits).
struct Slot<R> {
    state: CellState<R>,
    waiters: u32,
    /// Tasks awaiting the result (`AsyncResult::get_async`), woken when it lands.
    #[cfg(feature = "tokio")]
    wakers: Vec<std::task::Waker>,
}

/// How many times a waiter yields the CPU before it sleeps: results of short tasks often come
/// within a few microseconds, sooner than a sleep and a wake-up. (An `IMap` waits the same way.)
pub(super) const SPIN_YIELDS: u32 = 16;

impl<R> Cell<R> {
    fn lock(&self) -> MutexGuard<'_, Slot<R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, value: Result<R>) {
        let mut slot = self.lock();
        if matches!(slot.state, CellState::Pending) {
            slot.state = CellState::Ready(value);
        }
        let waiters = slot.waiters;
        #[cfg(feature = "tokio")]
        let wakers = std::mem::take(&mut slot.wakers);
        drop(slot);
        if waiters > 0 {
            self.ready.notify_all();
        }
        #[cfg(feature = "tokio")]
        wakers.into_iter().for_each(std::task::Waker::wake);
    }

    /// Waits until the state is not pending, or until `deadline`.
    fn wait_until(&self, deadline: Option<Instant>) -> MutexGuard<'_, Slot<R>> {
        let mut backoff = proc_os::Backoff::new(0, SPIN_YIELDS);
        while !backoff.is_completed() {
            let slot = self.lock();
            if !matches!(slot.state, CellState::Pending) {
                return slot;
            }
            drop(slot);
            backoff.snooze();
        }
        let mut slot = self.lock();
        slot.waiters += 1;
        while matches!(slot.state, CellState::Pending) {
            match deadline {
                None => slot = self.ready.wait(slot).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    slot = self.ready.wait_timeout(slot, left).unwrap_or_else(PoisonError::into_inner).0;
                }
            }
        }
        slot.waiters -= 1;
        slot
    }
}

/// Sets the cell with `value`, after the callbacks ran (on the callback thread) if there are any.
pub(crate) fn resolve<R: Send + 'static>(
    cell: Arc<Cell<R>>,
    callbacks: Callbacks<R>,
    value: Result<R>,
    sink: &std::sync::mpsc::Sender<Callback>,
) {
    if callbacks.is_empty() {
        cell.set(value);
        return;
    }
    let work: Callback = Box::new(move || {
        let Callbacks { on_result, on_error } = callbacks;
        // A panicking callback must not lose the result or the callback thread.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &value {
            Ok(v) => {
                if let Some(f) = on_result {
                    f(v);
                }
            }
            Err(e) => {
                if let Some(f) = on_error {
                    f(e);
                }
            }
        }));
        cell.set(value);
    });
    if let Err(std::sync::mpsc::SendError(work)) = sink.send(work) {
        // The callback thread is gone (the pool is being dropped): run it here.
        work();
    }
}

/// The result of an asynchronous submission ([`Pool::apply_async`](crate::Pool::apply_async),
/// [`map_async`](crate::Pool::map_async), ...), as Python's `AsyncResult`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use proc_pool::Pool;
///
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// let pool = Pool::new(2)?;
/// let r = pool.apply_async(add, (2, 3))?;
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get_timeout(Duration::from_secs(10))?, 5);
/// # Ok::<(), proc_pool::Error>(())
/// ```
pub struct AsyncResult<R> {
    cell: Arc<Cell<R>>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
    }
}

impl<R> AsyncResult<R> {
    pub(crate) fn new() -> (Self, Arc<Cell<R>>) {
        let cell = Arc::new(Cell {
            state: Mutex::new(Slot {
                state: CellState::Pending,
                waiters: 0,
                #[cfg(feature = "tokio")]
                wakers: Vec::new(),
            }),
            ready: Condvar::new(),
        });
        (AsyncResult { cell: cell.clone() }, cell)
    }

    /// Waits for the result and returns it (Python's `get()`).
    ///
    /// # Errors
    ///
    /// The task's error: [`Error::Panicked`], [`Error::WorkerLost`], [`Error::TaskTimeout`],
    /// [`Error::Arguments`], [`Error::Return`], [`Error::Terminated`], [`Error::Initializer`];
    /// [`Error::Taken`] if `get_timeout` took the result already.
    pub fn get(self) -> Result<R> {
        Self::take(self.cell.wait_until(None))
    }

    /// Waits at most `timeout` for the result and takes it (Python's `get(timeout)`).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it is not ready in time (the task goes on: ask again); otherwise as
    /// [`get`](Self::get). After a result was taken, [`Error::Taken`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        let deadline = Instant::now().checked_add(timeout);
        Self::take(self.cell.wait_until(deadline))
    }

    /// As [`get_timeout`](Self::get_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<R> {
        self.get_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    fn take(mut slot: MutexGuard<'_, Slot<R>>) -> Result<R> {
        match std::mem::replace(&mut slot.state, CellState::Taken) {
            CellState::Ready(r) => r,
            CellState::Taken => Err(Error::Taken),
            CellState::Pending => {
                slot.state = CellState::Pending;
                Err(Error::Timeout)
            }
        }
    }

    /// Waits until the result is ready (Python's `wait()`).
    pub fn wait(&self) {
        drop(self.cell.wait_until(None));
    }

    /// Waits at most `timeout`; true if the result is ready (Python's `wait(timeout)`, which
    /// then looks at `ready()`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        !matches!(self.cell.wait_until(deadline).state, CellState::Pending)
    }

    /// As [`wait_timeout`](Self::wait_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Waits for the result without blocking the thread, and takes it: the async
    /// [`get`](Self::get) (feature `tokio`; any executor can poll it). A future dropped before the
    /// result came takes nothing: ask again.
    ///
    /// # Examples
    ///
    /// ```
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_pool::Result<()> {
    /// let pool = proc_pool::Pool::new(2)?;
    /// let r = pool.apply_async(add, (2, 3))?;
    /// assert_eq!(r.get_async().await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    #[cfg(feature = "tokio")]
    pub fn get_async(&self) -> impl std::future::Future<Output = Result<R>> + '_ {
        std::future::poll_fn(move |cx| {
            let mut slot = self.cell.lock();
            if matches!(slot.state, CellState::Pending) {
                if !slot.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    slot.wakers.push(cx.waker().clone());
                }
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(Self::take(slot))
        })
    }

    /// Whether the result is ready (Python's `ready()`).
    pub fn ready(&self) -> bool {
        !matches!(self.cell.lock().state, CellState::Pending)
    }

    /// Whether the task succeeded: `None` while it is not ready (where Python raises
    /// `ValueError`), or once its result was taken.
    pub fn successful(&self) -> Option<bool> {
        match &self.cell.lock().state {
            CellState::Ready(r) => Some(r.is_ok()),
            _ => None,
        }
    }
}

/// Decodes a chunk's results.
pub(crate) fn decode<R: DeserializeOwned>(outcome: Outcome) -> Result<Vec<R>> {
    let bytes = outcome?;
    // A panicking `Deserialize` must not take the supervisor thread down.
    match std::panic::catch_unwind(|| proc_core::codec::from_bytes(&bytes)) {
        Ok(r) => r.map_err(|e| Error::Return {
            message: format!("cannot deserialize: {e}"),
            source: Some(crate::error::Cause::new(e)),
        }),
        Err(_) => Err(Error::return_value("deserializing it panicked")),
    }
}

/// The job that resolves a single-value result (`apply_async`).
pub(crate) fn single<R: DeserializeOwned + Send + 'static>(
    cell: Arc<Cell<R>>,
    callbacks: Callbacks<R>,
) -> Done {
    Box::new(move |outcome, sink| {
        let value = decode::<R>(outcome).and_then(|v| {
            v.into_iter().next().ok_or_else(|| Error::return_value("the worker returned no value"))
        });
        resolve(cell, callbacks, value, sink);
    })
}

/// The parts of a `map_async` in flight.
struct Gather<R> {
    parts: Vec<Option<Vec<R>>>,
    left: usize,
    cell: Arc<Cell<Vec<R>>>,
    callbacks: Option<Callbacks<Vec<R>>>,
}

/// The jobs' `done` for a `map_async` of `chunks` chunks (results in input order).
pub(crate) fn gather<R: DeserializeOwned + Send + 'static>(
    chunks: usize,
    cell: Arc<Cell<Vec<R>>>,
    callbacks: Callbacks<Vec<R>>,
) -> impl FnMut(usize) -> Done {
    let gather = Arc::new(Mutex::new(Gather {
        parts: (0..chunks).map(|_| None).collect(),
        left: chunks,
        cell,
        callbacks: Some(callbacks),
    }));
    move |index| {
        let gather = gather.clone();
        Box::new(move |outcome, sink| {
            let mut g = gather.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(callbacks) = g.callbacks.take() else { return };
            match decode::<R>(outcome) {
                Ok(values) => {
                    g.parts[index] = Some(values);
                    g.left -= 1;
                    if g.left > 0 {
                        g.callbacks = Some(callbacks);
                        return;
                    }
                    let all: Vec<R> = g.parts.iter_mut().flat_map(|p| p.take().unwrap_or_default()).collect();
                    resolve(g.cell.clone(), callbacks, Ok(all), sink);
                }
                // The first failure is the result (Python's map raises the first error).
                Err(e) => resolve(g.cell.clone(), callbacks, Err(e), sink),
            }
        })
    }
}
