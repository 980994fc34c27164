//! The lazy iterators of `imap` and `imap_unordered`: [`IMap`], and [`ExactIMap`] for an input
//! of known length.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

#[cfg(doc)]
use super::async_result::AsyncResult;
use super::async_result::{decode, SPIN_YIELDS};
use crate::error::{Error, Result};
use crate::supervisor::{Done, Job, Shared};

/// Chunks produced by an `imap`'s input: serialized arguments, or the input's failure.
/// An `IMap`'s input, chunked and encoded: each chunk's function, bytes and number of items.
pub(crate) type Source<'a> = Box<dyn Iterator<Item = Result<(crate::CodeAddr, Vec<u8>, usize)>> + 'a>;

/// Finished chunks of an `imap`.
struct Arrivals<R> {
    /// Ordered: by chunk index. Unordered: in arrival order, under key 0, 1, 2, ... With each
    /// outcome, its chunk's number of items.
    done: BTreeMap<u64, (usize, Result<Vec<R>>)>,
    arrived: u64,
    /// Whether the iterator sleeps on the condition variable.
    waiting: bool,
    /// The task polling the `IMap` as a stream, woken when a chunk arrives.
    #[cfg(feature = "tokio")]
    waker: Option<std::task::Waker>,
}

struct Shelf<R> {
    arrivals: Mutex<Arrivals<R>>,
    ready: Condvar,
}

/// The lazy iterator of [`Pool::imap`](crate::Pool::imap) and
/// [`imap_unordered`](crate::Pool::imap_unordered): it takes input only to keep a bounded window
/// of chunks in flight, so an endless input works with flat memory. Yields each result, or the
/// error of its task; after an error it goes on with the next results, as Python's does.
///
/// It yields one item per input item: its result, or its task's error (a chunk that fails yields
/// its error once for each of its items). Only an input that fails, or a pool closed or
/// terminated before the input is exhausted, ends it early, with that error.
///
/// When the input knows its length, so does the `IMap`: [`total`](Self::total), the upper bound
/// of `size_hint`, and [`exact`](Self::exact), which makes it an [`ExactSizeIterator`] (for
/// `indicatif`'s `ProgressIterator::progress`, say). It counts the items delivered
/// ([`completed`](Self::completed)).
pub struct IMap<'a, R> {
    shared: Arc<Shared>,
    source: Source<'a>,
    shelf: Arc<Shelf<R>>,
    ordered: bool,
    window: usize,
    submitted: u64,
    taken: u64,
    buffer: VecDeque<Result<R>>,
    input_error: Option<Error>,
    /// The error that ended the input early, for [`ExactIMap`] to report for the items not run.
    ended_by: Option<Error>,
    input_done: bool,
    total: Option<usize>,
    completed: usize,
    _marker: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for IMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("in_flight", &(self.submitted - self.taken))
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}

impl<'a, R: DeserializeOwned + Send + 'static> IMap<'a, R> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        source: Source<'a>,
        ordered: bool,
        window: usize,
        total: Option<usize>,
    ) -> Self {
        shared.imap_started();
        IMap {
            shared,
            source,
            shelf: Arc::new(Shelf {
                arrivals: Mutex::new(Arrivals {
                    done: BTreeMap::new(),
                    arrived: 0,
                    waiting: false,
                    #[cfg(feature = "tokio")]
                    waker: None,
                }),
                ready: Condvar::new(),
            }),
            ordered,
            window: window.max(1),
            submitted: 0,
            taken: 0,
            buffer: VecDeque::new(),
            input_error: None,
            ended_by: None,
            input_done: false,
            total,
            completed: 0,
            _marker: PhantomData,
        }
    }

    /// How many items (results or errors) were delivered so far.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// How many results there will be in all, when the input knows its length.
    pub fn total(&self) -> Option<usize> {
        self.total
    }

    /// Takes input until the window is full.
    ///
    /// Submission failures end the input with that error.
    fn top_up(&mut self) {
        while !self.input_done && self.submitted - self.taken < self.window as u64 {
            match self.source.next() {
                None => self.end_input(),
                Some(Err(e)) => {
                    self.input_error = Some(e);
                    self.end_input();
                }
                Some(Ok((func, args, items))) => {
                    let index = self.submitted;
                    let shelf = self.shelf.clone();
                    let ordered = self.ordered;
                    let done: Done = Box::new(move |outcome, _sink| {
                        let value = decode::<R>(outcome);
                        let mut a = shelf.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
                        let key = if ordered { index } else { a.arrived };
                        a.arrived += 1;
                        a.done.insert(key, (items, value));
                        let waiting = a.waiting;
                        #[cfg(feature = "tokio")]
                        let waker = a.waker.take();
                        drop(a);
                        if waiting {
                            shelf.ready.notify_all();
                        }
                        #[cfg(feature = "tokio")]
                        if let Some(w) = waker {
                            w.wake();
                        }
                    });
                    match self.shared.submit([Job { func, args, done }], true) {
                        Ok(()) => self.submitted += 1,
                        Err(e) => {
                            self.input_error = Some(e);
                            self.end_input();
                        }
                    }
                }
            }
        }
    }

    /// The next result, waiting at most until `deadline`.
    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            if let Some(v) = self.buffer.pop_front() {
                self.completed += 1;
                return Some(v);
            }
            self.top_up();
            if self.taken == self.submitted {
                let error = self.input_error.take()?;
                self.ended_by = Some(error.clone());
                self.completed += 1;
                return Some(Err(error));
            }
            let key = self.taken;
            let mut backoff = proc_os::Backoff::new(0, SPIN_YIELDS);
            let mut a = self.shelf.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
            let got = loop {
                if let Some(v) = a.done.remove(&key) {
                    break v;
                }
                if !backoff.is_completed() {
                    drop(a);
                    backoff.snooze();
                    a = self.shelf.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                a.waiting = true;
                match deadline {
                    None => a = self.shelf.ready.wait(a).unwrap_or_else(PoisonError::into_inner),
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            a.waiting = false;
                            return Some(Err(Error::Timeout));
                        }
                        a = self.shelf.ready.wait_timeout(a, left).unwrap_or_else(PoisonError::into_inner).0;
                    }
                }
                a.waiting = false;
            };
            drop(a);
            self.taken += 1;
            match got {
                (_, Ok(values)) => self.buffer.extend(values.into_iter().map(Ok)),
                // The chunk's results are lost with it: its error stands for each of its items.
                (items, Err(e)) => self.buffer.extend(std::iter::repeat_n(e, items.max(1)).map(Err)),
            }
        }
    }

    /// The next result, waiting at most `timeout` (Python's `next(timeout)`). `None` at the end.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no result came in time (ask again: nothing is lost); otherwise the
    /// task's error as [`AsyncResult::get`], or [`Error::Input`] / [`Error::Closed`] when the
    /// input ended that way.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        let deadline = Instant::now().checked_add(timeout);
        self.next_until(deadline)
    }

    /// As [`next_timeout`](Self::next_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`next_timeout`](Self::next_timeout).
    pub fn next_deadline(&mut self, deadline: Instant) -> Option<Result<R>> {
        self.next_timeout(deadline.saturating_duration_since(Instant::now()))
    }
}

impl<R> IMap<'_, R> {
    /// The input is exhausted (or failed): a closed pool need not wait for this `IMap` any more.
    fn end_input(&mut self) {
        if !self.input_done {
            self.input_done = true;
            self.shared.imap_ended();
        }
    }
}

impl<R> Drop for IMap<'_, R> {
    /// A closed pool may finish once no `IMap` can submit any more.
    fn drop(&mut self) {
        self.end_input();
    }
}

/// The `IMap` as a `Stream` (feature `tokio`; any executor can poll it): `poll_next` takes what has
/// arrived without waiting, and registers the task to be woken by the next arrival. Taking input
/// (`Pool::imap`'s iterator) happens while polling, as it does in `next`: keep the input cheap.
///
/// # Examples
///
/// ```
/// use futures_core::Stream;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> proc_pool::Result<()> {
/// let pool = proc_pool::Pool::new(2)?;
/// let mut results = pool.imap(square, 1..=4u64);
/// let mut sum = 0;
/// while let Some(r) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut results).poll_next(cx)).await {
///     sum += r?;
/// }
/// assert_eq!(sum, 30);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
impl<R: DeserializeOwned + Send + 'static> futures_core::Stream for IMap<'_, R> {
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        let this = self.get_mut();
        loop {
            if let Some(v) = this.buffer.pop_front() {
                this.completed += 1;
                return std::task::Poll::Ready(Some(v));
            }
            this.top_up();
            if this.taken == this.submitted {
                let Some(error) = this.input_error.take() else { return std::task::Poll::Ready(None) };
                this.ended_by = Some(error.clone());
                this.completed += 1;
                return std::task::Poll::Ready(Some(Err(error)));
            }
            let key = this.taken;
            let mut a = this.shelf.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(got) = a.done.remove(&key) else {
                // Woken by the next arrival (registered under the lock the arrival takes).
                a.waker = Some(cx.waker().clone());
                return std::task::Poll::Pending;
            };
            drop(a);
            this.taken += 1;
            match got {
                (_, Ok(values)) => this.buffer.extend(values.into_iter().map(Ok)),
                (items, Err(e)) => this.buffer.extend(std::iter::repeat_n(e, items.max(1)).map(Err)),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        Iterator::size_hint(self)
    }
}

// Nothing in an `IMap` is ever pinned in place (its results sit in a queue it moves them out of),
// so it may move when pinned: a `Stream` of it is polled through `Pin::new(&mut imap)`.
impl<R> Unpin for IMap<'_, R> {}

impl<R: DeserializeOwned + Send + 'static> Iterator for IMap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // A failing input or a closed pool may end it before the total.
        (self.buffer.len(), self.total.map(|t| t.saturating_sub(self.completed)))
    }
}

impl<'a, R: DeserializeOwned + Send + 'static> IMap<'a, R> {
    /// This `IMap` as an [`ExactSizeIterator`], when its input knows its length (a range, a
    /// `Vec`, a slice's iterator, ...); otherwise it is handed back.
    ///
    /// The exact form yields exactly [`total`](Self::total) items: where the plain one ends early
    /// (a failing input, a pool closed or terminated), it yields that error for each item not run.
    ///
    /// # Errors
    ///
    /// The `IMap` itself, when its length is not known.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_pool::Pool;
    ///
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// let pool = Pool::new(2)?;
    /// let mut it = pool.imap(double, 0..10).exact().expect("a range knows its length");
    /// assert_eq!(it.len(), 10);
    /// it.next().unwrap()?;
    /// assert_eq!(it.len(), 9);
    /// assert_eq!(it.count(), 9);
    /// # Ok::<(), proc_pool::Error>(())
    /// ```
    // The `IMap` is handed back by value, as `Rc::try_unwrap` does: boxing it would only move it.
    #[allow(clippy::result_large_err)]
    pub fn exact(self) -> std::result::Result<ExactIMap<'a, R>, Self> {
        match self.total {
            Some(total) => Ok(ExactIMap { inner: self, total }),
            None => Err(self),
        }
    }
}

/// An [`IMap`] whose input knows its length: an [`ExactSizeIterator`] that yields exactly one
/// item per input item. Made by [`IMap::exact`].
pub struct ExactIMap<'a, R> {
    inner: IMap<'a, R>,
    total: usize,
}

impl<R> fmt::Debug for ExactIMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExactIMap").field("inner", &self.inner).field("total", &self.total).finish()
    }
}

impl<R: DeserializeOwned + Send + 'static> ExactIMap<'_, R> {
    /// How many items were delivered so far.
    pub fn completed(&self) -> usize {
        self.inner.completed
    }

    /// As [`IMap::next_timeout`].
    ///
    /// # Errors
    ///
    /// As [`IMap::next_timeout`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        let deadline = Instant::now().checked_add(timeout);
        self.next_until(deadline)
    }

    /// As [`next_timeout`](Self::next_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`next_timeout`](Self::next_timeout).
    pub fn next_deadline(&mut self, deadline: Instant) -> Option<Result<R>> {
        self.next_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        if self.inner.completed >= self.total {
            return None;
        }
        match self.inner.next_until(deadline) {
            Some(item) => Some(item),
            None => {
                // Ended early: the items not run fail with what ended it.
                self.inner.completed += 1;
                Some(Err(self.inner.ended_by.clone().unwrap_or(Error::Closed)))
            }
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for ExactIMap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total.saturating_sub(self.inner.completed);
        (left, Some(left))
    }
}

impl<R: DeserializeOwned + Send + 'static> ExactSizeIterator for ExactIMap<'_, R> {}
