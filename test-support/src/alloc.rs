//! A counting allocator for the property tests of decoders: what a decode allocated on the
//! calling thread (the largest single allocation and the peak growth of the live bytes), so that
//! a test can hold it to what the input calls for.
//!
//! A test binary installs it itself:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: test_support::alloc::Counting = test_support::alloc::Counting;
//! ```
//!
//! Without that, [`measure`] reports zeroes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the allocations of each thread: the largest single one and the live bytes.
#[derive(Debug)]
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK_LIVE: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + size as isize);
        let _ = PEAK_LIVE.try_with(|p| p.set(p.get().max(live.get())));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - size as isize));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counting touches only
// `const` thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What `f` allocated on this thread: its result, the largest single allocation and the peak
/// growth of the live bytes.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|l| l.set(0));
    let base = LIVE.with(Cell::get);
    PEAK_LIVE.with(|p| p.set(base));
    let out = f();
    let growth = PEAK_LIVE.with(Cell::get) - base;
    (out, LARGEST.with(Cell::get), growth.max(0) as usize)
}

#[cfg(test)]
mod test {
    #[global_allocator]
    static ALLOC: super::Counting = super::Counting;

    #[test]
    fn measure_sees_the_largest_allocation_and_the_live_growth() {
        let (v, largest, growth) = super::measure(|| {
            let keep = vec![0u8; 1 << 20];
            drop(vec![0u8; 3 << 20]);
            keep
        });
        assert_eq!(v.len(), 1 << 20);
        assert_eq!(largest, 3 << 20);
        assert!(((4 << 20)..(5 << 20)).contains(&growth), "{growth}");
    }
}
