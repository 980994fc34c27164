//! The child init function runs in every child of every start method (and its children), and
//! children's `tracing` events reach the parent's subscriber with the child's name and pid.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{methods, serial, Watchdog};
use proc_core::{get_context, Process};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const LIMIT: Duration = Duration::from_secs(120);

/// The pid of the process `init` last ran in (a plain `fork` copies it into the child).
static INIT_PID: AtomicU32 = AtomicU32::new(0);

fn init() {
    INIT_PID.store(std::process::id(), Ordering::SeqCst);
}

/// Whether `init` ran in this process.
fn init_ran_here() -> bool {
    INIT_PID.load(Ordering::SeqCst) == std::process::id()
}

fn panicking_init() {
    panic!("init refused");
}

/// Whether init ran in this child, and in a grandchild started with `methods()[method]`.
fn inits_here_and_below(method: usize) -> (bool, bool) {
    let below = get_context(methods()[method]).process(init_ran_here, ()).start().unwrap();
    (init_ran_here(), below.join().unwrap())
}

#[test]
fn the_init_function_runs_first_in_every_child_and_grandchild() {
    let _s = serial();
    let _w = Watchdog::new("child_init", LIMIT);
    proc_core::set_child_init(Some(init));
    for (i, m) in methods().into_iter().enumerate() {
        let p = get_context(m).process(inits_here_and_below, (i,)).start().unwrap();
        assert_eq!(p.join().unwrap(), (true, true), "{m:?}");
    }
    assert!(!init_ran_here(), "init does not run in the parent");
    // A panic in it is the child's panic.
    proc_core::set_child_init(Some(panicking_init));
    for m in methods() {
        let err = get_context(m).process(|| 1, ()).start().unwrap().join().unwrap_err();
        assert_eq!(err.panic_message(), Some("init refused"), "{m:?}: {err}");
    }
    proc_core::set_child_init(None);
    for m in methods() {
        let p = get_context(m).process(init_ran_here, ()).start().unwrap();
        assert!(!p.join().unwrap(), "{m:?}: no init any more");
    }
}

/// The events this process' subscriber saw: `level target fields` lines.
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

/// Waits (bounded) until a seen event contains every one of `parts`; returns it.
fn wait_for(parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
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

/// Logs at every level, then says its pid.
fn log_everything(tag: String) -> u32 {
    tracing::trace!(%tag, "a trace event");
    tracing::debug!(%tag, "a debug event");
    tracing::info!(%tag, answer = 42, "an info event");
    tracing::error!(target: "my_app::db", %tag, "an error event");
    std::process::id()
}

#[test]
fn children_events_reach_the_parent_with_their_name_and_pid() {
    let _s = serial();
    let _w = Watchdog::new("child_events", LIMIT);
    let _ = tracing::subscriber::set_global_default(Capture);
    proc_core::forward_child_events(Level::INFO).unwrap();
    for m in methods() {
        // Bracketed, so that no tag is a prefix of another ("Fork" of "ForkServer").
        let tag = format!("[{m:?}]");
        let p = get_context(m)
            .process(log_everything, (tag.clone(),))
            .name(format!("logger-{tag}"))
            .start()
            .unwrap();
        let pid = p.join().unwrap();
        let info = wait_for(&["INFO multiproc::child", "an info event", &format!("tag={tag}")]);
        assert!(info.contains(&format!("child=logger-{tag}")), "{info}");
        assert!(info.contains(&format!("pid={pid}")), "{info}");
        assert!(info.contains("answer=42"), "{info}");
        let error = wait_for(&["ERROR multiproc::child", "an error event", &format!("tag={tag}")]);
        assert!(error.contains("origin=my_app::db"), "{error}");
        // Both came after the child's last event was sent, in order: the debug and trace events,
        // sent before them, would be there if they had been forwarded.
        let seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            !seen.iter().any(|l| l.contains("a debug event") || l.contains("a trace event")),
            "{seen:#?}"
        );
    }
}

/// A child that starts a child: the grandchild's events reach this process too.
fn log_in_a_grandchild() -> u32 {
    let p = Process::new(log_everything, ("grandchild".to_string(),)).name("grandchild").start().unwrap();
    p.join().unwrap()
}

#[test]
fn grandchildren_events_reach_the_first_parent() {
    let _s = serial();
    let _w = Watchdog::new("grandchild_events", LIMIT);
    let _ = tracing::subscriber::set_global_default(Capture);
    proc_core::forward_child_events(Level::INFO).unwrap();
    let pid = Process::new(log_in_a_grandchild, ()).start().unwrap().join().unwrap();
    let line = wait_for(&["an info event", "child=grandchild"]);
    assert!(line.contains(&format!("pid={pid}")), "{line}");
}
