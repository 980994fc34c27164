//! The client side: connections to a manager, one session per process.
//!
//! Each process keeps, per manager address, a small pool of authenticated connections that share
//! one session id, and one more that is never used for calls (the session's anchor). A call takes
//! an idle connection (or opens one), so a call that blocks on the server (a queue `get`, a lock
//! `acquire`) blocks only its own thread. The anchor stays open for
//! the life of the process, so the session, and the references and locks it holds, end when the
//! process does — not when a call's connection breaks (a request over the size limit, say).
//!
//! - `asyncio` (feature `tokio`): the same call without blocking the runtime's thread
//!   (`Client::call_async`), and what undoes a call whose future was dropped before its answer.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{self, AuthKey};
use crate::error::{Error, Result};
use crate::transport::{Stream, HANDSHAKE_DEADLINE};
use crate::wire::{Framed, Hello, Request, Response, SessionId};

/// Where a manager listens: a Unix socket path, or a TCP address.
///
/// Written `unix:/path/to/socket` or `tcp:host:port` (see [`Address::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
    /// A TCP address reached over TLS (feature `tls`), with what the client trusts and shows.
    #[cfg(feature = "tls")]
    Tls(SocketAddr, crate::tls::TlsClient),
}

impl Address {
    /// Parses `unix:/path` or `tcp:host:port` (a bare `host:port` is TCP too).
    ///
    /// # Errors
    ///
    /// [`Error::Start`] when the address is malformed or the host does not resolve.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp:").unwrap_or(s);
        hostport
            .to_socket_addrs()
            .map_err(|e| Error::start_in(format_args!("bad manager address {s:?}"), e))?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| Error::start(format!("bad manager address {s:?}: no such host")))
    }

    fn connect(&self) -> Result<Stream> {
        let tcp = |a: &SocketAddr| -> Result<TcpStream> {
            let s = TcpStream::connect_timeout(a, HANDSHAKE_DEADLINE)?;
            let _ = s.set_nodelay(true);
            crate::transport::keepalive(&s);
            Ok(s)
        };
        match self {
            Address::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p)?)),
            Address::Tcp(a) => Ok(Stream::Tcp(tcp(a)?)),
            #[cfg(feature = "tls")]
            Address::Tls(a, tls) => {
                let (config, name) = tls.config()?;
                let conn = rustls::ClientConnection::new(config, name)
                    .map_err(|e| Error::Connection(std::io::Error::other(e)))?;
                // The TLS handshake runs with the first write, under the handshake's deadline.
                Ok(Stream::TlsClient(Box::new(rustls::StreamOwned::new(conn, tcp(a)?))))
            }
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
            #[cfg(feature = "tls")]
            Address::Tls(a, tls) => write!(f, "tls:{a} ({})", tls.server_name()),
        }
    }
}

/// How long past its own time a call waits for the server's answer before it gives up, in
/// milliseconds (see [`set_answer_timeout`]).
static ANSWER_GRACE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(60_000);

/// Sets how long a call waits for a manager's answer beyond its own time (default 60 s) before
/// it fails with [`Error::Connection`] (`TimedOut`): a server that is stopped or cut off does not
/// hang its clients. A call that blocks on purpose (a queue `get`, an `acquire`) waits its own
/// timeout plus this; without a timeout, as long as it takes. For this process. A call that timed
/// out may still be carried out once the server runs again: what a lock's or a semaphore's
/// `acquire` or a queue's `get` was granted then is given back, if the answer comes within
/// another such grace (see [`pending_undos`]); a `put` or a `set` stays done.
pub fn set_answer_timeout(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
    ANSWER_GRACE_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

fn answer_grace() -> Duration {
    Duration::from_millis(ANSWER_GRACE_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// How long a call waits for the answer to `request`: the grace, past the call's own time for a
/// call that waits (none for one that waits as long as it takes).
fn answer_limit(request: &Request, grace: Duration) -> Option<Duration> {
    match request.waits() {
        None => Some(grace),
        Some(None) => None,
        Some(Some(ms)) => Some(Duration::from_millis(ms).saturating_add(grace)),
    }
}

/// The error of a call whose answer did not come in time.
fn no_answer(grace: Duration) -> Error {
    Error::Connection(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the manager did not answer within {grace:?} (stopped or unreachable)"),
    ))
}

/// How long a call looks for its answer without sleeping, before it sleeps.
const CLIENT_SPIN: Duration = Duration::from_micros(100);

/// At most this many idle connections are kept per manager.
const MAX_IDLE: usize = 8;

/// A process's way to one manager.
pub(crate) struct Client {
    pub(crate) address: Address,
    pub(crate) key: AuthKey,
    session: SessionId,
    pid: u32,
    idle: Mutex<Vec<Conn>>,
    /// A connection never used for calls: it keeps the session (its references and locks) for
    /// the life of the process, whatever happens to the others.
    anchor: Mutex<Option<Conn>>,
}

/// One authenticated connection of a client.
struct Conn {
    /// Lets a child made by a plain `fork` drop its copy of the stream at once, so that this
    /// process' session ends with it; dropped before the stream closes (fields drop in order).
    _fork: proc_core::handle::ReleaseOnFork,
    framed: Framed<Stream>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("address", &self.address).finish_non_exhaustive()
    }
}

type Clients = Mutex<(u32, HashMap<Address, Arc<Client>>)>;

fn clients() -> MutexGuard<'static, (u32, HashMap<Address, Arc<Client>>)> {
    static CLIENTS: OnceLock<Clients> = OnceLock::new();
    let mut guard = CLIENTS
        .get_or_init(|| Mutex::new((0, HashMap::new())))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let pid = proc_os::pid();
    if guard.0 != pid {
        // A forked child: its parent's connections and session are not its own.
        // Dropping them closes only this process's copies of the descriptors.
        guard.1.clear();
        guard.0 = pid;
    }
    guard
}

impl Client {
    /// This process's client for `address`, made (and authenticated) on first use.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager cannot be reached; [`Error::Authentication`] when
    /// the key is refused; [`Error::ProtocolVersion`] when the manager speaks another protocol
    /// version.
    pub(crate) fn get(address: &Address, key: &AuthKey) -> Result<Arc<Client>> {
        let mut all = clients();
        if let Some(c) = all.1.get(address) {
            if c.key == *key {
                return Ok(c.clone());
            }
        }
        let session = u128::from_le_bytes(auth::random()?);
        let client = Arc::new(Client {
            address: address.clone(),
            key: key.clone(),
            session,
            pid: proc_os::pid(),
            idle: Mutex::new(Vec::new()),
            anchor: Mutex::new(None),
        });
        // Connect now, so a wrong key or a dead manager shows at once.
        let anchor = client.open()?;
        *client.anchor.lock().unwrap_or_else(PoisonError::into_inner) = Some(anchor);
        all.1.insert(address.clone(), client.clone());
        Ok(client)
    }

    /// The client of `address` this process already has, if any (its key is known then).
    pub(crate) fn known(address: &Address) -> Option<Arc<Client>> {
        clients().1.get(address).cloned()
    }

    /// Forgets this process's client of `address` (the manager shut down).
    pub(crate) fn forget(address: &Address) {
        clients().1.remove(address);
    }

    fn open(&self) -> Result<Conn> {
        let stream = self.address.connect()?;
        // Listed before anything can fail, so that the list never outlives the descriptor.
        let mut conn = Conn {
            _fork: proc_core::handle::ReleaseOnFork::new(stream.as_fd()),
            framed: Framed::new(stream),
        };
        let framed = &mut conn.framed;
        framed.stream.set_timeouts(Some(HANDSHAKE_DEADLINE), Some(HANDSHAKE_DEADLINE))?;
        auth::client_side(&mut framed.stream, &self.key)?;
        framed.write(&Hello { session: self.session, pid: std::process::id() }, 64)?;
        framed.stream.set_timeouts(None, None)?;
        framed.read_timeout = None;
        Ok(conn)
    }

    fn put_back(&self, stream: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(stream);
        }
    }

    /// This process's session with the manager.
    pub(crate) fn session(&self) -> SessionId {
        self.session
    }

    /// Whether this client belongs to this process (not a copy inherited through fork).
    pub(crate) fn is_local(&self) -> bool {
        // Cached, and refreshed after fork: no system call on a proxy call's path.
        self.pid == proc_os::pid()
    }

    /// Sends a request and waits for the answer.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone; the server's error for the request.
    pub(crate) fn call(&self, request: &Request) -> Result<Response> {
        // A connection whose answer did not come closes here: the server gives a waiting call up.
        self.exchange(request).map_err(|(e, _)| e)
    }

    /// [`call`](Self::call), for a call the server may grant after this process gave up waiting
    /// for its answer (past the call's time and the answer grace): `undo` says what undoes the
    /// grant, which a worker does once the answer comes, within another grace (see `undo`).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub(crate) fn call_undoable(self: &Arc<Self>, request: &Request, undo: Undo) -> Result<Response> {
        self.exchange(request).map_err(|(e, given_up)| {
            if let Some(conn) = given_up {
                if !matches!(undo, Undo::Nothing) {
                    undo::undo_later(self.clone(), *conn, undo);
                }
            }
            e
        })
    }

    /// Sends a request and waits for the answer; on failure, also the connection of a request
    /// that went out but whose answer did not come in time.
    fn exchange(&self, request: &Request) -> std::result::Result<Response, (Error, Option<Box<Conn>>)> {
        let stream = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match stream {
            Some(s) => s,
            None => self.open().map_err(|e| (e, None))?,
        };
        let stream = &mut conn.framed;
        // A healthy server answers at once (or when a blocking call's time is up): past a
        // grace period, the server is stopped or cut off, and the call fails instead of hanging.
        let grace = answer_grace();
        let limit = answer_limit(request, grace);
        if stream.read_timeout != limit {
            stream.stream.set_timeouts(limit, Some(grace)).map_err(|e| (e.into(), None))?;
            stream.read_timeout = limit;
        }
        // The server enforces its own limit (it closes the connection past it).
        stream.write(request, u32::MAX).map_err(|e| (e, None))?;
        // Most answers come within microseconds; sleeping for one would cost a wake-up, which
        // is slower than the whole round trip on a busy or virtual machine.
        if stream.stream.is_plain() {
            stream.await_briefly(CLIENT_SPIN);
        }
        let response: Response = match stream.read(u32::MAX) {
            Ok(r) => r,
            Err(Error::Connection(io))
                if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                // No answer in time: it may still come (a part read stays in the buffer).
                return Err((no_answer(grace), Some(Box::new(conn))));
            }
            Err(e) => return Err((e, None)),
        };
        self.put_back(conn);
        match response {
            Response::Err(e) => Err((e.into(), None)),
            r => Ok(r),
        }
    }

    /// A timeout as the wire carries it.
    pub(crate) fn millis(timeout: Option<Duration>) -> Option<u64> {
        timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(feature = "tokio")]
mod asyncio;
mod undo;
pub use undo::pending_undos;
pub(crate) use undo::Undo;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::{Address, Client};
    use crate::auth::AuthKey;

    #[test]
    fn debug_of_a_client_does_not_show_its_key() {
        let client = Client {
            address: Address::Unix("/tmp/m.sock".into()),
            key: AuthKey::new(b"SECRET-0123456789abcdef").unwrap(),
            session: 1,
            pid: 1,
            idle: Mutex::new(Vec::new()),
            anchor: Mutex::new(None),
        };
        let text = format!("{client:?}");
        assert!(!text.contains("SECRET") && !text.contains("83, 69, 67"), "{text}");
        assert!(text.contains("/tmp/m.sock"), "{text}");
    }
}
