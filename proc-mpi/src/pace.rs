//! How the MPI threads wait without a busy core: MPI has no descriptor to sleep on, so a thread
//! with work in flight polls. Right after something happened it stays hot, yielding the CPU
//! between looks, for [`HOT`]; then it sleeps 20 µs, doubling up to 1 ms (mpi4py's futures poll
//! with a 1 ms back-off by default). So a stream of short tasks is seen at once, and a wait for
//! long tasks costs a look per millisecond.

use std::time::{Duration, Instant};

/// How long a poller stays hot after something happened.
const HOT: Duration = Duration::from_micros(300);
const FIRST: Duration = Duration::from_micros(20);
/// The longest pause: a message waits at most about this long to be seen.
pub(crate) const MAX: Duration = Duration::from_millis(1);

/// A poller's back-off.
#[derive(Debug)]
pub(crate) struct Pace {
    last: Instant,
    pause: Duration,
}

impl Pace {
    pub(crate) fn new() -> Self {
        Pace { last: Instant::now(), pause: FIRST }
    }

    /// Something happened: poll eagerly again.
    pub(crate) fn reset(&mut self) {
        self.last = Instant::now();
        self.pause = FIRST;
    }

    /// Nothing happened: `None` after a yield of the CPU, or the pause to sleep now (the caller
    /// sleeps it, in a wait of its own that something else may end early).
    pub(crate) fn next(&mut self) -> Option<Duration> {
        if self.last.elapsed() < HOT {
            std::thread::yield_now();
            return None;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX);
        Some(pause)
    }
}
