//! `Manager`: starting a server process (or connecting to one), and making shared objects.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proc_core::handle::Fd;
use proc_core::{Process, StartMethod};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{self, AuthKey};
use crate::client::{Address, Client};
use crate::error::{Error, Result};
use crate::proxy::{
    Array, AsObject, Barrier, Condition, Dict, Event, FromObject, Handle, KindRef, List, Lock, Namespace,
    ObjectHandle, Proxy, Queue, Semaphore, Value,
};
use crate::registry::{Registry, Shared};
use crate::server::{HandshakeLimits, Server, DEFAULT_MAX_HANDSHAKES};
use crate::sys::Janitor;
use crate::transport::{Listener, HANDSHAKE_DEADLINE};
use crate::wire::{Bytes, Kind, Request, Response, DEFAULT_MAX_FRAME};

/// Options for a manager server: the authkey, the address, registered types, the frame limit.
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
///
/// let manager = Manager::builder().authkey(b"a secret of 16 bytes or more".to_vec()).start()?;
/// let d = manager.dict::<String, u32>()?;
/// d.insert("a".into(), 1)?;
/// assert_eq!(d.get("a")?, Some(1));
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a manager builder does nothing until `start`, `start_tcp` or `serve` is called"]
pub struct Builder {
    authkey: Option<AuthKey>,
    registry: Registry,
    max_frame: u32,
    max_handshakes: u32,
    handshake_timeout: Duration,
    method: Option<StartMethod>,
    /// TLS for a TCP server, and what the owner's own client trusts (feature `tls`).
    #[cfg(feature = "tls")]
    tls: Option<(crate::tls::TlsServer, crate::tls::TlsClient)>,
}

impl Builder {
    /// Serves TCP clients over TLS (feature `tls`): the server shows `server`'s certificate, and
    /// the authkey handshake runs inside the encrypted stream. `owner` is what this process's
    /// own client trusts (the roots `server`'s certificate chains to, and the name it carries);
    /// the manager's [`address`](Manager::address) is then an [`Address::Tls`] with it, and
    /// proxies passed to children reconnect over TLS. For [`start_tcp`](Self::start_tcp),
    /// [`start_tcp_all_interfaces`](Self::start_tcp_all_interfaces) and
    /// [`serve`](Self::serve) on a TCP address; a Unix-socket manager refuses it.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, server: crate::tls::TlsServer, owner: crate::tls::TlsClient) -> Self {
        self.tls = Some((server, owner));
        self
    }

    /// The key clients must prove they hold (Python's `authkey`): at least
    /// [`MIN_AUTHKEY_LEN`](crate::MIN_AUTHKEY_LEN) (16) bytes, checked when the server starts.
    /// Default: 32 random bytes. The key travels to children inside the proxies passed to them;
    /// no `Debug` output shows it.
    ///
    /// Python accepts any key, even a short one; a manager may listen on TCP, where anyone who
    /// reaches the port can try keys, so a short key is refused here
    /// ([`Error::AuthkeyTooShort`] from `start`, `start_tcp` or `serve`).
    pub fn authkey(mut self, key: Vec<u8>) -> Self {
        self.authkey = Some(AuthKey::unchecked(key));
        self
    }

    /// Registers a shared type under `name` (Python's `register`).
    pub fn register<T: Shared>(mut self, name: &str) -> Self {
        self.registry.register::<T>(name);
        self
    }

    /// The largest request the server reads (default 64 MiB); a larger one closes that
    /// connection.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How many connections may be in their handshake at once (default 64; at least 1). When
    /// one more arrives, the connection that has waited longest is closed.
    ///
    /// The handshake proves that both sides hold the authkey; until it is over the server
    /// reads nothing else, and gives each connection at most
    /// [`handshake_timeout`](Self::handshake_timeout) (5 s by default). A connection costs a thread,
    /// so this cap bounds what unauthenticated peers cost the server (threads and descriptors),
    /// and closing the oldest keeps a burst of silent connections from locking out a client
    /// with the key, which needs one round trip or two to get through. Authenticated
    /// connections are not counted.
    pub fn max_handshakes(mut self, connections: u32) -> Self {
        self.max_handshakes = connections.max(1);
        self
    }

    /// How long a connection may take over its handshake before the server closes it (default
    /// 5 s; at least 1 ms). With [`max_handshakes`](Self::max_handshakes) it bounds what a peer
    /// that does not hold the key can make the server keep.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    fn handshake_limits(&self) -> HandshakeLimits {
        HandshakeLimits { max_connections: self.max_handshakes, deadline: self.handshake_timeout }
    }

    /// The start method of the server process.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    fn key(&self) -> Result<AuthKey> {
        match &self.authkey {
            Some(k) => k.clone().checked(),
            None => AuthKey::random(),
        }
    }

    /// Starts a server process on a Unix socket (mode 0600, in a new directory of mode 0700) and
    /// returns its manager (Python's `Manager()` / `start()`). The server exits when the manager
    /// shuts down or is dropped, and when this process dies, even by SIGKILL.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] when the socket cannot be made or the process cannot start;
    /// [`Error::AuthkeyTooShort`] for an [`authkey`](Self::authkey) under 16 bytes.
    pub fn start(self) -> Result<Manager> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return Err(Error::start(
                "TLS is for TCP managers (start_tcp); a Unix socket stays on this machine",
            ));
        }
        let key = self.key()?;
        let dir = std::env::temp_dir().join(format!(
            "multiproc-manager-{}-{:08x}",
            std::process::id(),
            u32::from_le_bytes(auth::random()?)
        ));
        // The server's janitor removes the directory however the server ends, but only once it
        // runs: the resource tracker removes it at the program's end should this process be killed
        // before (registered first, so that no moment leaves it unknown).
        proc_core::shm::remove_dir_at_end(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::start_in(format_args!("cannot create {}", dir.display()), e))?;
        let path = dir.join(SOCKET_NAME);
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::start_in(format_args!("cannot listen on {}", path.display()), e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::start_in(format_args!("cannot restrict {}", path.display()), e))?;
        let fd = Fd::from(OwnedFd::from(listener));
        let options = ServerOptions {
            unix: true,
            key: key.clone(),
            handshakes: self.handshake_limits(),
            registry: self.registry,
            max_frame: self.max_frame,
            dir: Some(dir.clone()),
            #[cfg(feature = "tls")]
            tls: None,
        };
        let mut builder = Process::new(server_main, (fd, options)).daemon(true).name("ManagerServer");
        if let Some(m) = self.method {
            builder = builder.start_method(m);
        }
        let process = match builder.start() {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::start_in("cannot start the manager's server", e));
            }
        };
        let address = Address::Unix(path);
        // The socket listens already: connecting cannot race the server's start.
        let client = match Client::get(&address, &key) {
            Ok(c) => c,
            Err(e) => {
                let _ = process.kill();
                let _ = process.join_timeout(Duration::from_secs(5));
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(Manager { client, key, process: Some(process), dir: Some(dir) })
    }

    /// Starts a server process listening on a TCP address (for clients on other machines).
    /// Binding every interface (`0.0.0.0` or `::`) must be asked for with
    /// [`start_tcp_all_interfaces`](Self::start_tcp_all_interfaces).
    ///
    /// Only clients that prove they hold the authkey are served. Without `tls` (feature
    /// `tls`), the traffic after that handshake is neither encrypted nor integrity-protected:
    /// whoever can read or alter the network path can read the values and inject requests. Over a
    /// network you do not trust, use TLS, or listen on loopback and reach it through a tunnel (SSH,
    /// WireGuard).
    ///
    /// # Errors
    ///
    /// [`Error::Start`] for an unspecified address, or when binding or starting fails;
    /// [`Error::AuthkeyTooShort`] for an [`authkey`](Self::authkey) under 16 bytes.
    pub fn start_tcp(self, address: SocketAddr) -> Result<Manager> {
        if address.ip().is_unspecified() {
            return Err(Error::start(
                "binding every interface needs start_tcp_all_interfaces (the manager would be reachable from any network)",
            ));
        }
        self.start_tcp_any(address)
    }

    /// [`start_tcp`](Self::start_tcp) on any address, all interfaces included.
    ///
    /// # Errors
    ///
    /// As [`start_tcp`](Self::start_tcp).
    pub fn start_tcp_all_interfaces(self, address: SocketAddr) -> Result<Manager> {
        self.start_tcp_any(address)
    }

    fn start_tcp_any(self, address: SocketAddr) -> Result<Manager> {
        let key = self.key()?;
        let listener = TcpListener::bind(address)
            .map_err(|e| Error::start_in(format_args!("cannot listen on {address}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Start { message: e.to_string(), source: Some(Box::new(e)) })?;
        let fd = Fd::from(OwnedFd::from(listener));
        let handshakes = self.handshake_limits();
        #[cfg(feature = "tls")]
        let (tls, address) = match self.tls {
            Some((server, owner)) => (Some(server), Address::Tls(bound, owner)),
            None => (None, Address::Tcp(bound)),
        };
        #[cfg(not(feature = "tls"))]
        let address = Address::Tcp(bound);
        let options = ServerOptions {
            unix: false,
            key: key.clone(),
            handshakes,
            registry: self.registry,
            max_frame: self.max_frame,
            dir: None,
            #[cfg(feature = "tls")]
            tls,
        };
        let mut builder = Process::new(server_main, (fd, options)).daemon(true).name("ManagerServer");
        if let Some(m) = self.method {
            builder = builder.start_method(m);
        }
        let process = builder.start().map_err(|e| Error::start_in("cannot start the manager's server", e))?;
        let client = Client::get(&address, &key)?;
        Ok(Manager { client, key, process: Some(process), dir: None })
    }

    /// Serves on `address` in this process until a client asks the server to shut down
    /// (Python's `get_server().serve_forever()`). A TCP address that binds every interface is
    /// refused, as in [`start_tcp`](Self::start_tcp); bind one explicitly, or use
    /// [`serve_all_interfaces`](Self::serve_all_interfaces).
    ///
    /// # Errors
    ///
    /// [`Error::Start`] when the address cannot be bound (a Unix socket path that exists is not
    /// replaced); [`Error::AuthkeyTooShort`] for an [`authkey`](Self::authkey) under 16 bytes.
    pub fn serve(self, address: &Address) -> Result<()> {
        let tcp = match address {
            Address::Tcp(a) => Some(a),
            #[cfg(feature = "tls")]
            Address::Tls(a, _) => Some(a),
            Address::Unix(_) => None,
        };
        if let Some(a) = tcp {
            if a.ip().is_unspecified() {
                return Err(Error::start("binding every interface needs serve_all_interfaces"));
            }
        }
        self.serve_all_interfaces(address)
    }

    /// [`serve`](Self::serve) on any address, all interfaces included.
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    pub fn serve_all_interfaces(self, address: &Address) -> Result<()> {
        let key = self.key()?;
        let listener = match address {
            Address::Unix(p) => {
                let l = UnixListener::bind(p)
                    .map_err(|e| Error::start_in(format_args!("cannot listen on {}", p.display()), e))?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::Start { message: e.to_string(), source: Some(Box::new(e)) })?;
                Listener::Unix(l)
            }
            Address::Tcp(a) => Listener::Tcp(
                TcpListener::bind(a).map_err(|e| Error::start_in(format_args!("cannot listen on {a}"), e))?,
            ),
            #[cfg(feature = "tls")]
            Address::Tls(a, _) => Listener::Tcp(
                TcpListener::bind(a).map_err(|e| Error::start_in(format_args!("cannot listen on {a}"), e))?,
            ),
        };
        #[cfg(feature = "tls")]
        let tls = match (&self.tls, address) {
            (Some((server, _)), Address::Tcp(_) | Address::Tls(..)) => Some(server.config()?),
            (Some(_), Address::Unix(_)) => {
                return Err(Error::start("TLS is for TCP managers; a Unix socket stays on this machine"))
            }
            (None, _) => None,
        };
        let server =
            Server::new(listener, key, self.max_frame, self.handshake_limits(), self.registry.resolve());
        #[cfg(feature = "tls")]
        let server = server.with_tls(tls);
        server.serve_forever();
        Ok(())
    }
}

/// What a server process is started with, besides its listener.
#[derive(Debug, Serialize, Deserialize)]
struct ServerOptions {
    unix: bool,
    key: AuthKey,
    registry: Registry,
    max_frame: u32,
    handshakes: HandshakeLimits,
    /// The directory made for the socket by `start`: the server's janitor removes it.
    dir: Option<PathBuf>,
    /// TLS for the TCP listener.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsServer>,
}

/// The name of the socket in the directory `start` makes for it.
const SOCKET_NAME: &str = "manager.sock";

/// The server process's body.
fn server_main(listener: Fd, options: ServerOptions) {
    // The owner removes the socket's directory when it shuts the server down; when the owner is
    // killed instead, proc-core ends this daemon at once, with nothing run on its way out, so a
    // janitor process removes the directory once this process has ended, however it ended.
    // Dropped (after the server and its listener) at the end of a normal shutdown.
    let _janitor = options.dir.as_ref().and_then(|dir| match Janitor::start(dir, &dir.join(SOCKET_NAME)) {
        Ok(janitor) => Some(janitor),
        Err(e) => {
            tracing::warn!(error = %e, "the manager cannot start the janitor of its socket's directory");
            None
        }
    });
    let fd = listener.into_owned();
    let listener = if options.unix {
        Listener::Unix(UnixListener::from(fd))
    } else {
        Listener::Tcp(TcpListener::from(fd))
    };
    let server =
        Server::new(listener, options.key, options.max_frame, options.handshakes, options.registry.resolve());
    #[cfg(feature = "tls")]
    let server = match options.tls.as_ref().map(crate::tls::TlsServer::config).transpose() {
        Ok(tls) => server.with_tls(tls),
        Err(e) => {
            tracing::warn!(error = %e, "the manager cannot set up TLS");
            return;
        }
    };
    server.serve_forever();
}

/// A manager: a server process owning shared objects, and the way to make them (Python's
/// `multiprocessing.Manager()`).
///
/// Objects are made with [`dict`](Self::dict), [`list`](Self::list), [`queue`](Self::queue),
/// [`lock`](Self::lock), ... and used through typed proxies, which can be passed to child
/// processes as start arguments. Dropping the manager started by [`Manager::start`] shuts its
/// server down.
///
/// # Examples
///
/// ```
/// use proc_core::Process;
/// use proc_manager::{Dict, List, Manager};
///
/// fn fill(d: Dict<String, u32>, l: List<u32>) {
///     d.insert("answer".into(), 42).unwrap();
///     l.extend([1, 2, 3]).unwrap();
/// }
///
/// let manager = Manager::start()?;
/// let d = manager.dict()?;
/// let l = manager.list()?;
/// let p = Process::new(fill, (d.clone(), l.clone())).start().unwrap();
/// p.join().unwrap();
/// assert_eq!(d.items()?, [("answer".to_string(), 42)]);
/// assert_eq!(l.snapshot()?, [1, 2, 3]);
/// # Ok::<(), proc_manager::Error>(())
/// ```
///
/// # Errors
///
/// Every method that talks to the server: [`Error::Connection`] when it is gone,
/// [`Error::ShutDown`] when it is shutting down.
pub struct Manager {
    client: Arc<Client>,
    key: AuthKey,
    process: Option<Process<()>>,
    dir: Option<PathBuf>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager").field("address", &self.client.address).finish_non_exhaustive()
    }
}

impl Manager {
    /// Starts a manager with a random authkey on a private Unix socket.
    ///
    /// # Errors
    ///
    /// As [`Builder::start`].
    pub fn start() -> Result<Manager> {
        Manager::builder().start()
    }

    /// Options: authkey, registered types, address.
    pub fn builder() -> Builder {
        Builder {
            authkey: None,
            registry: Registry::default(),
            max_frame: DEFAULT_MAX_FRAME,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            handshake_timeout: HANDSHAKE_DEADLINE,
            method: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Connects to a running manager (Python's `BaseManager(address, authkey).connect()`).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when it cannot be reached; [`Error::Authentication`] for a wrong key;
    /// [`Error::ProtocolVersion`] for a manager of another multiproc version;
    /// [`Error::AuthkeyTooShort`] for a key shorter than [`MIN_AUTHKEY_LEN`](crate::MIN_AUTHKEY_LEN)
    /// (no manager has one).
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager> {
        let key = AuthKey::new(authkey)?;
        let client = Client::get(address, &key)?;
        Ok(Manager { client, key, process: None, dir: None })
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.client.address
    }

    /// The authkey.
    pub fn authkey(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// The server process's id, for a manager this process started.
    pub fn server_pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    fn create<P>(&self, kind: Kind, init: Option<Bytes>, make: impl FnOnce(Arc<Handle>) -> P) -> Result<P> {
        match self.client.call(&Request::Create { kind: kind.clone(), init })? {
            Response::Created(id) => Ok(make(Handle::new(self.client.clone(), id, kind))),
            r => Err(Error::protocol(format!("unexpected answer {r:?}"))),
        }
    }

    /// A new shared dict.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<Dict<K, V>> {
        self.create(Kind::Dict, None, Dict::from_handle)
    }

    /// A new shared list.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<List<T>> {
        self.create(Kind::List, None, List::from_handle)
    }

    /// A new namespace.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn namespace(&self) -> Result<Namespace> {
        self.create(Kind::Namespace, None, Namespace::from_handle)
    }

    /// A new shared value.
    ///
    /// # Errors
    ///
    /// Also [`Error::Serialize`].
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<Value<T>> {
        let init = proc_core::codec::to_vec(&value).map_err(Error::Serialize)?;
        self.create(Kind::Value, Some(Bytes::from(init)), Value::from_handle)
    }

    /// A new shared array holding `values`.
    ///
    /// # Errors
    ///
    /// Also [`Error::Serialize`].
    pub fn array<T: Serialize + DeserializeOwned>(
        &self,
        values: impl IntoIterator<Item = T>,
    ) -> Result<Array<T>> {
        let items = values
            .into_iter()
            .map(|v| proc_core::codec::to_vec(&v).map(Bytes::from))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::Serialize)?;
        let init = proc_core::codec::to_vec(&items).map_err(Error::Serialize)?;
        self.create(Kind::Array, Some(Bytes::from(init)), Array::from_handle)
    }

    /// A new queue of at most `maxsize` values (0: unbounded).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn queue<T: Serialize + DeserializeOwned>(&self, maxsize: u32) -> Result<Queue<T>> {
        self.create(Kind::Queue { maxsize, joinable: false }, None, Queue::from_handle)
    }

    /// A new joinable queue (`task_done`, `join`).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let jobs = manager.joinable_queue::<u32>(0)?;
    /// jobs.put(7)?;
    /// let worker = {
    ///     let jobs = jobs.clone();
    ///     std::thread::spawn(move || -> proc_manager::Result<u32> {
    ///         let job = jobs.get()?;
    ///         jobs.task_done()?;
    ///         Ok(job * 6)
    ///     })
    /// };
    /// jobs.join()?; // returns once every job put is done
    /// assert_eq!(worker.join().unwrap()?, 42);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self, maxsize: u32) -> Result<Queue<T>> {
        self.create(Kind::Queue { maxsize, joinable: true }, None, Queue::from_handle)
    }

    /// A new lock.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn lock(&self) -> Result<Lock> {
        self.create(Kind::Lock, None, Lock::from_handle)
    }

    /// A new reentrant lock: its holder may take it again, and releases it as often.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let lock = manager.rlock()?;
    /// let outer = lock.acquire()?;
    /// let inner = lock.acquire()?; // the same holder: no deadlock
    /// drop((inner, outer));
    /// assert!(lock.try_acquire()?.is_some());
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn rlock(&self) -> Result<Lock> {
        self.create(Kind::RLock, None, Lock::from_handle)
    }

    /// A new semaphore with `value` permits.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn semaphore(&self, value: u32) -> Result<Semaphore> {
        self.create(Kind::Semaphore { value, bounded: false }, None, Semaphore::from_handle)
    }

    /// A new bounded semaphore: releasing past `value` is an error.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = proc_manager::Manager::start()?;
    /// let sem = manager.bounded_semaphore(1)?;
    /// assert!(matches!(sem.release(), Err(proc_manager::Error::NotHeld)));
    /// sem.acquire()?;
    /// sem.release()?;
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn bounded_semaphore(&self, value: u32) -> Result<Semaphore> {
        self.create(Kind::Semaphore { value, bounded: true }, None, Semaphore::from_handle)
    }

    /// A new event.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn event(&self) -> Result<Event> {
        self.create(Kind::Event, None, Event::from_handle)
    }

    /// A new condition over `lock` (a lock of this manager).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down; [`Error::NoSuchObject`] when `lock` is not a lock of this manager.
    pub fn condition(&self, lock: &Lock) -> Result<Condition> {
        self.create(Kind::Condition { lock: lock.object_id() }, None, Condition::from_handle)
    }

    /// A new barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// Also [`Error::Start`] for zero parties.
    pub fn barrier(&self, parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::start("a barrier needs at least one party"));
        }
        self.create(Kind::Barrier { parties }, None, Barrier::from_handle)
    }

    /// A new object of the type registered as `name` (see [`Builder::register`]).
    ///
    /// # Errors
    ///
    /// Also [`Error::MethodNotAllowed`] when no type is registered under `name`, or another type
    /// than `T`; [`Error::Remote`] when its `new` failed.
    pub fn create_object<T: Shared>(&self, name: &str, init: T::Init) -> Result<Proxy<T>> {
        let init = proc_core::codec::to_vec(&init).map_err(Error::Serialize)?;
        let kind = Kind::Custom { name: name.to_string(), type_name: std::any::type_name::<T>().to_string() };
        self.create(kind, Some(Bytes::from(init)), Proxy::from_handle)
    }

    /// Publishes an object under `name`, for clients that [`lookup`](Self::lookup) it (Python's
    /// `register('get_queue', callable=lambda: queue)`). The name keeps the object alive.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down; [`Error::NoSuchObject`] when `object` is not an object of this manager.
    pub fn publish(&self, name: &str, object: &impl AsObject) -> Result<()> {
        match self.client.call(&Request::Publish { name: name.to_string(), object: object.object_id() })? {
            Response::Ok => Ok(()),
            r => Err(Error::protocol(format!("unexpected answer {r:?}"))),
        }
    }

    /// The object published under `name`, as proxy type `P`.
    ///
    /// # Errors
    ///
    /// Also [`Error::NoSuchObject`] for an unknown name; [`Error::MethodNotAllowed`] when the
    /// object is not of `P`'s kind.
    pub fn lookup<P: FromObject>(&self, name: &str) -> Result<P> {
        match self.client.call(&Request::Lookup(name.to_string()))? {
            Response::Found { object, kind } => {
                let handle = Handle::new(self.client.clone(), object, kind.clone());
                if !P::fits(&KindRef(&kind)) {
                    return Err(Error::MethodNotAllowed(format!("{name:?} is a {kind:?}")));
                }
                Ok(P::from_object(ObjectHandle(handle)))
            }
            r => Err(Error::protocol(format!("unexpected answer {r:?}"))),
        }
    }

    /// How many objects the server keeps now (Python's `_number_of_objects`): for tests and
    /// leak hunting.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down.
    pub fn number_of_objects(&self) -> Result<usize> {
        match self.client.call(&Request::CountObjects)? {
            Response::Count(n) => Ok(n as usize),
            r => Err(Error::protocol(format!("unexpected answer {r:?}"))),
        }
    }

    /// Shuts the server down (Python's `shutdown`): every later call of any proxy fails with
    /// [`Error::Connection`] or [`Error::ShutDown`]. For a manager this process started, waits
    /// for the server process (killing it after 5 s) and removes its socket.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the server is gone already (the process is still reaped).
    pub fn shutdown(mut self) -> Result<()> {
        self.shutdown_now()
    }

    fn shutdown_now(&mut self) -> Result<()> {
        let result = self.client.call(&Request::Shutdown).map(|_| ());
        Client::forget(&self.client.address);
        if let Some(p) = self.process.take() {
            if !matches!(p.join_timeout(Duration::from_secs(5)), Ok(Some(()))) {
                let _ = p.kill();
                let _ = p.join_timeout(Duration::from_secs(5));
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }
}

impl Drop for Manager {
    /// A manager that started its server shuts it down; one that connected leaves it running.
    fn drop(&mut self) {
        if self.process.is_some() && self.client.is_local() {
            let _ = self.shutdown_now();
        }
    }
}
