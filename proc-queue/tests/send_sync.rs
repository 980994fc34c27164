//! Which public types are `Send` and `Sync`: a change here is a breaking change, so it is pinned.

use std::rc::Rc;

use proc_queue::{Connection, Error};

fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types() {
    // A connection holds no message: it is shared between threads whatever it carries.
    send_sync::<Connection<u8>>();
    send_sync::<Connection<Rc<u8>>>();
    send_sync::<Connection<std::cell::Cell<u8>>>();
    send_sync::<Error>();
}
