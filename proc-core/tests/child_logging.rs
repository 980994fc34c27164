//! The child init function runs in every child of every start method (and its children), and
//! children's `tracing` events reach the parent's subscriber with the child's name and pid.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{methods, serial, Watchdog};
use proc_core::{get_context, Process};
use test_support::capture::{seen_any, wait_for, Capture};
use tracing::Level;

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
    Capture::install();
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
        let info = wait_for(
            &["INFO multiproc::child", "an info event", &format!("tag={tag}")],
            Duration::from_secs(30),
        );
        assert!(info.contains(&format!("child=logger-{tag}")), "{info}");
        assert!(info.contains(&format!("pid={pid}")), "{info}");
        assert!(info.contains("answer=42"), "{info}");
        let error = wait_for(
            &["ERROR multiproc::child", "an error event", &format!("tag={tag}")],
            Duration::from_secs(30),
        );
        assert!(error.contains("origin=my_app::db"), "{error}");
        // Both came after the child's last event was sent, in order: the debug and trace events,
        // sent before them, would be there if they had been forwarded.
        assert!(
            !seen_any("a debug event") && !seen_any("a trace event"),
            "debug or trace events were forwarded"
        );
    }
}

/// Writes its tag to the descriptor it was given, logs it, and says its pid.
fn log_and_write(out: proc_core::handle::Fd, tag: String) -> u32 {
    let mut out = std::fs::File::from(out.into_owned());
    std::io::Write::write_all(&mut out, tag.as_bytes()).unwrap();
    tracing::info!(%tag, "a handle came");
    std::process::id()
}

/// A child's descriptors come as one list: the arguments', then the event channel's (and, for a
/// spawned child, its alive pipe's). Under every start method, each reaches its place: the argument
/// is the socket given, and the events reach this process.
#[test]
fn argument_descriptors_and_the_event_channel_each_reach_their_place() {
    let _s = serial();
    let _w = Watchdog::new("argument_descriptors_and_events", LIMIT);
    Capture::install();
    proc_core::forward_child_events(Level::INFO).unwrap();
    for m in methods() {
        let tag = format!("<{m:?}>");
        let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let out = proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(theirs));
        let pid = get_context(m).process(log_and_write, (out, tag.clone())).start().unwrap().join().unwrap();
        let mut got = vec![0u8; tag.len()];
        std::io::Read::read_exact(&mut mine, &mut got).unwrap();
        assert_eq!(got, tag.as_bytes(), "what came on the argument's socket");
        let line = wait_for(&["a handle came", &format!("tag={tag}")], Duration::from_secs(30));
        assert!(line.contains(&format!("pid={pid}")), "{line}");
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
    Capture::install();
    proc_core::forward_child_events(Level::INFO).unwrap();
    let pid = Process::new(log_in_a_grandchild, ()).start().unwrap().join().unwrap();
    let line = wait_for(&["an info event", "child=grandchild"], Duration::from_secs(30));
    assert!(line.contains(&format!("pid={pid}")), "{line}");
}

/// A child made by a plain `fork` from a process that forwards events, then orphaned: it logs on
/// (more than a socket buffer holds) without hanging, and says so on `done`.
fn log_when_orphaned(done: proc_core::handle::Fd, parent: u32) {
    // Wait (bounded) until the parent is gone. Its pid comes as an argument: read here, it could
    // already be the pid of whoever adopted this child, and the wait would run to its limit.
    let limit = std::time::Instant::now() + Duration::from_secs(30);
    while proc_os::getppid() == parent && std::time::Instant::now() < limit {
        std::thread::yield_now();
    }
    let filler = "x".repeat(1024);
    for i in 0..2_000 {
        tracing::info!(i, %filler, "orphaned");
    }
    let mut done = std::os::unix::net::UnixStream::from(done.into_owned());
    std::io::Write::write_all(&mut done, b"!").unwrap();
}

/// Forwards events, starts `log_when_orphaned` with the fork start method, and ends at once
/// (without waiting for it, as a killed process would).
fn forward_then_vanish(done: proc_core::handle::Fd) {
    proc_core::forward_child_events(Level::INFO).unwrap();
    let me = proc_os::getpid();
    let p = get_context(proc_core::StartMethod::Fork).process(log_when_orphaned, (done, me)).start().unwrap();
    std::mem::forget(p);
    // SAFETY: ending this child process at once, without its exit-time cleanup, on purpose.
    unsafe { libc::_exit(0) };
}

#[test]
fn an_orphaned_fork_child_logs_on_without_hanging() {
    let _s = serial();
    let _w = Watchdog::new("orphaned_logger", LIMIT);
    let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let done = proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(theirs));
    let p = get_context(proc_core::StartMethod::Spawn).process(forward_then_vanish, (done,)).start().unwrap();
    let _ = p.join();
    mine.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut mine, &mut byte).expect("the orphaned child hung on its logging");
    assert_eq!(&byte, b"!");
}
