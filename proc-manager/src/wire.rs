//! The wire: length-prefixed postcard frames, and the requests and responses they carry.
//!
//! A frame is a little-endian `u32` length and that many bytes of postcard. Lengths above the
//! limit are refused before anything is allocated. Stored values are opaque bytes to the server
//! (the proxies' types live in the clients), so nothing a client sends can make the server run
//! code, and no request nests: decoding is bounded by the frame's size.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default limit on a frame's size.
pub(crate) const DEFAULT_MAX_FRAME: u32 = 64 << 20;

/// An opaque serialized value.
pub(crate) type Bytes = serde_bytes::ByteBuf;

/// Writes one frame.
///
/// # Errors
///
/// The value does not serialize, is larger than `max`, or the stream fails.
pub(crate) fn write_frame<T: Serialize>(mut w: impl Write, value: &T, max: u32) -> Result<()> {
    let body = postcard::to_stdvec(value).map_err(|e| Error::Serialize(e.to_string()))?;
    let len =
        u32::try_from(body.len()).ok().filter(|&l| l <= max).ok_or(Error::TooLarge(body.len() as u64))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    Ok(())
}

/// Reads one frame.
///
/// # Errors
///
/// [`Error::Connection`] when the stream ends or fails (`UnexpectedEof` for a frame cut short);
/// [`Error::TooLarge`] for a length above `max` (nothing more is read); [`Error::Protocol`] for
/// bytes that do not decode.
pub(crate) fn read_frame<T: DeserializeOwned>(mut r: impl Read, max: u32) -> Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > max {
        return Err(Error::TooLarge(u64::from(len)));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    postcard::from_bytes(&body).map_err(Error::protocol)
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
    /// A registered type, by its registered name.
    Custom(String),
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
    /// A reference that travels to another process: held until a session adopts it.
    Export(ObjectId),
    /// The session adopts an exported reference.
    Adopt(ObjectId),
    /// Publishes an object under a name (the name holds a reference).
    Publish { name: String, object: ObjectId },
    /// Looks a name up; the session gets a reference.
    Lookup(String),
    /// Calls a method.
    Call { object: ObjectId, method: Method },
    /// How many objects the server keeps.
    CountObjects,
    /// Asks the server to shut down.
    Shutdown,
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
    Err(WireError),
}

/// An error as the server reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    KeyNotFound,
    IndexOutOfRange,
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
