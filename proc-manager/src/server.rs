//! The server: a listener, one thread per connection, and the table of objects, sessions and
//! names.
//!
//! A connection is served only after the mutual handshake, within a deadline; nothing else is
//! read before. Each connection belongs to a session (one per client process); a session holds
//! references to objects, and when its last connection closes (the client process ended, even
//! by SIGKILL) its references are dropped and the locks its threads held are released.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::{self, AuthKey};
use crate::error::{Error, Result};
use crate::object::{Abort, Object, OrderedMap, State};
use crate::registry::Factory;
use crate::sys::peer_gone;
use crate::wire::{self, Bytes, Hello, Kind, ObjectId, Request, Response, SessionId, WireError};

/// The longest a client may take to authenticate and say hello.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// How many connections may be in their handshake at once, and how long each may take.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) struct HandshakeLimits {
    pub(crate) max_connections: u32,
    pub(crate) deadline: Duration,
}

/// The longest a write to a client may block (a client that does not read its answers).
const WRITE_DEADLINE: Duration = Duration::from_secs(60);

/// A connection thread's stack (reserved, committed as used): room for a registered type's
/// handler, while many idle connections cost little.
const CONN_STACK: usize = 1 << 20;

/// How many connections may be in their handshake at once by default (see
/// [`Builder::max_handshakes`](crate::Builder::max_handshakes)).
pub(crate) const DEFAULT_MAX_HANDSHAKES: u32 = 64;

/// A stream to or from a manager: a Unix socket or TCP.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
        }
    }

    /// Ends the connection both ways, for every copy of it: a thread reading it sees its end.
    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.raw_fd()
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
    }

    /// Connects to the listener itself (to wake a blocked `accept`).
    fn poke(&self) {
        match self {
            Listener::Unix(l) => {
                if let Some(path) = l.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.to_path_buf()))
                {
                    let _ = UnixStream::connect(path);
                }
            }
            Listener::Tcp(l) => {
                if let Ok(addr) = l.local_addr() {
                    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
                }
            }
        }
    }
}

/// An object in the table, with its count of references.
struct Entry {
    object: Arc<Object>,
    refs: u64,
}

/// A client process: its open connections and the references it holds.
#[derive(Default)]
struct Session {
    conns: u32,
    refs: HashMap<ObjectId, u64>,
}

#[derive(Default)]
struct Table {
    next: ObjectId,
    objects: HashMap<ObjectId, Entry>,
    /// References on their way to another process, by token.
    exported: HashMap<u64, ObjectId>,
    next_token: u64,
    sessions: HashMap<SessionId, Session>,
    names: HashMap<String, ObjectId>,
}

impl Table {
    /// Drops `n` references of `id`; removes the object with its last one.
    fn release(&mut self, id: ObjectId, n: u64) {
        let gone = match self.objects.get_mut(&id) {
            Some(e) => {
                e.refs = e.refs.saturating_sub(n);
                e.refs == 0
            }
            None => false,
        };
        if gone {
            if let Some(e) = self.objects.remove(&id) {
                tracing::debug!(id, "manager object freed");
                e.object.wake_all();
                // A condition holds a reference to its lock, stored values to their proxies' objects.
                if let Kind::Condition { lock } = e.object.kind {
                    self.release(lock, 1);
                }
                for held in e.object.take_held() {
                    self.release(held, 1);
                }
            }
        }
    }

    fn take_ref(&mut self, session: SessionId, id: ObjectId) {
        if let Some(e) = self.objects.get_mut(&id) {
            e.refs += 1;
            *self.sessions.entry(session).or_default().refs.entry(id).or_default() += 1;
        }
    }
}

/// The connections in their handshake, oldest first, each with a copy of its stream (to end it).
#[derive(Default)]
struct Handshakes {
    next: u64,
    conns: VecDeque<(u64, Stream)>,
}

/// What every connection thread shares.
pub(crate) struct Core {
    table: Mutex<Table>,
    /// Connections in their handshake now, at most `max_handshakes`.
    handshakes: Mutex<Handshakes>,
    max_handshakes: usize,
    /// How long a connection may take over its handshake (and hello).
    handshake_deadline: Duration,
    shutting_down: AtomicBool,
    /// Connection threads looking for their next request without sleeping now, and how many may.
    spinning: std::sync::atomic::AtomicUsize,
    max_spinning: usize,
    key: AuthKey,
    max_frame: u32,
    registry: HashMap<String, (Factory, String)>,
}

impl Core {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handshakes(&self) -> MutexGuard<'_, Handshakes> {
        self.handshakes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection in its handshake; when that makes more than `max_handshakes`, the
    /// connection that has waited longest is ended (its thread sees the end and quits). `None`
    /// when the connection cannot be tracked (out of descriptors): it is dropped then.
    fn admit(&self, stream: &Stream) -> Option<u64> {
        let copy = match stream.try_clone() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "manager closed a new connection: cannot track its handshake");
                return None;
            }
        };
        let mut handshakes = self.handshakes();
        handshakes.next += 1;
        let id = handshakes.next;
        handshakes.conns.push_back((id, copy));
        while handshakes.conns.len() > self.max_handshakes {
            if let Some((_, oldest)) = handshakes.conns.pop_front() {
                oldest.shutdown();
                tracing::debug!(
                    "manager closed the oldest connection in its handshake: too many connections in their handshake"
                );
            }
        }
        Some(id)
    }

    /// The handshake of connection `id` ended (either way): it no longer counts.
    fn admitted(&self, id: u64) {
        self.handshakes().conns.retain(|(i, _)| *i != id);
    }
}

/// How long a connection thread looks for its client's next request before it sleeps (a client
/// in a loop of calls sends it within a few microseconds of its answer; see `Framed::await_briefly`).
const SERVER_SPIN: Duration = Duration::from_micros(50);

/// A manager server, bound and ready to serve.
pub(crate) struct Server {
    listener: Listener,
    core: Arc<Core>,
}

impl Server {
    pub(crate) fn new(
        listener: Listener,
        key: AuthKey,
        max_frame: u32,
        handshakes: HandshakeLimits,
        registry: HashMap<String, (Factory, String)>,
    ) -> Self {
        let core = Arc::new(Core {
            table: Mutex::new(Table::default()),
            handshakes: Mutex::new(Handshakes::default()),
            max_handshakes: usize::try_from(handshakes.max_connections).unwrap_or(usize::MAX).max(1),
            handshake_deadline: handshakes.deadline,
            spinning: std::sync::atomic::AtomicUsize::new(0),
            max_spinning: std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1).max(1)),
            shutting_down: AtomicBool::new(false),
            key,
            max_frame,
            registry,
        });
        Server { listener, core }
    }

    /// Accepts and serves connections until a client asks the server to shut down.
    pub(crate) fn serve_forever(self) {
        let listener = Arc::new(self.listener);
        loop {
            let stream = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, for example: wait a little for some to be freed.
                    tracing::warn!(error = %e, "manager cannot accept a connection");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.core.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            let Some(id) = self.core.admit(&stream) else { continue };
            let core = self.core.clone();
            let poker = listener.clone();
            let spawned = std::thread::Builder::new()
                .name("manager-conn".into())
                .stack_size(CONN_STACK)
                .spawn(move || serve_connection(&core, stream, id, &poker));
            if let Err(e) = spawned {
                self.core.admitted(id);
                tracing::warn!(error = %e, "manager cannot start a thread for a connection; dropped it");
            }
        }
        // Wake every blocked call so that its client learns the news.
        for e in self.core.table().objects.values() {
            e.object.wake_all();
        }
    }
}

/// Tells a blocked call to give up when its client is gone or the server shuts down.
struct ConnAbort<'a> {
    core: &'a Core,
    fd: RawFd,
}

impl Abort for ConnAbort<'_> {
    fn aborted(&self) -> bool {
        self.core.shutting_down.load(Ordering::SeqCst) || peer_gone(self.fd)
    }
}

/// A stream whose every read and write must end by one deadline (the handshake's).
struct Deadlined<'a> {
    stream: &'a mut Stream,
    deadline: Instant,
}

impl Deadlined<'_> {
    fn arm(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_timeouts(Some(left), Some(left))
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Counts connection `id` in its handshake until dropped.
struct Handshaking<'a> {
    core: &'a Core,
    id: u64,
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        self.core.admitted(self.id);
    }
}

/// The handshake and the hello, within one deadline.
fn greet(core: &Core, stream: Stream) -> Result<(wire::Framed<Stream>, Hello)> {
    let mut stream = stream;
    let deadline = Instant::now() + core.handshake_deadline;
    auth::server_side(&mut Deadlined { stream: &mut stream, deadline }, &core.key)?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_timeouts(Some(left), Some(left))?;
    let mut framed = wire::Framed::new(stream);
    let hello = framed.read(64)?;
    Ok((framed, hello))
}

/// Authenticates a connection and serves its requests.
fn serve_connection(core: &Core, stream: Stream, id: u64, listener: &Listener) {
    // Counted since `admit`; no longer once the handshake is over, whichever way.
    let handshaking = Handshaking { core, id };
    if let Stream::Tcp(s) = &stream {
        crate::sys::keepalive(s);
    }
    let (mut framed, hello) = match greet(core, stream) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(reason = %e, "manager refused a connection");
            return;
        }
    };
    drop(handshaking);
    if framed.stream.set_timeouts(None, Some(WRITE_DEADLINE)).is_err() {
        return;
    }
    let session = hello.session;
    core.table().sessions.entry(session).or_default().conns += 1;
    let abort = ConnAbort { core, fd: framed.stream.raw_fd() };
    loop {
        // A client that just had an answer often calls again at once: look for its next request
        // a little before sleeping (a few connections at a time, so idle ones cost nothing).
        if core.spinning.fetch_add(1, Ordering::AcqRel) < core.max_spinning {
            framed.await_briefly(SERVER_SPIN);
        }
        core.spinning.fetch_sub(1, Ordering::AcqRel);
        let request: Request = match framed.read(core.max_frame) {
            Ok(r) => r,
            Err(Error::Connection(e)) if wire::is_gone(&e) => break,
            Err(e) => {
                tracing::warn!(reason = %e, pid = hello.pid, "manager closed a connection");
                break;
            }
        };
        let shutdown = matches!(request, Request::Shutdown);
        let response = handle(core, session, request, &abort);
        if let Err(e) = framed.write(&response, u32::MAX) {
            tracing::debug!(reason = %e, "manager could not answer a client");
            break;
        }
        if shutdown {
            core.shutting_down.store(true, Ordering::SeqCst);
            listener.poke();
            break;
        }
    }
    end_connection(core, session);
}

/// A connection of `session` closed: the last one ends the session.
fn end_connection(core: &Core, session: SessionId) {
    let mut table = core.table();
    let ended = match table.sessions.get_mut(&session) {
        Some(s) => {
            s.conns = s.conns.saturating_sub(1);
            s.conns == 0
        }
        None => false,
    };
    if !ended {
        return;
    }
    let Some(s) = table.sessions.remove(&session) else { return };
    let objects: Vec<Arc<Object>> = table.objects.values().map(|e| e.object.clone()).collect();
    for (id, n) in s.refs {
        table.release(id, n);
    }
    drop(table);
    for object in objects {
        object.release_session(session);
    }
}

fn new_state(core: &Core, table: &Table, kind: &Kind, init: Option<Bytes>) -> Result<State, WireError> {
    let init = init.map(Bytes::into_vec);
    Ok(match kind {
        Kind::Dict => State::Dict(OrderedMap::default()),
        Kind::List => State::List { items: Vec::new(), version: 0 },
        Kind::Namespace => State::Namespace(Default::default()),
        Kind::Value => State::Value(init.unwrap_or_default()),
        Kind::Array => {
            let items: Vec<Bytes> = proc_core::codec::from_bytes(&init.unwrap_or_default())
                .map_err(|e| WireError::Remote(format!("the array's values: {e}")))?;
            State::Array(items.into_iter().map(Bytes::into_vec).collect())
        }
        Kind::Queue { maxsize, joinable } => {
            State::Queue { items: Default::default(), maxsize: *maxsize, unfinished: 0, joinable: *joinable }
        }
        Kind::Lock => State::Lock { owner: None, count: 0, reentrant: false },
        Kind::RLock => State::Lock { owner: None, count: 0, reentrant: true },
        Kind::Semaphore { value, bounded } => {
            State::Semaphore { value: *value, initial: *value, bounded: *bounded }
        }
        Kind::Event => State::Event(false),
        Kind::Condition { lock } => {
            let lock = table.objects.get(lock).ok_or(WireError::NoSuchObject)?;
            if !matches!(lock.object.kind, Kind::Lock | Kind::RLock) {
                return Err(WireError::MethodNotAllowed("a condition needs a Lock or an RLock".into()));
            }
            State::Condition {
                lock: lock.object.clone(),
                next: 0,
                waiting: Default::default(),
                notified: Default::default(),
            }
        }
        Kind::Barrier { parties } => State::Barrier {
            parties: (*parties).max(1),
            waiting: 0,
            generation: 0,
            broken: false,
            resets: Default::default(),
        },
        Kind::Custom { name, type_name } => {
            let (factory, registered) = core
                .registry
                .get(name)
                .ok_or_else(|| WireError::MethodNotAllowed(format!("no registered type {name:?}")))?;
            if registered != type_name {
                return Err(WireError::MethodNotAllowed(format!(
                    "{name:?} is registered as {registered}, not {type_name}"
                )));
            }
            State::Custom(factory(&init.unwrap_or_default())?)
        }
    })
}

/// Serves one request.
fn handle(core: &Core, session: SessionId, request: Request, abort: &dyn Abort) -> Response {
    if core.shutting_down.load(Ordering::SeqCst) && !matches!(request, Request::DecRef(_)) {
        return Response::Err(WireError::ShutDown);
    }
    let mut table = core.table();
    match request {
        Request::Create { kind, init } => {
            let state = match new_state(core, &table, &kind, init) {
                Ok(s) => s,
                Err(e) => return Response::Err(e),
            };
            if let Kind::Condition { lock } = kind {
                if let Some(e) = table.objects.get_mut(&lock) {
                    e.refs += 1;
                }
            }
            table.next += 1;
            let id = table.next;
            table.objects.insert(id, Entry { object: Arc::new(Object::new(kind, state)), refs: 0 });
            table.take_ref(session, id);
            Response::Created(id)
        }
        Request::IncRef(id) => {
            if !table.objects.contains_key(&id) {
                return Response::Err(WireError::NoSuchObject);
            }
            table.take_ref(session, id);
            Response::Ok
        }
        Request::DecRef(id) => {
            let held = table.sessions.get_mut(&session).and_then(|s| s.refs.get_mut(&id)).map(|n| {
                *n -= 1;
                *n
            });
            match held {
                Some(left) => {
                    if left == 0 {
                        if let Some(s) = table.sessions.get_mut(&session) {
                            s.refs.remove(&id);
                        }
                    }
                    table.release(id, 1);
                    Response::Ok
                }
                None => Response::Err(WireError::NoSuchObject),
            }
        }
        Request::Export(id) => match table.objects.get_mut(&id) {
            Some(e) => {
                e.refs += 1;
                table.next_token += 1;
                let token = table.next_token;
                table.exported.insert(token, id);
                Response::Count(token)
            }
            None => Response::Err(WireError::NoSuchObject),
        },
        Request::Adopt(token) => {
            let Some(id) = table.exported.remove(&token) else {
                return Response::Err(WireError::NoSuchObject);
            };
            let Some(kind) = table.objects.get(&id).map(|e| e.object.kind.clone()) else {
                return Response::Err(WireError::NoSuchObject);
            };
            *table.sessions.entry(session).or_default().refs.entry(id).or_default() += 1;
            Response::Found { object: id, kind }
        }
        Request::Publish { name, object } => {
            let Some(e) = table.objects.get_mut(&object) else {
                return Response::Err(WireError::NoSuchObject);
            };
            e.refs += 1;
            if let Some(old) = table.names.insert(name, object) {
                table.release(old, 1);
            }
            Response::Ok
        }
        Request::Lookup(name) => {
            let Some(&id) = table.names.get(&name) else { return Response::Err(WireError::NoSuchObject) };
            let Some(kind) = table.objects.get(&id).map(|e| e.object.kind.clone()) else {
                return Response::Err(WireError::NoSuchObject);
            };
            table.take_ref(session, id);
            Response::Found { object: id, kind }
        }
        Request::Call { object, method, embedded } => {
            let Some(object) = table.objects.get(&object).map(|e| e.object.clone()) else {
                return Response::Err(WireError::NoSuchObject);
            };
            // The exported references of proxies inside the call's values become the object's.
            let embedded: Vec<(Vec<u8>, Vec<ObjectId>)> = embedded
                .into_iter()
                .map(|(bytes, tokens)| {
                    let ids = tokens.iter().filter_map(|t| table.exported.remove(t)).collect();
                    (bytes.into_vec(), ids)
                })
                .collect();
            drop(table);
            let (response, moved, released) = object.call(method, embedded, abort);
            if moved.is_empty() && released.is_empty() {
                return response;
            }
            let mut table = core.table();
            for id in released {
                table.release(id, 1);
            }
            if moved.is_empty() {
                return response;
            }
            // The caller's session takes the references handed over with the values; the client
            // drops them once the proxies it decoded took their own.
            let session_refs = &mut table.sessions.entry(session).or_default().refs;
            for id in &moved {
                *session_refs.entry(*id).or_default() += 1;
            }
            Response::Moved { ids: moved, inner: Box::new(response) }
        }
        Request::CountObjects => Response::Count(table.objects.len() as u64),
        Request::Shutdown => Response::Ok,
    }
}
