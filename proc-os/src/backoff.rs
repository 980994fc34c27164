//! How a waiter backs off: spin with a CPU pause, then yield the CPU, then sleep with a growing
//! pause. The spin is the fast path; yielding and sleeping are `#[cold]`.

use std::time::{Duration, Instant};

/// The first sleep of [`Backoff::sleep`].
const FIRST_PAUSE: Duration = Duration::from_micros(20);

/// The longest sleep of [`Backoff::sleep`] in a short wait: a change is seen within about this
/// long.
const MAX_PAUSE: Duration = Duration::from_millis(1);

/// How many sleeps of [`MAX_PAUSE`] (about 100 ms) make a wait a long one, whose sleeps may grow to
/// [`IDLE_PAUSE`].
const LONG_WAIT: u32 = 100;

/// The longest sleep of a long wait: an idle waiter that polls wakes 50 times a second, which keeps
/// it well under 1 % of a CPU where a wake-up costs tens of µs (at 1 ms it took 2–2.7 % on a
/// 2-CPU VM, and at 4 ms still 1.3–2.7 %); a change after a long wait is seen within about 20 ms,
/// the cap Python's own polling semaphore wait uses.
const IDLE_PAUSE: Duration = Duration::from_millis(20);

/// Spin, then yield, then sleep: the back-off of a waiter that expects its condition soon. Each
/// caller picks its own budgets (how long a peer takes to answer is the caller's knowledge).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// let ready = AtomicBool::new(false);
/// let mut backoff = proc_os::Backoff::new(8, 4);
/// let mut looks = 0;
/// while !ready.load(Ordering::Acquire) {
///     looks += 1;
///     if looks == 20 {
///         ready.store(true, Ordering::Release); // stands in for another process' store
///     }
///     if !backoff.snooze() {
///         backoff.sleep(None); // the spin and yield budgets are spent: sleep a little
///     }
/// }
/// assert!(backoff.is_completed());
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Steps of [`Backoff::snooze`] taken.
    step: u32,
    /// Steps that spin.
    spins: u32,
    /// Steps that spin or yield.
    end: u32,
    /// The next sleep.
    pause: Duration,
    /// Sleeps taken at [`MAX_PAUSE`] or longer.
    long_sleeps: u32,
}

impl Backoff {
    /// A back-off that spins `spins` times (a CPU pause each), then yields the CPU `yields` times.
    #[inline]
    pub const fn new(spins: u32, yields: u32) -> Self {
        Backoff { step: 0, spins, end: spins.saturating_add(yields), pause: FIRST_PAUSE, long_sleeps: 0 }
    }

    /// One step: a CPU pause while spins are left, then a yield of the CPU while yields are left.
    /// Returns false, doing nothing, once both budgets are spent: the caller then sleeps (with
    /// [`Backoff::sleep`], or in the kernel) or gives up.
    #[inline]
    pub fn snooze(&mut self) -> bool {
        if self.step < self.spins {
            self.step += 1;
            std::hint::spin_loop();
            true
        } else {
            self.yield_now()
        }
    }

    /// Goes on from where a long wait stood (`proc-os`'s polling wait resumes one a caller waits in
    /// slices): no spins or yields, and sleeps of the long wait's longest pause.
    #[cfg_attr(all(target_os = "linux", not(feature = "force-portable")), allow(dead_code))]
    pub(crate) fn resume_long_wait(&mut self) {
        self.step = self.end;
        self.long_sleeps = LONG_WAIT;
        self.pause = IDLE_PAUSE;
    }

    /// Whether the spin and yield budgets are spent.
    #[inline]
    pub fn is_completed(&self) -> bool {
        self.step >= self.end
    }

    /// Sleeps for the current pause, but not past `deadline`, then doubles the pause: from 20 µs
    /// up to 1 ms, and, once about a hundred sleeps of 1 ms show a long wait, up to 20 ms (so that
    /// an idle waiter costs little CPU).
    #[cold]
    pub fn sleep(&mut self, deadline: Option<Instant>) {
        let nap =
            deadline.map_or(self.pause, |d| self.pause.min(d.saturating_duration_since(Instant::now())));
        std::thread::sleep(nap);
        if self.pause >= MAX_PAUSE {
            self.long_sleeps = self.long_sleeps.saturating_add(1);
        }
        let cap = if self.long_sleeps >= LONG_WAIT { IDLE_PAUSE } else { MAX_PAUSE };
        self.pause = (self.pause * 2).min(cap);
    }

    /// The yield phase of [`Backoff::snooze`].
    #[cold]
    fn yield_now(&mut self) -> bool {
        if self.step < self.end {
            self.step += 1;
            std::thread::yield_now();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod test {
    use super::Backoff;

    #[test]
    fn budgets_are_spent_in_order() {
        let mut backoff = Backoff::new(2, 3);
        let steps = std::iter::from_fn(|| backoff.snooze().then_some(())).count();
        assert_eq!(steps, 5);
        assert!(backoff.is_completed());
        assert!(!backoff.snooze(), "a spent back-off stays spent");
    }

    #[test]
    fn sleeps_grow_to_the_cap() {
        let mut backoff = Backoff::new(0, 0);
        for _ in 0..10 {
            backoff.sleep(Some(std::time::Instant::now()));
        }
        assert_eq!(backoff.pause, super::MAX_PAUSE);
    }

    #[test]
    fn a_long_wait_sleeps_longer() {
        let mut backoff = Backoff::new(0, 0);
        // The sleeps up to the short wait's cap, then all but one of its long-wait count.
        for _ in 0..6 + super::LONG_WAIT - 1 {
            backoff.sleep(Some(std::time::Instant::now()));
        }
        assert_eq!(backoff.pause, super::MAX_PAUSE, "a short wait keeps the 1 ms cap");
        for _ in 0..6 {
            backoff.sleep(Some(std::time::Instant::now()));
        }
        assert_eq!(backoff.pause, super::IDLE_PAUSE);
    }
}
