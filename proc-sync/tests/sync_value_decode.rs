//! Value and array handles (and lock and semaphore handles) are checked against their memory when
//! decoded: a mismatched type, length or region is a decoding error, never an out-of-bounds slice.

#![allow(clippy::unwrap_used)]

use proc_core::handle::{deserialize_with_fds, serialize_with_fds, Fd};
use proc_core::shm::Segment;
use std::os::fd::AsFd;

use proc_sync::{Array, BoundedSemaphore, Lock, RLock, RawArray, RawValue, Semaphore, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A region's wire form: `(arena id, arena descriptor, arena length, offset, length)`.
type RegionWire = (u128, ArenaFd, u64, u64, u64);

/// An arena's descriptor in a region's wire form. The regions of one message that share an arena
/// share its descriptor's index, so it is read as a region reads it, leaving it in the message.
struct ArenaFd(Fd);

impl Serialize for ArenaFd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for ArenaFd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        let fd = proc_core::handle::import_shared_fd(index).map_err(serde::de::Error::custom)?;
        Ok(ArenaFd(Fd::from(fd)))
    }
}

/// `w` with another length.
fn with_len(w: &RegionWire, len: u64) -> (u128, &ArenaFd, u64, u64, u64) {
    (w.0, &w.1, w.2, w.3, len)
}

/// `w` as it is, by reference.
fn same(w: &RegionWire) -> (u128, &ArenaFd, u64, u64, u64) {
    with_len(w, w.4)
}

/// `value` encoded as a handle and decoded as a `U`.
fn reencode<T: Serialize, U: DeserializeOwned>(value: &T) -> proc_core::Result<U> {
    let (bytes, fds) = serialize_with_fds(value)?;
    deserialize_with_fds(&bytes, fds)
}

#[test]
fn matching_handles_decode() {
    let v: Value<u8> = reencode(&Value::new(7u8).unwrap()).unwrap();
    assert_eq!(v.get(), 7);
    let a: Array<u64> = reencode(&Array::<u64>::from_slice(&[1, 2, 3]).unwrap()).unwrap();
    assert_eq!(a.to_vec(), [1, 2, 3]);
    let r: RawArray<u16> = reencode(&RawArray::<u16>::zeroed(0).unwrap()).unwrap();
    assert!(r.is_empty());
}

#[test]
fn a_value_decoded_as_another_type_is_refused() {
    let small = Value::new(7u8).unwrap();
    assert!(reencode::<_, Value<u64>>(&small).is_err(), "a Value<u8> decoded as a Value<u64>");
    assert!(reencode::<_, Value<u16>>(&small).is_err(), "a Value<u8> decoded as a Value<u16>");
    // Smaller than the memory is no overrun, but still another type.
    assert!(reencode::<_, Value<u8>>(&Value::new(7u64).unwrap()).is_err());
    assert!(reencode::<_, RawValue<[u8; 64]>>(&RawValue::new(0u32).unwrap()).is_err());
}

#[test]
fn an_array_decoded_as_another_type_is_refused() {
    let bytes = Array::<u8>::from_slice(&[1, 2, 3, 4]).unwrap();
    // Four u64 would need 32 bytes where 4 are.
    assert!(reencode::<_, Array<u64>>(&bytes).is_err(), "an Array<u8> of 4 decoded as an Array<u64>");
    assert!(reencode::<_, Array<u8>>(&Array::<u64>::zeroed(4).unwrap()).is_err());
    assert!(reencode::<_, RawArray<u32>>(&RawArray::<u8>::zeroed(4096).unwrap()).is_err());
    // A value is not an array, nor the other way round.
    assert!(reencode::<_, RawValue<u64>>(&RawArray::<u64>::zeroed(1).unwrap()).is_err());
}

/// `((region, len), lock)`, the same bytes an `Array` handle writes.
type ArrayWire = ((RegionWire, u64), RegionWire);

#[test]
fn an_array_with_a_garbled_length_is_refused() {
    let a = Array::<u8>::from_slice(&[1, 2, 3, 4]).unwrap();
    let ((region, len), lock): ArrayWire = reencode(&a).unwrap();
    assert_eq!(len, 4);
    for garbled in [5, 4096, 1 << 40, u64::MAX, 3, 0] {
        let wire = ((same(&region), garbled), same(&lock));
        assert!(reencode::<_, Array<u8>>(&wire).is_err(), "length {garbled} accepted for 4 elements");
    }
    // The true length still decodes, and sees the same memory.
    let wire = ((same(&region), 4u64), same(&lock));
    assert_eq!(reencode::<_, Array<u8>>(&wire).unwrap().to_vec(), [1, 2, 3, 4]);
}

#[test]
fn memory_that_is_not_a_shared_value_is_refused() {
    // A lock's region is shorter than the header; a semaphore's is long enough but was never made
    // a value (no header).
    let lock: RegionWire = reencode(&Lock::new().unwrap()).unwrap();
    let sem: RegionWire = reencode(&Semaphore::new(3).unwrap()).unwrap();
    for region in [&lock, &sem] {
        let wire = (same(region), same(&lock));
        assert!(reencode::<_, Value<u8>>(&wire).is_err(), "{} bytes accepted as a Value", region.4);
        let wire = ((same(region), 1u64), same(&lock));
        assert!(reencode::<_, Array<u8>>(&wire).is_err(), "{} bytes accepted as an Array", region.4);
    }
}

#[test]
fn a_lock_whose_memory_is_too_short_is_refused() {
    let lock: RegionWire = reencode(&Lock::new().unwrap()).unwrap();
    let data: RegionWire = reencode(&RawValue::new(7u8).unwrap()).unwrap();
    // 16 bytes: the layout before the owner's process token; 4: the least a region has.
    for len in [4, 16, 23] {
        let short = with_len(&lock, len);
        assert!(reencode::<_, Lock>(&short).is_err(), "a lock of {len} bytes accepted");
        assert!(reencode::<_, RLock>(&short).is_err(), "a reentrant lock of {len} bytes accepted");
        // A value's wire form: its memory, then its lock's.
        assert!(
            reencode::<_, Value<u8>>(&(same(&data), short)).is_err(),
            "a value's lock of {len} bytes accepted"
        );
    }
    let lock: Lock = reencode(&Lock::new().unwrap()).unwrap();
    drop(lock.acquire().unwrap());
    let rlock: RLock = reencode(&RLock::new().unwrap()).unwrap();
    drop(rlock.acquire().unwrap());
    let lock: RegionWire = reencode(&Lock::new().unwrap()).unwrap();
    assert_eq!(reencode::<_, Value<u8>>(&(same(&data), same(&lock))).unwrap().get(), 7);
}

#[test]
fn a_semaphore_whose_memory_is_too_short_is_refused() {
    let region: RegionWire = reencode(&Semaphore::new(1).unwrap()).unwrap();
    // 272 bytes: the layout with 32-bit holder slots.
    for len in [4, 272, 527] {
        let short = with_len(&region, len);
        assert!(reencode::<_, Semaphore>(&short).is_err(), "a semaphore of {len} bytes accepted");
        assert!(reencode::<_, BoundedSemaphore>(&short).is_err(), "a bounded one of {len} bytes accepted");
    }
    let sem: Semaphore = reencode(&same(&region)).unwrap();
    drop(sem.acquire_guard().unwrap());
    assert_eq!(sem.get_value(), 1);
}

/// A region handle names its arena (id and descriptor) and its place in it: a place outside the
/// arena, inside its header or off the slot grid, an arena id its memory does not hold, and
/// memory that is no arena at all are refused; the true handle still works.
#[test]
fn a_region_outside_its_arena_is_refused() {
    let lock = Lock::new().unwrap();
    let w: RegionWire = reencode(&lock).unwrap();
    let (id, arena_len, offset, len) = (w.0, w.2, w.3, w.4);
    assert_eq!(arena_len % 64, 0);
    assert!(offset >= 64 && offset % 64 == 0 && offset + len <= arena_len, "{offset} {len} {arena_len}");
    let places = [
        (arena_len, 0, len),                      // the header
        (arena_len, offset + 8, len),             // off the grid
        (arena_len, arena_len - 64 + 48, len),    // past the end
        (arena_len, arena_len, len),              // at the end
        (arena_len, u64::MAX - 63, len),          // an overflowing end
        (arena_len, offset, 0),                   // empty
        (offset + 16, offset, len),               // an arena too short for the place
        (arena_len * 1024, arena_len * 512, len), // beyond the arena's memory
    ];
    for (alen, off, l) in places {
        assert!(
            reencode::<_, Lock>(&(id, &w.1, alen, off, l)).is_err(),
            "arena {alen}, offset {off}, len {l}"
        );
    }
    // An id that is not the arena's: the memory is mapped and its header does not match.
    for other in [id ^ 1, id ^ (1 << 100), 0] {
        assert!(reencode::<_, Lock>(&(other, &w.1, arena_len, offset, len)).is_err(), "id {other:#x}");
        // Nor does the length beyond the object map.
        assert!(reencode::<_, Lock>(&(other, &w.1, arena_len * 2, offset, len)).is_err());
    }
    // Memory that is no arena (zeroed, no header).
    let plain = Fd::from(Segment::new(4096).unwrap().as_fd().try_clone_to_owned().unwrap());
    assert!(reencode::<_, Lock>(&(id ^ 2, &plain, 4096u64, 64u64, 24u64)).is_err());
    // The true handle: the same lock.
    let back: Lock = reencode(&same(&w)).unwrap();
    let _held = back.acquire().unwrap();
    assert!(lock.locked());
}
