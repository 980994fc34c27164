//! The sockets between clients and a manager, which both sides use: [`Stream`] (a Unix socket or
//! TCP), [`Listener`], and the deadline of the handshake.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

/// The longest a client may take to authenticate and say hello: the server's default limit (see
/// [`Builder::handshake_timeout`](crate::Builder::handshake_timeout)), and the client's own for
/// connecting and its side of the handshake.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// Turns TCP keepalive on, so that a client whose machine vanished is noticed (its session
/// ends, its locks are released).
pub(crate) fn keepalive(stream: &TcpStream) {
    if proc_os::socket::set_keepalive(stream.as_fd()).is_err() {
        tracing::debug!("cannot turn TCP keepalive on");
    }
}

/// A stream to or from a manager: a Unix socket, TCP, or TLS over TCP (feature `tls`).
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    TlsClient(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    #[cfg(feature = "tls")]
    TlsServer(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

/// Delegates to the socket under the stream (for TLS, the TCP socket).
macro_rules! on_socket {
    ($stream:expr, $s:ident => $e:expr) => {
        match $stream {
            Stream::Unix($s) => $e,
            Stream::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            Stream::TlsClient(t) => {
                let $s = &t.sock;
                $e
            }
            #[cfg(feature = "tls")]
            Stream::TlsServer(t) => {
                let $s = &t.sock;
                $e
            }
        }
    };
}

impl Stream {
    pub(crate) fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        on_socket!(self, s => {
            s.set_read_timeout(read)?;
            s.set_write_timeout(write)
        })
    }

    /// Switches the socket (of a TLS stream: its TCP socket) to nonblocking mode or back.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        on_socket!(self, s => s.set_nonblocking(nonblocking))
    }

    /// Whether the stream holds bytes for the socket that are not written yet (TLS records
    /// queued by `write`, written by `flush`): a nonblocking caller then waits for room, not for
    /// bytes to read.
    #[cfg(feature = "tokio")]
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::TlsClient(t) => t.conn.wants_write(),
            #[cfg(feature = "tls")]
            Stream::TlsServer(t) => t.conn.wants_write(),
            _ => false,
        }
    }

    /// Ends the connection's way to the peer (for every copy of it), keeping the way back: the
    /// peer sees the end, and its answer can still be read.
    pub(crate) fn shutdown_write(&self) {
        let _ = on_socket!(self, s => s.shutdown(std::net::Shutdown::Write));
    }

    /// Another handle on the socket (of a TLS stream: on its TCP socket, good for `shutdown`).
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            #[cfg(feature = "tls")]
            Stream::TlsClient(t) => t.sock.try_clone().map(Stream::Tcp),
            #[cfg(feature = "tls")]
            Stream::TlsServer(t) => t.sock.try_clone().map(Stream::Tcp),
        }
    }

    /// Ends the connection both ways, for every copy of it: a thread reading it sees its end.
    pub(crate) fn shutdown(&self) {
        let _ = on_socket!(self, s => s.shutdown(std::net::Shutdown::Both));
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        on_socket!(self, s => s.as_raw_fd())
    }

    /// Whether the socket's bytes are the stream's (not TLS records): only then may a reader look
    /// at the socket itself (`Framed::await_briefly`).
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self, Stream::Unix(_) | Stream::Tcp(_))
    }

    /// A TCP stream accepted by a server with TLS: the server's side of TLS over it.
    #[cfg(feature = "tls")]
    pub(crate) fn into_tls_server(self, config: &std::sync::Arc<rustls::ServerConfig>) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => {
                let conn = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
                Ok(Stream::TlsServer(Box::new(rustls::StreamOwned::new(conn, s))))
            }
            other => Ok(other),
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
        on_socket!(self, s => s.as_fd())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::TlsClient(t) => t.read(buf),
            #[cfg(feature = "tls")]
            Stream::TlsServer(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::TlsClient(t) => t.write(buf),
            #[cfg(feature = "tls")]
            Stream::TlsServer(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::TlsClient(t) => t.flush(),
            #[cfg(feature = "tls")]
            Stream::TlsServer(t) => t.flush(),
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
    pub(crate) fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
    }

    /// Connects to the listener itself (to wake a blocked `accept`).
    pub(crate) fn poke(&self) {
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
