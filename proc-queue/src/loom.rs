//! The seam between the queue's protocol and what it runs on: the atomics of a ring's shared
//! memory, and the process calls the protocol makes (`pid`, `process_alive`, `wait`, `wake_all`,
//! `yield_now`).
//!
//! In a normal build these are std's atomics and proc-os's functions, re-exported: the seam costs
//! nothing. Under `--cfg loom` (the model checks in `queue::model`) they become model versions:
//!
//! - the atomics wrap loom's, so that loom explores every interleaving and every weak-memory
//!   outcome of the real protocol code, and each operation first counts one *step* of the calling
//!   model thread: a thread given a budget of `k` steps dies (panics with `Killed`, which the
//!   model catches) just before its `k`-th operation on shared memory — a process killed there;
//! - a model process is a loom thread with a small pid of its own (`set_pid`); `process_alive`
//!   says whether it has been marked dead (`mark_dead`), through a loom atomic, so that seeing a
//!   process dead orders after everything it did, as the kernel's reaping does;
//! - `wait` yields (a spurious wake-up, which the real seam allows), `wake_all` does nothing,
//!   `yield_now` is loom's;
//! - `seq_cst`, nothing in a normal build, is a SeqCst fence: it stands for the total order of
//!   the SeqCst accesses around it, which loom does not model (it takes them for AcqRel);
//! - every slot gets a loom cell that stands for its data bytes (`Access`): a read of a message
//!   not ordered after its writing (a torn message) fails the model.

#[cfg(not(loom))]
pub(crate) use proc_os::{pid, process_alive, wait, wake_all};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8};
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

/// Stands for the single total order of the SeqCst accesses just before and after it, which
/// loom does not model (it takes a SeqCst access for an AcqRel one, tokio-rs/loom#180, and so
/// finds executions that no SeqCst execution has): nothing here, a SeqCst fence (which loom
/// does model) in the model checks.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn seq_cst() {}

#[cfg(loom)]
pub(crate) use model::*;

#[cfg(loom)]
mod model {
    use std::cell::Cell;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    /// The panic payload of a model thread killed by its step budget.
    #[derive(Debug)]
    pub(crate) struct Killed;

    ::loom::thread_local! {
        static PID: Cell<u32> = Cell::new(1);
        /// Steps left before this thread dies; `None`: it never dies.
        static BUDGET: Cell<Option<u32>> = Cell::new(None);
        static KILLED: Cell<bool> = Cell::new(false);
    }

    ::loom::lazy_static! {
        /// Bit `pid` is set once model process `pid` has died.
        static ref DEAD: ::loom::sync::atomic::AtomicU32 = ::loom::sync::atomic::AtomicU32::new(0);
    }

    /// One step of this thread: dies here if its budget is spent.
    fn step() {
        assert!(!KILLED.with(Cell::get), "a killed model process touched shared memory");
        BUDGET.with(|budget| match budget.get() {
            Some(0) => {
                KILLED.with(|k| k.set(true));
                std::panic::panic_any(Killed);
            }
            Some(n) => budget.set(Some(n - 1)),
            None => {}
        });
    }

    /// Makes this model thread process `pid` (from 1 to 31; the model's main thread is 1).
    #[cfg(test)]
    pub(crate) fn set_pid(pid: u32) {
        PID.with(|p| p.set(pid));
    }

    /// Gives this model thread `steps` operations on shared memory before it dies.
    #[cfg(test)]
    pub(crate) fn set_budget(steps: u32) {
        BUDGET.with(|b| b.set(Some(steps)));
    }

    /// Marks this thread's process dead, after it was killed: from here `process_alive` says so.
    #[cfg(test)]
    pub(crate) fn mark_dead() {
        let pid = PID.with(Cell::get);
        DEAD.fetch_or(1 << pid, Ordering::Release);
    }

    pub(crate) fn pid() -> u32 {
        PID.with(Cell::get)
    }

    pub(crate) fn process_alive(pid: u32) -> bool {
        DEAD.load(Ordering::Acquire) & (1 << (pid % 32)) == 0
    }

    /// The real `wait` may return at any time (a spurious wake-up): here it lets others run.
    pub(crate) fn wait(_word: &AtomicU32, _expected: u32, _timeout: Option<Duration>) -> bool {
        ::loom::thread::yield_now();
        true
    }

    pub(crate) fn wake_all(_word: &AtomicU32) {}

    pub(crate) fn yield_now() {
        ::loom::thread::yield_now();
    }

    pub(crate) fn fence(order: Ordering) {
        step();
        ::loom::sync::atomic::fence(order);
    }

    /// See the real `seq_cst`: here a SeqCst fence, which loom models as a total order.
    pub(crate) fn seq_cst() {
        fence(Ordering::SeqCst);
    }

    /// The data bytes of a slot, as loom sees them: every access to them goes through `touch`.
    #[derive(Debug)]
    pub(crate) struct Access(::loom::cell::UnsafeCell<()>);

    impl Default for Access {
        fn default() -> Self {
            Access(::loom::cell::UnsafeCell::new(()))
        }
    }

    impl Access {
        /// Records an access to the slot's bytes: loom fails the model if another access to them
        /// is not ordered with this one.
        pub(crate) fn touch(&self) {
            self.0.with_mut(|_| ());
        }
    }

    macro_rules! atomic {
        ($name:ident, $int:ty) => {
            /// A loom atomic whose every operation is a step of the calling thread.
            #[derive(Debug, Default)]
            pub(crate) struct $name(::loom::sync::atomic::$name);

            #[allow(dead_code)]
            impl $name {
                pub(crate) fn new(v: $int) -> Self {
                    $name(::loom::sync::atomic::$name::new(v))
                }

                pub(crate) fn load(&self, order: Ordering) -> $int {
                    step();
                    self.0.load(order)
                }

                pub(crate) fn store(&self, v: $int, order: Ordering) {
                    step();
                    self.0.store(v, order)
                }

                pub(crate) fn swap(&self, v: $int, order: Ordering) -> $int {
                    step();
                    self.0.swap(v, order)
                }

                pub(crate) fn compare_exchange(
                    &self,
                    cur: $int,
                    new: $int,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$int, $int> {
                    step();
                    self.0.compare_exchange(cur, new, success, failure)
                }

                pub(crate) fn fetch_add(&self, v: $int, order: Ordering) -> $int {
                    step();
                    self.0.fetch_add(v, order)
                }

                pub(crate) fn fetch_sub(&self, v: $int, order: Ordering) -> $int {
                    step();
                    self.0.fetch_sub(v, order)
                }

                pub(crate) fn fetch_max(&self, v: $int, order: Ordering) -> $int {
                    step();
                    self.0.fetch_max(v, order)
                }
            }
        };
    }

    atomic!(AtomicU8, u8);
    atomic!(AtomicU32, u32);
    atomic!(AtomicU64, u64);
}
