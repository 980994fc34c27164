//! The receiving state of a connection, which one receiver at a time takes out.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

use super::frame::Incoming;

/// The receiving state, which one receiver at a time takes out (so that a timed receive can give
/// up waiting for its turn at its deadline, which a plain mutex would not allow).
#[derive(Debug)]
pub(super) struct Turn {
    state: Mutex<TurnState>,
    returned: Condvar,
}

/// What [`Turn`]'s lock protects.
#[derive(Debug)]
struct TurnState {
    /// `None` while a receiver has it. Boxed: a receiver takes it out and puts it back, and the
    /// connection stays small.
    incoming: Option<Box<Incoming>>,
    /// Receivers waiting for their turn; the state is returned without a wake-up (a system call)
    /// when there are none.
    waiting: usize,
    /// How many times the state was returned (so an async receiver knows it was, since it looked).
    #[cfg(feature = "tokio")]
    returns: u64,
    /// Async receivers to wake when the state is returned.
    #[cfg(feature = "tokio")]
    wakers: Vec<std::task::Waker>,
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            state: Mutex::new(TurnState {
                incoming: Some(Box::default()),
                waiting: 0,
                #[cfg(feature = "tokio")]
                returns: 0,
                #[cfg(feature = "tokio")]
                wakers: Vec::new(),
            }),
            returned: Condvar::new(),
        }
    }
}

impl Turn {
    /// Takes the state, waiting until `deadline` for another receiver to return it.
    pub(super) fn take(&self, deadline: Option<Instant>) -> Option<TurnGuard<'_>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(incoming) = state.incoming.take() {
                return Some(TurnGuard { turn: self, incoming: Some(incoming) });
            }
            let left = match deadline {
                None => None,
                Some(d) => Some(d.checked_duration_since(Instant::now()).filter(|l| !l.is_zero())?),
            };
            state.waiting += 1;
            state = match left {
                None => self.returned.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    self.returned.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
            state.waiting -= 1;
        }
    }

    /// Whether no receiver has the state now.
    #[cfg(feature = "tokio")]
    pub(super) fn is_free(&self) -> bool {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).incoming.is_some()
    }

    /// How many times the state has been returned so far.
    #[cfg(feature = "tokio")]
    pub(super) fn returns(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).returns
    }

    /// Ready once the state has been returned after `seen` returns; else wakes `cx` then.
    #[cfg(feature = "tokio")]
    pub(super) fn poll_returned(&self, seen: u64, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.returns != seen {
            return std::task::Poll::Ready(());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        std::task::Poll::Pending
    }

    /// Whether the state, if no receiver has it now, holds bytes of the stream not yet returned
    /// (part of a message, or messages read ahead).
    pub(super) fn holds_data(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.incoming.as_deref().is_some_and(Incoming::holds_data)
    }
}

/// A receiver's hold on the receiving state; gives it back when dropped, even on a panic.
pub(super) struct TurnGuard<'a> {
    turn: &'a Turn,
    /// Always `Some` until the guard is dropped.
    incoming: Option<Box<Incoming>>,
}

impl std::ops::Deref for TurnGuard<'_> {
    type Target = Incoming;

    fn deref(&self) -> &Incoming {
        self.incoming.as_deref().unwrap_or_else(|| unreachable!("the receiving state is held until drop"))
    }
}

impl std::ops::DerefMut for TurnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Incoming {
        self.incoming.as_deref_mut().unwrap_or_else(|| unreachable!("the receiving state is held until drop"))
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let incoming = self.incoming.take();
        let mut state = self.turn.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.incoming = incoming;
        if state.waiting > 0 {
            self.turn.returned.notify_one();
        }
        #[cfg(feature = "tokio")]
        {
            state.returns += 1;
            let wakers = std::mem::take(&mut state.wakers);
            drop(state);
            wakers.into_iter().for_each(std::task::Waker::wake);
        }
    }
}
