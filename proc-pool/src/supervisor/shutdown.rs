//! The end of a pool: `close` (every task done, then each worker gets a `Stop` order and is
//! joined), `terminate` (SIGTERM, then SIGKILL after a grace period; every task not done fails),
//! and, either way, the unlinking of the queues' segments that no worker releases any more.

use std::time::{Duration, Instant};

use super::{Mode, Supervisor};
use crate::error::Error;
use crate::worker::Order;

/// How long a terminated worker gets to exit before it is killed.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

impl Supervisor {
    /// Closed and done: asks every worker to stop and waits for them.
    pub(super) fn stop_workers(&mut self) {
        for slot in &mut self.slots {
            if slot.process.is_some() {
                slot.stopping = true;
                if slot.orders.put_nowait(Order::Stop).is_err() {
                    if let Some(p) = &slot.process {
                        let _ = p.terminate();
                    }
                }
            }
        }
        for slot in &mut self.slots {
            if let Some(p) = slot.process.take() {
                if !matches!(p.join_timeout(Duration::from_secs(30)), Ok(Some(()))) {
                    let _ = p.kill();
                    let _ = p.join_timeout(TERMINATE_GRACE);
                }
            }
        }
        // No worker is left: what a worker killed earlier (a timeout, a crash) held goes too.
        self.unlink_segments();
    }

    /// Terminates every worker and fails every task not done.
    pub(super) fn terminate(&mut self) {
        self.kill_all();
        self.fail_everything(&Error::Terminated);
    }

    /// SIGTERM to every worker, SIGKILL after a grace period, and reaps them all; then unlinks
    /// the shared memory of the pool's queues that the workers can no longer release.
    fn kill_all(&mut self) {
        for slot in &self.slots {
            if let Some(p) = &slot.process {
                let _ = p.terminate();
            }
        }
        let deadline = Instant::now() + TERMINATE_GRACE;
        for slot in &mut self.slots {
            if let Some(p) = slot.process.take() {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = p.join_timeout(left);
                if p.exitcode().is_none() {
                    let _ = p.kill();
                    let _ = p.join_timeout(TERMINATE_GRACE);
                }
            }
        }
        self.unlink_segments();
    }

    /// Unlinks the named segments of the pool's queues (large messages not read, those kept for
    /// reuse, those a killed worker was writing or reading): the queues are the pool's own, and no
    /// worker uses them any more.
    fn unlink_segments(&self) {
        for slot in &self.slots {
            slot.orders.unlink_segments();
        }
        self.replies.unlink_segments();
    }
}

impl Drop for Supervisor {
    /// Normally everything is done by now. After a panic of the supervisor (or a failed start),
    /// no worker is left running and no task waits forever.
    fn drop(&mut self) {
        self.kill_all();
        {
            let mut state = self.shared.lock();
            state.mode = Mode::Terminating;
        }
        self.fail_everything(&Error::Terminated);
    }
}
