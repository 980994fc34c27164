//! An unbounded queue: a chain of rings. Ring 0 (anonymous, the queue's handle) links a next
//! ring (named shared memory, twice as large up to [`MAX_RING`]) when it is full, seals itself,
//! and `put` goes on there; readers move on once a sealed ring is drained.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use proc_core::shm::SharedMemory;

use super::layout::{Mem, LINKING, OPEN, PID_MASK};
use super::ring::{Claim, ClaimFail, Ring, MAX_CHAIN};

/// How many times `put` on an unbounded queue yields its CPU, when a ring is full and a consumer
/// is about, before it grows the queue by a ring: enough for a consumer on the same CPU to run,
/// few enough that `put` never waits long.
/// (One in the model checks: each try multiplies what loom explores.)
#[cfg(not(loom))]
const GROW_YIELDS: u32 = 8;
#[cfg(loom)]
const GROW_YIELDS: u32 = 1;

/// A message at least this large makes `put` yield its CPU a little for a consumer first, while
/// the queue holds messages (see `Ring::make_way`): larger than a core's cache, and long to copy
/// next to a yield.
pub(super) const LARGE: u64 = 1 << 20;

/// How many times `put` of a [`LARGE`] message yields at most.
const LARGE_YIELDS: u32 = 4;

/// The largest ring an unbounded queue grows to; later rings keep this capacity.
const MAX_RING: u32 = 1 << 20;

impl Ring {
    /// A duplicate of the doorbell, for a later ring of the chain.
    pub(super) fn bell_dup(&self) -> proc_core::Result<(OwnedFd, OwnedFd)> {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| proc_core::Error::invalid_argument(format!("cannot share a doorbell: {e}")))
        };
        Ok((dup(&self.bell.0)?, dup(&self.bell.1)?))
    }

    /// Whether no new message may be written here: go to the next ring of the chain.
    pub(super) fn sealed(&self) -> bool {
        self.header().sealed.load(Ordering::SeqCst) != 0
    }

    /// Sealed and empty, with no write in flight: readers move to the next ring for good (a
    /// writer that claims after the seal voids its slot and moves on too).
    pub(super) fn moved(&self) -> bool {
        self.sealed() && {
            let tail = self.tail().load(Ordering::SeqCst);
            self.head().load(Ordering::SeqCst) == tail
        }
    }

    pub(super) fn unbounded(&self) -> bool {
        self.queue().unbounded.load(Ordering::Relaxed) != 0
    }

    /// The name of the next ring, once linked.
    pub(super) fn next_name(&self) -> Option<String> {
        let header = self.header();
        // Written before its length was published with Release; a link being made (`LINKING`)
        // is too long to be a name.
        let len = header.next.load(Ordering::Acquire);
        header.next_name.read(len as usize)
    }

    /// Ring `idx` (from 1) of this queue's chain, this being ring 0, mapped here on first use
    /// (no lock afterwards). `None` if it does not exist (yet).
    pub(super) fn ring_at(&self, idx: usize) -> proc_core::Result<Option<&Ring>> {
        let Some(slot) = idx.checked_sub(1).and_then(|i| self.chain.get(i)) else {
            return Err(proc_core::Error::invalid_argument(format!(
                "an unbounded queue grew past {MAX_CHAIN} rings"
            )));
        };
        if let Some(ring) = slot.get() {
            return Ok(Some(ring));
        }
        let link = if idx == 1 {
            self.next_name()
        } else {
            match self.ring_at(idx - 1)? {
                Some(prev) => prev.next_name(),
                None => None,
            }
        };
        let Some(name) = link else { return Ok(None) };
        let ring = Ring::attach(Mem::open(&name)?, self.bell_dup()?, Some(Arc::clone(&self.seg)))?;
        // Another thread of this process may have mapped it meanwhile: either copy will do.
        let _ = slot.set(Box::new(ring));
        Ok(slot.get().map(|r| &**r))
    }

    /// Runs `f` on ring `idx` of the chain, ring 0 included; `None` if it does not exist (yet).
    pub(super) fn with_ring<R>(
        &self,
        idx: usize,
        f: impl FnOnce(&Ring) -> R,
    ) -> proc_core::Result<Option<R>> {
        if idx == 0 {
            return Ok(Some(f(self)));
        }
        Ok(self.ring_at(idx)?.map(f))
    }

    /// `ring` (ring `idx` of this queue, this being ring 0) is full: links a next ring (twice
    /// as large, up to MAX_RING) if none is, and seals `ring`.
    pub(super) fn grow(&self, ring: &Ring, idx: usize) -> proc_core::Result<()> {
        let me = crate::loom::pid() & PID_MASK;
        let next = &ring.header().next;
        loop {
            let cur = next.load(Ordering::Acquire);
            if cur != 0 && cur & LINKING == 0 {
                break;
            }
            if cur & LINKING != 0 {
                if !crate::loom::process_alive(cur & PID_MASK) {
                    let _ = next.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
                crate::loom::yield_now();
                continue;
            }
            if next.compare_exchange(0, LINKING | me, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                continue;
            }
            let capacity = ring.capacity.saturating_mul(2).min(MAX_RING).max(ring.capacity);
            let created = self.bell_dup().and_then(|bell| {
                Ring::new(capacity, self.slot_size, self.max_message, Some((Arc::clone(&self.seg), bell)))
            });
            let new = match created {
                Ok(new) => new,
                Err(e) => {
                    next.store(0, Ordering::Release);
                    return Err(e);
                }
            };
            let Some(name) = new.seg.name() else { unreachable!("a later ring is named") };
            // We hold the link (`LINKING | pid`): no one else writes the name.
            let len = ring.header().next_name.write(name.as_bytes());
            next.store(len as u32, Ordering::Release);
            tracing::debug!(capacity, ring = idx + 1, "an unbounded queue grew a ring");
            if let Some(slot) = self.chain.get(idx) {
                let _ = slot.set(Box::new(new));
            }
            break;
        }
        ring.header().sealed.store(1, Ordering::SeqCst);
        Ok(())
    }

    /// Whether a `get` in this process would find a message now (or a shut-down queue).
    pub(super) fn get_ready(&self) -> bool {
        if self.shutdown_state() != OPEN {
            return true;
        }
        let mut idx = self.read_at.load(Ordering::Acquire);
        loop {
            let step = self.with_ring(idx, |r| {
                if r.readable() {
                    Some(true)
                } else if r.moved() {
                    None
                } else {
                    Some(false)
                }
            });
            match step {
                Ok(Some(Some(ready))) => return ready,
                Ok(Some(None)) => idx += 1,
                _ => return false,
            }
        }
    }

    /// Claims a slot in an unbounded queue (this is ring 0): in this process' writing ring, or,
    /// when that is full, in a next ring that it links. Never waits for room for long: when a
    /// consumer is about (see [`consumer_about`](Self::consumer_about)), a full ring first yields
    /// the CPU up to [`GROW_YIELDS`] times, which lets a consumer on the same CPU drain it. The
    /// ring then stays small enough for the caches, instead of the producer filling rings larger
    /// than them before the consumer runs.
    pub(super) fn claim_unbounded(&self) -> Result<(Option<&Ring>, Claim), ClaimFail> {
        let mut yields = 0;
        loop {
            if self.shutdown_state() != OPEN || self.closed.load(Ordering::Relaxed) {
                return Err(ClaimFail::Stopped);
            }
            let idx = self.write_at.load(Ordering::Acquire);
            let later = if idx == 0 {
                None
            } else {
                match self.ring_at(idx).map_err(ClaimFail::Os)? {
                    Some(ring) => Some(ring),
                    None => {
                        return Err(ClaimFail::Os(proc_core::Error::invalid_argument(
                            "a queue's next ring is missing",
                        )))
                    }
                }
            };
            let ring: &Ring = later.unwrap_or(self);
            if !ring.sealed() {
                match ring.claim_write(true) {
                    // A seal that came before our claim: we may be behind the readers, so give
                    // the slot up (void) and write in the next ring.
                    Some(claim) if ring.sealed() => ring.commit(claim, 0, true),
                    Some(claim) => return Ok((later, claim)),
                    None if yields < GROW_YIELDS && self.consumer_about(ring) => {
                        yields += 1;
                        crate::loom::yield_now();
                        continue;
                    }
                    None => self.grow(ring, idx).map_err(ClaimFail::Os)?,
                }
            }
            self.write_at.fetch_max(idx + 1, Ordering::AcqRel);
        }
    }

    /// Whether a consumer of this unbounded queue (this is ring 0) is about: one has read from
    /// `ring` (so it reached this ring, and will be back), or one is asleep waiting for items (the
    /// commits just made woke it). Without one, a full ring grows at once: a producer that fills a
    /// queue before anyone reads is never held up. A flag a getter killed asleep left set never
    /// counts here: the ring filled through commits, and the first of them cleared it.
    pub(super) fn consumer_about(&self, ring: &Ring) -> bool {
        ring.head().load(Ordering::Relaxed) != 0 || self.queue().items.sleepers.load(Ordering::Relaxed) != 0
    }

    /// Before a message of [`LARGE`] bytes or more is written (this is ring 0): while the queue
    /// holds messages and a consumer is about, yields the CPU (at most [`LARGE_YIELDS`] times), so
    /// that a consumer on the same CPU takes them first. Each large message is then read while
    /// it is still in the caches, instead of after the producer has written the queue full of
    /// them (megabytes each). Never waits long: without a consumer it returns at once, and so it
    /// does when no message was read since this process' last large `put` (the consumers are
    /// elsewhere, and the producer runs ahead: yielding would only hand its CPU to other programs).
    pub(super) fn make_way(&self) {
        let reads = self.reads();
        if self.way_reads.swap(reads, Ordering::Relaxed) == reads {
            return;
        }
        for _ in 0..LARGE_YIELDS {
            if self.count_all() == 0 || !self.consumer_about(self) {
                return;
            }
            crate::loom::yield_now();
        }
    }

    /// The positions read so far in every ring of the chain (this is ring 0): it moves while a
    /// consumer reads.
    pub(super) fn reads(&self) -> u64 {
        let mut idx = 0;
        let mut total = 0u64;
        while let Ok(Some(head)) = self.with_ring(idx, |r| r.head().load(Ordering::Relaxed)) {
            total = total.wrapping_add(head);
            idx += 1;
        }
        total
    }

    /// The messages in the queue (this is ring 0): in every ring from this process' reading ring
    /// on, for an unbounded queue.
    pub(super) fn count_all(&self) -> usize {
        let mut idx = self.read_at.load(Ordering::Acquire);
        let mut total = 0usize;
        while let Ok(Some(n)) = self.with_ring(idx, Ring::count) {
            total = total.saturating_add(n as usize);
            idx += 1;
        }
        total
    }

    /// Unlinks every named segment of the queue: the later rings of the chain, the spill chunks
    /// of the free list and those of every ring's unread messages, and, through the resource
    /// tracker, those only dead processes knew (a chunk they held, a ring they were adding).
    pub(super) fn unlink_named(&self) {
        let group = self.queue().group.load(Ordering::Relaxed);
        self.unlink_listed_chunks();
        self.unlink_unread_chunks();
        let mut link = self.next_name();
        while let Some(name) = link {
            let Ok(shm) = SharedMemory::open(&name) else { break };
            let _ = shm.unlink();
            let Ok(bell) = self.bell_dup() else { break };
            let Ok(ring) = Ring::attach(Mem::Named(shm), bell, Some(Arc::clone(&self.seg))) else { break };
            ring.unlink_unread_chunks();
            link = ring.next_name();
        }
        if group != 0 {
            proc_core::shm::purge_group(group);
        }
    }
}
