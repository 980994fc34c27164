//! `Value<T>` and `Array<T>`: plain-old-data in shared memory, with a lock; `RawValue` and
//! `RawArray` without one.
//!
//! `T` is [`bytemuck::Pod`], so every bit pattern is a valid `T` (memory starts zeroed, and a
//! process that dies mid-write leaves bytes, never undefined behaviour). The data starts 64 bytes
//! into its region, aligned for any `Pod` type; the bytes before it are a [`Header`] that the
//! creator fills in and that every decoded handle is checked against (kind, element size and
//! alignment, length, and that the region really holds that many elements), so a garbled or
//! mismatched handle is a decoding error, never a slice past the memory.
//!
//! The locked forms see when the calling thread already holds their lock (through
//! [`get_lock`](Value::get_lock)) and then do not take it again: Python's default lock is an
//! `RLock`, and `with v.get_lock(): v.value += 1` must not deadlock here either.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytemuck::Pod;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lock::Lock;
use crate::region::Region;

const DATA: usize = 64;

/// `Header::magic` of a `RawValue`'s region.
const VALUE_MAGIC: u32 = u32::from_le_bytes(*b"mpVa");
/// `Header::magic` of a `RawArray`'s region.
const ARRAY_MAGIC: u32 = u32::from_le_bytes(*b"mpAr");

/// The first bytes of a value's or array's region. Written once by the creator before any other
/// process has a handle; only `borrower` changes afterwards.
#[repr(C)]
struct Header {
    /// `VALUE_MAGIC` or `ARRAY_MAGIC`.
    magic: AtomicU32,
    /// `align_of::<T>()`.
    align: AtomicU32,
    /// `size_of::<T>()`.
    size: AtomicU64,
    /// The number of elements (1 for a value).
    len: AtomicU64,
    /// The pid of the process inside [`Array::with`] on this array (0: none), so that a nested
    /// `with` on the same array from the thread that holds the lock is refused instead of
    /// handing out a second `&mut` slice of the same elements.
    borrower: AtomicU32,
}

const _: () = assert!(size_of::<Header>() <= DATA);
const _: () = assert!(offset_of!(Header, size) == 8 && offset_of!(Header, len) == 16);
const _: () = assert!(offset_of!(Header, borrower) == 24);

impl Header {
    /// The header of `region`.
    ///
    /// # Panics
    ///
    /// If the region is shorter than the header: every constructor and decoder checks that first.
    fn of(region: &Region) -> &Header {
        assert!(region.len() >= DATA, "a shared value's region is shorter than its header");
        // SAFETY: the region is 64-byte aligned (so aligned for Header's 8-byte atomics) and holds at
        // least DATA >= size_of::<Header>() bytes (asserted); it lives as long as `region`, and
        // every access to the header goes through its atomics.
        unsafe { &*region.ptr().cast::<Header>() }
    }

    /// Fills in a new region's header.
    fn write<T: Pod>(region: &Region, magic: u32, len: usize) {
        let h = Header::of(region);
        h.align.store(align_of::<T>() as u32, Ordering::Relaxed);
        h.size.store(size_of::<T>() as u64, Ordering::Relaxed);
        h.len.store(len as u64, Ordering::Relaxed);
        h.magic.store(magic, Ordering::Release);
    }

    /// Checks a decoded handle: its region holds a header of this `magic` for `len` elements of
    /// `T`, and really has room for them, aligned for `T`.
    fn check<T: Pod>(region: &Region, magic: u32, len: u64) -> Result<usize, String> {
        let what = if magic == VALUE_MAGIC { "Value" } else { "Array" };
        let ty = std::any::type_name::<T>();
        if region.len() < DATA {
            return Err(format!(
                "not a shared {what}'s memory: {} bytes, shorter than its header",
                region.len()
            ));
        }
        let h = Header::of(region);
        if h.magic.load(Ordering::Acquire) != magic {
            return Err(format!("not a shared {what}'s memory (its header does not say so)"));
        }
        let (size, align) = (h.size.load(Ordering::Relaxed), h.align.load(Ordering::Relaxed));
        if size != size_of::<T>() as u64 || align != align_of::<T>() as u32 {
            return Err(format!(
                "a shared {what} of {size}-byte elements (aligned to {align}) decoded as one of {ty} \
                 ({} bytes, aligned to {})",
                size_of::<T>(),
                align_of::<T>()
            ));
        }
        let header_len = h.len.load(Ordering::Relaxed);
        if header_len != len {
            return Err(format!("a shared {what} of {header_len} elements decoded as one of {len}"));
        }
        let len =
            usize::try_from(len).map_err(|_| format!("a shared {what} of {len} elements is too long"))?;
        let fits = size_of::<T>()
            .checked_mul(len)
            .and_then(|b| b.checked_add(DATA))
            .is_some_and(|end| end <= region.len());
        if !fits {
            return Err(format!(
                "a shared {what} of {len} {ty} does not fit its memory ({} bytes)",
                region.len()
            ));
        }
        if !(region.ptr() as usize + DATA).is_multiple_of(align_of::<T>()) {
            return Err(format!("a shared {what}'s data is not aligned for {ty}"));
        }
        Ok(len)
    }
}

/// A value shared between processes, as Python's `multiprocessing.Value`, guarded by a lock.
///
/// Every method takes the lock, so `counter.update(|c| *c += 1)` from many processes is exact;
/// while the calling thread holds it through [`get_lock`](Self::get_lock), they use it as held
/// (Python's default lock is reentrant). A holder that died mid-update is ignored here (the value
/// may be torn); use [`get_lock`](Self::get_lock) to see [`OwnerDied`](crate::OwnerDied) yourself.
///
/// # Examples
///
/// ```
/// use proc_sync::Value;
///
/// let counter = Value::new(0u64).unwrap();
/// counter.update(|c| *c += 5);
/// assert_eq!(counter.get(), 5);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: Pod> {
    raw: RawValue<T>,
    lock: Lock,
}

impl<T: Pod> Value<T> {
    /// A value holding `value`, with its own lock.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new(value: T) -> proc_core::Result<Self> {
        Self::with_lock(value, Lock::new()?)
    }

    /// A value holding `value`, guarded by `lock` (shared with other values).
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn with_lock(value: T, lock: Lock) -> proc_core::Result<Self> {
        let raw = RawValue::new(value)?;
        Ok(Value { raw, lock })
    }

    /// The lock guarding this value.
    ///
    /// While the calling thread holds it, [`get`](Self::get), [`set`](Self::set) and
    /// [`update`](Self::update) do not take it again, so Python's `with v.get_lock(): v.value += 1`
    /// is written:
    ///
    /// ```
    /// use proc_sync::Value;
    ///
    /// let v = Value::new(1u32).unwrap();
    /// {
    ///     let _g = v.get_lock().acquire().unwrap();
    ///     v.set(v.get() + 1);
    /// }
    /// // The same in one step, taking the lock once:
    /// v.update(|x| *x += 1);
    /// assert_eq!(v.get(), 3);
    /// ```
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Runs `f`, which runs no code of the caller, with the lock held: taken here, unless the
    /// calling thread holds it already.
    #[inline]
    fn access<R>(&self, f: impl FnOnce() -> R) -> R {
        if !self.lock.lock_unless_held() {
            return f();
        }
        let r = f();
        self.lock.unlock_unrecorded();
        r
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        // SAFETY: the lock is held by this thread; no other holder writes meanwhile.
        self.access(|| unsafe { self.raw.read() })
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`.
        self.access(|| unsafe { self.raw.write(value) })
    }

    /// Runs `f` on the value with the lock held: a read-modify-write no other process interleaves.
    /// The fast form of `get` then `set`: one lock round trip, and the calling thread is not
    /// recorded as the holder, so `f` must not use this value (or another guarded by the same
    /// lock): that would wait for itself. To combine several, hold [`get_lock`](Self::get_lock).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _unlock = self.lock.lock_unless_held().then(|| Unlock(&self.lock));
        // SAFETY: as in `get`.
        let mut v = unsafe { self.raw.read() };
        let r = f(&mut v);
        // SAFETY: as in `get`.
        unsafe { self.raw.write(v) };
        r
    }
}

/// Releases a lock taken with `Lock::lock_unless_held` when dropped, also when the code it
/// guards panics.
struct Unlock<'a>(&'a Lock);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock_unrecorded();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("value", &self.get()).finish()
    }
}

/// A value in shared memory without a lock (Python's `RawValue`): reads and writes are plain
/// copies, so concurrent writers must synchronize themselves.
///
/// A handle decoded in a child is checked against its memory: one that was made for another type
/// (another size or alignment) fails to decode.
#[derive(Clone)]
pub struct RawValue<T: Pod> {
    region: Region,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> RawValue<T> {
    /// A raw value holding `value`.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn new(value: T) -> proc_core::Result<Self> {
        const { assert!(align_of::<T>() <= DATA, "alignment above 64 bytes") };
        let region = Region::new(DATA + size_of::<T>())?;
        Header::write::<T>(&region, VALUE_MAGIC, 1);
        let raw = RawValue { region, _type: PhantomData };
        // SAFETY: the region is new; nobody else can see it yet.
        unsafe { raw.write(value) };
        Ok(raw)
    }

    fn ptr(&self) -> *mut T {
        // SAFETY: the region holds DATA + size_of::<T>() bytes (made so, or checked on decode), and
        // DATA keeps any Pod type aligned.
        unsafe { self.region.ptr().add(DATA).cast() }
    }

    /// Reads the value.
    ///
    /// # Safety
    ///
    /// No process may write it at the same time (a torn read is still a valid `T`, but a data
    /// race is undefined behaviour in Rust's model).
    pub unsafe fn read(&self) -> T {
        // SAFETY: the pointer is valid and aligned; the caller rules out concurrent writes.
        unsafe { self.ptr().read_volatile() }
    }

    /// Writes the value.
    ///
    /// # Safety
    ///
    /// No process may read or write it at the same time.
    pub unsafe fn write(&self, value: T) {
        // SAFETY: the pointer is valid and aligned; the caller rules out concurrent access.
        unsafe { self.ptr().write_volatile(value) }
    }

    /// The address of the value in this process.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr()
    }
}

impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.region.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let region = Region::deserialize(deserializer)?;
        Header::check::<T>(&region, VALUE_MAGIC, 1).map_err(D::Error::custom)?;
        Ok(RawValue { region, _type: PhantomData })
    }
}

impl<T: Pod> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue").field("len", &self.region.len()).finish()
    }
}

/// An array shared between processes, as Python's `multiprocessing.Array`, guarded by a lock.
///
/// # Examples
///
/// ```
/// use proc_sync::Array;
///
/// let a = Array::<i32>::zeroed(4).unwrap();
/// a.with(|s| s.copy_from_slice(&[1, 2, 3, 4]));
/// assert_eq!(a.to_vec(), [1, 2, 3, 4]);
/// assert_eq!(a.get(2), Some(3));
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Array<T: Pod> {
    raw: RawArray<T>,
    lock: Lock,
}

impl<T: Pod> Array<T> {
    /// An array of `len` zeroed elements, with its own lock.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn zeroed(len: usize) -> proc_core::Result<Self> {
        Ok(Array { raw: RawArray::zeroed(len)?, lock: Lock::new()? })
    }

    /// An array holding a copy of `values`, with its own lock.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn from_slice(values: &[T]) -> proc_core::Result<Self> {
        let a = Self::zeroed(values.len())?;
        a.with(|s| s.copy_from_slice(values));
        Ok(a)
    }

    /// An array of `len` zeroed elements guarded by `lock`.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created.
    pub fn with_lock(len: usize, lock: Lock) -> proc_core::Result<Self> {
        Ok(Array { raw: RawArray::zeroed(len)?, lock })
    }

    /// The lock guarding the array. While the calling thread holds it, the array's methods do not
    /// take it again (as for [`Value::get_lock`]).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// Runs `f` on the elements with the lock held (taken here, unless the calling thread holds
    /// it already).
    ///
    /// # Panics
    ///
    /// If called from inside `f`'s own `with` on the same array (directly or through
    /// [`get`](Self::get), [`set`](Self::set) or [`to_vec`](Self::to_vec)): that would be a second
    /// `&mut` borrow of the same elements. (It would deadlock if the lock were taken again.)
    pub fn with<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let held = self.lock.held_by_current_thread();
        let _guard = if held { None } else { Some(self.lock.acquire().unwrap_or_else(|e| e.into_guard())) };
        // Declared after the guard, so dropped before it: the mark goes while the lock is held.
        let _borrow = Borrow::take(&self.raw.region, held);
        // SAFETY: the lock is held by this thread, so no other process or thread accesses the
        // elements meanwhile, and `Borrow` rules out a second slice from this thread.
        f(unsafe { self.raw.as_mut_slice() })
    }

    /// Runs `f`, which runs no code of the caller, on the raw array with the lock held: taken here,
    /// unless the calling thread holds it already (then not inside `with` on this array).
    #[inline]
    fn access<R>(&self, f: impl FnOnce(&RawArray<T>) -> R) -> R {
        if !self.lock.lock_unless_held() {
            Borrow::refuse_nested(&self.raw.region);
            return f(&self.raw);
        }
        let r = f(&self.raw);
        self.lock.unlock_unrecorded();
        r
    }

    /// A copy of element `i`, or `None` past the end.
    ///
    /// # Panics
    ///
    /// Inside [`with`](Self::with) on the same array.
    pub fn get(&self, i: usize) -> Option<T> {
        // SAFETY: `i` is in bounds; the lock is held by this thread and no slice of the elements
        // is in use (not inside `with`), so nothing else accesses them meanwhile.
        self.access(|raw| (i < raw.len).then(|| unsafe { raw.data().add(i).read_volatile() }))
    }

    /// Sets element `i`; returns false (and changes nothing) past the end.
    ///
    /// # Panics
    ///
    /// Inside [`with`](Self::with) on the same array.
    pub fn set(&self, i: usize, value: T) -> bool {
        // SAFETY: as in `get`.
        self.access(|raw| (i < raw.len).then(|| unsafe { raw.data().add(i).write_volatile(value) }).is_some())
    }

    /// A copy of all elements.
    ///
    /// # Panics
    ///
    /// Inside [`with`](Self::with) on the same array.
    pub fn to_vec(&self) -> Vec<T> {
        // SAFETY: as in `get`.
        self.access(|raw| unsafe { raw.as_slice() }.to_vec())
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("values", &self.to_vec()).finish()
    }
}

/// An array's mark that this process is inside [`Array::with`] on it; cleared when dropped (also
/// when `f` panics).
struct Borrow<'a> {
    borrower: &'a AtomicU32,
}

impl<'a> Borrow<'a> {
    /// Marks the array borrowed by this process; its lock is held by the calling thread. If the
    /// thread held it before this `with` (`reentered`), a mark of this process means an outer
    /// `with` of this thread on the same array is running.
    fn take(region: &'a Region, reentered: bool) -> Self {
        let borrower = &Header::of(region).borrower;
        let me = proc_os::pid();
        // Only a thread holding the lock touches the mark. When the lock was just taken here, a
        // mark left over is stale (its process died inside `with`).
        assert!(
            !(reentered && borrower.load(Ordering::Relaxed) == me),
            "Array::with called inside `with` on the same array"
        );
        borrower.store(me, Ordering::Relaxed);
        Borrow { borrower }
    }
}

impl Borrow<'_> {
    /// Panics if this process is inside `with` on the array; its lock is held by the calling
    /// thread, so that is an outer `with` of this thread.
    fn refuse_nested(region: &Region) {
        assert!(
            Header::of(region).borrower.load(Ordering::Relaxed) != proc_os::pid(),
            "Array::get, set or to_vec called inside `with` on the same array"
        );
    }
}

impl Drop for Borrow<'_> {
    fn drop(&mut self) {
        self.borrower.store(0, Ordering::Relaxed);
    }
}

/// An array in shared memory without a lock (Python's `RawArray`).
///
/// A handle decoded in a child is checked against its memory: a length or element type that does
/// not match what its creator made (or more elements than the memory holds) fails to decode.
#[derive(Clone)]
pub struct RawArray<T: Pod> {
    region: Region,
    len: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> RawArray<T> {
    /// A raw array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// The shared memory for it cannot be created, or its size overflows.
    pub fn zeroed(len: usize) -> proc_core::Result<Self> {
        const { assert!(align_of::<T>() <= DATA, "alignment above 64 bytes") };
        let bytes = size_of::<T>().checked_mul(len).and_then(|b| b.checked_add(DATA)).unwrap_or(usize::MAX);
        let region = Region::new(bytes)?;
        Header::write::<T>(&region, ARRAY_MAGIC, len);
        Ok(RawArray { region, len, _type: PhantomData })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first element's address (the data's start).
    fn data(&self) -> *mut T {
        // SAFETY: the region holds at least DATA bytes (made so, or checked on decode).
        unsafe { self.region.ptr().add(DATA).cast() }
    }

    /// The elements as a slice.
    ///
    /// # Safety
    ///
    /// No process may write the elements while the slice is in use.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: the region holds DATA + len * size_of::<T>() bytes, aligned for T (made so, or
        // checked on decode); Pod makes any bytes a valid T; the caller rules out concurrent
        // writes.
        unsafe { std::slice::from_raw_parts(self.data(), self.len) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    ///
    /// No other process or thread may access the elements while the slice is in use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`; the caller rules out any concurrent access.
        unsafe { std::slice::from_raw_parts_mut(self.data(), self.len) }
    }
}

impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.region, self.len as u64).serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (region, len) = <(Region, u64)>::deserialize(deserializer)?;
        let len = Header::check::<T>(&region, ARRAY_MAGIC, len).map_err(D::Error::custom)?;
        Ok(RawArray { region, len, _type: PhantomData })
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray").field("len", &self.len).finish()
    }
}
