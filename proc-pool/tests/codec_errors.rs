//! Serialization errors keep their cause: a value that refuses to serialize or deserialize says
//! why as a task's arguments or result and as the initializer's arguments.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_pool::{Error, Pool};
use test_support::{serial, FailsToDecode, FailsToEncode, Watchdog, DECODE_REFUSAL, ENCODE_REFUSAL};

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

fn takes_encode(_: FailsToEncode) -> u64 {
    1
}

fn takes_decode(_: FailsToDecode) -> u64 {
    1
}

fn gives_encode(_: u64) -> FailsToEncode {
    FailsToEncode
}

fn gives_decode(_: u64) -> FailsToDecode {
    FailsToDecode
}

fn init_encode(_: FailsToEncode) {}

fn init_decode(_: FailsToDecode) {}

#[test]
fn task_arguments_and_results_say_why_they_refuse() {
    let _g = serial();
    let _w = Watchdog::new("task_arguments_and_results_say_why_they_refuse", LIMIT);
    let pool = Pool::new(1).unwrap();
    // Arguments: refused here (nothing was submitted), or in the worker.
    let err = pool.apply(takes_encode, (FailsToEncode,)).unwrap_err();
    assert!(matches!(&err, Error::Arguments { message: m, .. } if m.contains(ENCODE_REFUSAL)), "{err}");
    let err = pool.map(takes_encode, [FailsToEncode]).unwrap_err();
    assert!(matches!(&err, Error::Arguments { message: m, .. } if m.contains(ENCODE_REFUSAL)), "{err}");
    let err = pool.apply(takes_decode, (FailsToDecode,)).unwrap_err();
    assert!(matches!(&err, Error::Arguments { message: m, .. } if m.contains(DECODE_REFUSAL)), "{err}");
    let err = pool.map(takes_decode, [FailsToDecode]).unwrap_err();
    assert!(matches!(&err, Error::Arguments { message: m, .. } if m.contains(DECODE_REFUSAL)), "{err}");
    // Results: refused in the worker, or here.
    let err = pool.apply(gives_encode, (1,)).unwrap_err();
    assert!(matches!(&err, Error::Return { message: m, .. } if m.contains(ENCODE_REFUSAL)), "{err}");
    let err = pool.apply(gives_decode, (1,)).unwrap_err();
    assert!(matches!(&err, Error::Return { message: m, .. } if m.contains(DECODE_REFUSAL)), "{err}");
    let err = pool.map(gives_decode, [1]).unwrap_err();
    assert!(matches!(&err, Error::Return { message: m, .. } if m.contains(DECODE_REFUSAL)), "{err}");
    // The pool still works.
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn initializer_arguments_say_why_they_refuse() {
    let _g = serial();
    let _w = Watchdog::new("initializer_arguments_say_why_they_refuse", LIMIT);
    let err = Pool::builder().processes(1).initializer(init_encode, (FailsToEncode,)).build().unwrap_err();
    assert!(matches!(&err, Error::Arguments { message: m, .. } if m.contains(ENCODE_REFUSAL)), "{err}");
    // Decoded in each worker: the pool cannot run tasks, and says why.
    let pool = Pool::builder().processes(1).initializer(init_decode, (FailsToDecode,)).build().unwrap();
    let err = pool.apply(square, (2,)).unwrap_err();
    assert!(matches!(&err, Error::Initializer(m) if m.contains(DECODE_REFUSAL)), "{err}");
    pool.close();
    pool.join().unwrap();
}

/// Serializes as nothing; panics when decoded.
struct PanicsOnDecode;

impl serde::Serialize for PanicsOnDecode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for PanicsOnDecode {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("PanicsOnDecode panics while decoding")
    }
}

fn init_panics(_: PanicsOnDecode) {}

#[test]
fn initializer_arguments_that_panic_while_decoding_fail_the_initializer() {
    let _g = serial();
    let _w = Watchdog::new("initializer_arguments_that_panic_while_decoding_fail_the_initializer", LIMIT);
    let pool = Pool::builder().processes(1).initializer(init_panics, (PanicsOnDecode,)).build().unwrap();
    let err = pool.apply(square, (2,)).unwrap_err();
    assert!(matches!(&err, Error::Initializer(m) if m.contains("PanicsOnDecode panics")), "{err}");
    pool.close();
    pool.join().unwrap();
}
