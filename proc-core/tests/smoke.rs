//! Smoke test.
use proc_core::*;
use std::time::Duration;

fn square(x: u64) -> u64 { x * x }
fn boom() { panic!("boom here") }
fn sleeper() { std::thread::sleep(Duration::from_secs(100)) }

#[test]
fn smoke() {
    for m in get_all_start_methods() {
        eprintln!("method {m}");
        let p = get_context(m).process(square, (7u64,)).start().unwrap();
        assert_eq!(p.join().unwrap(), 49);
        assert_eq!(p.exitcode(), Some(0));
        let p = get_context(m).process(boom, ()).start().unwrap();
        let e = p.join().unwrap_err();
        eprintln!("{e}");
        assert_eq!(p.exitcode(), Some(1));
        let p = get_context(m).process(sleeper, ()).start().unwrap();
        assert!(p.join_timeout(Duration::ZERO).unwrap().is_none());
        p.terminate().unwrap();
        let e = p.join().unwrap_err();
        eprintln!("{e}");
        assert_eq!(p.exitcode(), Some(-15));
        let big = vec![7u8; 16 << 20];
        let p = get_context(m).process(|v: Vec<u8>| v, (big.clone(),)).start().unwrap();
        assert_eq!(p.join().unwrap(), big);
    }
}
