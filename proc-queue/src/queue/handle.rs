//! `Queue<T>`: the typed handle on a queue's ring 0, and its builder.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proc_core::handle::{export_fd, import_fd};
use proc_core::shm::Segment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::chain::LARGE;
use super::error::{GetError, PutError};
use super::layout::{Mem, OPEN};
use super::ring::{ClaimFail, Fail, Ring};
use super::spill::SpillError;
use super::wake::Wait;

/// The default number of data bytes in a slot; larger messages spill to a chunk outside the ring.
pub const DEFAULT_SLOT_SIZE: usize = 112;

/// The default largest message: 16 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 30;

/// The capacity of an unbounded queue's first ring, in messages; when it is full the queue links
/// a ring twice as large (up to 2^20 messages each) and `put` goes on there, so `put` never
/// waits for room (when a consumer is about, it first yields its CPU a few times, so that one on
/// the same CPU can drain the ring). Rings drained since are released (see
/// [`Queue::unbounded`]).
pub const UNBOUNDED_INITIAL_CAPACITY: u32 = 1 << 12;

/// Options for a [`Queue`] of `T`: Python's `maxsize`, plus the slot size and the largest message.
///
/// ```
/// use proc_queue::Queue;
///
/// let q: Queue<String> = Queue::builder().maxsize(8).slot_size(256).build()?;
/// q.put("hello".to_string())?;
/// assert_eq!(q.get()?, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct QueueBuilder<T> {
    maxsize: u32,
    slot_size: usize,
    max_message: u64,
    /// The item type, so that `Queue::builder()` infers it from where the queue goes.
    item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for QueueBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("maxsize", &self.maxsize)
            .field("slot_size", &self.slot_size)
            .field("max_message", &self.max_message)
            .finish()
    }
}

impl<T> Clone for QueueBuilder<T> {
    fn clone(&self) -> Self {
        QueueBuilder { item: PhantomData, ..*self }
    }
}

impl<T> QueueBuilder<T> {
    /// How many messages the queue holds before `put` blocks (`0`: unbounded, Python's default).
    pub fn maxsize(mut self, maxsize: u32) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// Data bytes per slot (default [`DEFAULT_SLOT_SIZE`]); a message whose serialized form is
    /// larger spills into a shared chunk outside the ring (no system call in the steady state).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes;
        self
    }

    /// The largest serialized message accepted (default [`DEFAULT_MAX_MESSAGE`]); `put` of a
    /// larger one fails with [`PutError::TooLarge`] before anything is written.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// A capacity above 2^30 messages or a slot of more than 1 GiB (an error for which
    /// [`proc_core::Error::is_invalid_input`] holds), or the system refuses the shared
    /// memory.
    pub fn build(self) -> proc_core::Result<Queue<T>> {
        let capacity = if self.maxsize == 0 { UNBOUNDED_INITIAL_CAPACITY } else { self.maxsize };
        let mut ring = Ring::new(capacity, self.slot_size, self.max_message, None)?;
        if self.maxsize == 0 {
            ring.header().unbounded.store(1, Ordering::Relaxed);
        } else {
            // The space doorbell, for async puts (see `wake`): a bounded queue's only.
            ring.space_bell = Some(proc_os::socket::socketpair().map_err(|e| {
                proc_core::Error::invalid_argument(format!("cannot create a queue's space doorbell: {e}"))
            })?);
        }
        Ok(Queue::from_ring(ring))
    }
}

/// A multi-producer, multi-consumer FIFO queue between processes, as Python's
/// `multiprocessing.Queue`, for any `T` that serde can serialize.
///
/// `put` serializes the value into shared memory and returns once it is in the queue: there is
/// no feeder thread, so an item survives its producer's exit and "join the producer, then drain
/// the queue" works. Items from one producer come out in the order it put them. A producer killed
/// in the middle of a `put` never leaves a torn message or a blocked queue; a consumer killed in
/// the middle of a `get` loses only that message.
///
/// Cloning gives another handle on the same queue; passing it as a start argument gives the
/// child one (under every start method).
///
/// For binary payloads use [`ByteBuf`](proc_core::ByteBuf) (or a `Vec<u8>` field marked
/// `#[serde(with = "proc_core::serde_bytes")]`), not a bare `Vec<u8>`: serde writes a `Vec<u8>`
/// one element at a time, a `ByteBuf` in one copy (see [Bytes](proc_core#bytes)).
///
/// # Examples
///
/// ```
/// use proc_core::Process;
/// use proc_queue::Queue;
///
/// fn produce(q: Queue<String>) {
///     for i in 0..3 {
///         q.put(format!("item {i}")).unwrap();
///     }
/// }
///
/// let q = Queue::new(5).unwrap();
/// let p = Process::new(produce, (q.clone(),)).start().unwrap();
/// p.join().unwrap(); // the items outlive their producer
/// assert_eq!(q.get().unwrap(), "item 0");
/// assert_eq!(q.qsize(), 2);
/// ```
pub struct Queue<T> {
    pub(super) ring: Arc<Ring>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { ring: Arc::clone(&self.ring), _type: PhantomData }
    }
}

impl<T> Queue<T> {
    pub(super) fn from_ring(ring: Ring) -> Self {
        Queue { ring: Arc::new(ring), _type: PhantomData }
    }

    /// A queue holding at most `maxsize` items (Python's `Queue(maxsize)`; `0` is "unbounded",
    /// Python's default: `put` never waits for room).
    ///
    /// # Errors
    ///
    /// `maxsize` above 2^30, or the system refuses the shared memory.
    pub fn new(maxsize: u32) -> proc_core::Result<Self> {
        Self::builder().maxsize(maxsize).build()
    }

    /// An unbounded queue, Python's `Queue()`: it grows in rings of shared memory as needed. A
    /// ring that consumers have drained and moved past is released: its name is unlinked at
    /// once, and each process unmaps it at its next call on the queue. The ring in use (up to
    /// 2^20 slots) and the first one stay until the last handle goes.
    ///
    /// # Errors
    ///
    /// The system refuses the shared memory.
    pub fn unbounded() -> proc_core::Result<Self> {
        Self::new(0)
    }

    /// Options beyond `maxsize`: slot size, largest message.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            maxsize: 0,
            slot_size: DEFAULT_SLOT_SIZE,
            max_message: DEFAULT_MAX_MESSAGE,
            item: PhantomData,
        }
    }

    /// The number of items in the queue (a snapshot: others may put or get meanwhile). An item
    /// being written at this instant already counts, as does a slot voided by a writer that died or
    /// panicked until a getter skips it; one being read no longer does.
    pub fn qsize(&self) -> usize {
        self.ring.count_all()
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn empty(&self) -> bool {
        self.ring.count_all() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot); never for an unbounded queue.
    pub fn full(&self) -> bool {
        !self.ring.unbounded() && self.ring.count() >= self.ring.capacity
    }

    /// The capacity: `maxsize`, or `0` for an unbounded queue (as Python's `Queue()`).
    pub fn maxsize(&self) -> usize {
        if self.ring.unbounded() {
            0
        } else {
            self.ring.capacity as usize
        }
    }

    /// Whether a getter and whether a putter has announced a sleep that no commit or release has
    /// answered yet (the `sleepers` flags of the `items` and `space` words; see the module `wake`).
    /// For tests, which wait on it until a process blocked in `get` or `put` is about to sleep or
    /// asleep, and check what a process killed there leaves.
    #[doc(hidden)]
    pub fn announced_sleepers(&self) -> (bool, bool) {
        let getters = self.ring.queue().items.sleepers.load(Ordering::SeqCst) != 0;
        let putters = self.ring.header().space.sleepers.load(Ordering::SeqCst) != 0;
        (getters, putters)
    }

    /// Says that this process will use the queue no more (Python's `close()`): later `put`s and
    /// `get`s through any handle of it in this process fail with `Closed`. Items already put stay
    /// in the queue for the other processes.
    pub fn close(&self) {
        self.ring.closed.store(true, Ordering::Relaxed);
    }

    /// Unlinks every named shared-memory segment of the queue now: those of large messages not
    /// read yet, those kept for reuse, the later rings of an unbounded queue, and those that
    /// processes killed in the middle of a `put` or `get` left (through the resource tracker).
    /// The last process to drop the queue does this by itself; a killed process never drops it,
    /// so after killing the other processes that used a queue, call this to clean up at once
    /// rather than leave the segments to the resource tracker (which unlinks them, with a
    /// warning, when the program ends).
    ///
    /// Call it only when no other process will use the queue: the large messages still in it are
    /// lost, and an unbounded queue cannot grow past its current rings for processes that attach
    /// later.
    pub fn unlink_segments(&self) {
        self.ring.unlink_named();
    }

    /// Shuts the queue down for every process (Python 3.13's `shutdown`): blocked and later
    /// `put`s fail with [`PutError::ShutDown`]; `get`s drain what is queued, then fail with
    /// [`GetError::ShutDown`]. With `immediate`, the queued items are dropped at once (each
    /// counting as a finished task for [`JoinableQueue::join`](super::JoinableQueue::join)).
    pub fn shutdown(&self, immediate: bool) {
        self.ring.shutdown(immediate);
    }

    /// Whether the queue was shut down.
    pub fn is_shutdown(&self) -> bool {
        self.ring.shutdown_state() != OPEN
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Puts `value`, waiting as long as it takes for room.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`], [`PutError::ShutDown`], [`PutError::TooLarge`],
    /// [`PutError::Serialize`], [`PutError::Os`]; each hands the value back.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::Forever, false)
    }

    /// Puts `value` if room comes within `timeout` (zero: only if there is room now).
    ///
    /// # Errors
    ///
    /// [`PutError::Timeout`] if the queue stayed full; the others as for [`put`](Self::put).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::For(timeout), false)
    }

    /// As [`put_timeout`](Self::put_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout).
    pub fn put_deadline(&self, value: T, deadline: Instant) -> Result<(), PutError<T>> {
        self.put_timeout(value, deadline.saturating_duration_since(Instant::now()))
    }

    /// Puts `value` only if there is room now.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] if there is none; the others as for [`put`](Self::put).
    pub fn put_nowait(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Wait::For(Duration::ZERO), true)
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`], [`GetError::ShutDown`] (once drained), [`GetError::Deserialize`],
    /// [`GetError::Os`].
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(Wait::Forever, false)
    }

    /// Takes the oldest item if one comes within `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetError::Timeout`] if none came; the others as for [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(Wait::For(timeout), false)
    }

    /// As [`get_timeout`](Self::get_timeout), with a deadline instead of a timeout: waits until `deadline`
    /// at most (one in the past waits as a zero timeout does).
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetError> {
        self.get_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    ///
    /// [`GetError::Empty`] if there is none; the others as for [`get`](Self::get).
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.get_until(Wait::For(Duration::ZERO), true)
    }

    fn get_until(&self, mut wait: Wait, nowait: bool) -> Result<T, GetError> {
        let root = &*self.ring;
        let mut decode = |bytes: &[u8]| proc_core::codec::from_bytes::<T>(bytes);
        loop {
            let (idx, later) = root.reading_ring().map_err(GetError::Os)?;
            let ring: &Ring = later.as_deref().unwrap_or(root);
            return match ring.get_with(root, &mut wait, &mut decode) {
                // The reading ring is drained and sealed: the next one exists (it was linked
                // first); the rings left behind are released.
                Err(Fail::Moved) => {
                    root.move_reading(idx);
                    continue;
                }
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(GetError::Deserialize { message: e.to_string(), source: Some(e) }),
                Err(Fail::Get(GetError::Timeout)) if nowait => Err(GetError::Empty),
                Err(Fail::Get(e)) => Err(e),
            };
        }
    }

    fn put_until(&self, value: T, mut wait: Wait, nowait: bool) -> Result<(), PutError<T>> {
        let ring = &*self.ring;
        if ring.closed.load(Ordering::Relaxed) {
            return Err(PutError::Closed(value));
        }
        if ring.shutdown_state() != OPEN {
            return Err(PutError::ShutDown(value));
        }
        let size = match proc_core::codec::serialized_size(&value) {
            Ok(size) => size as u64,
            Err(e) => return Err(PutError::Serialize { value, message: e.to_string(), source: e }),
        };
        if size > ring.max_message {
            return Err(PutError::TooLarge { value, size, max: ring.max_message });
        }
        // A large message goes to this process' spill chunk first, outside the ring.
        let spill = if size as usize > ring.slot_size {
            if size >= LARGE {
                ring.make_way();
            }
            match ring.spill(&value, size as usize) {
                Ok(spill) => Some(spill),
                Err(SpillError::Os(error)) => return Err(PutError::Os { value, error }),
                Err(SpillError::Serialize(e)) => {
                    return Err(PutError::Serialize { value, message: e.to_string(), source: e })
                }
            }
        } else {
            None
        };
        // Counted unfinished before it is visible, so a task_done can never come first.
        let joinable = ring.joinable();
        if joinable {
            ring.header().unfinished.fetch_add(1, Ordering::SeqCst);
        }
        let root = ring;
        let claimed = if root.unbounded() {
            root.claim_unbounded()
        } else {
            root.claim_write_until(&mut wait).map(|claim| (None, claim))
        };
        let (later, claim) = match claimed {
            Ok(claimed) => claimed,
            Err(fail) => {
                if joinable {
                    let _ = root.task_done();
                }
                if let Some(spill) = spill {
                    root.spill_done(&spill.shm);
                }
                return Err(match fail {
                    ClaimFail::Stopped if root.closed.load(Ordering::Relaxed) => PutError::Closed(value),
                    ClaimFail::Stopped => PutError::ShutDown(value),
                    ClaimFail::Timeout if nowait => PutError::Full(value),
                    ClaimFail::Timeout => PutError::Timeout(value),
                    ClaimFail::Os(error) => PutError::Os { value, error },
                });
            }
        };
        // The ring the slot is in: ring 0, or a later ring of an unbounded queue.
        let ring: &Ring = later.as_deref().unwrap_or(root);
        match spill {
            Some(spill) => {
                let len = ring.write_record(&claim, &spill);
                ring.commit(claim, len, false);
            }
            None => {
                let data = ring.slot_data(&claim);
                // SAFETY: the slot is claimed by this process, so no one else touches its
                // `slot_size` data bytes until the commit.
                let buf = unsafe { std::slice::from_raw_parts_mut(data, ring.slot_size) };
                // A `Serialize` impl that panics must not leave the slot claimed by a live process
                // (which would block every consumer): void it, then let the panic go on.
                let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    proc_core::codec::to_slice(&value, buf).map(|w| w.len() as u64)
                }));
                let written = match written {
                    Ok(w) => w,
                    Err(panic) => {
                        ring.commit(claim, 0, true);
                        ring.lost_message();
                        std::panic::resume_unwind(panic);
                    }
                };
                match written {
                    Ok(len) => ring.commit(claim, len, false),
                    Err(e) => {
                        ring.commit(claim, 0, true);
                        ring.lost_message();
                        return Err(PutError::Serialize { value, message: e.to_string(), source: e });
                    }
                }
            }
        }
        Ok(())
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .field("maxsize", &self.maxsize())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bell_r = export_fd(self.ring.bell.0.as_fd()).map_err(serde::ser::Error::custom)?;
        let bell_w = export_fd(self.ring.bell.1.as_fd()).map_err(serde::ser::Error::custom)?;
        let space_bell = match &self.ring.space_bell {
            Some((r, w)) => Some((
                export_fd(r.as_fd()).map_err(serde::ser::Error::custom)?,
                export_fd(w.as_fd()).map_err(serde::ser::Error::custom)?,
            )),
            None => None,
        };
        let Mem::Anon(seg) = &*self.ring.seg else {
            return Err(serde::ser::Error::custom("not ring 0 of a queue"));
        };
        (seg, bell_r, bell_w, space_bell).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (seg, bell_r, bell_w, space_bell) = <(Segment, u32, u32, Option<(u32, u32)>)>::deserialize(d)?;
        let bell_r = import_fd(bell_r).map_err(serde::de::Error::custom)?;
        let bell_w = import_fd(bell_w).map_err(serde::de::Error::custom)?;
        let space_bell = match space_bell {
            Some((r, w)) => Some((
                import_fd(r).map_err(serde::de::Error::custom)?,
                import_fd(w).map_err(serde::de::Error::custom)?,
            )),
            None => None,
        };
        let mut ring =
            Ring::attach(Mem::Anon(seg), (bell_r, bell_w), None).map_err(serde::de::Error::custom)?;
        if ring.capacity == 0 {
            return Err(serde::de::Error::custom("not a queue's shared memory"));
        }
        if space_bell.is_some() == ring.unbounded() {
            return Err(serde::de::Error::custom("a queue's space doorbell does not match its memory"));
        }
        ring.space_bell = space_bell;
        Ok(Queue::from_ring(ring))
    }
}

#[cfg(feature = "tokio")]
impl<T> Queue<T> {
    /// After an async get that drained the doorbell, before it returns (an item or an error):
    /// arms the doorbell again and rings it if a `get` need not wait, so that another waiter
    /// whose wake-up the draining swallowed looks again (see `Ring::pass_items_on`).
    pub(crate) fn pass_the_bell_on(&self) {
        self.ring.pass_items_on();
    }

    /// The space doorbell's read end, for an async put; `None` for an unbounded queue, whose
    /// `put` never waits for room.
    pub(crate) fn space_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ring.space_bell.as_ref().map(|bell| bell.0.as_fd())
    }

    /// Arms the space doorbell (see `Ring::arm_space`); whether a `put` need not wait.
    pub(crate) fn arm_space(&self) -> bool {
        self.ring.arm_space()
    }

    /// Clears the space doorbell once it was readable; whether a `put` need not wait now.
    pub(crate) fn space_fired(&self) -> bool {
        if let Some(bell) = &self.ring.space_bell {
            proc_os::socket::drain(bell.0.as_fd());
        }
        self.ring.put_ready()
    }

    /// Before an async put that drained the space doorbell returns (see `Ring::pass_space_on`).
    pub(crate) fn pass_the_space_bell_on(&self) {
        self.ring.pass_space_on();
    }

    /// Whether an async putter has armed the space doorbell and no release has rung it yet.
    /// For tests, which wait on it until an async put waits.
    #[doc(hidden)]
    pub fn space_bell_armed(&self) -> bool {
        self.ring.header().space.bell.load(Ordering::SeqCst) != 0
    }
}

impl<T> crate::Waitable for Queue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.ring.bell.0.as_fd()
    }

    fn arm(&self) -> Option<bool> {
        Some(self.ring.arm())
    }

    fn fired(&self) -> bool {
        proc_os::socket::drain(self.ring.bell.0.as_fd());
        self.ring.get_ready()
    }
}
