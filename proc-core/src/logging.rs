//! What runs in every child before its target, and `tracing` events of children forwarded to the
//! parent (Python's `log_to_stderr`/`get_logger`, done for `tracing`).
//!
//! Under spawn and the fork server a child never runs `main`, so whatever `main` set up (a
//! `tracing` subscriber above all) does not exist in pool workers, manager servers or any other
//! child. Two remedies:
//!
//! - [`set_child_init`]: a function every child of every start method runs before its target (and
//!   passes on to its own children). It travels as a code address checked in the child, like a
//!   target.
//! - [`forward_child_events`]: children (and their children) send their `tracing` events to this
//!   process, where a thread re-emits each through this process' subscriber with the child's name
//!   and pid as fields. The events travel as datagrams over a Unix socket pair whose sending end
//!   every child gets with its bootstrap (or inherits, under `fork`).
//!
//! The state is in atomics, not behind a lock, so that a `fork` from any thread finds it
//! consistent. A leaf of the crate's imports (the start methods and the child's main call it; it
//! names neither).

use std::fmt::Write as _;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::child::entry::EntryPoint;
use crate::error::{Error, Result};

/// The child init function's address (0: none).
static CHILD_INIT: AtomicUsize = AtomicUsize::new(0);
/// The sending end of the event channel (-1: events are not forwarded).
static FORWARD_FD: AtomicI32 = AtomicI32::new(-1);
/// The most verbose level forwarded ([`level_code`]; 0: none).
static FORWARD_LEVEL: AtomicU8 = AtomicU8::new(0);

/// Mixed into the fingerprint of the init function's entry point, so that a bootstrap can only
/// name a function that was sent as an init function (not a target's trampoline, say).
const INIT_TAG: u64 = 0x696e_6974_5f66_6e21;

/// The entry point of the init function at `addr`, tagged.
fn init_entry(addr: usize) -> EntryPoint {
    let (offset, fingerprint) = EntryPoint::of_addr(addr).parts();
    EntryPoint::from_parts(offset, fingerprint ^ INIT_TAG)
}

/// The largest event sent: a longer message is cut (a datagram must fit the socket's buffer).
const MAX_RECORD: usize = 16 << 10;

/// Sets the function every child runs before its target, under every start method, from the next
/// start on (`None`: no function). Children pass it on to their own children. It runs after the
/// child has its identity ([`current_process`](crate::current_process) is the child) and after
/// [`forward_child_events`]' subscriber is installed; a panic in it is the child's panic, reported
/// by `join` as the target's would be.
///
/// Use it for what `main` would have set up: a `tracing` subscriber of the child's own, an
/// environment, a seeded random generator. A non-capturing `fn`, so that a re-executed child can
/// find it in its copy of the binary.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static READY: AtomicBool = AtomicBool::new(false);
///
/// fn init() {
///     READY.store(true, Ordering::SeqCst);
/// }
///
/// fn ready() -> bool {
///     READY.load(Ordering::SeqCst)
/// }
///
/// proc_core::set_child_init(Some(init));
/// let p = proc_core::Process::new(ready, ()).start()?;
/// assert!(p.join()?, "the child ran init before its target");
/// assert!(!ready(), "not in the parent");
/// proc_core::set_child_init(None);
/// # Ok::<(), proc_core::Error>(())
/// ```
pub fn set_child_init(init: Option<fn()>) {
    CHILD_INIT.store(init.map_or(0, |f| f as usize), Ordering::SeqCst);
}

/// Forwards the `tracing` events of every child started from now on (and of their children) at
/// `level` or more severe to this process, which re-emits each through its own subscriber with
/// target `multiproc::child` and the fields `child` (the child's name), `pid`, `origin` (the
/// event's own target), `fields` (its other fields) and the event's message. The child's events
/// go to the parent instead of a subscriber of the child's own; spans are not forwarded.
///
/// Calling it again changes the level for later children; the channel stays.
///
/// # Examples
///
/// ```
/// fn work() {
///     tracing::info!(step = 1, "working");
/// }
///
/// proc_core::forward_child_events(tracing::Level::INFO)?;
/// proc_core::Process::new(work, ()).start()?.join()?;
/// // This process' subscriber saw `working` with child = "Process-1" and the child's pid.
/// # Ok::<(), proc_core::Error>(())
/// ```
///
/// # Errors
///
/// The socket pair or the thread that receives the events cannot be made (out of descriptors or
/// threads); nothing changed then.
pub fn forward_child_events(level: Level) -> Result<()> {
    // One channel per process, made once even when threads call this together.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if FORWARD_FD.load(Ordering::SeqCst) < 0 {
        let (send, recv) = UnixDatagram::pair().map_err(|e| Error::io("cannot make the event channel", e))?;
        // A child made by a plain `fork` must not hold the receiving end: this process alone reads
        // it, and with no reader left the children's sends fail instead of filling the buffer.
        let release = crate::handle::ReleaseOnFork::new(std::os::fd::AsFd::as_fd(&recv));
        std::thread::Builder::new()
            .name("multiproc-child-events".into())
            .spawn(move || {
                let _release = release;
                receive(&recv);
            })
            .map_err(|e| Error::io("cannot start the thread that receives child events", e))?;
        // Kept open for the rest of the process: every child gets a copy at its start.
        let fd = OwnedFd::from(send);
        FORWARD_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
        std::mem::forget(fd);
    }
    FORWARD_LEVEL.store(level_code(level), Ordering::SeqCst);
    Ok(())
}

/// What a start passes to a child: the init function and, if events are forwarded, the level and
/// the sending end of the channel.
pub(crate) struct ChildSetup {
    pub(crate) init: Option<EntryPoint>,
    pub(crate) level: u8,
    pub(crate) fd: Option<BorrowedFd<'static>>,
}

/// The setup this process gives the children it starts now.
pub(crate) fn child_setup() -> ChildSetup {
    let init = match CHILD_INIT.load(Ordering::SeqCst) {
        0 => None,
        addr => Some(init_entry(addr)),
    };
    let (fd, level) = (FORWARD_FD.load(Ordering::SeqCst), FORWARD_LEVEL.load(Ordering::SeqCst));
    // SAFETY: the descriptor is never closed once set (see `forward_child_events`, and
    // `child_started`, which keeps the one a child got).
    let fd = (fd >= 0 && level != 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) });
    ChildSetup { init, level: if fd.is_some() { level } else { 0 }, fd }
}

/// What a child runs its target in: the init function to run first, and the forwarding
/// subscriber for the target's thread where it could not be made the global default.
pub(crate) struct ChildRun {
    init: Option<fn()>,
    scoped: Option<tracing::Dispatch>,
}

impl ChildRun {
    /// Runs `target` after the init function, with the forwarding subscriber as the thread's
    /// default where it is not the global one.
    pub(crate) fn run<R>(self, target: impl FnOnce() -> R) -> R {
        let go = move || {
            if let Some(init) = self.init {
                init();
            }
            target()
        };
        match self.scoped {
            Some(dispatch) => tracing::dispatcher::with_default(&dispatch, go),
            None => go(),
        }
    }
}

/// Stores `value` unless `cell` holds it already: a write of the same value still makes a
/// fork-server child copy the page.
fn store_if_changed(cell: &AtomicUsize, value: usize) {
    if cell.load(Ordering::SeqCst) != value {
        cell.store(value, Ordering::SeqCst);
    }
}

/// In a child made by spawn or the fork server, once it has its identity: keeps what its parent
/// set up, for its own children, and installs the forwarding subscriber. Returns how to run the
/// target.
pub(crate) fn child_started(
    name: &str,
    init: Option<EntryPoint>,
    level: u8,
    fd: Option<OwnedFd>,
) -> std::result::Result<ChildRun, String> {
    let init = match init {
        Some(entry) => {
            let (offset, fingerprint) = entry.parts();
            let addr = EntryPoint::from_parts(offset, fingerprint ^ INIT_TAG).resolve_addr()?;
            store_if_changed(&CHILD_INIT, addr);
            // SAFETY: the parent took the address of an `fn()` of the same binary (the
            // fingerprint of the code there matches), so `addr` is that function.
            Some(unsafe { std::mem::transmute::<usize, fn()>(addr) })
        }
        None => {
            store_if_changed(&CHILD_INIT, 0);
            None
        }
    };
    let scoped = match fd {
        Some(fd) if level != 0 => {
            FORWARD_LEVEL.store(level, Ordering::SeqCst);
            FORWARD_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
            std::mem::forget(fd);
            install_forwarder(name)
        }
        _ => {
            // What a fork-server child inherits already, in the common case: stored only if it
            // differs, so that the child does not copy these statics' page by writing them.
            if FORWARD_FD.load(Ordering::SeqCst) != -1 || FORWARD_LEVEL.load(Ordering::SeqCst) != 0 {
                FORWARD_FD.store(-1, Ordering::SeqCst);
                FORWARD_LEVEL.store(0, Ordering::SeqCst);
            }
            None
        }
    };
    Ok(ChildRun { init, scoped })
}

/// In a child made by a plain `fork` (named `name`), which inherited the state: installs the
/// forwarding subscriber if its parent forwards events; returns how to run the target.
pub(crate) fn forked_child_started(name: &str) -> ChildRun {
    let forwards = FORWARD_FD.load(Ordering::SeqCst) >= 0 && FORWARD_LEVEL.load(Ordering::SeqCst) != 0;
    let scoped = if forwards { install_forwarder(name) } else { None };
    let init = match CHILD_INIT.load(Ordering::SeqCst) {
        0 => None,
        // SAFETY: stored by `set_child_init` or `child_started` from an `fn()` of this binary.
        addr => Some(unsafe { std::mem::transmute::<usize, fn()>(addr) }),
    };
    ChildRun { init, scoped }
}

/// Makes the forwarding subscriber this process' global default. Where one is set already (a
/// plain `fork` copies the parent's), returns it instead, for the target's thread: that thread's
/// events are forwarded, and other threads keep the copy of the parent's subscriber.
fn install_forwarder(name: &str) -> Option<tracing::Dispatch> {
    let forwarder = Forwarder { child: name.to_owned(), pid: proc_os::pid() };
    let dispatch = tracing::Dispatch::new(forwarder);
    tracing::dispatcher::set_global_default(dispatch.clone()).err().map(|_| dispatch)
}

/// A forwarded event, as it travels.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    level: u8,
    origin: String,
    child: String,
    pid: u32,
    message: String,
    fields: String,
}

/// The child's subscriber: sends each enabled event to the parent.
struct Forwarder {
    child: String,
    pid: u32,
}

impl Subscriber for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_code(*metadata.level()) >= FORWARD_LEVEL.load(Ordering::Relaxed)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(match FORWARD_LEVEL.load(Ordering::Relaxed) {
            1 => Level::TRACE.into(),
            2 => Level::DEBUG.into(),
            3 => Level::INFO.into(),
            4 => Level::WARN.into(),
            _ => Level::ERROR.into(),
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let fd: RawFd = FORWARD_FD.load(Ordering::Relaxed);
        if fd < 0 {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let mut record = Wire {
            level: level_code(*metadata.level()),
            origin: metadata.target().to_owned(),
            child: self.child.clone(),
            pid: self.pid,
            message: fields.message,
            fields: fields.rest,
        };
        if record.message.len() + record.fields.len() > MAX_RECORD {
            cut(&mut record.message, MAX_RECORD / 2);
            cut(&mut record.fields, MAX_RECORD / 2);
        }
        let Ok(bytes) = crate::codec::to_vec(&record) else { return };
        // SAFETY: the descriptor stays open for the life of the process (never closed once set).
        let socket = unsafe { BorrowedFd::borrow_raw(fd) };
        // Never waits: with the parent gone, or its thread behind by a full socket buffer, the
        // event is dropped (a child must not hang on its logging).
        let _ = proc_os::socket::send_nowait(socket, &[std::io::IoSlice::new(&bytes)], &[]);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message and its other fields as `name=value` text.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.rest.is_empty() {
                self.rest.push(' ');
            }
            let _ = write!(self.rest, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// The parent's thread: receives forwarded events and re-emits them here.
fn receive(socket: &UnixDatagram) {
    let mut buf = vec![0u8; 2 * MAX_RECORD];
    loop {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let Ok(w) = crate::codec::from_bytes::<Wire>(&buf[..n]) else { continue };
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "multiproc::child",
                    $level,
                    child = %w.child,
                    pid = w.pid,
                    origin = %w.origin,
                    fields = %w.fields,
                    "{}",
                    w.message
                )
            };
        }
        match w.level {
            1 => emit!(Level::TRACE),
            2 => emit!(Level::DEBUG),
            3 => emit!(Level::INFO),
            4 => emit!(Level::WARN),
            _ => emit!(Level::ERROR),
        }
    }
}

/// A level as a number that grows with severity: TRACE 1 to ERROR 5.
fn level_code(level: Level) -> u8 {
    if level == Level::TRACE {
        1
    } else if level == Level::DEBUG {
        2
    } else if level == Level::INFO {
        3
    } else if level == Level::WARN {
        4
    } else {
        5
    }
}
