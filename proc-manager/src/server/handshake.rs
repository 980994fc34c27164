//! The handshake of a new connection: at most so many connections in it at once (the oldest is
//! ended when another comes), and each within one deadline for the mutual authentication and the
//! client's hello. Nothing else is read before.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::{self, AuthKey};
use crate::error::Result;
use crate::transport::Stream;
use crate::wire::{Framed, Hello};

/// How many connections may be in their handshake at once by default (see
/// [`Builder::max_handshakes`](crate::Builder::max_handshakes)).
pub(crate) const DEFAULT_MAX_HANDSHAKES: u32 = 64;

/// How many connections may be in their handshake at once, and how long each may take.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) struct HandshakeLimits {
    pub(crate) max_connections: u32,
    pub(crate) deadline: Duration,
}

/// The connections in their handshake, oldest first, each with a copy of its stream (to end it).
#[derive(Default)]
struct Pending {
    next: u64,
    conns: VecDeque<(u64, Stream)>,
}

/// The connections in their handshake now, at most `max`, and how long each may take.
pub(super) struct Handshakes {
    pending: Mutex<Pending>,
    max: usize,
    deadline: Duration,
}

impl Handshakes {
    pub(super) fn new(limits: HandshakeLimits) -> Self {
        Handshakes {
            pending: Mutex::new(Pending::default()),
            max: usize::try_from(limits.max_connections).unwrap_or(usize::MAX).max(1),
            deadline: limits.deadline,
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection in its handshake; when that makes more than `max`, the connection
    /// that has waited longest is ended (its thread sees the end and quits). `None` when the
    /// connection cannot be tracked (out of descriptors): it is dropped then.
    pub(super) fn admit(&self, stream: &Stream) -> Option<u64> {
        let copy = match stream.try_clone() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "manager closed a new connection: cannot track its handshake");
                return None;
            }
        };
        let mut pending = self.pending();
        pending.next += 1;
        let id = pending.next;
        pending.conns.push_back((id, copy));
        while pending.conns.len() > self.max {
            if let Some((_, oldest)) = pending.conns.pop_front() {
                oldest.shutdown();
                tracing::debug!(
                    "manager closed the oldest connection in its handshake: too many connections in their handshake"
                );
            }
        }
        Some(id)
    }

    /// The handshake of connection `id` ended (either way): it no longer counts.
    pub(super) fn admitted(&self, id: u64) {
        self.pending().conns.retain(|(i, _)| *i != id);
    }

    /// Counts connection `id` (admitted) in its handshake until the guard is dropped.
    pub(super) fn counting(&self, id: u64) -> Handshaking<'_> {
        Handshaking { handshakes: self, id }
    }

    /// The handshake and the hello, within one deadline.
    pub(super) fn greet(&self, stream: Stream, key: &AuthKey) -> Result<(Framed<Stream>, Hello)> {
        let mut stream = stream;
        let deadline = Instant::now() + self.deadline;
        auth::server_side(&mut Deadlined { stream: &mut stream, deadline }, key)?;
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_timeouts(Some(left), Some(left))?;
        let mut framed = Framed::new(stream);
        let hello = framed.read(64)?;
        Ok((framed, hello))
    }
}

/// Counts connection `id` in its handshake until dropped.
pub(super) struct Handshaking<'a> {
    handshakes: &'a Handshakes,
    id: u64,
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        self.handshakes.admitted(self.id);
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
