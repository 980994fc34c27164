//! A `tracing` event logged in a pool worker reaches the parent's subscriber, with the worker's
//! name and pid (proc-core's `forward_child_events`).

#![allow(clippy::unwrap_used)]

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proc_pool::Pool;
use test_support::{serial, Watchdog};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The events this process' subscriber saw, as text.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SEEN_CHANGED: Condvar = Condvar::new();

struct Capture;

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        struct Text(String);
        impl Visit for Text {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut text = Text(format!("{} {}", event.metadata().level(), event.metadata().target()));
        event.record(&mut text);
        SEEN.lock().unwrap_or_else(PoisonError::into_inner).push(text.0);
        SEEN_CHANGED.notify_all();
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// A task that logs, and says which process ran it.
fn logged_square(x: u64) -> (u64, u32) {
    tracing::warn!(x, "squaring in a worker");
    (x * x, std::process::id())
}

#[test]
fn an_event_logged_in_a_pool_worker_reaches_the_parent() {
    let _s = serial();
    let _w = Watchdog::new("pool_logging", Duration::from_secs(60));
    tracing::subscriber::set_global_default(Capture).unwrap();
    proc_core::forward_child_events(Level::INFO).unwrap();
    let pool = Pool::new(2).unwrap();
    let (square, worker) = pool.apply(logged_square, (7,)).unwrap();
    assert_eq!(square, 49);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let line = loop {
        let found = seen.iter().find(|l| l.contains("squaring in a worker") && l.contains("x=7"));
        if let Some(line) = found {
            break line.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the worker's event never arrived; seen: {:#?}", *seen);
        seen = SEEN_CHANGED.wait_timeout(seen, left).unwrap_or_else(PoisonError::into_inner).0;
    };
    drop(seen);
    assert!(line.starts_with("WARN multiproc::child"), "{line}");
    assert!(line.contains(&format!("pid={worker}")), "{line}");
    assert!(line.contains(" child=PoolWorker-"), "the worker's name: {line}");
    pool.close();
    pool.join().unwrap();
}
