//! Python's `with v.get_lock(): v.value += 1`, written with the value's own lock held: it works
//! for `Value` and `Array`, in the parent and in a child, and the lock still excludes the others.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::{get_all_start_methods, get_context};
use proc_sync::{Array, Event, Lock, Value};
use test_support::{serial, spawn_until_asleep, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Python's idiom on a value and on an array element, `n` times each.
fn idiom(v: &Value<u64>, a: &Array<u64>, n: u64) {
    for _ in 0..n {
        {
            let _g = v.get_lock().acquire().unwrap();
            v.set(v.get() + 1);
        }
        let _g = a.get_lock().acquire().unwrap();
        assert!(a.set(0, a.get(0).unwrap() + 1));
        a.with(|s| s[1] += 1);
    }
}

#[test]
fn the_python_idiom_works_in_the_parent() {
    let _w = Watchdog::new("the_python_idiom_works_in_the_parent", LIMIT);
    let (v, a) = (Value::new(0u64).unwrap(), Array::<u64>::zeroed(2).unwrap());
    idiom(&v, &a, 10);
    assert_eq!((v.get(), a.to_vec()), (10, vec![10, 10]));
    // `update` works under the held lock too, and stays the one-step form without it.
    {
        let _g = v.get_lock().acquire().unwrap();
        v.update(|x| *x += 1);
    }
    v.update(|x| *x += 1);
    assert_eq!(v.get(), 12);
    assert!(!v.get_lock().locked() && !a.get_lock().locked());

    // A value and an array sharing one lock: both work while it is held.
    let lock = Lock::new().unwrap();
    let (v, a) =
        (Value::with_lock(1u8, lock.clone()).unwrap(), Array::<u8>::with_lock(1, lock.clone()).unwrap());
    {
        let _g = lock.acquire().unwrap();
        a.set(0, v.get() + 1);
        v.set(a.get(0).unwrap() + 1);
    }
    assert_eq!((v.get(), a.get(0)), (3, Some(2)));
    assert!(!lock.locked());
}

#[test]
fn a_nested_with_on_the_same_array_panics_instead_of_aliasing() {
    let _w = Watchdog::new("a_nested_with_on_the_same_array_panics_instead_of_aliasing", LIMIT);
    let a = Array::<u32>::from_slice(&[1, 2]).unwrap();
    let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.with(|_| a.get(0))));
    assert!(nested.is_err(), "an element was read while a slice of it was borrowed");
    let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.with(|_| a.with(|_| ()))));
    assert!(nested.is_err(), "a second slice of the same elements was handed out");
    // The panic released the lock and the mark: the array works as before.
    assert!(!a.get_lock().locked());
    assert_eq!(a.to_vec(), [1, 2]);
    // Two different arrays (even under one lock) may nest.
    let lock = Lock::new().unwrap();
    let (b, c) =
        (Array::<u32>::with_lock(1, lock.clone()).unwrap(), Array::<u32>::with_lock(1, lock).unwrap());
    b.with(|sb| c.with(|sc| sc[0] = sb[0] + 5));
    assert_eq!(c.get(0), Some(5));
}

#[test]
fn the_held_lock_still_excludes_other_threads() {
    let _s = serial();
    let _w = Watchdog::new("the_held_lock_still_excludes_other_threads", LIMIT);
    let v = Value::new(0u64).unwrap();
    let g = v.get_lock().acquire().unwrap();
    v.set(v.get() + 1);
    let other = v.clone();
    // Another thread of this process does not count as the holder: it waits for the lock.
    let waiter = spawn_until_asleep(move || other.update(|x| std::mem::replace(x, *x + 10)));
    v.set(v.get() + 1);
    drop(g);
    // It ran after the holder's last write, whatever the scheduling.
    assert_eq!(waiter.join().unwrap(), 2);
    assert_eq!(v.get(), 12);
}

/// The child: holds both locks, does the idiom `n` times, says so, waits for `go`, does it `n`
/// more times, then releases.
fn idiom_in_child(v: Value<u64>, a: Array<u64>, held: Event, go: Event, n: u64) {
    let _gv = v.get_lock().acquire().unwrap();
    let _ga = a.get_lock().acquire().unwrap();
    for _ in 0..n {
        v.set(v.get() + 1);
        assert!(a.set(0, a.get(0).unwrap() + 1));
    }
    held.set();
    go.wait();
    for _ in 0..n {
        v.set(v.get() + 1);
        a.with(|s| s[0] += 1);
    }
}

/// Sets its event when dropped, also while a failed assertion unwinds.
struct SetOnDrop(Event);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[test]
fn the_python_idiom_works_in_a_child_and_excludes_the_parent() {
    let _s = serial();
    let _w = Watchdog::new("the_python_idiom_works_in_a_child_and_excludes_the_parent", LIMIT);
    let n = 50;
    for m in get_all_start_methods() {
        let (v, a) = (Value::new(0u64).unwrap(), Array::<u64>::zeroed(2).unwrap());
        let (held, go) = (Event::new().unwrap(), Event::new().unwrap());
        let p = get_context(m)
            .process(idiom_in_child, (v.clone(), a.clone(), held.clone(), go.clone(), n))
            .start()
            .unwrap();
        held.wait();
        let release = SetOnDrop(go);
        assert!(v.get_lock().try_acquire().unwrap().is_none(), "{m}");
        assert!(a.get_lock().try_acquire().unwrap().is_none(), "{m}");
        // The parent's accessors wait for the child's locks: they see only its final values.
        let (v2, a2) = (v.clone(), a.clone());
        let reader = spawn_until_asleep(move || (v2.get(), a2.get(0)));
        drop(release);
        assert_eq!(reader.join().unwrap(), (2 * n, Some(2 * n)), "{m}");
        p.join().unwrap();
        idiom(&v, &a, 1);
        assert_eq!((v.get(), a.get(0)), (2 * n + 1, Some(2 * n + 1)), "{m}");
    }
}
