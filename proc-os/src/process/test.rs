//! Start times and process tokens of this process, a running child, a zombie and a reaped child.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A child that runs until its stdin closes: `cat`, reading a pipe nobody writes.
fn blocked_child() -> Child {
    Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap()
}

/// Spins until `f` holds, failing the test after 30 s.
fn until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "the state never came");
        std::thread::yield_now();
    }
}

#[test]
fn this_process() {
    let me = pid();
    let start = start_time(me);
    if cfg!(any(target_os = "linux", target_os = "macos")) {
        assert!(start.is_some(), "this OS tells start times");
    }
    let start = start.unwrap_or(0);
    assert!(process_alive_since(me, start));
    let token = current_process_token();
    assert_eq!(token >> 32, u64::from(me));
    assert_eq!(process_token(me).unwrap_or(u64::from(me) << 32), token);
    assert_eq!(current_process_token(), token, "cached");
    assert!(process_token_alive(token));
    if start != 0 {
        assert!(!process_alive_since(me, start + 1));
        assert!(!process_token_alive(token ^ 0x8000_0000), "another start time, same pid");
    }
    // Another pid with this start time: not this process.
    assert!(!process_token_alive(token & 0xffff_ffff));
}

#[test]
fn a_child_while_it_runs_as_a_zombie_and_once_reaped() {
    let mut child = blocked_child();
    let pid = child.id();
    let Some(start) = start_time(pid) else {
        // The OS cannot tell start times: the pid alone counts.
        assert!(process_alive_since(pid, 0));
        drop(child.stdin.take());
        child.wait().unwrap();
        return;
    };
    let token = process_token(pid).unwrap();
    assert_eq!(token >> 32, u64::from(pid));
    assert!(process_alive_since(pid, start));
    assert!(process_token_alive(token));
    assert!(!process_alive_since(pid, start ^ 1));

    // Ended, not reaped: a zombie keeps its pid and start time, but is not alive.
    drop(child.stdin.take());
    until(|| !process_alive(pid));
    assert_eq!(start_time(pid), Some(start), "a zombie keeps its start time");
    assert!(!process_alive_since(pid, start));
    assert!(!process_token_alive(token));

    child.wait().unwrap();
    // Reaped: gone (or its pid already someone else's, with another start time).
    assert!(!process_alive_since(pid, start));
    assert!(!process_token_alive(token));
}

#[test]
fn a_token_with_an_unknown_start_time_is_the_pid_alone() {
    let mut child = blocked_child();
    let pid = child.id();
    assert!(process_token_alive(u64::from(pid) << 32));
    drop(child.stdin.take());
    child.wait().unwrap();
    assert!(!process_token_alive(u64::from(pid) << 32));
}
