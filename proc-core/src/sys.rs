//! proc-core's own OS calls: the table of descriptors that children made by a plain `fork` let go
//! of (see `handle::ReleaseOnFork`), its `pthread_atfork` handler, and [`in_image_of`], which
//! tells whether an address a peer named lies in this program's code before it is read.
//!
//! Every other OS call, and everything that differs between Linux and macOS, is proc-os's (one OS
//! layer for the workspace).
//!
//! # The table
//!
//! The table is a list of chunks of [`CHUNK`] slots, each slot an `AtomicI32` holding a listed
//! descriptor or -1. The first chunk is static; the others are allocated by [`release_on_fork`]
//! when every published chunk is full, as long as the table holds fewer slots than the process's
//! descriptor limit (`RLIMIT_NOFILE`'s soft limit, read then, at most [`MAX_SLOTS`]). A new chunk
//! is published with a compare-exchange on its pointer (a thread that loses frees its allocation
//! and uses the winner's) and is never freed, so a slot's number (chunk index * [`CHUNK`] +
//! offset) stays valid for the life of the process and [`keep_on_fork`] needs no lock.
//!
//! A chunk is allocated only by a thread that found every chunk before it published, and a
//! pointer never goes back to null, so the published chunks are always a prefix of the list. The
//! child handler walks that prefix with atomic loads only (it allocates nothing and takes no lock):
//! a chunk's slots are written before its pointer is published (release), and read after it is
//! loaded (acquire).
//!
//! # Memory ordering
//!
//! A slot is taken and given back with compare-exchanges (acquire-release), so the child handler,
//! which loads it with acquire, sees the descriptor of a listing that finished before `fork`. Each
//! chunk also counts its taken slots (relaxed): only a hint that lets a search skip full chunks. A
//! stale count can send a search past a chunk whose slot was just given back (it then takes a
//! slot further on, or grows the table by one chunk within the limit), or into a chunk that just
//! filled up (the search goes on to the next); never to a wrong slot.

use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

/// Slots per chunk of the table.
const CHUNK: usize = 1024;

/// The most slots the table grows to (4 MiB of slots): a soft descriptor limit above it is
/// treated as this.
const MAX_SLOTS: usize = 1 << 20;

/// The most chunks, the static first one included.
const MAX_CHUNKS: usize = MAX_SLOTS / CHUNK;

/// One chunk of the table.
struct Chunk {
    /// How many of `slots` are taken (a hint; see the module's docs).
    taken: AtomicUsize,
    /// Listed descriptors, -1 for a free slot.
    slots: [AtomicI32; CHUNK],
}

impl Chunk {
    const fn new() -> Self {
        Chunk { taken: AtomicUsize::new(0), slots: [const { AtomicI32::new(-1) }; CHUNK] }
    }

    /// Takes a free slot of this chunk for `fd`, returning its offset.
    fn take(&self, fd: RawFd) -> Option<usize> {
        if self.taken.load(Ordering::Relaxed) >= CHUNK {
            return None;
        }
        let offset = self.slots.iter().position(|s| {
            s.load(Ordering::Relaxed) == -1
                && s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        })?;
        self.taken.fetch_add(1, Ordering::Relaxed);
        Some(offset)
    }
}

/// The first chunk of descriptors that a child made by a plain `fork` lets go of as soon as it
/// first runs; see `handle::ReleaseOnFork`.
static FIRST: Chunk = Chunk::new();

/// The other chunks, allocated on demand (null: not yet); `MORE[i]` is chunk `i + 1`.
static MORE: [AtomicPtr<Chunk>; MAX_CHUNKS - 1] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS - 1];

/// Chunk `index`, if it is published.
fn chunk(index: usize) -> Option<&'static Chunk> {
    if index == 0 {
        return Some(&FIRST);
    }
    let p = MORE.get(index - 1)?.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in `MORE` comes from `Box::into_raw` of a fully initialized
    // chunk, published with release ordering (loaded above with acquire), and is never freed.
    unsafe { p.as_ref() }
}

/// Lists `fd` for release in children made by `fork`, returning its slot. `None`: the table is
/// full (it holds as many slots as the process's soft descriptor limit, or [`MAX_SLOTS`]), or a
/// new chunk could not be allocated.
pub(crate) fn release_on_fork(fd: RawFd) -> Option<usize> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only makes async-signal-safe calls.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(release_in_child)) };
        if rc != 0 {
            tracing::debug!("cannot register the fork handler that releases descriptors");
        }
    });
    let mut limit = None;
    for index in 0..MAX_CHUNKS {
        if let Some(chunk) = chunk(index) {
            if let Some(offset) = chunk.take(fd) {
                return Some(index * CHUNK + offset);
            }
            continue;
        }
        // Every chunk before this one is full: grow, within the descriptor limit.
        if index * CHUNK >= *limit.get_or_insert_with(descriptor_limit) {
            return None;
        }
        if let Some(offset) = grow(index, fd) {
            return Some(index * CHUNK + offset);
        }
        // Another thread published this chunk first: look for a slot in it.
        if let Some(offset) = chunk(index)?.take(fd) {
            return Some(index * CHUNK + offset);
        }
    }
    None
}

/// Takes `fd` off the list at `slot`, if it is still there.
pub(crate) fn keep_on_fork(slot: usize, fd: RawFd) {
    let Some(chunk) = chunk(slot / CHUNK) else { return };
    if chunk.slots[slot % CHUNK].compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
        chunk.taken.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Publishes chunk `index` (at least 1) with `fd` in its first slot, returning that slot's
/// offset (0). `None`: another thread published it first (this allocation is freed).
fn grow(index: usize, fd: RawFd) -> Option<usize> {
    let new = Chunk::new();
    new.slots[0].store(fd, Ordering::Relaxed);
    new.taken.store(1, Ordering::Relaxed);
    let new = Box::into_raw(Box::new(new));
    match MORE[index - 1].compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(0),
        Err(_) => {
            // SAFETY: `new` comes from `Box::into_raw` above and was never published.
            drop(unsafe { Box::from_raw(new) });
            None
        }
    }
}

/// How many descriptors this process may have open: `RLIMIT_NOFILE`'s soft limit, at most
/// [`MAX_SLOTS`] (and the first chunk's size if it cannot be read).
fn descriptor_limit() -> usize {
    match proc_os::open_files_limit() {
        Ok(Some(soft)) => usize::try_from(soft).map_or(MAX_SLOTS, |soft| soft.min(MAX_SLOTS)),
        Ok(None) => MAX_SLOTS,
        Err(_) => CHUNK,
    }
}

/// Runs in every child made by `fork`, with one thread: each listed descriptor becomes
/// `/dev/null`. The numbers stay taken and listed: their owners unlist and close them later, if ever.
///
/// Async-signal-safe: it walks the published chunks with atomic loads, and calls only `open`,
/// `dup2`, `fcntl` and `close`.
extern "C" fn release_in_child() {
    let mut null = -1;
    for chunk in (0..MAX_CHUNKS).map_while(chunk) {
        for slot in &chunk.slots {
            let fd = slot.load(Ordering::Acquire);
            if fd < 0 {
                continue;
            }
            if null < 0 {
                // SAFETY: open of a constant, NUL-terminated path; async-signal-safe.
                null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
                if null < 0 {
                    return;
                }
            }
            // SAFETY: dup2 and fcntl on descriptors this process holds; both async-signal-safe.
            unsafe {
                if libc::dup2(null, fd) >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
        }
    }
    if null >= 0 {
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::close(null) };
    }
}

/// Whether `addr` lies in the loaded image (the executable or shared object, as `dladdr` finds it)
/// that holds `anchor`, at or after the image's start: a part of the program's mapped, readable
/// segments, so reading from `addr` to the end of its page cannot fault. An address computed from
/// bytes another process wrote (an entry point's offset) is checked here before it is read.
///
/// `dladdr` answers only for an address inside a loaded segment (glibc checks each `PT_LOAD`;
/// dyld each segment), and the image's start is its header, above the unmapped `__PAGEZERO` of a
/// macOS executable.
pub(crate) fn in_image_of(addr: usize, anchor: usize) -> bool {
    match (image_base(addr), image_base(anchor)) {
        (Some(base), Some(anchor_base)) => base == anchor_base && addr >= base,
        _ => false,
    }
}

/// The start of the loaded image that holds `addr`, if one does.
fn image_base(addr: usize) -> Option<usize> {
    let mut info = MaybeUninit::<libc::Dl_info>::uninit();
    // libc: nix has no `dladdr`.
    // SAFETY: dladdr only looks `addr` up in the loader's tables (it never reads memory there) and
    // writes `info`, a live out-parameter of the right type.
    let found = unsafe { libc::dladdr(std::ptr::without_provenance(addr), info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr returned nonzero, so it filled `info`.
    let info = unsafe { info.assume_init() };
    Some(info.dli_fbase as usize).filter(|&base| base != 0)
}
