//! The wire: length-prefixed postcard frames, and the requests and responses they carry.
//!
//! A frame is a little-endian `u32` length and that many bytes of postcard, holding exactly one
//! value (a value followed by more bytes is refused). Lengths above the limit are refused before
//! anything is allocated. Stored values are opaque bytes to the server
//! (the proxies' types live in the clients), so nothing a client sends can make the server run
//! code, and no request nests: decoding is bounded by the frame's size. The one recursive type,
//! `Response` (a `Moved` answer wraps the answer proper), refuses a `Moved` inside a `Moved`
//! before reading it, so no answer nests deeper than two levels either.

use std::cell::Cell;
use std::io::{self, Read, Write};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// The manager protocol's version, which both sides say in the handshake's challenges
/// (`auth`). Bump it with any change to how messages are encoded (this module's types, the frame
/// format, the handshake), so that a client and a server of different multiproc versions refuse
/// each other ([`Error::ProtocolVersion`]) before any message instead of misreading one.
pub(crate) const PROTOCOL_VERSION: u16 = 1;

/// The default limit on a frame's size.
pub(crate) const DEFAULT_MAX_FRAME: u32 = 64 << 20;

/// An opaque serialized value.
pub(crate) type Bytes = serde_bytes::ByteBuf;

/// A stream with a read buffer: a small frame costs one `read`, not two (length, then body).
/// Only frames are read through it; the handshake before it reads exact sizes.
#[derive(Debug)]
pub(crate) struct Framed<S> {
    pub(crate) stream: S,
    /// The read timeout set on the stream (the client changes it only when a call needs another).
    pub(crate) read_timeout: Option<std::time::Duration>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
}

/// The read buffer's size (it grows for a larger frame, and shrinks back after).
const BUF: usize = 16 << 10;

impl<S: Read + Write> Framed<S> {
    pub(crate) fn new(stream: S) -> Self {
        Framed { stream, read_timeout: None, buf: vec![0; BUF], start: 0, end: 0, out: Vec::new() }
    }

    /// Makes `need` bytes available from `start`. The buffer grows as bytes arrive (at most
    /// doubling), so a header announcing a large frame costs nothing until its bytes come.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.end - self.start >= need {
            return Ok(());
        }
        if self.start + need > self.buf.len() && self.start > 0 {
            // Move what is there to the front.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < need {
            if self.end == self.buf.len() {
                let grown = self.buf.len().saturating_mul(2).min(self.start + need).max(self.end + 1);
                self.buf.resize(grown, 0);
            }
            let n = self.stream.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
        }
        Ok(())
    }

    /// Looks for the next bytes without sleeping for up to `budget`: tries to read without
    /// waiting, yielding the CPU between tries. `true` when bytes (or the end) arrived, so that
    /// [`read`](Self::read) will not sleep for the first of them.
    ///
    /// A wake-up from sleep costs tens of microseconds on a busy or virtual machine, more than a
    /// whole round trip whose peer answers at once, so a caller expecting an answer soon looks
    /// for it for a little while before it sleeps.
    pub(crate) fn await_briefly(&mut self, budget: std::time::Duration) -> bool
    where
        S: std::os::fd::AsFd,
    {
        if self.end > self.start {
            return true;
        }
        self.start = 0;
        self.end = 0;
        let fd = self.stream.as_fd();
        let mut started = None;
        loop {
            match proc_os::socket::recv_nowait(fd, &mut self.buf) {
                Ok(Some(n)) => {
                    self.end = n;
                    return true;
                }
                Ok(None) => {}
                // The blocking read reports it.
                Err(_) => return true,
            }
            let t0 = *started.get_or_insert_with(std::time::Instant::now);
            if t0.elapsed() >= budget {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Reads one frame.
    ///
    /// On a nonblocking stream, a `WouldBlock` error leaves the bytes read so far in the buffer
    /// (nothing of a frame is consumed before all of it is there): the next `read` goes on where
    /// this one stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the stream ends or fails (`UnexpectedEof` for a frame cut
    /// short); [`Error::TooLarge`] for a length above `max` (nothing more is read or allocated);
    /// [`Error::Protocol`] for bytes that do not decode as one value, or a value followed by
    /// more bytes.
    pub(crate) fn read<T: DeserializeOwned>(&mut self, max: u32) -> Result<T> {
        self.fill(4)?;
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_le_bytes(len);
        if len > max {
            return Err(Error::TooLarge(u64::from(len)));
        }
        let total = 4 + len as usize;
        self.fill(total)?;
        // A frame holds exactly one value: postcard stops at the value's end, so bytes after it
        // are refused here (random bytes could otherwise decode as a short request, `Shutdown`).
        let value = match proc_core::codec::take_from_bytes(&self.buf[self.start + 4..self.start + total]) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => {
                Err(Error::protocol(format!("{} bytes after the value of a frame of {len}", rest.len())))
            }
            Err(e) => Err(Error::protocol(e)),
        };
        self.start += total;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > BUF {
                self.buf.truncate(BUF);
                self.buf.shrink_to_fit();
            }
        }
        value
    }

    /// Writes one frame with one `write`.
    ///
    /// # Errors
    ///
    /// The value does not serialize, is larger than `max`, or the stream fails.
    pub(crate) fn write<T: Serialize>(&mut self, value: &T, max: u32) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(&[0; 4]);
        let mut out = proc_core::codec::to_extend(value, out).map_err(Error::Serialize)?;
        let body = out.len() - 4;
        let len = u32::try_from(body).ok().filter(|&l| l <= max).ok_or(Error::TooLarge(body as u64))?;
        out[..4].copy_from_slice(&len.to_le_bytes());
        let written = self.stream.write_all(&out);
        if out.capacity() <= BUF {
            self.out = out;
        }
        written?;
        Ok(())
    }
}

/// The frame of `value`: its length and its bytes, for a caller that writes it a part at a time
/// (an async call, on a nonblocking socket).
///
/// # Errors
///
/// The value does not serialize, or is larger than `max`.
#[cfg(feature = "tokio")]
pub(crate) fn frame<T: Serialize>(value: &T, max: u32) -> Result<Vec<u8>> {
    let mut out = proc_core::codec::to_extend(value, vec![0; 4]).map_err(Error::Serialize)?;
    let body = out.len() - 4;
    let len = u32::try_from(body).ok().filter(|&l| l <= max).ok_or(Error::TooLarge(body as u64))?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Whether an I/O error means the peer went away.
pub(crate) fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// An object's id on the server.
pub(crate) type ObjectId = u64;

/// A client's identity: one per client process, shared by its connections.
pub(crate) type SessionId = u128;

/// Who holds a lock: a thread of a client process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) session: SessionId,
    pub(crate) thread: u64,
}

/// The kinds of objects a server keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value,
    Array,
    Queue {
        maxsize: u32,
        joinable: bool,
    },
    Lock,
    RLock,
    Semaphore {
        value: u32,
        bounded: bool,
    },
    Event,
    Condition {
        lock: ObjectId,
    },
    Barrier {
        parties: u32,
    },
    /// A registered type: its registered name, and the Rust type's name (checked by the server
    /// when the object is made, and by `lookup`).
    Custom {
        name: String,
        type_name: String,
    },
}

/// The first frame a client sends on a connection, once authenticated.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) session: SessionId,
    pub(crate) pid: u32,
}

/// A timeout on the wire: `None` blocks as long as it takes.
pub(crate) type Millis = Option<u64>;

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Make an object (with an initial value for `Value`/`Array`/custom types); the session
    /// holds one reference.
    Create { kind: Kind, init: Option<Bytes> },
    /// The session takes one more reference.
    IncRef(ObjectId),
    /// The session drops one reference; the object goes with its last one.
    DecRef(ObjectId),
    /// A reference that travels to another process: held until a session adopts it. Answered
    /// with a token (`Count`).
    Export(ObjectId),
    /// The session adopts an exported reference, by its token.
    Adopt(u64),
    /// Publishes an object under a name (the name holds a reference).
    Publish { name: String, object: ObjectId },
    /// Looks a name up; the session gets a reference.
    Lookup(String),
    /// Calls a method. `embedded`: values of the call that hold proxies, with the export tokens
    /// of those proxies: the object keeps those references while it stores such a value.
    Call { object: ObjectId, method: Method, embedded: Vec<(Bytes, Vec<u64>)> },
    /// How many objects the server keeps.
    CountObjects,
    /// Asks the server to shut down.
    Shutdown,
}

impl Request {
    /// Whether the server may take its time to answer: `None` for a call answered at once,
    /// `Some(timeout)` for a call that waits (as long as it takes for `Some(None)`).
    pub(crate) fn waits(&self) -> Option<Millis> {
        let Request::Call { method, .. } = self else { return None };
        match method {
            Method::QueuePut { block: true, timeout, .. }
            | Method::QueueGet { block: true, timeout }
            | Method::QueueJoin { timeout }
            | Method::Acquire { block: true, timeout, .. }
            | Method::EventWait { timeout }
            | Method::CondWait { timeout, .. }
            | Method::BarrierWait { timeout } => Some(*timeout),
            _ => None,
        }
    }
}

/// A method of an object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Method {
    // dict
    DictGet(Bytes),
    DictInsert(Bytes, Bytes),
    DictRemove(Bytes),
    DictContains(Bytes),
    DictKeys,
    DictValues,
    DictItems,
    DictUpdate(Vec<(Bytes, Bytes)>),
    DictSetDefault(Bytes, Bytes),
    // list
    ListAppend(Bytes),
    ListExtend(Vec<Bytes>),
    ListGet(i64),
    ListSet(i64, Bytes),
    ListInsert(i64, Bytes),
    ListPop(Option<i64>),
    ListRemove(Bytes),
    ListIndex(Bytes),
    /// The items and a version, for an update made on the client (`sort`).
    ListSnapshot,
    /// Replaces the items if the version is still the one given.
    ListReplace {
        version: u64,
        items: Vec<Bytes>,
    },
    // namespace
    NsGet(String),
    NsSet(String, Bytes),
    NsDel(String),
    NsItems,
    // value and array
    ValueGet,
    ValueSet(Bytes),
    ArrayGet(i64),
    ArraySet(i64, Bytes),
    ArraySnapshot,
    // shared by containers
    Len,
    Clear,
    // queue
    QueuePut {
        value: Bytes,
        block: bool,
        timeout: Millis,
    },
    QueueGet {
        block: bool,
        timeout: Millis,
    },
    QueueSize,
    TaskDone,
    QueueJoin {
        timeout: Millis,
    },
    // lock, rlock, semaphore
    Acquire {
        owner: Owner,
        block: bool,
        timeout: Millis,
    },
    Release {
        owner: Owner,
    },
    SemValue,
    // event
    EventSet,
    EventClear,
    EventIsSet,
    EventWait {
        timeout: Millis,
    },
    // condition
    CondWait {
        owner: Owner,
        timeout: Millis,
    },
    CondNotify {
        owner: Owner,
        n: u32,
    },
    // barrier
    BarrierWait {
        timeout: Millis,
    },
    BarrierAbort,
    BarrierReset,
    BarrierState,
    // a registered type
    Custom {
        method: String,
        args: Bytes,
    },
    // Added after the others, so that the variants above keep their numbers on the wire.
    /// Puts a value back at the front of a queue, whatever its size: an async `get` dropped after
    /// the server had taken the value for it returns it (see `client::Undo`).
    QueueUnget(Bytes),
    /// Releases a lock (one level of an RLock) only if `owner` holds it, for a `Lock` too: what a
    /// `LockGuard` and the undoing of a dropped async acquire send, so that they never release a
    /// lock another owner took meanwhile.
    ReleaseOwned {
        owner: Owner,
    },
}

/// What a server answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Ok,
    Created(ObjectId),
    Value(Bytes),
    MaybeValue(Option<Bytes>),
    Values(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    Named(Vec<(String, Bytes)>),
    Snapshot {
        version: u64,
        items: Vec<Bytes>,
    },
    Bool(bool),
    Count(u64),
    /// A barrier's parties, waiting count and whether it is broken.
    Barrier {
        parties: u32,
        waiting: u32,
        broken: bool,
    },
    Found {
        object: ObjectId,
        kind: Kind,
    },
    /// An answer whose values left the object holding proxies: their references moved to the
    /// caller's session, which drops them once it has taken its own.
    Moved {
        ids: Vec<ObjectId>,
        #[serde(deserialize_with = "unnested")]
        inner: Box<Response>,
    },
    Err(WireError),
}

thread_local! {
    /// Whether this thread is decoding the answer inside a `Response::Moved`.
    static IN_MOVED: Cell<bool> = const { Cell::new(false) };
}

/// Decodes the answer inside a `Response::Moved`, refusing another `Moved` there before reading
/// it. The server never nests them, and `Response` is the one recursive type on the wire: without
/// this, a frame of nothing but nested `Moved`s (two bytes a level) would recurse once per level
/// and overflow the client's stack long before the frame limit.
fn unnested<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Box<Response>, D::Error> {
    /// Clears the mark however the inner decoding ends.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            IN_MOVED.with(|m| m.set(false));
        }
    }
    if IN_MOVED.with(|m| m.replace(true)) {
        return Err(D::Error::custom("a moved answer inside a moved answer"));
    }
    let _clear = Clear;
    Response::deserialize(deserializer).map(Box::new)
}

/// An error as the server reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    KeyNotFound,
    IndexOutOfRange,
    ValueNotFound,
    Empty,
    Full,
    Timeout,
    NotHeld,
    BrokenBarrier,
    NoSuchObject,
    MethodNotAllowed(String),
    Remote(String),
    ShutDown,
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        match e {
            WireError::KeyNotFound => Error::KeyNotFound,
            WireError::IndexOutOfRange => Error::IndexOutOfRange,
            WireError::ValueNotFound => Error::ValueNotFound,
            WireError::Empty => Error::Empty,
            WireError::Full => Error::Full,
            WireError::Timeout => Error::Timeout,
            WireError::NotHeld => Error::NotHeld,
            WireError::BrokenBarrier => Error::BrokenBarrier,
            WireError::NoSuchObject => Error::NoSuchObject,
            WireError::MethodNotAllowed(m) => Error::MethodNotAllowed(m),
            WireError::Remote(m) => Error::Remote(m),
            WireError::ShutDown => Error::ShutDown,
        }
    }
}

#[cfg(test)]
mod test;
