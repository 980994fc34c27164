//! `Queue`, `SimpleQueue` and `JoinableQueue`: a multi-producer multi-consumer ring of slots in
//! shared memory, with reserve → write → commit on both sides.
//!
//! # Layout
//!
//! One anonymous shared segment: a header (positions, counts, wait words, each on its own cache
//! line) and `capacity` slots. A slot is a control word (`u64`: a sequence number in the high half,
//! a state in the low half), a length word and `slot_size` bytes of data.
//!
//! # Protocol
//!
//! The ring follows Dmitry Vyukov's bounded MPMC queue, with 64-bit positions: slot
//! `pos % capacity` is free for the producer of position `pos` when its sequence is `2 pos`, and
//! holds that position's message when its sequence is `2 pos + 1` (sequences are the low 32 bits;
//! doubling keeps a capacity of one unambiguous). The difference from the textbook version is where a position is
//! claimed: by a compare-and-swap on the *slot's* control word that also records the claimer's
//! pid (`WRITING | pid` or `READING | pid`); the shared `tail` and `head` only follow, advanced
//! by whoever sees a claimed slot. So at every instant a slot is free, claimed by a known process,
//! or committed, and a process killed at any point leaves a state the others can repair:
//!
//! - a producer killed while writing leaves `WRITING | pid` at sequence `pos`: a consumer that
//!   finds that pid dead turns the slot into a *void* commit, which consumers skip. No torn
//!   message is ever read, and the queue goes on.
//! - a consumer killed while reading leaves `READING | pid`: a producer that finds the slot full
//!   and that pid dead frees it. Only that message is lost.
//! - a getter or putter killed while blocked (asleep, or about to sleep) holds no slot; it leaves
//!   only its announced sleep (the sleeper flag, below) set. The next commit (for a getter) or
//!   release (for a putter) answers it as it answers a live sleeper: it clears the flag and makes
//!   one wake-up that finds nobody, and the queue is as before. A live caller that sleeps
//!   meanwhile announces on the same flag and is woken by that commit as usual.
//!
//! Liveness is checked only on slow paths: after a wait slice of [`LIVENESS_CHECK`] without
//! progress, and by the non-blocking forms before they give up.
//!
//! Messages whose serialized form does not fit in a slot *spill*: the producer writes them into
//! its spill chunk, a named shared-memory segment (registered with proc-core's resource tracker)
//! that holds many messages, before claiming a slot, and the slot carries the chunk's name and the
//! message's place in it; the consumer reads it from there and counts it read (see [`spill`]).
//!
//! Blocked callers sleep on two wait words, `items` (bumped by every commit) and `space` (bumped
//! by every release), through proc-os's wait/wake seam, after a short spin. A sleeper first sets
//! a flag next to the word; a signaller wakes only if it finds the flag set, and clears it, so the
//! fast paths make no system call when nobody sleeps, and one wake-up serves a batch. The only
//! other reader of a flag is an unbounded queue's producer, which takes a set `items` flag for a
//! consumer about (see `chain`); a dead getter's flag cannot hold it up, as its ring fills only
//! through commits, and the first of them cleared the flag.
//!
//! Waiters that cannot sleep on a word (`wait`, the async calls of feature `tokio`) watch a
//! doorbell instead, a socket pair that travels with the handle, armed by a flag in the header in
//! the same way: commits ring the items doorbell, and in a bounded queue releases ring the space
//! doorbell, each only when its flag is set (see `wake`).
//!
//! # Files
//!
//! - `layout`: the header's words, the slot layout and the control word's encoding.
//! - `ring`: one ring and its protocol (claim, commit, release, take); the struct `Ring`, whose
//!   other methods the files below add by job.
//! - `wake`: the blocking loops, the announced sleep, and the two doorbells (items, for `wait` and
//!   async gets; space, for async puts on a bounded queue).
//! - `chain`: the growth of an unbounded queue into a chain of rings, and the release of the
//!   rings it has drained.
//! - `spill` and `chunk`: messages larger than a slot, in chunks outside the ring.
//! - `error`: `PutError`, `GetError`, `JoinError`.
//! - `handle`: `Queue<T>` and `QueueBuilder`; `simple`: `SimpleQueue<T>`; `joinable`:
//!   `JoinableQueue<T>`.
//! - `model` (under `--cfg loom`): model checks of the ring protocol and of the chain's growth
//!   and release, a process killed at any step.
//!
//! The shared words are reached through `crate::loom`: std's atomics and proc-os's calls, or, in
//! the model checks, loom's and model versions.

mod chain;
mod chunk;
mod error;
mod handle;
mod joinable;
mod layout;
#[cfg(all(test, loom))]
mod model;
mod ring;
mod simple;
mod spill;
mod wake;

pub use error::{GetError, JoinError, PutError};
pub use handle::{Queue, QueueBuilder, DEFAULT_MAX_MESSAGE, DEFAULT_SLOT_SIZE, UNBOUNDED_INITIAL_CAPACITY};
pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;
pub use wake::LIVENESS_CHECK;
