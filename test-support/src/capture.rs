//! A `tracing` subscriber that keeps every event as a line of text (`LEVEL target name=value ...`),
//! and a bounded wait for an event: for tests of events that arrive from other processes.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The events seen, as text.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SEEN_CHANGED: Condvar = Condvar::new();

/// Keeps every event as a line: its level, its target, then ` name=value` for each field.
#[derive(Debug, Clone, Copy)]
pub struct Capture;

impl Capture {
    /// Makes it this process' global subscriber (a no-op if one is set already: a test binary
    /// whose tests each call this shares one).
    pub fn install() {
        let _ = tracing::subscriber::set_global_default(Capture);
    }
}

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

/// Waits at most `limit` until a seen event contains every one of `parts`, and returns it.
///
/// # Panics
///
/// If none does in time (the message lists what was seen).
pub fn wait_for(parts: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(line) = seen.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no event with {parts:?}; seen: {:#?}", *seen);
        seen = SEEN_CHANGED.wait_timeout(seen, left).unwrap_or_else(PoisonError::into_inner).0;
    }
}

/// Whether any event seen so far contains `part`.
pub fn seen_any(part: &str) -> bool {
    SEEN.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|l| l.contains(part))
}
