//! Memory that a child made by `fork` shares with its parent: a page of atomics ([`SharedPage`]), a
//! process-shared pthread mutex with a counter ([`SharedMutex`]), and a mapping of any size for the
//! queue floors' rings (`SharedMap`).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// One page of `MAP_SHARED | MAP_ANONYMOUS` memory: a child made by `fork` shares it with its
/// parent. Unmapped when dropped (in each process for itself).
#[derive(Debug)]
pub struct SharedPage {
    ptr: NonNull<u8>,
}

// SAFETY: the page is plain memory that every process and thread may access; all shared access
// goes through atomics or through a process-shared mutex.
unsafe impl Send for SharedPage {}
// SAFETY: as for Send.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// The size of the page.
    pub const LEN: usize = 4096;

    /// A new zeroed page.
    ///
    /// # Panics
    ///
    /// If the system refuses the mapping.
    pub fn new() -> Self {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        SharedPage { ptr: NonNull::new(ptr.cast()).expect("mmap returned null") }
    }

    /// The `index`-th 32-bit word of the page.
    ///
    /// # Panics
    ///
    /// If the word lies outside the page.
    pub fn word(&self, index: usize) -> &AtomicU32 {
        assert!((index + 1) * 4 <= Self::LEN, "word {index} outside the page");
        // SAFETY: the page is 4096-byte aligned and `index * 4 + 4 <= LEN`, so the word is aligned
        // and inside the mapping, which lives as long as `self`; AtomicU32 has u32's layout and
        // every access to these words goes through atomics.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(index * 4).cast()) }
    }

    /// The start of the page.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Default for SharedPage {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, of LEN bytes, and no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), Self::LEN) };
    }
}

/// A `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED` in a [`SharedPage`], with a `u64` counter in
/// the next cache line: the floor of `proc_sync::Lock` and `Value<u64>`.
///
/// Share it with children made by a raw `fork` only: a child that drops its copy would destroy
/// the mutex for everyone (the floors' children `_exit`).
#[derive(Debug)]
pub struct SharedMutex {
    page: SharedPage,
}

/// Where the counter lies in the page: past the mutex (40 bytes on Linux, 64 on macOS), on its own
/// cache line, as `Value`'s data lies apart from its lock.
const COUNTER_OFFSET: usize = 64;

impl SharedMutex {
    /// A new unlocked mutex (recursive if `recursive`), its counter at 0.
    ///
    /// # Panics
    ///
    /// If the system refuses the memory or the attributes.
    pub fn new(recursive: bool) -> Self {
        const { assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= COUNTER_OFFSET) };
        let page = SharedPage::new();
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is writable memory for one attribute object, which init fills.
        let rc = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        assert_eq!(rc, 0, "pthread_mutexattr_init");
        // SAFETY: `attr` was initialized above.
        let rc =
            unsafe { libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED) };
        assert_eq!(rc, 0, "pthread_mutexattr_setpshared");
        if recursive {
            // SAFETY: `attr` was initialized above.
            let rc =
                unsafe { libc::pthread_mutexattr_settype(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_RECURSIVE) };
            assert_eq!(rc, 0, "pthread_mutexattr_settype");
        }
        // SAFETY: the page is zeroed, aligned, large enough for a pthread_mutex_t (asserted above)
        // and nobody uses it yet; `attr` is initialized.
        let rc = unsafe { libc::pthread_mutex_init(page.as_ptr().cast(), attr.as_ptr()) };
        assert_eq!(rc, 0, "pthread_mutex_init");
        // SAFETY: `attr` is initialized and no longer needed (the mutex does not refer to it).
        unsafe { libc::pthread_mutexattr_destroy(attr.as_mut_ptr()) };
        SharedMutex { page }
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.page.as_ptr().cast()
    }

    /// Locks the mutex (a no-op result check: a valid mutex locked by a non-owner cannot fail).
    pub fn lock(&self) {
        // SAFETY: the mutex was initialized in `new` and lives as long as `self`.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw()) };
        debug_assert_eq!(rc, 0);
    }

    /// Unlocks the mutex, which this thread holds.
    pub fn unlock(&self) {
        // SAFETY: as in `lock`; the callers pair every unlock with their own lock.
        let rc = unsafe { libc::pthread_mutex_unlock(self.raw()) };
        debug_assert_eq!(rc, 0);
    }

    /// Adds one to the counter under the mutex, as `Value::update(|c| *c += 1)` does.
    pub fn increment(&self) {
        self.lock();
        let counter = self.page.as_ptr().wrapping_add(COUNTER_OFFSET).cast::<u64>();
        // SAFETY: the counter is an aligned u64 inside the page, touched only under the mutex,
        // which this thread holds; volatile as `RawValue` does.
        unsafe { counter.write_volatile(counter.read_volatile() + 1) };
        self.unlock();
    }

    /// The counter (a snapshot).
    pub fn counter(&self) -> u64 {
        self.lock();
        let counter = self.page.as_ptr().wrapping_add(COUNTER_OFFSET).cast::<u64>();
        // SAFETY: as in `increment`.
        let value = unsafe { counter.read_volatile() };
        self.unlock();
        value
    }
}

impl Drop for SharedMutex {
    fn drop(&mut self) {
        // SAFETY: the mutex was initialized in `new` and is unlocked (every lock is paired).
        unsafe { libc::pthread_mutex_destroy(self.raw()) };
    }
}

/// `len` bytes of `MAP_SHARED | MAP_ANONYMOUS` memory (page-aligned, zeroed): a child made by
/// `fork` shares it with its parent. Unmapped when dropped.
#[derive(Debug)]
pub(crate) struct SharedMap {
    ptr: NonNull<u8>,
    pub(crate) len: usize,
}

impl SharedMap {
    pub(crate) fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        SharedMap { ptr: NonNull::new(ptr.cast()).expect("mmap returned null"), len }
    }

    /// The 64-bit atomic at byte `offset` (8-aligned, inside the mapping).
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len, "word at {offset} outside the mapping");
        // SAFETY: aligned (the mapping is page-aligned, `offset` 8-aligned) and inside the
        // mapping, which lives as long as `self`; shared words are only accessed atomically.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    pub(crate) fn at(&self, offset: usize) -> *mut u8 {
        assert!(offset <= self.len);
        self.ptr.as_ptr().wrapping_add(offset)
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, of `len` bytes, and no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
