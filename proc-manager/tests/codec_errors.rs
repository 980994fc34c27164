//! Serialization errors keep their cause: a value that refuses to serialize or deserialize says
//! why through manager calls (built-in proxies and registered types), and so does a handle stored
//! in a manager's object.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_manager::{Error, Manager, Shared};
use serde::{Deserialize, Serialize};
use test_support::{serial, FailsToDecode, FailsToEncode, Watchdog, DECODE_REFUSAL, ENCODE_REFUSAL};

const LIMIT: Duration = Duration::from_secs(120);

/// A registered type whose requests, responses or initial value can refuse.
struct Refuser;

#[derive(Debug, Serialize, Deserialize)]
enum RefuserOp {
    Fine,
    Decode(FailsToDecode),
    Encode,
}

impl Shared for Refuser {
    type Init = u8;
    type Request = RefuserOp;
    type Response = Option<FailsToEncode>;
    fn new(_: u8) -> Self {
        Refuser
    }
    fn handle(&mut self, op: RefuserOp) -> Option<FailsToEncode> {
        matches!(op, RefuserOp::Encode).then_some(FailsToEncode)
    }
}

/// A registered type whose initial value refuses to deserialize on the server.
struct RefusesInit;

impl Shared for RefusesInit {
    type Init = FailsToDecode;
    type Request = ();
    type Response = ();
    fn new(_: FailsToDecode) -> Self {
        RefusesInit
    }
    fn handle(&mut self, (): ()) {}
}

#[test]
fn built_in_proxies_say_why_a_value_refuses() {
    let _g = serial();
    let _w = Watchdog::new("built_in_proxies_say_why_a_value_refuses", LIMIT);
    let m = Manager::start().unwrap();
    let d = m.dict::<String, FailsToEncode>().unwrap();
    let err = d.insert("k".into(), FailsToEncode).unwrap_err();
    assert!(matches!(&err, Error::Serialize(s) if s.to_string().contains(ENCODE_REFUSAL)), "{err}");
    let d = m.dict::<String, FailsToDecode>().unwrap();
    d.insert("k".into(), FailsToDecode).unwrap();
    let err = d.get("k").unwrap_err();
    assert!(matches!(&err, Error::Serialize(s) if s.to_string().contains(DECODE_REFUSAL)), "{err}");
    let err = m.value(FailsToEncode).unwrap_err();
    assert!(matches!(&err, Error::Serialize(s) if s.to_string().contains(ENCODE_REFUSAL)), "{err}");
    let q = m.queue::<FailsToDecode>(0).unwrap();
    q.put(FailsToDecode).unwrap();
    let err = q.get().unwrap_err();
    assert!(matches!(&err, Error::Serialize(s) if s.to_string().contains(DECODE_REFUSAL)), "{err}");
    // A handle is not a value a manager can store, and it says why.
    let d = m.dict::<String, proc_sync::Lock>().unwrap();
    let err = d.insert("lock".into(), proc_sync::Lock::new().unwrap()).unwrap_err();
    assert!(
        matches!(&err, Error::Serialize(s) if s.to_string().contains("a handle can only be sent to a child as part of its start arguments")),
        "{err}"
    );
    m.shutdown().unwrap();
}

#[test]
fn registered_types_say_why_a_value_refuses() {
    let _g = serial();
    let _w = Watchdog::new("registered_types_say_why_a_value_refuses", LIMIT);
    let m = Manager::builder()
        .register::<Refuser>("Refuser")
        .register::<RefusesInit>("RefusesInit")
        .start()
        .unwrap();
    let r = m.create_object::<Refuser>("Refuser", 0).unwrap();
    assert!(r.call(&RefuserOp::Fine).unwrap().is_none());
    // The request is refused on the server, the response there too.
    let err = r.call(&RefuserOp::Decode(FailsToDecode)).unwrap_err();
    assert!(matches!(&err, Error::MethodNotAllowed(s) if s.contains(DECODE_REFUSAL)), "{err}");
    let err = r.call(&RefuserOp::Encode).unwrap_err();
    assert!(matches!(&err, Error::Remote(s) if s.contains(ENCODE_REFUSAL)), "{err}");
    let err = m.create_object::<RefusesInit>("RefusesInit", FailsToDecode).unwrap_err();
    assert!(matches!(&err, Error::Remote(s) if s.contains(DECODE_REFUSAL)), "{err}");
    assert!(r.call(&RefuserOp::Fine).unwrap().is_none());
    m.shutdown().unwrap();
}
