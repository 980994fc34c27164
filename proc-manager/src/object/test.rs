//! Unit tests of the dispatch of calls: every kind of object answers a method it does not have
//! with `MethodNotAllowed`, whether the method would wait or not.

use std::sync::Arc;

use super::{Abort, Object, OrderedMap, State};
use crate::wire::{Bytes, Kind, Method, Owner, Response, WireError};

/// A call that is never aborted.
struct Never;

impl Abort for Never {
    fn aborted(&self) -> bool {
        false
    }
}

fn owner() -> Owner {
    Owner { session: 1, thread: 1 }
}

fn lock_object() -> Arc<Object> {
    Arc::new(Object::new(Kind::Lock, State::Lock { owner: None, count: 0, reentrant: false }))
}

/// One object of every built-in kind, with a method of another kind.
fn objects() -> Vec<(Kind, State, Method)> {
    vec![
        (Kind::Dict, State::Dict(OrderedMap::default()), Method::ListAppend(Bytes::from(vec![1]))),
        (Kind::List, State::List { items: Vec::new(), version: 0 }, Method::DictKeys),
        (Kind::Namespace, State::Namespace(Default::default()), Method::Len),
        (Kind::Value, State::Value(vec![1]), Method::Clear),
        (Kind::Array, State::Array(vec![vec![1]]), Method::ValueGet),
        (
            Kind::Queue { maxsize: 0, joinable: false },
            State::Queue { items: Default::default(), maxsize: 0, unfinished: 0, joinable: false },
            Method::TaskDone,
        ),
        (Kind::Lock, State::Lock { owner: None, count: 0, reentrant: false }, Method::SemValue),
        (
            Kind::Semaphore { value: 1, bounded: false },
            State::Semaphore { value: 1, initial: 1, bounded: false },
            Method::EventSet,
        ),
        (Kind::Event, State::Event(false), Method::QueueSize),
        (
            Kind::Condition { lock: 1 },
            State::Condition {
                lock: lock_object(),
                next: 0,
                waiting: Default::default(),
                notified: Default::default(),
            },
            Method::BarrierAbort,
        ),
        (
            Kind::Barrier { parties: 2 },
            State::Barrier {
                parties: 2,
                waiting: 0,
                generation: 0,
                broken: false,
                resets: Default::default(),
            },
            Method::Release { owner: owner() },
        ),
    ]
}

fn refused(response: &Response) -> bool {
    matches!(response, Response::Err(WireError::MethodNotAllowed(_)))
}

#[test]
fn every_kind_refuses_a_method_of_another_kind() {
    for (kind, state, method) in objects() {
        let object = Object::new(kind.clone(), state);
        let (response, moved, released) = object.call(method, Vec::new(), &Never);
        assert!(refused(&response), "{kind:?}: {response:?}");
        assert!(moved.is_empty() && released.is_empty(), "{kind:?}");
    }
}

#[test]
fn every_kind_refuses_a_waiting_method_it_does_not_have() {
    let waiting = || {
        [
            Method::QueueGet { block: false, timeout: None },
            Method::Acquire { owner: owner(), block: false, timeout: None },
            Method::EventWait { timeout: Some(0) },
            Method::CondWait { owner: owner(), timeout: Some(0) },
            Method::BarrierWait { timeout: Some(0) },
        ]
    };
    for (kind, state, _) in objects() {
        let object = Object::new(kind.clone(), state);
        for method in waiting() {
            let fits = matches!(
                (&kind, &method),
                (Kind::Queue { .. }, Method::QueueGet { .. })
                    | (Kind::Lock | Kind::Semaphore { .. }, Method::Acquire { .. })
                    | (Kind::Event, Method::EventWait { .. })
                    | (Kind::Condition { .. }, Method::CondWait { .. })
                    | (Kind::Barrier { .. }, Method::BarrierWait { .. })
            );
            if fits {
                continue;
            }
            let name = format!("{method:?}");
            let (response, _, _) = object.call(method, Vec::new(), &Never);
            assert!(refused(&response), "{kind:?} {name}: {response:?}");
        }
    }
}

#[test]
fn a_refusal_names_the_method_in_at_most_60_characters() {
    let mut state = State::Value(Vec::new());
    let (response, changed) = Object::call_now(
        &mut state,
        Method::DictUpdate(vec![(Bytes::from(vec![0; 1000]), Bytes::from(vec![0; 1000]))]),
    );
    assert!(!changed);
    match response {
        Response::Err(WireError::MethodNotAllowed(name)) => {
            assert!(name.starts_with("DictUpdate"), "{name}");
            assert!(name.chars().count() <= 61, "{name}");
        }
        r => panic!("unexpected answer {r:?}"),
    }
}

#[test]
fn release_owned_releases_only_for_the_owner_that_holds_the_lock() {
    let other = Owner { session: 1, thread: 2 };
    for reentrant in [false, true] {
        let lock = Object::new(Kind::Lock, State::Lock { owner: None, count: 0, reentrant });
        let call = |method| lock.call(method, Vec::new(), &Never).0;
        // Not held: refused.
        assert!(matches!(call(Method::ReleaseOwned { owner: owner() }), Response::Err(WireError::NotHeld)));
        assert!(matches!(
            call(Method::Acquire { owner: owner(), block: false, timeout: None }),
            Response::Bool(true)
        ));
        // Held by another owner: refused, and still held (a plain `Release` would let it go).
        assert!(matches!(call(Method::ReleaseOwned { owner: other }), Response::Err(WireError::NotHeld)));
        assert!(matches!(
            call(Method::Acquire { owner: other, block: false, timeout: None }),
            Response::Bool(false)
        ));
        assert!(matches!(call(Method::ReleaseOwned { owner: owner() }), Response::Ok));
        assert!(matches!(
            call(Method::Acquire { owner: other, block: false, timeout: None }),
            Response::Bool(true)
        ));
    }
}

#[test]
fn queue_unget_puts_a_value_back_at_the_front_even_when_full() {
    let queue = Object::new(
        Kind::Queue { maxsize: 1, joinable: false },
        State::Queue { items: Default::default(), maxsize: 1, unfinished: 0, joinable: false },
    );
    let call = |method| queue.call(method, Vec::new(), &Never).0;
    let put = |v: u8| Method::QueuePut { value: Bytes::from(vec![v]), block: false, timeout: None };
    assert!(matches!(call(put(2)), Response::Ok));
    assert!(matches!(call(Method::QueueUnget(Bytes::from(vec![1]))), Response::Ok));
    assert!(matches!(call(Method::QueueSize), Response::Count(2)));
    for v in [1u8, 2] {
        match call(Method::QueueGet { block: false, timeout: None }) {
            Response::Value(b) => assert_eq!(b.as_slice(), [v]),
            r => panic!("unexpected answer {r:?}"),
        }
    }
}
