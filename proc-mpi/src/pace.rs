//! How the MPI threads wait without a busy core: MPI has no descriptor to sleep on, so a thread
//! with work in flight polls. While tasks are short (their run on the hosts, a moving average,
//! under [`SHORT`]) it stays hot after each thing that happened, yielding the CPU between looks,
//! for [`HOT`]: a stream of short tasks, or one task at a time, is seen at once. Then, or at once
//! while tasks are long, it sleeps 20 µs, doubling up to 1 ms (mpi4py's futures poll with a 1 ms
//! back-off by default): a wait for long tasks costs a look per millisecond and takes no CPU from
//! the workers beside it. The average is of the tasks' run times, not of the gaps between
//! messages, which the polling itself stretches.

use std::time::{Duration, Instant};

/// How long a poller stays hot after something happened, while tasks are short.
const HOT: Duration = Duration::from_micros(300);
/// Tasks that run longer than this (on average) are long.
const SHORT: Duration = Duration::from_micros(500);
const FIRST: Duration = Duration::from_micros(20);
/// The longest pause: a message waits at most about this long to be seen.
pub(crate) const MAX: Duration = Duration::from_millis(1);

/// A poller's back-off.
#[derive(Debug)]
pub(crate) struct Pace {
    last: Instant,
    /// A moving average of the tasks' run times.
    service: Duration,
    pause: Duration,
    /// The longest pause while tasks are long.
    long_max: Duration,
}

impl Pace {
    /// A poller that pauses at most 1 ms.
    pub(crate) fn new() -> Self {
        Pace::with_long_pause(MAX)
    }

    /// A poller that pauses up to `long_max` while tasks are long (for one that something else
    /// wakes when it matters: a node agent wakes at once for its local pool's outcomes, and its
    /// front end sends it work only in answer to them).
    pub(crate) fn with_long_pause(long_max: Duration) -> Self {
        Pace { last: Instant::now(), service: Duration::ZERO, pause: FIRST, long_max: long_max.max(MAX) }
    }

    fn long(&self) -> bool {
        self.service >= SHORT
    }

    /// Something happened: poll eagerly again (while tasks are long, from a quarter of their run
    /// time, at most 1 ms: their answers take about that long).
    pub(crate) fn reset(&mut self) {
        self.last = Instant::now();
        self.pause = if self.long() { (self.service / 4).clamp(FIRST, MAX) } else { FIRST };
    }

    /// A task ran this long on its host.
    pub(crate) fn observe(&mut self, ran: Duration) {
        self.service = (self.service * 7 + ran.min(Duration::from_secs(1))) / 8;
    }

    /// Nothing happened: `None` after a yield of the CPU, or the pause to sleep now (the caller
    /// sleeps it, in a wait of its own that something else may end early).
    pub(crate) fn next(&mut self) -> Option<Duration> {
        if !self.long() && self.last.elapsed() < HOT {
            std::thread::yield_now();
            return None;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(if self.long() { self.long_max } else { MAX });
        Some(pause)
    }
}
