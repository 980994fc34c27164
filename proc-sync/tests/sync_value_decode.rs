//! Value and array handles (and lock and semaphore handles) are checked against their memory when
//! decoded: a mismatched type, length or region is a decoding error, never an out-of-bounds slice.

#![allow(clippy::unwrap_used)]

use proc_core::handle::{deserialize_with_fds, serialize_with_fds};
use proc_core::shm::Segment;
use proc_sync::{Array, BoundedSemaphore, Lock, RLock, RawArray, RawValue, Semaphore, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// An `Array<u8>`'s wire form with its own memory and lock, and a length of our choosing:
/// `((region, len), lock)`, the same bytes the handle writes.
type ArrayWire = ((Segment, u64), Segment);

#[test]
fn an_array_with_a_garbled_length_is_refused() {
    let a = Array::<u8>::from_slice(&[1, 2, 3, 4]).unwrap();
    let ((region, len), lock): ArrayWire = reencode(&a).unwrap();
    assert_eq!(len, 4);
    for garbled in [5, 4096, 1 << 40, u64::MAX, 3, 0] {
        let wire: ArrayWire = ((region.try_clone().unwrap(), garbled), lock.try_clone().unwrap());
        assert!(reencode::<_, Array<u8>>(&wire).is_err(), "length {garbled} accepted for 4 elements");
    }
    // The true length still decodes, and sees the same memory.
    let wire: ArrayWire = ((region, 4), lock);
    assert_eq!(reencode::<_, Array<u8>>(&wire).unwrap().to_vec(), [1, 2, 3, 4]);
}

#[test]
fn memory_that_is_not_a_shared_value_is_refused() {
    // Too short for the header, and long enough but never made a value (no header).
    for len in [16, 4096] {
        let wire = (Segment::new(len).unwrap(), Segment::new(16).unwrap());
        assert!(reencode::<_, Value<u8>>(&wire).is_err(), "{len}-byte segment accepted as a Value");
        let wire = ((Segment::new(len).unwrap(), 1u64), Segment::new(16).unwrap());
        assert!(reencode::<_, Array<u8>>(&wire).is_err(), "{len}-byte segment accepted as an Array");
    }
}

#[test]
fn a_lock_whose_memory_is_too_short_is_refused() {
    // 16 bytes: the layout before the owner's process token; 4: the least a region has.
    for len in [4, 16, 23] {
        let short = Segment::new(len).unwrap();
        assert!(reencode::<_, Lock>(&short).is_err(), "a lock of {len} bytes accepted");
        assert!(reencode::<_, RLock>(&short).is_err(), "a reentrant lock of {len} bytes accepted");
        // A value's wire form: its memory, then its lock's.
        let data: Segment = reencode(&RawValue::new(7u8).unwrap()).unwrap();
        assert!(reencode::<_, Value<u8>>(&(data, short)).is_err(), "a value's lock of {len} bytes accepted");
    }
    let lock: Lock = reencode(&Lock::new().unwrap()).unwrap();
    drop(lock.acquire().unwrap());
    let rlock: RLock = reencode(&RLock::new().unwrap()).unwrap();
    drop(rlock.acquire().unwrap());
    let data: Segment = reencode(&RawValue::new(7u8).unwrap()).unwrap();
    let lock: Segment = reencode(&Lock::new().unwrap()).unwrap();
    assert_eq!(reencode::<_, Value<u8>>(&(data, lock)).unwrap().get(), 7);
}

#[test]
fn a_semaphore_whose_memory_is_too_short_is_refused() {
    // 272 bytes: the layout with 32-bit holder slots.
    for len in [4, 272, 527] {
        let short = Segment::new(len).unwrap();
        assert!(reencode::<_, Semaphore>(&short).is_err(), "a semaphore of {len} bytes accepted");
        assert!(reencode::<_, BoundedSemaphore>(&short).is_err(), "a bounded one of {len} bytes accepted");
    }
    let sem: Semaphore = reencode(&Semaphore::new(1).unwrap()).unwrap();
    drop(sem.acquire_guard().unwrap());
    assert_eq!(sem.get_value(), 1);
}
