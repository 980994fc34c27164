//! Serialization errors keep their cause: a value that refuses to serialize or deserialize says
//! why through `Queue` put and get and `Connection` send and recv, and so does a handle put where
//! handles cannot go.

#![allow(clippy::unwrap_used)]

use proc_queue::{pipe, Error, GetError, JoinableQueue, PutError, Queue, SimpleQueue};
use test_support::{error_chain, FailsToDecode, FailsToEncode, DECODE_REFUSAL, ENCODE_REFUSAL};

const OUTSIDE: &str = "a handle can only be sent to a child as part of its start arguments";

#[test]
fn queue_put_says_why_a_value_refuses_to_serialize() {
    let q = Queue::<FailsToEncode>::new(4).unwrap();
    let e = q.put(FailsToEncode).unwrap_err();
    assert!(matches!(e, PutError::Serialize { .. }), "{e:?}");
    assert!(e.to_string().contains(ENCODE_REFUSAL), "{e}");
    // A large one, which would go to a segment of its own, too.
    let q = Queue::<(Vec<u8>, FailsToEncode)>::unbounded().unwrap();
    let e = q.put((vec![7; 1 << 20], FailsToEncode)).unwrap_err();
    assert!(e.to_string().contains(ENCODE_REFUSAL), "{e}");
    let e = SimpleQueue::<FailsToEncode>::new().unwrap().put(FailsToEncode).unwrap_err();
    assert!(e.to_string().contains(ENCODE_REFUSAL), "{e}");
    let e = JoinableQueue::<FailsToEncode>::new(0).unwrap().put(FailsToEncode).unwrap_err();
    assert!(e.to_string().contains(ENCODE_REFUSAL), "{e}");
}

#[test]
fn queue_get_says_why_a_value_refuses_to_deserialize() {
    let q = Queue::<FailsToDecode>::new(4).unwrap();
    q.put(FailsToDecode).unwrap();
    let e = q.get().unwrap_err();
    assert!(matches!(e, GetError::Deserialize { .. }), "{e:?}");
    assert!(e.to_string().contains(DECODE_REFUSAL), "{e}");
    // A large one, read from a segment of its own.
    let q = Queue::<(Vec<u8>, FailsToDecode)>::unbounded().unwrap();
    q.put((vec![7; 1 << 20], FailsToDecode)).unwrap();
    let e = q.get().unwrap_err();
    assert!(e.to_string().contains(DECODE_REFUSAL), "{e}");
    let q = SimpleQueue::<FailsToDecode>::new().unwrap();
    q.put(FailsToDecode).unwrap();
    assert!(q.get().unwrap_err().to_string().contains(DECODE_REFUSAL));
}

#[test]
fn a_handle_put_in_a_queue_says_why_it_cannot_go() {
    let q = Queue::<proc_sync::Lock>::new(4).unwrap();
    let e = q.put(proc_sync::Lock::new().unwrap()).unwrap_err();
    assert!(e.to_string().contains(OUTSIDE), "{e}");
    let q = Queue::<Queue<u8>>::new(4).unwrap();
    let e = q.put(Queue::new(1).unwrap()).unwrap_err();
    assert!(e.to_string().contains(OUTSIDE), "{e}");
}

#[test]
fn connection_send_says_why_a_value_refuses_to_serialize() {
    let (a, _b) = pipe::<(u8, FailsToEncode)>().unwrap();
    let e = a.send(&(1, FailsToEncode)).unwrap_err();
    assert!(matches!(e, Error::Serialize(_)), "{e:?}");
    let chain = error_chain(&e);
    assert!(chain.contains(ENCODE_REFUSAL), "{chain}");
}

#[test]
fn connection_recv_says_why_a_value_refuses_to_deserialize() {
    let (a, b) = pipe::<(u8, FailsToDecode)>().unwrap();
    a.send(&(1, FailsToDecode)).unwrap();
    let e = b.recv().unwrap_err();
    assert!(matches!(e, Error::Deserialize(_)), "{e:?}");
    let chain = error_chain(&e);
    assert!(chain.contains(DECODE_REFUSAL), "{chain}");
}
