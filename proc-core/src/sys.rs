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
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

/// Slots per chunk of the table.
const CHUNK: usize = 1024;

/// The most slots the table grows to (4 MiB of slots): a soft descriptor limit above it is
/// treated as this.
const MAX_SLOTS: usize = 1 << 20;

/// The most chunks, the static first one included.
const MAX_CHUNKS: usize = MAX_SLOTS / CHUNK;

/// One chunk of the table. In this order (`repr(C)`): the count, then the first slots, in one
/// page with [`Head`]'s flag (see there).
#[repr(C)]
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

/// The table's static part: whether this process (or the one it was forked from) ever listed a
/// descriptor, and the first chunk of descriptors that a child made by a plain `fork` lets go of
/// as soon as it first runs (see `handle::ReleaseOnFork`). Together, so that a process that lists
/// its first descriptors (every child does: its control socket) writes one page of them, not two:
/// a fork-server child copies each page it writes. (Aligned so that the flag, the count and the
/// first slots never straddle two pages.)
#[repr(C, align(64))]
struct Head {
    ever_listed: AtomicBool,
    first: Chunk,
}

static HEAD: Head = Head { ever_listed: AtomicBool::new(false), first: Chunk::new() };

/// The other chunks, allocated on demand (null: not yet); `MORE[i]` is chunk `i + 1`.
static MORE: [AtomicPtr<Chunk>; MAX_CHUNKS - 1] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS - 1];

/// Chunk `index`, if it is published.
fn chunk(index: usize) -> Option<&'static Chunk> {
    if index == 0 {
        return Some(&HEAD.first);
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
    install_fork_handler();
    // Before any slot holds a descriptor: a child that sees a slot taken sees this too.
    HEAD.ever_listed.store(true, Ordering::SeqCst);
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

/// Registers the `pthread_atfork` handler that releases the listed descriptors in a child, once
/// per process. A process forked after it inherits it (and the `Once`), so the fork server calls
/// this when it starts: its children then need not register it each.
pub(crate) fn install_fork_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only makes async-signal-safe calls.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(release_in_child)) };
        if rc != 0 {
            tracing::debug!("cannot register the fork handler that releases descriptors");
        }
    });
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
    // A process that never listed a descriptor has nothing to release: its table's pages are not
    // even touched. (The fork server, which lists none, forks without handlers anyway.)
    if !HEAD.ever_listed.load(Ordering::SeqCst) {
        return;
    }
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
/// `dladdr` answers only for an address inside a loaded segment (glibc checks each `PT_LOAD`, or
/// the image's whole page-aligned span when its segments leave no hole; dyld each segment), and
/// the image's start is its header, above the unmapped `__PAGEZERO` of a macOS executable.
///
/// On Linux (unless the portable backend is forced, so that Linux runs cover the path other
/// systems take) the `PT_LOAD` segments of the anchor's image are found once (with `dl_iterate_phdr`)
/// and kept, so that a check is a comparison (an address past a segment's last byte but on its
/// last page, which `dladdr` may accept, is refused: no code starts there): a fork-server child
/// inherits them from the server, which checks once when it starts, and takes none of the page
/// faults that the loader's lookups cost.
pub(crate) fn in_image_of(addr: usize, anchor: usize) -> bool {
    #[cfg(all(target_os = "linux", not(feature = "force-portable")))]
    if let Some(segments) = segments::of(anchor) {
        return segments.iter().any(|&(start, end)| (start..end).contains(&addr));
    }
    match (image_base(addr), image_base(anchor)) {
        (Some(base), Some(anchor_base)) => base == anchor_base && addr >= base,
        _ => false,
    }
}

/// The loaded segments of the image that holds an anchor (Linux).
#[cfg(all(target_os = "linux", not(feature = "force-portable")))]
mod segments {
    use std::sync::OnceLock;

    /// The `PT_LOAD` segments (`start..end`) of the image that holds `anchor`, found on the first
    /// call and kept for that anchor; `None` for another anchor, or if no image holds it.
    pub(super) fn of(anchor: usize) -> Option<&'static [(usize, usize)]> {
        static FOUND: OnceLock<(usize, Vec<(usize, usize)>)> = OnceLock::new();
        let (kept, segments) = FOUND.get_or_init(|| (anchor, find(anchor)));
        (*kept == anchor && !segments.is_empty()).then_some(segments.as_slice())
    }

    /// What `visit` looks for and what it finds.
    struct Search {
        anchor: usize,
        segments: Vec<(usize, usize)>,
    }

    fn find(anchor: usize) -> Vec<(usize, usize)> {
        let mut search = Search { anchor, segments: Vec::new() };
        // SAFETY: `visit` matches the callback type; `search` outlives the call, which passes the
        // pointer to `visit` only.
        unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
        search.segments
    }

    /// Called for each loaded image, under the loader's lock; stops (returns 1) at the image that
    /// holds the anchor, keeping its `PT_LOAD` segments.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Search` that `find` passed, live and not otherwise borrowed
        // during the call.
        let search = unsafe { &mut *data.cast::<Search>() };
        // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call.
        let info = unsafe { &*info };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points to the image's `dlpi_phnum` program headers, mapped for as
        // long as the image is loaded.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = info.dlpi_addr as usize;
        let loads: Vec<(usize, usize)> = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD)
            .map(|h| {
                let start = base.wrapping_add(h.p_vaddr as usize);
                (start, start.saturating_add(h.p_memsz as usize))
            })
            .collect();
        if loads.iter().any(|&(start, end)| (start..end).contains(&search.anchor)) {
            search.segments = loads;
            return 1;
        }
        0
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

#[cfg(test)]
mod test {
    use super::*;

    fn anchor() -> usize {
        anchor as fn() -> usize as usize
    }

    /// The dladdr answer, which the kept segments must agree with.
    fn by_dladdr(addr: usize) -> bool {
        match (image_base(addr), image_base(anchor())) {
            (Some(base), Some(anchor_base)) => base == anchor_base && addr >= base,
            _ => false,
        }
    }

    #[test]
    fn in_image_of_tells_this_image_from_others() {
        let heap = Box::new(0u64);
        let stack = 0u64;
        let cases = [
            (anchor(), true),
            (in_image_of as fn(usize, usize) -> bool as usize, true),
            (release_in_child as extern "C" fn() as usize, true),
            // Read-only data of this image.
            ("a string in this image".as_ptr() as usize, true),
            (&raw const *heap as usize, false),
            (&raw const stack as usize, false),
            // The C library is another image.
            (libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize, false),
            (0, false),
            (usize::MAX, false),
        ];
        for (addr, inside) in cases {
            assert_eq!(in_image_of(addr, anchor()), inside, "{addr:#x}");
            assert_eq!(by_dladdr(addr), inside, "{addr:#x} (dladdr)");
        }
    }

    /// Inside the kept segments, dladdr agrees; just past their ends the kept segments say no
    /// (dladdr may say yes up to the end of the page, which is mapped too): never yes where
    /// dladdr says no.
    #[cfg(all(target_os = "linux", not(feature = "force-portable")))]
    #[test]
    fn the_kept_segments_agree_with_dladdr() {
        let segments = segments::of(anchor()).expect("the anchor's image");
        assert!(!segments.is_empty());
        assert!(segments.iter().any(|&(start, end)| (start..end).contains(&anchor())));
        for &(start, end) in segments {
            for addr in [start, start + 1, (start + end) / 2, end - 1] {
                assert!(in_image_of(addr, anchor()), "{addr:#x} in {start:#x}..{end:#x}");
                assert!(by_dladdr(addr), "{addr:#x} in {start:#x}..{end:#x} (dladdr)");
            }
            for addr in [start.wrapping_sub(1), end, end + 4096] {
                if in_image_of(addr, anchor()) {
                    // Only where another kept segment starts.
                    assert!(segments.iter().any(|&(s, e)| (s..e).contains(&addr)));
                    assert!(by_dladdr(addr), "{addr:#x} (dladdr)");
                }
            }
        }
        // Another anchor is looked up with dladdr.
        assert!(segments::of(anchor() + 1).is_none());
    }
}
