//! Pool results as futures and `IMap` as a stream (feature `tokio`), under tokio's current-thread
//! and multi-thread runtimes; a dropped future takes nothing.

#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use proc_pool::{Error, Pool};
use test_support::{runtimes, serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}

fn fails_on_3(x: u64) -> u64 {
    assert_ne!(x, 3, "three");
    x
}

/// Waits for a byte from the test's socket at `path`, then returns `x`.
fn gated(path: String, x: u64) -> u64 {
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    let mut b = [0u8; 1];
    std::io::Read::read_exact(&mut s, &mut b).unwrap();
    x
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[test]
fn results_and_streams_arrive_without_blocking_the_runtime() {
    let _s = serial();
    let _w = Watchdog::new("pool_async", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let pool = Pool::new(2).unwrap();
            let r = pool.apply_async(square, (7,)).unwrap();
            assert_eq!(r.get_async().await.unwrap(), 49);
            assert!(matches!(r.get_async().await, Err(Error::Taken)));
            for ordered in [true, false] {
                let mut s =
                    if ordered { pool.imap(square, 0..50u64) } else { pool.imap_unordered(square, 0..50u64) };
                let mut got = Vec::new();
                while let Some(r) = next(&mut s).await {
                    got.push(r.unwrap());
                }
                if !ordered {
                    got.sort_unstable();
                }
                assert_eq!(got, (0..50).map(|x| x * x).collect::<Vec<_>>(), "ordered: {ordered}");
            }
            // A failed task's error comes in its place, and the stream goes on.
            let mut s = pool.imap(fails_on_3, 1..=4u64);
            let mut outcomes = Vec::new();
            while let Some(r) = next(&mut s).await {
                outcomes.push(r.map_err(|e| matches!(e, Error::Panicked { .. })));
            }
            assert_eq!(outcomes, [Ok(1), Ok(2), Err(true), Ok(4)]);
            drop(s);
            pool.close();
            pool.join().unwrap();
        });
    }
}

#[test]
fn a_dropped_get_async_takes_nothing() {
    let _s = serial();
    let _w = Watchdog::new("pool_async_dropped", LIMIT);
    for rt in runtimes() {
        rt.block_on(async {
            let pool = Pool::new(1).unwrap();
            let dir = std::env::temp_dir().join(format!("pool-async-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("gate");
            let _ = std::fs::remove_file(&path);
            let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            let r = pool.apply_async(gated, (path.to_string_lossy().into_owned(), 11)).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(20), r.get_async()).await;
            assert!(early.is_err(), "the task waits for its gate");
            let (mut gate, _) = listener.accept().unwrap();
            std::io::Write::write_all(&mut gate, b"!").unwrap();
            assert_eq!(r.get_async().await.unwrap(), 11);
            std::fs::remove_dir_all(&dir).unwrap();
        });
    }
}
