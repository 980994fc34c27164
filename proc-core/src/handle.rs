//! Handles that cross into other processes: descriptors travel in a side table next to the bytes.
//!
//! A handle type (a shared-memory segment, a lock, a queue, a connection end) serializes its
//! descriptors with [`export_fd`], which puts a duplicate in the side table of the message being
//! built and writes only the table index. The receiver deserializes with [`import_fd`], which takes
//! the descriptor back out of the received table. The table exists only while proc-core (or another
//! multiproc crate) builds or reads a message that carries descriptors; serializing a handle anywhere
//! else (to JSON, to a file) fails with a clear error, as Python's "should only be shared between
//! processes through inheritance".
//!
//! ```
//! use std::os::fd::OwnedFd;
//! use proc_core::handle::{deserialize_with_fds, serialize_with_fds, Fd};
//!
//! let fd = Fd::from(OwnedFd::from(std::fs::File::open("/dev/null").unwrap()));
//! let (bytes, fds) = serialize_with_fds(&fd).unwrap();
//! assert_eq!(fds.len(), 1);
//! let back: Fd = deserialize_with_fds(&bytes, fds).unwrap();
//! // Outside such a message, a handle refuses to serialize, and says why.
//! let e = proc_core::codec::to_vec(&back).unwrap_err();
//! assert!(e.to_string().starts_with("a handle can only be sent to a child as part of its start arguments"));
//! ```

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::child::entry::EntryPoint;
use crate::error::{Error, ErrorKind, Result, HANDLE_OUTSIDE_START as OUTSIDE};
use crate::wire::MAX_FDS;

/// The side table of a message being serialized: its descriptors, and the keys of those that
/// [`export_shared_fd`] put there with their indexes.
#[derive(Default)]
struct Sink {
    fds: Vec<OwnedFd>,
    shared: Vec<(u128, u32)>,
}

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
    static SOURCE: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// Set by a handle whose bytes can be decoded only once (see [`single_use`]).
    static SINGLE_USE: Cell<bool> = const { Cell::new(false) };
}

/// Serializes `value` with the [codec](crate::codec), collecting the descriptors of the handles inside it.
///
/// # Errors
///
/// Serialization errors of `value`, a descriptor that cannot be duplicated, or more than 253
/// descriptors.
pub fn serialize_with_fds<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut bytes = Vec::new();
    let fds = serialize_with_fds_into(value, &mut bytes)?;
    Ok((bytes, fds))
}

/// As [`serialize_with_fds`], into `buf` (its bytes replaced, its allocation kept): for a sender
/// that reuses one buffer for many messages. On error `buf` holds part of the value.
///
/// # Errors
///
/// As [`serialize_with_fds`].
pub fn serialize_with_fds_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<Vec<OwnedFd>> {
    let mut guard = SinkGuard { saved: Some(SINK.with(|s| s.borrow_mut().replace(Sink::default()))) };
    let done = crate::codec::to_vec_into(value, buf);
    let fds = guard.restore();
    done.map_err(|source| match source.custom_message() {
        // export_fd refuses the handle after the last one that fits.
        Some(_) if fds.len() >= MAX_FDS => Error::new(ErrorKind::TooManyHandles(fds.len() + 1)),
        _ => Error::new(ErrorKind::Serialize { what: "value", source }),
    })?;
    Ok(fds)
}

/// Puts the outer side table back, even if a `Serialize` implementation panicked.
struct SinkGuard {
    saved: Option<Option<Sink>>,
}

impl SinkGuard {
    fn restore(&mut self) -> Vec<OwnedFd> {
        match self.saved.take() {
            Some(saved) => SINK
                .with(|s| std::mem::replace(&mut *s.borrow_mut(), saved))
                .map(|sink| sink.fds)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        drop(self.restore());
    }
}

/// Puts the outer side table back, even if a `Deserialize` implementation panicked.
struct SourceGuard {
    saved: Option<Option<Vec<Option<OwnedFd>>>>,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            SOURCE.with(|s| *s.borrow_mut() = saved);
        }
    }
}

/// Deserializes `bytes` with the [codec](crate::codec), handing `fds` to the handles inside it.
///
/// Descriptors that no handle claims are closed.
///
/// # Errors
///
/// Deserialization errors, including a handle whose descriptor is missing from `fds`.
pub fn deserialize_with_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    deserialize_once(bytes, fds).0
}

/// As [`deserialize_with_fds`], also telling whether a handle inside called [`single_use`] (the
/// bytes must not be decoded again, whether or not the rest of the value decoded).
pub(crate) fn deserialize_once<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> (Result<T>, bool) {
    let table = fds.into_iter().map(Some).collect();
    let outer_once = SINGLE_USE.with(|s| s.replace(false));
    let guard = SourceGuard { saved: Some(SOURCE.with(|s| s.borrow_mut().replace(table))) };
    let value = crate::codec::from_bytes(bytes);
    drop(guard);
    let once = SINGLE_USE.with(|s| s.replace(outer_once || s.get()));
    (value.map_err(|source| Error::new(ErrorKind::Deserialize { what: "value", source })), once)
}

/// Says, from a handle's `Deserialize` implementation, that the bytes just read can be used only
/// once (they carry a one-time token, say), as bytes that carry descriptors can. A process's
/// return value holding such a handle is then handed out by one `join` only; later ones get
/// `ResultTaken` instead of a second, failing decode.
pub fn single_use() {
    SINGLE_USE.with(|s| s.set(true));
}

/// Puts a duplicate of `fd` into the side table of the message being serialized, returning its index.
///
/// Call it from a handle's `Serialize` implementation.
///
/// # Errors
///
/// Outside [`serialize_with_fds`] (and the process starts built on it), or when `fd` cannot be
/// duplicated.
pub fn export_fd(fd: BorrowedFd<'_>) -> Result<u32> {
    SINK.with(|s| {
        let mut sink = s.borrow_mut();
        let sink = sink.as_mut().ok_or_else(|| Error::new(ErrorKind::HandleOutsideStart))?;
        push_dup(&mut sink.fds, fd)
    })
}

/// As [`export_fd`], for a descriptor that many handles of one message share (the memory that
/// many small primitives are carved from): the first call with `key` in the message being
/// serialized puts a duplicate of `fd` into its side table; later calls with the same `key` return
/// the same index and duplicate nothing. So a message with a thousand such handles carries one
/// descriptor, not a thousand. The receiver reads the index with [`import_shared_fd`].
///
/// The caller promises that equal keys name the same object: a key unique to the object, such as
/// a random 128-bit id stored with it.
///
/// # Errors
///
/// As [`export_fd`].
pub fn export_shared_fd(fd: BorrowedFd<'_>, key: u128) -> Result<u32> {
    SINK.with(|s| {
        let mut sink = s.borrow_mut();
        let sink = sink.as_mut().ok_or_else(|| Error::new(ErrorKind::HandleOutsideStart))?;
        if let Some(&(_, index)) = sink.shared.iter().find(|(k, _)| *k == key) {
            return Ok(index);
        }
        let index = push_dup(&mut sink.fds, fd)?;
        sink.shared.push((key, index));
        Ok(index)
    })
}

/// Puts a duplicate of `fd` at the end of `fds`, returning its index.
fn push_dup(fds: &mut Vec<OwnedFd>, fd: BorrowedFd<'_>) -> Result<u32> {
    if fds.len() >= MAX_FDS {
        return Err(Error::new(ErrorKind::TooManyHandles(fds.len() + 1)));
    }
    let dup = proc_os::fd::dup_cloexec(fd, 3).map_err(|e| Error::io("cannot duplicate a handle", e))?;
    fds.push(dup);
    Ok((fds.len() - 1) as u32)
}

/// Takes descriptor `index` out of the side table of the message being deserialized.
///
/// Call it from a handle's `Deserialize` implementation.
///
/// # Errors
///
/// Outside [`deserialize_with_fds`], or when `index` is missing or was already taken.
pub fn import_fd(index: u32) -> Result<OwnedFd> {
    SOURCE.with(|s| {
        s.borrow_mut()
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::HandleOutsideStart))?
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| {
                Error::new(ErrorKind::ChildFailed(format!("handle descriptor {index} is missing")))
            })
    })
}

/// A duplicate of descriptor `index` of the message being deserialized, which stays in the table
/// (it is closed with the table if nothing takes it): for an index that several handles of the
/// message may name, as [`export_shared_fd`] writes.
///
/// Call it from a handle's `Deserialize` implementation.
///
/// # Errors
///
/// Outside [`deserialize_with_fds`], when `index` is missing or was taken by [`import_fd`], or
/// when the descriptor cannot be duplicated.
pub fn import_shared_fd(index: u32) -> Result<OwnedFd> {
    SOURCE.with(|s| {
        let source = s.borrow();
        let fd = source
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::HandleOutsideStart))?
            .get(index as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                Error::new(ErrorKind::ChildFailed(format!("handle descriptor {index} is missing")))
            })?;
        proc_os::fd::dup_cloexec(fd.as_fd(), 3).map_err(|e| Error::io("cannot duplicate a handle", e))
    })
}

/// Whether a side table is being filled on this thread (a handle may serialize itself).
pub fn in_transfer() -> bool {
    SINK.with(|s| s.borrow().is_some())
}

/// An owned file descriptor that can be passed to a child as (part of) a start argument.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use proc_core::{handle::Fd, Process};
///
/// fn child(out: Fd) {
///     let mut file = std::fs::File::from(out.into_owned());
///     writeln!(file, "written by the child").unwrap();
/// }
///
/// let file = std::fs::File::options().write(true).open("/dev/null").unwrap();
/// let p = Process::new(child, (Fd::from(std::os::fd::OwnedFd::from(file)),)).start().unwrap();
/// p.join().unwrap();
/// ```
#[derive(Debug)]
pub struct Fd(OwnedFd);

impl Fd {
    /// The descriptor.
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Self {
        Fd(fd)
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let index = export_fd(self.0.as_fd()).map_err(|e| match e.kind() {
            ErrorKind::HandleOutsideStart => S::Error::custom(OUTSIDE),
            _ => S::Error::custom(e),
        })?;
        index.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        import_fd(index).map(Fd).map_err(D::Error::custom)
    }
}

/// Keeps a descriptor from living on in children made by a plain `fork` (a target's own
/// `libc::fork()`, say; the start methods take care of their own children): such a child's copy
/// is pointed at `/dev/null` as soon as the child first runs, from a `pthread_atfork` handler. A peer
/// then sees this process' end when this process ends (or, if the copy has not been scheduled yet,
/// as soon as it is), not when its last forked copy does.
/// proc-core lists a process' alive pipe and control sockets (its own and its children's) this way;
/// proc-manager lists its connections.
///
/// Drop the guard before the descriptor is closed (declare it before the descriptor's owner in a
/// struct): a number still listed after its close could be taken by an unrelated descriptor, which
/// a forked child would then lose.
///
/// The list grows with the process's descriptor limit (`RLIMIT_NOFILE`'s soft limit when the list
/// needs room, rounded up to a multiple of 1024), so every descriptor a process can have open fits,
/// up to 2^20 (1,048,576) of them: a process whose soft limit is higher and that lists more than
/// that, or one that lists a descriptor twice and so fills the list before its limit, has the rest
/// live on in forked children as descriptors do. Raising the limit later lets the list grow further
/// when it next needs room; it never shrinks, and a dropped guard's place is reused.
///
/// ```
/// use std::os::fd::AsFd;
/// use proc_core::handle::ReleaseOnFork;
///
/// struct Connection {
///     _release: ReleaseOnFork, // dropped first
///     socket: std::os::unix::net::UnixStream,
/// }
///
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let conn = Connection { _release: ReleaseOnFork::new(a.as_fd()), socket: a };
/// assert!(conn.socket.peer_addr().is_ok());
/// ```
#[derive(Debug)]
pub struct ReleaseOnFork {
    slot: Option<usize>,
    fd: RawFd,
}

impl ReleaseOnFork {
    /// Lists `fd` until the guard is dropped.
    pub fn new(fd: BorrowedFd<'_>) -> Self {
        let fd = fd.as_raw_fd();
        ReleaseOnFork { slot: crate::sys::release_on_fork(fd), fd }
    }

    /// The guard's place in the list (`None`: the list was full), for tests that check that places
    /// are reused.
    #[doc(hidden)]
    pub fn slot(&self) -> Option<usize> {
        self.slot
    }

    /// Unlists the descriptor now (the guard's drop then does nothing more).
    pub(crate) fn unlist(&self) {
        if let Some(slot) = self.slot {
            crate::sys::keep_on_fork(slot, self.fd);
        }
    }
}

impl Drop for ReleaseOnFork {
    fn drop(&mut self) {
        self.unlist();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};

    use super::{deserialize_with_fds, serialize_with_fds, Fd};

    fn null() -> Fd {
        Fd::from(OwnedFd::from(std::fs::File::open("/dev/null").unwrap()))
    }

    #[test]
    fn descriptors_travel_beside_the_bytes_in_order() {
        let value = (null(), 7u8, vec![null(), null()]);
        let (bytes, fds) = serialize_with_fds(&value).unwrap();
        assert_eq!(fds.len(), 3);
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let back: (Fd, u8, Vec<Fd>) = deserialize_with_fds(&bytes, fds).unwrap();
        assert_eq!(back.1, 7);
        assert_eq!(back.0.as_raw_fd(), raw[0]);
        assert_eq!(back.2[1].as_raw_fd(), raw[2]);
    }

    #[test]
    fn outside_a_transfer_handles_refuse() {
        let e = crate::codec::to_vec(&null()).unwrap_err();
        assert_eq!(e.to_string(), crate::error::HANDLE_OUTSIDE_START);
        // Deserializing an index without a table fails too, and says why.
        let bytes = crate::codec::to_vec(&0u32).unwrap();
        let e = crate::codec::from_bytes::<Fd>(&bytes).unwrap_err();
        assert!(e.to_string().contains("a handle can only be sent"), "{e}");
        // A missing descriptor is an error, not a panic.
        assert!(deserialize_with_fds::<Fd>(&bytes, Vec::new()).is_err());
    }

    #[test]
    fn nested_transfers_do_not_mix_tables() {
        struct Nested;
        impl serde::Serialize for Nested {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // A handle serialized inside another message's serialization gets its own table.
                let (inner, fds) = serialize_with_fds(&null()).map_err(serde::ser::Error::custom)?;
                assert_eq!(fds.len(), 1);
                inner.serialize(s)
            }
        }
        let (_, fds) = serialize_with_fds(&(null(), Nested, null())).unwrap();
        assert_eq!(fds.len(), 2);
    }

    #[test]
    fn a_shared_descriptor_travels_once_per_message() {
        struct Shared<'a>(&'a Fd, u128);
        impl serde::Serialize for Shared<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::export_shared_fd(self.0.as_fd(), self.1)
                    .map_err(serde::ser::Error::custom)?
                    .serialize(s)
            }
        }
        let (a, b) = (null(), null());
        // Three handles on `a` (one key), one on `b` (another key), and a plain one on `a`.
        let value = (
            Shared(&a, 7),
            Shared(&b, 8),
            Shared(&a, 7),
            a.as_fd().try_clone_to_owned().map(Fd::from).unwrap(),
            Shared(&a, 7),
        );
        let (bytes, fds) = serialize_with_fds(&value).unwrap();
        assert_eq!(fds.len(), 3);
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let (i, j, k, _, l): (u32, u32, u32, u32, u32) = crate::codec::from_bytes(&bytes).unwrap();
        assert_eq!((i, j, k, l), (0, 1, 0, 0));
        // Each handle of the message may read index 0; the table keeps its own, closed at the end.
        struct Import(OwnedFd);
        impl<'de> serde::Deserialize<'de> for Import {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let index = <u32 as serde::Deserialize>::deserialize(d)?;
                super::import_shared_fd(index).map(Import).map_err(serde::de::Error::custom)
            }
        }
        let back: (Import, Import, Import, Fd, Import) = deserialize_with_fds(&bytes, fds).unwrap();
        assert!(![back.0 .0.as_raw_fd(), back.2 .0.as_raw_fd(), back.4 .0.as_raw_fd()]
            .iter()
            .any(|f| raw.contains(f)));
        assert_eq!(back.3.as_raw_fd(), raw[2]);
        // Outside a message, both refuse.
        assert!(crate::codec::to_vec(&Shared(&a, 7)).is_err());
        assert!(crate::codec::from_bytes::<Import>(&bytes).is_err());
    }

    #[test]
    fn too_many_handles_is_its_own_error() {
        let many: Vec<Fd> = (0..300).map(|_| null()).collect();
        let e = serialize_with_fds(&many).unwrap_err();
        assert!(e.to_string().contains("handles do not fit"), "{e}");
    }

    #[test]
    fn a_panicking_serializer_leaves_no_table_behind() {
        struct Panics;
        impl serde::Serialize for Panics {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("in serialize")
            }
        }
        let r = std::panic::catch_unwind(|| serialize_with_fds(&(null(), Panics)));
        assert!(r.is_err());
        // Outside a transfer again: a handle refuses to serialize.
        assert!(!super::in_transfer());
        assert!(crate::codec::to_vec(&null()).is_err());
    }
}

/// Whether a received side table is being read on this thread (a handle may deserialize itself).
fn in_receive() -> bool {
    SOURCE.with(|s| s.borrow().is_some())
}

/// A plain function pointer that can be passed to a child, as a handle: the child gets the same
/// function of the same binary (located by its offset from a fixed function, and checked against a
/// fingerprint of its code). For callbacks that belong to a shared object, such as a barrier's
/// action.
///
/// Like every handle it serializes only into a start argument or a multiproc channel, never from
/// untrusted bytes.
///
/// # Examples
///
/// ```
/// use proc_core::{handle::StaticFn, Process};
///
/// fn hello() {
///     println!("hello from a function pointer");
/// }
///
/// fn child(f: StaticFn) {
///     f.call();
/// }
///
/// let p = Process::new(child, (StaticFn::new(hello),)).start().unwrap();
/// p.join().unwrap();
/// ```
#[derive(Clone, Copy)]
pub struct StaticFn(fn());

impl StaticFn {
    /// Wraps `f`.
    pub fn new(f: fn()) -> Self {
        StaticFn(f)
    }

    /// Calls the function.
    pub fn call(&self) {
        (self.0)()
    }

    /// The function pointer.
    pub fn get(&self) -> fn() {
        self.0
    }
}

impl std::fmt::Debug for StaticFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StaticFn").field(&(self.0 as usize as *const ())).finish()
    }
}

impl Serialize for StaticFn {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if !in_transfer() {
            return Err(S::Error::custom(OUTSIDE));
        }
        EntryPoint::of_addr(self.0 as usize).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StaticFn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        if !in_receive() {
            return Err(D::Error::custom(OUTSIDE));
        }
        let addr = EntryPoint::deserialize(deserializer)?.resolve_addr().map_err(D::Error::custom)?;
        // SAFETY: the sender computed the entry point from a `fn()` of the same binary (the
        // fingerprint of the code at `addr` matches), and the bytes come from a multiproc transfer
        // between processes of this program, so `addr` is that function.
        Ok(StaticFn(unsafe { std::mem::transmute::<usize, fn()>(addr) }))
    }
}

/// The place of a function in this program's binary, as plain data: its offset from a fixed
/// function, which ASLR cannot change within one binary, and a fingerprint of its code. For
/// crates that build their own dispatch to long-lived children (a pool's workers run tasks
/// named this way): the child resolves the same address, checked against the fingerprint.
///
/// Unlike [`StaticFn`] it is not a handle: it serializes anywhere, and carries no type. Only
/// resolve values that come from a process of this program over a private channel, and call the
/// address only as the type of function it was made from.
///
/// # Examples
///
/// ```
/// use proc_core::handle::CodeAddr;
///
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// let addr = CodeAddr::of(double as fn(u64) -> u64 as usize);
/// let back = CodeAddr::from_bytes(&addr.to_bytes());
/// assert_eq!(back.resolve().unwrap(), double as fn(u64) -> u64 as usize);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodeAddr {
    offset: i64,
    fingerprint: u64,
}

impl CodeAddr {
    /// The place of the function at `addr` (a function pointer cast to `usize`).
    pub fn of(addr: usize) -> Self {
        let entry = EntryPoint::of_addr(addr);
        let (offset, fingerprint) = entry.parts();
        CodeAddr { offset, fingerprint }
    }

    /// The same function's address in this process.
    ///
    /// # Errors
    ///
    /// An invalid-argument error when the code there is not the same (another binary, or bytes
    /// that were not made by [`CodeAddr::of`]).
    pub fn resolve(&self) -> Result<usize> {
        EntryPoint::from_parts(self.offset, self.fingerprint).resolve_addr().map_err(Error::invalid_argument)
    }

    /// 16 bytes: the offset then the fingerprint, little-endian.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..].copy_from_slice(&self.fingerprint.to_le_bytes());
        out
    }

    /// The inverse of [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        let mut offset = [0u8; 8];
        let mut fingerprint = [0u8; 8];
        offset.copy_from_slice(&bytes[..8]);
        fingerprint.copy_from_slice(&bytes[8..]);
        CodeAddr { offset: i64::from_le_bytes(offset), fingerprint: u64::from_le_bytes(fingerprint) }
    }
}
