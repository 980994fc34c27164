//! How the MPI threads wait without a busy core: MPI has no descriptor to sleep on, so a thread
//! with work in flight polls, yielding the CPU a few times, then sleeping 20 µs, doubling up to
//! 1 ms (mpi4py's futures poll the same way, with a 1 ms back-off by default).

use std::time::Duration;

/// Looks after the first sleep.
const YIELDS: u32 = 32;
const FIRST: Duration = Duration::from_micros(20);
/// The longest pause: a message waits at most about this long to be seen.
pub(crate) const MAX: Duration = Duration::from_millis(1);

/// A poller's back-off.
#[derive(Debug)]
pub(crate) struct Pace {
    yields: u32,
    pause: Duration,
}

impl Pace {
    pub(crate) fn new() -> Self {
        Pace { yields: 0, pause: FIRST }
    }

    /// Something happened: poll eagerly again.
    pub(crate) fn reset(&mut self) {
        self.yields = 0;
        self.pause = FIRST;
    }

    /// Nothing happened: `None` after a yield of the CPU, or the pause to sleep now (the caller
    /// sleeps it, in a wait of its own that something else may end early).
    pub(crate) fn next(&mut self) -> Option<Duration> {
        if self.yields < YIELDS {
            self.yields += 1;
            std::thread::yield_now();
            return None;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX);
        Some(pause)
    }
}
