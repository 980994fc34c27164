//! An unbounded queue: a chain of rings. Ring 0 (anonymous, the queue's handle) links a next
//! ring (named shared memory, twice as large up to [`MAX_RING`]) when it is full, seals itself,
//! and `put` goes on there; readers move on once a sealed ring is drained.
//!
//! # Names
//!
//! Ring `k` (from 1) is the segment `mp_<chain>_<k>`, `chain` being a random word in ring 0's
//! header: any process finds any ring by its index, whatever became of the rings before it. A
//! ring's `next` word says whether ring `k + 1` is linked (`LINKED`), being linked by a process
//! (`LINKING | pid`, taken over if that process is dead: the taker unlinks what it left under
//! the name, which no process opens before the link is made), or not (0). A process opens ring
//! `k` only once ring `k - 1` links it, so it never maps a half-made ring.
//!
//! # Release
//!
//! Ring 0's `freed` word counts the released rings: rings 1 to `freed` are drained and their
//! names unlinked. A ring is released in order, once a consumer has moved past it: it is sealed
//! (no producer writes there again: a late claim after the seal is voided) and drained (`head ==
//! tail`: every position claimed for writing was claimed for reading). The consumer that moves
//! its reading ring past ring `k` releases every ring up to `k` not released yet, each by one
//! compare-and-swap of `freed` (`f` to `f + 1`) and the unlink of ring `f + 1`'s name: one
//! process unlinks each name, and the resource tracker forgets it (no warning, no second
//! unlink). A consumer killed between the two leaves the name to the queue's tracker group,
//! which the last process to drop the queue purges.
//!
//! No process counts its hold on a ring in shared memory, so no dead process can pin one:
//! unmapping is per process. Each process keeps the rings it mapped in its own table, each
//! behind an `Arc` that every thread working in the ring holds, and drops the released ones
//! (`freed` moved past them) at its next call on the queue: the memory goes back to the system
//! once the name is unlinked and the last process has unmapped it. A process that still maps a
//! released ring may touch it only as a late producer does (it finds the ring sealed, or voids
//! the slot it claimed), never to commit a message there (the model checks assert it). A
//! process whose reading or writing ring was released (it finds `freed` past it, or the name
//! gone) jumps to ring `freed + 1`: the rings before it hold no message, and ring `freed` was
//! sealed after ring `freed + 1` was linked.
//!
//! The rule keeps a hysteresis: the ring producers write and the one consumers read are never
//! released (neither is drained-and-sealed), a ring is made only when the one before it is full
//! and released only after a consumer drained it, and a sealed ring is never written again.
//! Each ring is thus mapped and unmapped once in each process that uses it, however a queue
//! oscillates around a ring's boundary: filling ring `k` again needs as many messages as it
//! has slots (4096 or more). The ring in use and ring 0 stay until the last handle goes.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::layout::{unlink_name, Mem, LINKED, LINKING, OPEN, PID_MASK};
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

/// Where ring `k` of a chain stands, for a process that looks for it.
pub(super) enum At {
    /// Mapped here (now, or before).
    Ring(Arc<Ring>),
    /// Not linked yet.
    Unlinked,
    /// Released: drained, its name unlinked; go on at ring `freed + 1`.
    Released,
}

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
    ///
    /// The seal, the tail and the producer's claim are SeqCst: a producer claims (moving the
    /// tail), then loads the seal; a consumer loads the seal, then the tail. In their single
    /// total order either the producer sees the seal (and voids its slot) or the consumer sees
    /// the tail past the claim (and waits for the message): never neither, so no message is
    /// left in a ring that consumers have moved past (and that is then released).
    pub(super) fn moved(&self) -> bool {
        self.sealed() && {
            crate::loom::seq_cst();
            let tail = self.tail().load(Ordering::SeqCst);
            self.head().load(Ordering::SeqCst) == tail
        }
    }

    pub(super) fn unbounded(&self) -> bool {
        self.queue().unbounded.load(Ordering::Relaxed) != 0
    }

    /// Whether the next ring is linked (it exists under its name).
    pub(super) fn linked(&self) -> bool {
        // Acquire: the next ring was made before the link was published with Release.
        self.header().next.load(Ordering::Acquire) == LINKED
    }

    /// The rings released so far (this is ring 0): rings 1 to `freed` (see the module docs).
    pub(super) fn freed(&self) -> usize {
        self.queue().freed.load(Ordering::Acquire) as usize
    }

    /// The name of ring `idx` (from 1) of this queue's chain.
    pub(super) fn ring_name(&self, idx: usize) -> String {
        format!("mp_{:016x}_{idx:x}", self.queue().chain.load(Ordering::Relaxed))
    }

    /// Where a process goes on from its ring `idx` once that ring was released: ring `freed + 1`
    /// (this is ring 0).
    fn past_freed(&self, idx: usize) -> usize {
        idx.max(self.freed() + 1)
    }

    /// Ring `idx` (from 1) of this queue's chain, this being ring 0: mapped here on first use
    /// (a lock and a clone afterwards).
    pub(super) fn ring_at(&self, idx: usize) -> proc_core::Result<At> {
        let freed = self.freed();
        self.prune(freed);
        if idx <= freed {
            return Ok(At::Released);
        }
        if let Some(ring) = self.mapped(idx) {
            return Ok(At::Ring(ring));
        }
        if idx.saturating_sub(freed) > MAX_CHAIN || u32::try_from(idx).is_err() {
            return Err(proc_core::Error::invalid_argument(format!(
                "an unbounded queue holds more than {MAX_CHAIN} rings not drained"
            )));
        }
        // Linked by ring `idx - 1`; a released one was sealed, so it linked its next ring first.
        let linked = match idx - 1 {
            0 => self.linked(),
            prev if prev <= freed => true,
            prev => match self.ring_at(prev)? {
                At::Ring(ring) => ring.linked(),
                At::Released => true,
                At::Unlinked => false,
            },
        };
        if !linked {
            return Ok(At::Unlinked);
        }
        let mem = match Mem::open(&self.ring_name(idx)) {
            Ok(mem) => mem,
            // Released meanwhile: `freed` was raised before the name was unlinked.
            Err(_) if idx <= self.freed() => return Ok(At::Released),
            Err(e) => return Err(e),
        };
        let ring = Arc::new(Ring::attach(mem, self.bell_dup()?, Some(Arc::clone(&self.seg)))?);
        Ok(At::Ring(self.keep(idx, ring)))
    }

    /// Ring `idx` if this process has it mapped.
    fn mapped(&self, idx: usize) -> Option<Arc<Ring>> {
        let chain = self.chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        chain.iter().find(|(i, _)| *i == idx).map(|(_, ring)| Arc::clone(ring))
    }

    /// Keeps `ring`, ring `idx`, in this process' table, unless another thread mapped it
    /// meanwhile: the copy kept.
    fn keep(&self, idx: usize, ring: Arc<Ring>) -> Arc<Ring> {
        let mut chain = self.chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, kept)) = chain.iter().find(|(i, _)| *i == idx) {
            return Arc::clone(kept);
        }
        chain.push((idx, Arc::clone(&ring)));
        ring
    }

    /// Drops this process' mappings of the rings released (up to `freed`) since it last looked:
    /// each is unmapped once no thread here works in it.
    fn prune(&self, freed: usize) {
        let freed32 = u32::try_from(freed).unwrap_or(u32::MAX);
        if self.pruned.load(Ordering::Relaxed) >= freed32 {
            return;
        }
        let dropped: Vec<Arc<Ring>> = {
            let mut chain = self.chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.pruned.fetch_max(freed32, Ordering::Relaxed);
            let (gone, kept) = std::mem::take(&mut *chain).into_iter().partition(|(i, _)| *i <= freed);
            *chain = kept;
            gone.into_iter().map(|(_, ring)| ring).collect()
        };
        // Unmapped here (or by the last thread that still holds one), outside the lock.
        drop(dropped);
    }

    /// This process moved its reading ring past ring `idx` (this is ring 0): every ring up to
    /// `idx` is sealed and drained, so it releases those not released yet (see the module docs).
    pub(super) fn release_through(&self, idx: usize) {
        let freed = &self.queue().freed;
        loop {
            let f = freed.load(Ordering::Acquire) as usize;
            if f >= idx {
                break;
            }
            let next = f as u32 + 1;
            if freed.compare_exchange(f as u32, next, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                let name = self.ring_name(next as usize);
                let unlinked = unlink_name(&name);
                tracing::debug!(ring = next, unlinked, "an unbounded queue released a drained ring");
            }
        }
        self.prune(self.freed());
    }

    /// Runs `f` on each ring of the chain from ring `from` on (ring 0 included if `from` is 0,
    /// released rings skipped) while it returns `true` and a next ring is linked.
    pub(super) fn each_ring(&self, from: usize, mut f: impl FnMut(&Ring) -> bool) {
        let mut idx = from;
        loop {
            if idx == 0 {
                if !f(self) {
                    return;
                }
                idx = 1;
                continue;
            }
            match self.ring_at(idx) {
                Ok(At::Ring(ring)) => {
                    if !f(&ring) {
                        return;
                    }
                    idx += 1;
                }
                Ok(At::Released) => idx = self.past_freed(idx + 1),
                Ok(At::Unlinked) | Err(_) => return,
            }
        }
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
            if idx + 1 > self.freed() + MAX_CHAIN || u32::try_from(idx + 1).is_err() {
                return Err(proc_core::Error::invalid_argument(format!(
                    "an unbounded queue holds more than {MAX_CHAIN} rings not drained"
                )));
            }
            if next.compare_exchange(0, LINKING | me, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                continue;
            }
            let capacity = ring.capacity.saturating_mul(2).min(MAX_RING).max(ring.capacity);
            let name = self.ring_name(idx + 1);
            let created = self.bell_dup().and_then(|bell| {
                Ring::new(
                    capacity,
                    self.slot_size,
                    self.max_message,
                    Some((Arc::clone(&self.seg), bell, &name)),
                )
            });
            let new = match created {
                Ok(new) => new,
                Err(e) => {
                    next.store(0, Ordering::Release);
                    return Err(e);
                }
            };
            // We hold the link (`LINKING | pid`): no one else makes this ring.
            next.store(LINKED, Ordering::Release);
            tracing::debug!(capacity, ring = idx + 1, "an unbounded queue grew a ring");
            let _ = self.keep(idx + 1, Arc::new(new));
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
        let mut ready = false;
        self.each_ring(self.read_at.load(Ordering::Acquire), |r| {
            ready = r.readable();
            !ready && r.moved()
        });
        ready
    }

    /// Claims a slot in an unbounded queue (this is ring 0): in this process' writing ring, or,
    /// when that is full, in a next ring that it links. Never waits for room for long: when a
    /// consumer is about (see [`consumer_about`](Self::consumer_about)), a full ring first yields
    /// the CPU up to [`GROW_YIELDS`] times, which lets a consumer on the same CPU drain it. The
    /// ring then stays small enough for the caches, instead of the producer filling rings larger
    /// than them before the consumer runs.
    pub(super) fn claim_unbounded(&self) -> Result<(Option<Arc<Ring>>, Claim), ClaimFail> {
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
                    At::Ring(ring) => Some(ring),
                    // Sealed, and drained since: write in the ring after the released ones.
                    At::Released => {
                        self.write_at.fetch_max(self.past_freed(idx), Ordering::AcqRel);
                        continue;
                    }
                    At::Unlinked => {
                        return Err(ClaimFail::Os(proc_core::Error::invalid_argument(
                            "a queue's next ring is missing",
                        )))
                    }
                }
            };
            let ring: &Ring = later.as_deref().unwrap_or(self);
            if !ring.sealed() {
                let claimed = ring.claim_write(true);
                if claimed.is_some() {
                    crate::loom::seq_cst();
                }
                match claimed {
                    // A seal that came before our claim: we may be behind the readers, so give
                    // the slot up (void) and write in the next ring (see `moved`).
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

    /// Where this process reads next (this is ring 0): its reading ring, moved on past the
    /// released rings, and its index; `None` for ring 0.
    pub(super) fn reading_ring(&self) -> proc_core::Result<(usize, Option<Arc<Ring>>)> {
        loop {
            let idx = self.read_at.load(Ordering::Acquire);
            if idx == 0 {
                return Ok((0, None));
            }
            match self.ring_at(idx)? {
                At::Ring(ring) => return Ok((idx, Some(ring))),
                At::Released => {
                    self.read_at.fetch_max(self.past_freed(idx), Ordering::AcqRel);
                }
                // A reader moves on only once its ring is sealed, which comes after the link.
                At::Unlinked => {
                    return Err(proc_core::Error::invalid_argument("a queue's next ring is missing"))
                }
            }
        }
    }

    /// This process' reading ring, `idx`, is sealed and drained (this is ring 0): it reads the
    /// next one from now on, and releases the rings it has left behind.
    pub(super) fn move_reading(&self, idx: usize) {
        self.read_at.fetch_max(idx + 1, Ordering::AcqRel);
        if idx > 0 {
            self.release_through(idx);
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

    /// The positions read so far in every ring of the chain (this is ring 0, released rings
    /// not counted): it moves while a consumer reads.
    pub(super) fn reads(&self) -> u64 {
        let mut total = 0u64;
        self.each_ring(0, |r| {
            total = total.wrapping_add(r.head().load(Ordering::Relaxed));
            true
        });
        total
    }

    /// The messages in the queue (this is ring 0): in every ring from this process' reading ring
    /// on, for an unbounded queue.
    pub(super) fn count_all(&self) -> usize {
        let mut total = 0usize;
        self.each_ring(self.read_at.load(Ordering::Acquire), |r| {
            total = total.saturating_add(r.count() as usize);
            true
        });
        total
    }

    /// Unlinks every named segment of the queue: the later rings of the chain not released, the
    /// spill chunks of the free list and those of every ring's unread messages, and, through the
    /// resource tracker, those only dead processes knew (a chunk they held, a ring they were
    /// adding, a ring they were releasing).
    pub(super) fn unlink_named(&self) {
        let group = self.queue().group.load(Ordering::Relaxed);
        self.unlink_listed_chunks();
        self.unlink_unread_chunks();
        let mut idx = self.freed() + 1;
        // Ring 1 exists once ring 0 links it; a ring after a released one was linked before.
        let mut linked = idx > 1 || self.linked();
        while linked {
            let name = self.ring_name(idx);
            let Ok(mem) = Mem::open(&name) else { break };
            unlink_name(&name);
            let Ok(bell) = self.bell_dup() else { break };
            let Ok(ring) = Ring::attach(mem, bell, Some(Arc::clone(&self.seg))) else { break };
            ring.unlink_unread_chunks();
            linked = ring.linked();
            idx += 1;
        }
        // What a linker killed while making ring `idx` left under its name, if anything.
        if !linked {
            unlink_name(&self.ring_name(idx));
        }
        if group != 0 {
            proc_core::shm::purge_group(group);
        }
    }
}
