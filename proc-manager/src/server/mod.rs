//! The server: a listener, one thread per connection, and the table of objects, sessions and
//! names.
//!
//! A connection is served only after the mutual handshake, within a deadline; nothing else is
//! read before. Each connection belongs to a session (one per client process); a session holds
//! references to objects, and when its last connection closes (the client process ended, even
//! by SIGKILL) its references are dropped and the locks its threads held are released.
//!
//! - Here: [`Server`] (the accept loop), the connection threads, and [`handle`], the dispatch of
//!   a request to its function.
//! - `handshake`: the connections in their handshake, and the handshake itself.
//! - `table`: the table of objects, sessions, exported references and names, with one function
//!   per request that changes it.

mod handshake;
mod table;

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub(crate) use handshake::{HandshakeLimits, DEFAULT_MAX_HANDSHAKES};

use self::handshake::Handshakes;
use self::table::{Table, Types};
use crate::auth::AuthKey;
use crate::error::Error;
use crate::object::Abort;
use crate::transport::{Listener, Stream};
use crate::wire::{self, Bytes, Method, ObjectId, Request, Response, SessionId, WireError};

/// The longest a write to a client may block (a client that does not read its answers).
const WRITE_DEADLINE: Duration = Duration::from_secs(60);

/// A connection thread's stack (reserved, committed as used): room for a registered type's
/// handler, while many idle connections cost little.
const CONN_STACK: usize = 1 << 20;

/// How long a connection thread looks for its client's next request before it sleeps (a client
/// in a loop of calls sends it within a few microseconds of its answer; see `Framed::await_briefly`).
const SERVER_SPIN: Duration = Duration::from_micros(50);

/// What every connection thread shares.
struct Core {
    table: Mutex<Table>,
    /// Connections in their handshake now, and how long each may take.
    handshakes: Handshakes,
    shutting_down: AtomicBool,
    /// Connection threads looking for their next request without sleeping now, and how many may.
    spinning: AtomicUsize,
    max_spinning: usize,
    key: AuthKey,
    max_frame: u32,
    registry: Types,
    /// TLS for TCP connections (feature `tls`).
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Core {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

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
        registry: Types,
    ) -> Self {
        let core = Arc::new(Core {
            table: Mutex::new(Table::default()),
            handshakes: Handshakes::new(handshakes),
            spinning: AtomicUsize::new(0),
            max_spinning: std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1).max(1)),
            shutting_down: AtomicBool::new(false),
            key,
            max_frame,
            registry,
            #[cfg(feature = "tls")]
            tls: None,
        });
        Server { listener, core }
    }

    /// Serves TCP connections over TLS with `config` (none: in the clear).
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(mut self, config: Option<Arc<rustls::ServerConfig>>) -> Self {
        if let Some(core) = Arc::get_mut(&mut self.core) {
            core.tls = config;
        }
        self
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
            let Some(id) = self.core.handshakes.admit(&stream) else { continue };
            let core = self.core.clone();
            let poker = listener.clone();
            let spawned = std::thread::Builder::new()
                .name("manager-conn".into())
                .stack_size(CONN_STACK)
                .spawn(move || serve_connection(&core, stream, id, &poker));
            if let Err(e) = spawned {
                self.core.handshakes.admitted(id);
                tracing::warn!(error = %e, "manager cannot start a thread for a connection; dropped it");
            }
        }
        // Wake every blocked call so that its client learns the news.
        self.core.table().wake_all();
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

/// Whether the peer of a connection closed it. The client sends nothing while it waits for an
/// answer, so a readable socket means its end (or garbage, which ends it too).
fn peer_gone(fd: RawFd) -> bool {
    // SAFETY: `fd` is the socket of the connection being served, which stays open while its
    // requests run, and a `ConnAbort` holding it lives only that long.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    proc_os::fd::is_readable(fd).unwrap_or(false)
}

/// Authenticates a connection and serves its requests.
fn serve_connection(core: &Core, stream: Stream, id: u64, listener: &Listener) {
    // Counted since `admit`; no longer once the handshake is over, whichever way.
    let handshaking = core.handshakes.counting(id);
    if let Stream::Tcp(s) = &stream {
        crate::transport::keepalive(s);
    }
    // TLS first: the authkey handshake runs inside it (the TLS handshake itself runs with the first
    // read, under the handshake's deadline).
    #[cfg(feature = "tls")]
    let stream = match &core.tls {
        Some(config) => match stream.into_tls_server(config) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(reason = %e, "manager refused a connection");
                return;
            }
        },
        None => stream,
    };
    let (mut framed, hello) = match core.handshakes.greet(stream, &core.key) {
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
    core.table().open_connection(session);
    let abort = ConnAbort { core, fd: framed.stream.raw_fd() };
    loop {
        // A client that just had an answer often calls again at once: look for its next request
        // a little before sleeping (a few connections at a time, so idle ones cost nothing).
        // (Not over TLS: the socket's bytes are records, not the stream's.)
        if framed.stream.is_plain() {
            if core.spinning.fetch_add(1, Ordering::AcqRel) < core.max_spinning {
                framed.await_briefly(SERVER_SPIN);
            }
            core.spinning.fetch_sub(1, Ordering::AcqRel);
        }
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
    let Some(objects) = core.table().close_connection(session) else { return };
    for object in objects {
        object.release_session(session);
    }
}

/// Serves one request: each kind of request has its function (those that change the table are
/// `Table`'s).
fn handle(core: &Core, session: SessionId, request: Request, abort: &dyn Abort) -> Response {
    if core.shutting_down.load(Ordering::SeqCst) && !matches!(request, Request::DecRef(_)) {
        return Response::Err(WireError::ShutDown);
    }
    let mut table = core.table();
    match request {
        Request::Create { kind, init } => table.create(&core.registry, session, kind, init),
        Request::IncRef(id) => table.inc_ref(session, id),
        Request::DecRef(id) => table.dec_ref(session, id),
        Request::Export(id) => table.export(id),
        Request::Adopt(token) => table.adopt(session, token),
        Request::Publish { name, object } => table.publish(name, object),
        Request::Lookup(name) => table.lookup(session, &name),
        Request::Call { object, method, embedded } => {
            call(core, table, session, object, method, embedded, abort)
        }
        Request::CountObjects => table.count_objects(),
        Request::Shutdown => Response::Ok,
    }
}

/// `Request::Call`: runs the method with the table unlocked (it may wait), then settles the
/// references its values held.
fn call(
    core: &Core,
    mut table: MutexGuard<'_, Table>,
    session: SessionId,
    object: ObjectId,
    method: Method,
    embedded: Vec<(Bytes, Vec<u64>)>,
    abort: &dyn Abort,
) -> Response {
    let Some(object) = table.object(object) else {
        return Response::Err(WireError::NoSuchObject);
    };
    // The exported references of proxies inside the call's values become the object's.
    let embedded = table.embed(embedded);
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
    table.hand_over(session, &moved);
    Response::Moved { ids: moved, inner: Box::new(response) }
}
