//! `Value<T>` and `Array<T>`: plain-old-data in shared memory, with a lock; `RawValue` and
//! `RawArray` without one.
//!
//! `T` is [`bytemuck::Pod`], so every bit pattern is a valid `T` (memory starts zeroed, and a
//! process that dies mid-write leaves bytes, never undefined behaviour). The data starts 64 bytes
//! into its region, aligned for any `Pod` type.

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use crate::lock::Lock;
use crate::region::Region;

const DATA: usize = 64;

/// A value shared between processes, as Python's `multiprocessing.Value`, guarded by a lock.
///
/// Every method takes the lock, so `counter.update(|c| *c += 1)` from many processes is exact.
/// A holder that died mid-update is ignored here (the value may be torn); use
/// [`get_lock`](Self::get_lock) to see [`OwnerDied`](crate::OwnerDied) yourself.
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
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        let _g = self.lock.acquire().unwrap_or_else(|e| e.into_guard());
        // SAFETY: the lock is held by this process; no other holder writes meanwhile.
        unsafe { self.raw.read() }
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        let _g = self.lock.acquire().unwrap_or_else(|e| e.into_guard());
        // SAFETY: as in `get`.
        unsafe { self.raw.write(value) }
    }

    /// Runs `f` on the value with the lock held: a read-modify-write no other process interleaves.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _g = self.lock.acquire().unwrap_or_else(|e| e.into_guard());
        // SAFETY: as in `get`.
        let mut v = unsafe { self.raw.read() };
        let r = f(&mut v);
        // SAFETY: as in `get`.
        unsafe { self.raw.write(v) };
        r
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("value", &self.get()).finish()
    }
}

/// A value in shared memory without a lock (Python's `RawValue`): reads and writes are plain
/// copies, so concurrent writers must synchronize themselves.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
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
        const { assert!(std::mem::align_of::<T>() <= DATA, "alignment above 64 bytes") };
        let region = Region::new(DATA + std::mem::size_of::<T>())?;
        let raw = RawValue { region, _type: PhantomData };
        // SAFETY: the region is new; nobody else can see it yet.
        unsafe { raw.write(value) };
        Ok(raw)
    }

    fn ptr(&self) -> *mut T {
        // SAFETY: the region holds DATA + size_of::<T>() bytes; DATA keeps any Pod type aligned.
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

    /// The lock guarding the array.
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

    /// Runs `f` on the elements with the lock held.
    pub fn with<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let _g = self.lock.acquire().unwrap_or_else(|e| e.into_guard());
        // SAFETY: the lock is held; no other holder accesses the elements meanwhile.
        f(unsafe { self.raw.as_mut_slice() })
    }

    /// A copy of element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        self.with(|s| s.get(i).copied())
    }

    /// Sets element `i`; returns false (and changes nothing) past the end.
    pub fn set(&self, i: usize, value: T) -> bool {
        self.with(|s| s.get_mut(i).map(|e| *e = value).is_some())
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.with(|s| s.to_vec())
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("values", &self.to_vec()).finish()
    }
}

/// An array in shared memory without a lock (Python's `RawArray`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
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
        const { assert!(std::mem::align_of::<T>() <= DATA, "alignment above 64 bytes") };
        let bytes =
            std::mem::size_of::<T>().checked_mul(len).and_then(|b| b.checked_add(DATA)).unwrap_or(usize::MAX);
        Ok(RawArray { region: Region::new(bytes)?, len, _type: PhantomData })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements as a slice.
    ///
    /// # Safety
    ///
    /// No process may write the elements while the slice is in use.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: the region holds DATA + len * size_of::<T>() bytes, aligned for T; Pod makes
        // any bytes a valid T; the caller rules out concurrent writes.
        unsafe { std::slice::from_raw_parts(self.region.ptr().add(DATA).cast(), self.len) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    ///
    /// No other process or thread may access the elements while the slice is in use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`; the caller rules out any concurrent access.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr().add(DATA).cast(), self.len) }
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray").field("len", &self.len).finish()
    }
}
