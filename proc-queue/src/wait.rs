//! `wait`: block until one of several connections or processes is ready, as Python's
//! `multiprocessing.connection.wait`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use proc_core::Sentinel;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// Something [`wait`] can wait for: an object that is ready when a descriptor of its own is
/// readable (data or end of stream for a connection, the exit for a process sentinel), or, for a
/// queue, an object whose descriptor is a doorbell rung when its state may have changed.
///
/// Implemented for [`Connection`], [`proc_core::Sentinel`], raw descriptors and the queues. A type
/// of your own joins in by naming its descriptor.
///
/// # Examples
///
/// ```
/// use std::os::fd::{AsFd, BorrowedFd};
/// use std::os::unix::net::UnixStream;
/// use proc_queue::{wait, Waitable};
///
/// struct Doorbell(UnixStream);
///
/// impl Waitable for Doorbell {
///     fn wait_fd(&self) -> BorrowedFd<'_> {
///         self.0.as_fd()
///     }
/// }
///
/// let (bell, mut button) = UnixStream::pair().unwrap();
/// std::io::Write::write_all(&mut button, b"!").unwrap();
/// assert_eq!(wait(&[&Doorbell(bell)], None).unwrap(), [0]);
/// ```
pub trait Waitable {
    /// The descriptor whose readability (or hang-up) means the object is ready, or, for a
    /// doorbell object, that it may be.
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// For a doorbell object: asks to be rung on the next change, and says whether it is ready
    /// already. `None` (the default): the descriptor's readability is the answer. An object that
    /// can be ready with nothing on its descriptor (a connection holding data it has read ahead)
    /// returns `Some(true)` then, and `None` otherwise.
    fn arm(&self) -> Option<bool> {
        None
    }

    /// For a doorbell object whose descriptor became readable: clears the bell and says whether
    /// the object is ready now. Called only when [`arm`](Self::arm) returned `Some`.
    fn fired(&self) -> bool {
        true
    }
}

impl<T> Waitable for Connection<T> {
    /// Ready when a message, the start of one or the end of the stream is there to receive. The
    /// sending end of a one-way pipe is always ready: receiving on it fails at once.
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    /// Ready at once when this end holds bytes it has read and not yet returned (the start of a
    /// message, or messages read ahead with an earlier one), which the descriptor cannot show;
    /// otherwise the descriptor's readability is the answer.
    fn arm(&self) -> Option<bool> {
        self.has_data_read().then_some(true)
    }
}

impl Waitable for Sentinel {
    /// Ready once the process has ended.
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl Waitable for BorrowedFd<'_> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        *self
    }
}

impl Waitable for OwnedFd {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Waits until at least one of `objects` is ready, or until `timeout` (`None`: as long as it
/// takes; zero: look once), and returns the indices of those that are ready, in order; empty only
/// when the timeout passed (Python's `multiprocessing.connection.wait`). With no objects it
/// returns an empty list at once.
///
/// "Ready" means the next receive will not wait for its first byte: a message (or the start of
/// one) or the end of the stream arrived; for a sentinel, the process ended. Interrupted waits
/// resume with the time that is left.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use proc_core::Process;
/// use proc_queue::{pipe, wait, Connection};
///
/// fn answer(conn: Connection<u32>) {
///     conn.send(&42).unwrap();
/// }
///
/// let (quiet, _other) = pipe::<u32>()?;
/// let (parent, child) = pipe::<u32>()?;
/// let p = Process::new(answer, (child,)).start()?;
/// assert_eq!(wait(&[&quiet, &parent], None)?, [1]);
/// assert_eq!(parent.recv()?, 42);
/// assert_eq!(wait(&[&quiet, &p.sentinel()], Some(Duration::from_secs(60)))?, [1]);
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::Os`]: `poll(2)` failed (for example, too many objects for the process' limits).
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|o| o.wait_fd()).collect();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        // Arm the doorbells; one that is ready already makes this a look, not a wait.
        let armed: Vec<Option<bool>> = objects.iter().map(|o| o.arm()).collect();
        let doorbells = armed.iter().any(Option::is_some);
        let now = Instant::now();
        let poll_until = if armed.contains(&Some(true)) {
            Some(now)
        } else if doorbells {
            // Another waiter may drain a bell rung for us: look again after a slice at most.
            Some(deadline.map_or(now + DOORBELL_SLICE, |d| d.min(now + DOORBELL_SLICE)))
        } else {
            deadline
        };
        let fired = proc_os::fd::wait_readable(&fds, poll_until).map_err(Error::Os)?;
        let ready: Vec<usize> = objects
            .iter()
            .zip(armed.iter().zip(&fired))
            .enumerate()
            .filter_map(|(i, (o, (armed, &fired)))| {
                let ready = match armed {
                    None => fired,
                    Some(before) => {
                        if fired {
                            o.fired()
                        } else {
                            *before
                        }
                    }
                };
                ready.then_some(i)
            })
            .collect();
        if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(ready);
        }
    }
}

/// How long `wait` sleeps at most between looks at the queues it watches.
const DOORBELL_SLICE: Duration = Duration::from_millis(50);
