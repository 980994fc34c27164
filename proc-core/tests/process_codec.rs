//! Serialization errors keep their cause: a value that refuses to serialize or deserialize, as a
//! process' arguments or return value, says why, under every start method.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{methods, serial, Watchdog};
use proc_core::{get_context, StartMethod};
use test_support::{error_chain, FailsToDecode, FailsToEncode, DECODE_REFUSAL, ENCODE_REFUSAL};

const LIMIT: Duration = Duration::from_secs(120);

fn take_encode(_: FailsToEncode) {}

fn take_decode(_: FailsToDecode) {}

fn give_encode() -> FailsToEncode {
    FailsToEncode
}

fn give_decode() -> FailsToDecode {
    FailsToDecode
}

#[test]
fn arguments_that_refuse_to_serialize_say_why() {
    let _s = serial();
    let _w = Watchdog::new("arguments_that_refuse_to_serialize_say_why", LIMIT);
    for m in methods().into_iter().filter(|m| *m != StartMethod::Fork) {
        let e = get_context(m).process(take_encode, (FailsToEncode,)).start().unwrap_err();
        assert!(e.is_serialization(), "{m}: {e}");
        let chain = error_chain(&e);
        assert!(
            chain.contains("cannot serialize arguments") && chain.contains(ENCODE_REFUSAL),
            "{m}: {chain}"
        );
    }
}

#[test]
fn arguments_that_refuse_to_deserialize_say_why() {
    let _s = serial();
    let _w = Watchdog::new("arguments_that_refuse_to_deserialize_say_why", LIMIT);
    // Under fork the child gets the arguments in memory, not as bytes.
    for m in methods().into_iter().filter(|m| *m != StartMethod::Fork) {
        let e = get_context(m).process(take_decode, (FailsToDecode,)).start().unwrap().join().unwrap_err();
        let chain = error_chain(&e);
        assert!(chain.contains("arguments") && chain.contains(DECODE_REFUSAL), "{m}: {chain}");
    }
}

#[test]
fn return_values_that_refuse_to_serialize_say_why() {
    let _s = serial();
    let _w = Watchdog::new("return_values_that_refuse_to_serialize_say_why", LIMIT);
    for m in methods() {
        let e = get_context(m).process(give_encode, ()).start().unwrap().join().unwrap_err();
        let chain = error_chain(&e);
        assert!(chain.contains("return value") && chain.contains(ENCODE_REFUSAL), "{m}: {chain}");
    }
}

#[test]
fn return_values_that_refuse_to_deserialize_say_why() {
    let _s = serial();
    let _w = Watchdog::new("return_values_that_refuse_to_deserialize_say_why", LIMIT);
    for m in methods() {
        let e = get_context(m).process(give_decode, ()).start().unwrap().join().unwrap_err();
        assert!(e.is_serialization(), "{m}: {e}");
        let chain = error_chain(&e);
        assert!(
            chain.contains("cannot deserialize return value") && chain.contains(DECODE_REFUSAL),
            "{m}: {chain}"
        );
    }
}

#[test]
fn a_handle_serialized_outside_a_start_says_why() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let fd = proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(file));
    let e = proc_core::codec::to_vec(&fd).unwrap_err();
    assert!(
        e.to_string().starts_with("a handle can only be sent to a child as part of its start arguments"),
        "{e}"
    );
}
