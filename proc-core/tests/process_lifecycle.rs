//! Process lifecycle under every start method: start, join, exit codes, signals, close, sentinel.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{methods, serial, Watchdog};
use proc_core::{get_context, Process, Run, StartMethod};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

fn nothing() {}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panics(message: String) -> u32 {
    panic!("{message}")
}

/// Blocks until the parent kills it.
fn forever() {
    loop {
        std::thread::park();
    }
}

fn six(a: u8, b: u16, c: u32, d: u64, e: String, f: Vec<i32>) -> String {
    format!("{a} {b} {c} {d} {e} {f:?}")
}

#[test]
fn value_comes_back() {
    let _s = serial();
    let _w = Watchdog::new("value_comes_back", LIMIT);
    for m in methods() {
        let p = get_context(m).process(square, (12,)).start().unwrap();
        assert_eq!(p.start_method(), m);
        assert_eq!(p.join().unwrap(), 144, "{m}");
        assert_eq!(p.exitcode(), Some(0));
        // A value without handles can be joined again.
        assert_eq!(p.join().unwrap(), 144);
        assert!(!p.is_alive());
    }
}

/// The sum of the bytes and how many there are.
fn checksum(bytes: proc_core::ByteBuf) -> (u64, usize) {
    (bytes.iter().map(|&b| u64::from(b)).sum(), bytes.len())
}

/// Small arguments and large ones (a fork server decodes a small bootstrap before it forks and
/// leaves a large one to the child) arrive whole under every start method.
#[test]
fn small_and_large_arguments_arrive_whole() {
    let _s = serial();
    let _w = Watchdog::new("small_and_large_arguments_arrive_whole", LIMIT);
    for m in methods() {
        for len in [0usize, 100, 64 * 1024 - 100, 64 * 1024 + 100, 3 << 20] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let expected = (bytes.iter().map(|&b| u64::from(b)).sum::<u64>(), len);
            let p = get_context(m).process(checksum, (proc_core::ByteBuf::from(bytes),)).start().unwrap();
            assert_eq!(p.join().unwrap(), expected, "{m}, {len} bytes");
            assert_eq!(p.exitcode(), Some(0));
        }
    }
}

#[test]
fn targets_of_zero_to_six_parameters() {
    let _s = serial();
    let _w = Watchdog::new("targets_of_zero_to_six_parameters", LIMIT);
    for m in methods() {
        let ctx = get_context(m);
        ctx.process(nothing, ()).start().unwrap().join().unwrap();
        let p = ctx.process(six, (1, 2, 3, 4, "five".to_string(), vec![6, 6])).start().unwrap();
        assert_eq!(p.join().unwrap(), "1 2 3 4 five [6, 6]");
        // A non-capturing closure works under every method.
        let p = ctx.process(|a: i32, b: i32| a - b, (10, 3)).start().unwrap();
        assert_eq!(p.join().unwrap(), 7);
    }
}

#[derive(Serialize, Deserialize)]
struct Counter {
    from: u32,
    to: u32,
}

impl Run for Counter {
    type Output = Vec<u32>;
    fn run(self) -> Vec<u32> {
        (self.from..self.to).collect()
    }
}

#[test]
fn run_trait_is_the_subclass_form() {
    let _s = serial();
    let _w = Watchdog::new("run_trait_is_the_subclass_form", LIMIT);
    for m in methods() {
        let p = get_context(m).from_run(Counter { from: 3, to: 6 }).start().unwrap();
        assert_eq!(p.join().unwrap(), vec![3, 4, 5]);
    }
}

#[test]
fn exit_codes_as_python() {
    let _s = serial();
    let _w = Watchdog::new("exit_codes_as_python", LIMIT);
    // Children inherit an ignored SIGINT, as a program started in the background by a shell
    // without job control has it (`nohup cmd &`, some CI runners): `interrupt` would then reach
    // a child that ignores it. Start the children with the default action, as a terminal would.
    // SAFETY: signal takes plain integers; SIG_DFL installs no handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    for m in methods() {
        let ctx = get_context(m);
        let p = ctx.process(exit_with, (0,)).start().unwrap();
        // exit(0) without returning is fine for a target of no value.
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));

        let p = ctx.process(exit_with, (7,)).start().unwrap();
        let e = p.join().unwrap_err();
        assert_eq!(e.exit_code(), Some(7), "{m}: {e}");
        assert!(e.to_string().contains("code 7"), "{e}");
        assert_eq!(p.exitcode(), Some(7));

        let p = ctx.process(panics, ("the sky fell".to_string(),)).start().unwrap();
        let e = p.join().unwrap_err();
        assert!(e.is_panic(), "{m}: {e}");
        assert_eq!(e.panic_message(), Some("the sky fell"));
        let location = e.panic_location().unwrap();
        assert!(location.contains("process_lifecycle.rs"), "{location}");
        assert_eq!(p.exitcode(), Some(1));

        for (signal, send) in [
            (libc::SIGTERM, Process::terminate as fn(&Process<()>) -> proc_core::Result<()>),
            (libc::SIGKILL, Process::kill),
            (libc::SIGINT, Process::interrupt),
        ] {
            let p = ctx.process(forever, ()).start().unwrap();
            assert!(p.is_alive());
            assert_eq!(p.exitcode(), None);
            send(&p).unwrap();
            let e = p.join().unwrap_err();
            assert_eq!(e.signal(), Some(signal), "{m}: {e}");
            assert_eq!(p.exitcode(), Some(-signal));
            assert!(!p.is_alive());
            // Signalling an ended process does nothing.
            p.terminate().unwrap();
        }
    }
}

#[test]
fn join_timeout_zero_returns_at_once() {
    let _s = serial();
    let _w = Watchdog::new("join_timeout_zero_returns_at_once", LIMIT);
    for m in methods() {
        let p = get_context(m).process(forever, ()).start().unwrap();
        assert!(p.join_timeout(Duration::ZERO).unwrap().is_none());
        let before = Instant::now();
        assert!(p.join_timeout(Duration::from_millis(50)).unwrap().is_none());
        // A bounded wait never returns early.
        assert!(before.elapsed() >= Duration::from_millis(50));
        p.kill().unwrap();
        assert_eq!(p.join_timeout(LIMIT).unwrap_err().signal(), Some(libc::SIGKILL));
    }
}

#[test]
fn close_semantics() {
    let _s = serial();
    let _w = Watchdog::new("close_semantics", LIMIT);
    for m in methods() {
        let p = get_context(m).process(forever, ()).start().unwrap();
        let err = p.close().unwrap_err();
        assert!(err.error().is_still_running());
        let p = err.into_process();
        p.terminate().unwrap();
        let _ = p.join();
        p.close().unwrap();
    }
}

/// Blocks until `sentinel` is readable, as a user's `poll(2)` would (bounded by the watchdog).
fn wait_ready(sentinel: &proc_core::Sentinel) {
    let mut pfd =
        libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(sentinel), events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd for the duration of the call.
    while unsafe { libc::poll(&mut pfd, 1, -1) } != 1 {}
}

#[test]
fn sentinel_becomes_ready_at_exit() {
    let _s = serial();
    let _w = Watchdog::new("sentinel_becomes_ready_at_exit", LIMIT);
    for m in methods() {
        let p = get_context(m).process(forever, ()).start().unwrap();
        let sentinel = p.sentinel();
        assert!(!sentinel.is_ready().unwrap());
        p.kill().unwrap();
        wait_ready(&sentinel);
        assert!(sentinel.is_ready().unwrap());
        assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));
    }
}

/// The descriptors this process has open.
fn open_fds() -> usize {
    let dir = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"));
    dir.map(|d| d.count()).unwrap_or(0)
}

/// A child whose end was seen first (`exitcode`, as `active_children` and `is_alive` see it) and
/// then joined leaves nothing open once its handle is dropped: the join takes it off the process's
/// list of children too.
#[test]
fn a_child_seen_ended_then_joined_leaves_no_descriptor() {
    let _s = serial();
    let _w = Watchdog::new("a_child_seen_ended_then_joined_leaves_no_descriptor", LIMIT);
    for m in methods() {
        // The start method's own descriptors (a fork server's socket) exist from here on.
        get_context(m).process(nothing, ()).start().unwrap().join().unwrap();
        let before = open_fds();
        let p = get_context(m).process(nothing, ()).start().unwrap();
        wait_ready(&p.sentinel());
        while p.exitcode().is_none() {
            // A fork-server child's sentinel is its exit code, there once readable; a direct child's
            // alive pipe may close a moment before it can be reaped.
            std::thread::yield_now();
        }
        p.join().unwrap();
        drop(p);
        assert_eq!(open_fds(), before, "{m}");
    }
}

#[test]
fn a_hundred_children_in_a_row() {
    let _s = serial();
    let _w = Watchdog::new("a_hundred_children_in_a_row", LIMIT);
    for m in methods() {
        let n = if m == StartMethod::Spawn { 30 } else { 100 };
        for i in 0..n {
            let p = get_context(m).process(square, (i,)).start().unwrap();
            assert_eq!(p.join().unwrap(), i * i);
            assert_eq!(p.exitcode(), Some(0));
        }
    }
}

#[test]
fn sixteen_mib_each_way() {
    let _s = serial();
    let _w = Watchdog::new("sixteen_mib_each_way", LIMIT);
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    for m in methods() {
        let p = get_context(m).process(|v: Vec<u8>| v.into_iter().rev().collect::<Vec<u8>>(), (big.clone(),));
        let p = p.start().unwrap();
        let back = p.join().unwrap();
        assert_eq!(back.len(), big.len());
        assert!(back.iter().rev().eq(big.iter()), "{m}");
    }
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

#[test]
fn bad_arguments_fail_before_any_process_exists() {
    let _s = serial();
    let _w = Watchdog::new("bad_arguments_fail_before_any_process_exists", LIMIT);
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let before = proc_core::active_children().len();
        let e = get_context(m).process(|_: Unserializable| (), (Unserializable,)).start().unwrap_err();
        assert!(e.is_serialization(), "{e}");
        assert_eq!(proc_core::active_children().len(), before);
    }
}

#[test]
fn capturing_closures_need_fork() {
    let _s = serial();
    let _w = Watchdog::new("capturing_closures_need_fork", LIMIT);
    let data = vec![1, 2, 3];
    let captured = data.clone();
    let e = Process::fork(move || captured.len(), ()).start_method(StartMethod::Spawn).start().unwrap_err();
    assert!(e.is_capturing_target(), "{e}");
    let captured = data.clone();
    let e =
        Process::fork(move || captured.len(), ()).start_method(StartMethod::ForkServer).start().unwrap_err();
    assert!(e.is_capturing_target(), "{e}");
    // A closure capturing only `Copy` data is `Copy`: `new` takes it, and only fork can run it.
    let n = 5u64;
    let e = get_context(StartMethod::Spawn).process(move || n * 2, ()).start().unwrap_err();
    assert!(e.is_capturing_target(), "{e}");
    assert_eq!(
        get_context(StartMethod::Fork).process(move || n * 2, ()).start().unwrap().join().unwrap(),
        10
    );
    let p = Process::fork(move || data.iter().sum::<i32>(), ()).start().unwrap();
    assert_eq!(p.join().unwrap(), 6);
}

/// A zero-sized value that must not be duplicated (not `Copy`).
struct Proof(());

#[test]
fn a_non_copy_zero_sized_target_runs_only_as_itself_under_fork() {
    let _s = serial();
    let _w = Watchdog::new("a_non_copy_zero_sized_target_runs_only_as_itself_under_fork", LIMIT);
    let proof = Proof(());
    let target = move || {
        let Proof(()) = proof;
        7u8
    };
    assert_eq!(std::mem::size_of_val(&target), 0);
    // `Process::new(target, ())` does not compile (see its `compile_fail` example); `fork` runs
    // the one real value.
    assert_eq!(Process::fork(target, ()).start().unwrap().join().unwrap(), 7);
}

#[test]
fn return_value_failing_to_serialize_is_an_error() {
    let _s = serial();
    let _w = Watchdog::new("return_value_failing_to_serialize_is_an_error", LIMIT);
    for m in methods() {
        let p = get_context(m).process(|| Unserializable, ()).start().unwrap();
        let e = p.join().unwrap_err();
        assert!(e.to_string().contains("return value"), "{m}: {e}");
        assert_eq!(p.exitcode(), Some(1));
    }
}

#[test]
fn foreign_operations_are_errors() {
    let _s = serial();
    let _w = Watchdog::new("foreign_operations_are_errors", LIMIT);
    let sibling = get_context(StartMethod::ForkServer).process(forever, ()).start().unwrap();
    let sibling = std::sync::Arc::new(sibling);
    let copy = sibling.clone();
    // The fork child holds a copy of the sibling's handle; it must not be able to use it.
    let p = Process::fork(move || (copy.is_alive(), copy.terminate().is_err(), copy.join().is_err()), ())
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), (false, true, true));
    assert!(sibling.is_alive());
    sibling.kill().unwrap();
    let _ = sibling.join();
}

/// Closes the alive pipe the way exec would, then keeps running until released.
fn close_everything_then_wait(release: proc_core::handle::Fd) -> u8 {
    let keep = release.into_owned();
    let keep_raw = std::os::fd::AsRawFd::as_raw_fd(&keep);
    // Close every descriptor but `keep` and stdio, as a daemonizing or exec'ing target does.
    for fd in 3..1024 {
        if fd != keep_raw {
            // SAFETY: closing descriptor numbers touches no memory; nothing in this process uses
            // them again except `keep`.
            unsafe { libc::close(fd) };
        }
    }
    let mut byte = [0u8; 1];
    let _ = std::io::Read::read(&mut std::fs::File::from(keep), &mut byte);
    byte[0]
}

#[test]
fn a_child_that_closes_its_sentinel_is_still_watched() {
    let _s = serial();
    let _w = Watchdog::new("a_child_that_closes_its_sentinel_is_still_watched", LIMIT);
    for m in [StartMethod::Spawn, StartMethod::Fork] {
        let (r, w) = std::io::pipe().unwrap();
        let fd = proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(r));
        let p = get_context(m).process(close_everything_then_wait, (fd,)).start().unwrap();
        // The child cannot report any more (its control socket is closed); it is still running.
        let sentinel = p.sentinel();
        wait_ready(&sentinel);
        assert!(p.is_alive(), "{m}");
        assert!(p.join_timeout(Duration::from_millis(30)).unwrap().is_none());
        // Other operations do not block on it.
        assert!(proc_core::active_children().iter().any(|c| c.pid() == p.pid()));
        drop(w);
        // It returned, but with its control socket closed the value could not come back.
        let e = p.join().unwrap_err();
        assert_eq!(e.exit_code(), Some(0), "{m}: {e}");
        assert_eq!(p.exitcode(), Some(0));
    }
}

#[test]
fn the_sentinel_is_ready_as_soon_as_join_returns() {
    let _s = serial();
    let _w = Watchdog::new("the_sentinel_is_ready_as_soon_as_join_returns", LIMIT);
    for m in methods() {
        // A fork-server child's status pipe must be at end-of-file once join has read the code.
        for _ in 0..50 {
            let p = get_context(m).process(nothing, ()).start().unwrap();
            p.join().unwrap();
            assert!(p.sentinel().is_ready().unwrap(), "{m}: join returned before the sentinel was ready");
        }
    }
}

/// Starts a descendant that outlives this process: a plain `fork`, or with `raw` a bare `clone`
/// that runs no fork handlers. The descendant waits for a byte on `release`, then exits, closing
/// its copy of `done`. Returns the descendant's pid.
fn fork_a_descendant(release: proc_core::handle::Fd, done: proc_core::handle::Fd, raw: bool) -> i32 {
    let release = release.into_owned();
    let _done = done.into_owned();
    let pid = if raw {
        fork_without_handlers()
    } else {
        // SAFETY: as above.
        unsafe { libc::fork() }
    };
    assert!(pid >= 0);
    if pid == 0 {
        let mut byte = [0u8; 1];
        let _ = std::io::Read::read(&mut std::fs::File::from(release), &mut byte);
        // SAFETY: ends the descendant without running this process' exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// `fork` without the fork handlers: a bare `clone` with only SIGCHLD (Linux only).
#[cfg(target_os = "linux")]
fn fork_without_handlers() -> i32 {
    // SAFETY: clone with only SIGCHLD is fork without the fork handlers; the child (in
    // `fork_a_descendant`) only reads a pipe and calls _exit.
    unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) as i32 }
}

/// Other systems have no handler-free fork; the tests do not ask for one there.
#[cfg(not(target_os = "linux"))]
fn fork_without_handlers() -> i32 {
    unreachable!("a raw descendant is only made on Linux")
}

/// The ways a test makes a descendant: a plain `fork`, and on Linux a bare `clone` too.
const DESCENDANT_KINDS: &[bool] = if cfg!(target_os = "linux") { &[false, true] } else { &[false] };

#[test]
fn a_descendant_that_outlives_its_parent_does_not_hold_up_join() {
    use std::io::{Read, Write};
    let _s = serial();
    let _w = Watchdog::new("a_descendant_that_outlives_its_parent_does_not_hold_up_join", LIMIT);
    for m in methods() {
        for &raw in DESCENDANT_KINDS {
            let (release_r, mut release_w) = std::io::pipe().unwrap();
            let (mut done_r, done_w) = std::io::pipe().unwrap();
            let args = (
                proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(release_r)),
                proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(done_w)),
                raw,
            );
            let p = get_context(m).process(fork_a_descendant, args).start().unwrap();
            // The descendant lives on (it waits for our byte), holding whatever it inherited.
            let descendant = p.join().unwrap();
            assert!(descendant > 0, "{m}");
            assert_eq!(p.exitcode(), Some(0));
            if !raw {
                // A plain fork lets go of the alive pipe as soon as it first runs (which may be after
                // join returned): the sentinel becomes ready while the descendant still lives. Without
                // that, this waits until the watchdog fires.
                let sentinel = p.sentinel();
                wait_ready(&sentinel);
                assert!(sentinel.is_ready().unwrap(), "{m}: a forked descendant held the sentinel");
            }
            release_w.write_all(&[1]).unwrap();
            // End of file once the descendant has exited: nothing outlives the test.
            let mut rest = Vec::new();
            done_r.read_to_end(&mut rest).unwrap();
        }
    }
}

/// Forks a bare copy of itself; both return from the target, the copy first (the original waits
/// for it to end).
fn fork_and_both_return() -> String {
    // SAFETY: the copy only returns from this function and exits as a child does.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        return "the copy".into();
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a live c_int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    "the original".into()
}

#[test]
fn a_bare_copy_of_a_child_cannot_report_for_it() {
    let _s = serial();
    let _w = Watchdog::new("a_bare_copy_of_a_child_cannot_report_for_it", LIMIT);
    for m in methods() {
        let p = get_context(m).process(fork_and_both_return, ()).start().unwrap();
        assert_eq!(p.join().unwrap(), "the original", "{m}");
    }
}

/// Whether this process ignores SIGINT.
fn sigint_ignored() -> bool {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`, a live sigaction.
    assert_eq!(unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), old.as_mut_ptr()) }, 0);
    // SAFETY: sigaction filled `old`.
    unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// A child takes the parent's SIGINT disposition as it is when the child starts, under every
/// start method: a fork-server child not the one its server inherited when it was launched.
#[test]
fn children_take_the_parents_sigint_disposition_at_start() {
    let _s = serial();
    let _w = Watchdog::new("children_take_the_parents_sigint_disposition_at_start", LIMIT);
    for m in methods() {
        let ctx = get_context(m);
        for ignored in [true, false, true, false] {
            let handler = if ignored { libc::SIG_IGN } else { libc::SIG_DFL };
            // SAFETY: signal takes plain integers; SIG_IGN and SIG_DFL install no handler.
            unsafe { libc::signal(libc::SIGINT, handler) };
            let p = ctx.process(sigint_ignored, ()).start().unwrap();
            assert_eq!(p.join().unwrap(), ignored, "{m}");
        }
    }
}

/// The CPUs this process may run on, as Linux lists them (`Cpus_allowed_list`).
#[cfg(target_os = "linux")]
fn allowed_cpus(pid: Option<u32>) -> String {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |p| format!("/proc/{p}/status"));
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"));
    line.map(|l| l.trim().to_owned()).unwrap_or_default()
}

/// A fork-server child may run on the CPUs its parent may: the server starts a lone child on its
/// own CPU (it narrows its affinity to that CPU for the fork), and the child takes the whole
/// affinity back before its target runs, as the server does after the fork. The same while
/// another child runs (the server narrows nothing then).
#[cfg(target_os = "linux")]
#[test]
fn a_served_child_may_run_on_the_parents_cpus() {
    let _s = serial();
    let _w = Watchdog::new("a_served_child_may_run_on_the_parents_cpus", LIMIT);
    let mine = allowed_cpus(None);
    assert!(!mine.is_empty(), "no Cpus_allowed_list in /proc/self/status");
    let ctx = get_context(StartMethod::ForkServer);
    for _ in 0..3 {
        let theirs = ctx.process(allowed_cpus, (None,)).start().unwrap().join().unwrap();
        assert_eq!(theirs, mine, "a lone child");
    }
    let busy = ctx.process(forever, ()).start().unwrap();
    let theirs = ctx.process(allowed_cpus, (None,)).start().unwrap().join().unwrap();
    assert_eq!(theirs, mine, "a child started while another runs");
    // The server takes its affinity back right after each fork, which a child of this process may
    // outrun (its end wakes this process, not the server); it forked `busy` (narrowed, a lone
    // child) and then this child (not narrowed) before this child could run: both forks are
    // behind it now.
    let server = proc_core::fork_server_pid().unwrap();
    assert_eq!(allowed_cpus(Some(server)), mine, "the server after the forks");
    busy.kill().unwrap();
    let _ = busy.join_timeout(LIMIT);
    assert!(!busy.is_alive());
}

/// A short child joined at once ends while its join still looks for its end (fork and fork-server
/// children, where the thread may run on several CPUs) or sleeps (one CPU: the thread is narrowed
/// to the CPU it runs on): either way the join returns the child's value and exit code, and a
/// child that exits with a code, or runs on, is told apart from one that returned.
#[test]
fn a_short_child_joined_at_once_is_seen_ending_with_or_without_looking() {
    let _s = serial();
    let _w = Watchdog::new("a_short_child_joined_at_once_is_seen_ending_with_or_without_looking", LIMIT);
    for narrowed in [false, true] {
        std::thread::spawn(move || {
            let saved = if narrowed { proc_os::child::narrow_affinity_for_fork() } else { None };
            for m in methods() {
                for _ in 0..20 {
                    let p = get_context(m).process(square, (7,)).start().unwrap();
                    assert_eq!(p.join().unwrap(), 49, "{m}, narrowed: {narrowed}");
                    assert_eq!(p.exitcode(), Some(0));
                }
                let p = get_context(m).process(exit_with, (3,)).start().unwrap();
                assert_eq!(p.join().unwrap_err().exit_code(), Some(3), "{m}, narrowed: {narrowed}");
                assert_eq!(p.exitcode(), Some(3));
                // Still running when the looks end: the join sleeps on and sees the kill.
                let p = get_context(m).process(forever, ()).start().unwrap();
                assert!(p.join_timeout(Duration::from_millis(5)).unwrap().is_none(), "{m}");
                p.kill().unwrap();
                assert_eq!(p.join_timeout(LIMIT).unwrap_err().signal(), Some(libc::SIGKILL), "{m}");
            }
            if let Some(saved) = saved {
                saved.restore().unwrap();
            }
        })
        .join()
        .unwrap();
    }
}
