//! The child side: the life-before-main dispatcher, the bootstrap message and running the target.
//!
//! A re-executed child (spawn, and the helpers: fork server, resource tracker) finds its role in the
//! `MULTIPROC_CHILD` environment variable. Two constructors run before `main`: an early one closes
//! descriptors the child inherited by accident, a late one (after other libraries' constructors, so
//! a target sees them initialized) runs the role and exits. A child never enters the user's `main`
//! or the test harness, so processes work the same in binaries, tests, doctests and benches.

use std::any::Any;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::globals::{self, Identity, Parent};
use crate::handle::{deserialize_with_fds, serialize_with_fds};
use crate::process::Target;
use crate::sys;
use crate::wire::{self, FrameReader, Read};

/// The environment variable naming a child's role.
pub(crate) const ROLE_ENV: &str = "MULTIPROC_CHILD";
/// Set to `off` to skip the constructor-based dispatcher (to exercise the `init()` fallback).
pub(crate) const DISPATCHER_ENV: &str = "MULTIPROC_DISPATCHER";

/// Whether the dispatcher ran in this process (from its constructor or from `init()`).
static READY: AtomicBool = AtomicBool::new(false);

#[ctor::ctor(unsafe, priority = early)]
fn close_inherited() {
    // A child gets its control socket on descriptor 0 and stdout/stderr on 1 and 2; anything else
    // it inherited (a descriptor the parent forgot to mark close-on-exec) is closed right away.
    if std::env::var_os(ROLE_ENV).is_some() && std::env::var_os(DISPATCHER_ENV).is_none_or(|v| v != "off") {
        sys::close_fds_except(&[]);
    }
}

#[ctor::ctor(unsafe, priority = late)]
fn dispatch_before_main() {
    if std::env::var_os(DISPATCHER_ENV).is_some_and(|v| v == "off") {
        return;
    }
    dispatch();
}

/// Runs the child role of this process, if it has one, and marks the dispatcher present.
///
/// Returns only in a process that is not a multiproc child.
pub(crate) fn dispatch() {
    READY.store(true, Ordering::SeqCst);
    let Some(role) = std::env::var_os(ROLE_ENV) else { return };
    // Children of this child must not see the variable; the ones it starts set their own.
    std::env::remove_var(ROLE_ENV);
    // std's start-up would have ignored SIGPIPE before main; a child never reaches main.
    sys::set_signal_ignored(libc::SIGPIPE, true);
    let code = match role.to_str() {
        Some("spawn") => run_spawned(),
        Some("forkserver") => crate::start::forkserver::serve(),
        Some("tracker") => crate::shm::tracker::serve(),
        Some("exit") => 0,
        _ => {
            eprintln!("multiproc: unknown child role {role:?}");
            2
        }
    };
    flush_stdio();
    sys::exit_now(code);
}

/// Fails unless this process can start children: the dispatcher ran, and this is not a child that
/// was started by multiproc but reached `main` anyway.
pub(crate) fn ensure_ready() -> Result<()> {
    if std::env::var_os(ROLE_ENV).is_some() {
        return Err(Error::new(ErrorKind::RerunMain));
    }
    if !READY.load(Ordering::SeqCst) {
        return Err(Error::new(ErrorKind::DispatcherMissing));
    }
    Ok(())
}

/// Where a target lives in the binary: its offset from an anchor function, which ASLR cannot
/// change within one binary, and a fingerprint of its first code bytes that the child checks
/// before jumping there.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct EntryPoint {
    offset: i64,
    fingerprint: u64,
}

/// A monomorphized trampoline: deserializes the arguments, runs the target, serializes the result.
pub(crate) type EntryFn = fn(Vec<u8>, Vec<OwnedFd>) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String>;

fn anchor() -> usize {
    dispatch as fn() as usize
}

/// Fingerprints code: the bytes from `addr` to the end of its 4 KiB block, and the whole 4 KiB
/// block of the anchor (cached). Within one binary both are identical in every process; a
/// different binary at the same path (macOS re-executes the path, which may have been rebuilt)
/// almost surely differs in at least one of them.
pub(crate) fn fingerprint(addr: usize) -> u64 {
    static ANCHOR_BLOCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let anchor_block = *ANCHOR_BLOCK.get_or_init(|| {
        let start = anchor() & !(BLOCK - 1);
        hash_code(start, BLOCK)
    });
    let end = (addr & !(BLOCK - 1)) + BLOCK;
    hash_code(addr, end - addr) ^ anchor_block.rotate_left(17)
}

const BLOCK: usize = 4096;

fn hash_code(start: usize, len: usize) -> u64 {
    // SAFETY: `start..start + len` lies within one 4 KiB block that holds code of this binary (a
    // function's first byte, or the anchor function's block). Code is mapped readable on Linux and
    // macOS, and mappings are whole pages of at least 4 KiB, so the block is mapped.
    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
    // FNV-1a over 8-byte words: cheap, and good enough to tell different code apart.
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl EntryPoint {
    pub(crate) fn of(entry: EntryFn) -> Self {
        Self::of_addr(entry as usize)
    }

    pub(crate) fn of_addr(addr: usize) -> Self {
        EntryPoint { offset: (addr as i64).wrapping_sub(anchor() as i64), fingerprint: fingerprint(addr) }
    }

    /// The offset and the fingerprint.
    pub(crate) fn parts(self) -> (i64, u64) {
        (self.offset, self.fingerprint)
    }

    /// The entry point with these parts.
    pub(crate) fn from_parts(offset: i64, fingerprint: u64) -> Self {
        EntryPoint { offset, fingerprint }
    }

    /// The address in this process, once the code there is checked to be the same.
    pub(crate) fn resolve_addr(self) -> std::result::Result<usize, String> {
        let addr = (anchor() as i64).wrapping_add(self.offset) as usize;
        if fingerprint(addr) != self.fingerprint {
            return Err(
                "the child runs a different binary than its parent (target fingerprint mismatch)".into()
            );
        }
        Ok(addr)
    }

    fn resolve(self) -> std::result::Result<EntryFn, String> {
        let addr = self.resolve_addr()?;
        // SAFETY: the parent computed the offset from a fn pointer of type EntryFn in the same
        // binary (the fingerprint of the code there matches), so `addr` is that function.
        Ok(unsafe { std::mem::transmute::<usize, EntryFn>(addr) })
    }
}

/// The trampoline for target `F` with arguments `A`.
pub(crate) fn entry<F, A>(
    args: Vec<u8>,
    fds: Vec<OwnedFd>,
) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String>
where
    F: Target<A> + Copy,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    let args: A = deserialize_with_fds(&args, fds).map_err(|e| format!("arguments: {}", e.with_cause()))?;
    assert!(std::mem::size_of::<F>() == 0, "only zero-sized targets are re-created in a child");
    // SAFETY: `F` is zero-sized (the parent refuses to start other targets this way, and the
    // assertion above re-checks it), so reading one from a dangling, aligned pointer reads no
    // bytes. `F` is also `Copy`: a zero-sized `Copy` closure (or fn item) carries no value whose
    // duplication could break an invariant (a non-`Copy` zero-sized proof it owned would make it
    // non-`Copy`), so producing one here is a copy of the parent's.
    let target: F = unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() };
    let output = target.call(args);
    serialize_with_fds(&output).map_err(|e| format!("return value: {}", e.with_cause()))
}

/// What the parent sends a re-executed or fork-server child.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) entry: EntryPoint,
    pub(crate) name: String,
    pub(crate) ident: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    pub(crate) args: Vec<u8>,
    /// How many of the frame's descriptors belong to the arguments (they come first).
    pub(crate) args_fds: u32,
    /// Whether the alive pipe's write end follows the argument descriptors.
    pub(crate) has_alive: bool,
    /// Whether the resource tracker's pipe comes last.
    pub(crate) has_tracker: bool,
}

/// What a child sends back when its target is done.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The target returned; the serialized value (the frame carries its descriptors).
    Returned(Vec<u8>),
    /// The target panicked.
    Panicked { message: String, location: Option<String> },
    /// The target could not run.
    Failed(String),
}

/// Sends a report frame; the parent may be gone, which is not an error worth reporting.
pub(crate) fn send_report(ctl: &OwnedFd, report: &Report, fds: &[OwnedFd]) {
    let body = match crate::codec::to_vec(report) {
        Ok(b) => b,
        Err(_) => return,
    };
    let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    if let Err(e) = wire::send_frame(ctl.as_fd(), &body, &fds) {
        tracing::debug!(error = %e, "could not send the result to the parent");
    }
}

/// The message and location of the last panic on this process, captured by our hook.
static LAST_PANIC: Mutex<Option<(String, Option<String>)>> = Mutex::new(None);

/// Installs the hook that records a panic's message and location for the report. Once per
/// process; a fork-server child inherits the server's.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_panic_hook_now);
}

fn install_panic_hook_now() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let message = payload_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = Some((message, location));
        default(info);
    }));
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Runs `f` (the target) and turns its outcome into a report and an exit code.
pub(crate) fn run_target(
    f: impl FnOnce() -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String>,
) -> (Report, Vec<OwnedFd>, i32) {
    install_panic_hook();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok((bytes, fds))) => (Report::Returned(bytes), fds, 0),
        Ok(Err(message)) => {
            eprintln!("multiproc: child process could not run its target: {message}");
            (Report::Failed(message), Vec::new(), 1)
        }
        Err(payload) => {
            let captured = LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner).take();
            let (message, location) = captured.unwrap_or_else(|| (payload_message(&*payload), None));
            (Report::Panicked { message, location }, Vec::new(), 1)
        }
    }
}

/// The end of every child: report, wait for its own children, flush, exit.
pub(crate) fn finish(ctl: &OwnedFd, report: Report, fds: Vec<OwnedFd>, code: i32) -> ! {
    send_report(ctl, &report, &fds);
    drop(fds);
    globals::shutdown_children();
    flush_stdio();
    sys::exit_now(code)
}

pub(crate) fn flush_stdio() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// A spawned child: the control socket came in on descriptor 0.
fn run_spawned() -> i32 {
    // SAFETY: dup on descriptor 0 takes plain integers; we own no Rust object for descriptor 0.
    let ctl = match sys::dup_cloexec(unsafe { std::os::fd::BorrowedFd::borrow_raw(0) }, 3) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("multiproc: child has no control socket: {e}");
            return 1;
        }
    };
    // stdin of a child is /dev/null, as in Python.
    let _ = sys::dev_null_onto(0);
    run_bootstrapped(ctl)
}

/// Reads the bootstrap from `ctl` and runs the target (a spawned child).
fn run_bootstrapped(ctl: OwnedFd) -> i32 {
    let (body, fds) = match FrameReader::default().read(ctl.as_fd(), true) {
        Ok(Read::Frame(body, fds)) => (body, fds),
        Ok(_) => return 1, // The parent went away before sending anything.
        Err(e) => {
            eprintln!("multiproc: child could not read its bootstrap: {e}");
            return 1;
        }
    };
    run_bootstrap(ctl, &body, fds)
}

/// Runs the target described by a bootstrap message. A fork-server child gets the message from
/// the server's memory, a spawned child reads it from its control socket.
pub(crate) fn run_bootstrap(ctl: OwnedFd, body: &[u8], mut fds: Vec<OwnedFd>) -> i32 {
    let boot: Bootstrap = match crate::codec::from_bytes(body) {
        Ok(b) => b,
        Err(e) => {
            let message = format!("bad bootstrap message: {e}");
            finish(&ctl, Report::Failed(message), Vec::new(), 1);
        }
    };
    let args_fds = (boot.args_fds as usize).min(fds.len());
    let mut extra = fds.split_off(args_fds).into_iter();
    let alive = if boot.has_alive { extra.next() } else { None };
    let tracker = if boot.has_tracker { extra.next() } else { None };
    let ctl = Arc::new(ctl);
    globals::become_child(
        Identity { name: boot.name, ident: boot.ident, daemon: boot.daemon },
        Parent { pid: boot.parent_pid, name: boot.parent_name, ctl: Some(ctl.clone()) },
        alive,
        tracker,
    );
    if boot.daemon {
        watch_parent(ctl.clone());
    }
    let entry = boot.entry;
    let args = boot.args;
    let (report, out_fds, code) = run_target(move || (entry.resolve()?)(args, fds));
    finish(&ctl, report, out_fds, code)
}

/// A daemon child ends when its parent does: a thread waits for the end of the control socket,
/// which only the parent holds open (the parent never writes after the bootstrap).
pub(crate) fn watch_parent(ctl: Arc<OwnedFd>) {
    let spawned = std::thread::Builder::new().name("multiproc-parent-watch".into()).spawn(move || {
        // Data from the parent would be a protocol error; then wait for the hang-up itself.
        if let Ok(false) = sys::peer_closed(ctl.as_fd(), true) {
            let _ = sys::wait_hangup(ctl.as_fd());
        }
        // The parent is gone: end as Python's daemons do when their parent ends.
        flush_stdio();
        sys::exit_now(1);
    });
    if let Err(e) = spawned {
        eprintln!("multiproc: cannot watch the parent of a daemon process: {e}");
    }
}

/// A handle on an `Error` for reports the parent decodes.
pub(crate) fn report_error(report: &Report) -> Option<Error> {
    match report {
        Report::Returned(_) => None,
        Report::Panicked { message, location } => {
            Some(Error::new(ErrorKind::Panicked { message: message.clone(), location: location.clone() }))
        }
        Report::Failed(m) => Some(Error::new(ErrorKind::ChildFailed(m.clone()))),
    }
}
