//! Anonymous shared memory that crosses to children as a handle.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::handle::{export_fd, import_fd};

/// A block of anonymous shared memory, zero-filled when created.
///
/// Serializing a `Segment` as (part of) a child's start arguments gives the child a handle on the
/// same memory; serializing it anywhere else is an error. The memory lives until every process
/// that has it mapped drops its `Segment`.
///
/// # Examples
///
/// ```
/// use proc_core::shm::Segment;
/// use proc_core::Process;
///
/// fn child(seg: Segment) {
///     // SAFETY: the parent does not touch the memory until the child has exited.
///     unsafe { seg.as_ptr().write(42) };
/// }
///
/// let seg = Segment::new(4096).unwrap();
/// Process::new(child, (seg.try_clone().unwrap(),)).start().unwrap().join().unwrap();
/// // SAFETY: the child has exited; nothing else writes the memory.
/// assert_eq!(unsafe { seg.as_ptr().read() }, 42);
/// ```
pub struct Segment {
    fd: OwnedFd,
    map: MmapRaw,
    len: usize,
}

impl Segment {
    /// Creates a zero-filled segment of `len` bytes.
    ///
    /// # Errors
    ///
    /// `len` is zero, or the system refuses the memory (`ENOMEM`, `EMFILE`, ...).
    pub fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize));
        }
        let fd =
            proc_os::shm::anonymous_memory(len).map_err(|e| Error::io("cannot create shared memory", e))?;
        Self::map(fd, len)
    }

    /// Maps the first `len` bytes of the shared memory behind `fd` (a descriptor another
    /// process's segment travelled as, taken with
    /// [`import_shared_fd`](crate::handle::import_shared_fd), say).
    ///
    /// # Errors
    ///
    /// `len` is zero or beyond the object's size (which would make accesses past its end fault),
    /// or the descriptor cannot be inspected or mapped.
    pub fn from_fd(fd: OwnedFd, len: usize) -> Result<Self> {
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Self> {
        // A segment has at least one byte (`is_empty` is always false): a length of zero can only
        // come from garbled bytes.
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize));
        }
        // A length beyond the object would turn accesses past its end into SIGBUS.
        let size =
            proc_os::shm::file_size(fd.as_fd()).map_err(|e| Error::io("cannot inspect shared memory", e))?;
        if (len as u64) > size {
            return Err(Error::new(ErrorKind::OutOfBounds { offset: 0, len, size: size as usize }));
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(fd.as_raw_fd())
            .map_err(|e| Error::io("cannot map shared memory", e))?;
        Ok(Segment { fd, map, len })
    }

    /// Another mapping of the same memory in this process (the address differs).
    ///
    /// # Errors
    ///
    /// Out of descriptors or address space.
    pub fn try_clone(&self) -> Result<Self> {
        let fd = proc_os::fd::dup_cloexec(self.fd.as_fd(), 3)
            .map_err(|e| Error::io("cannot duplicate shared memory", e))?;
        Self::map(fd, self.len)
    }

    /// The start of the memory. It is page-aligned and valid for `len()` bytes while `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment").field("fd", &self.fd.as_raw_fd()).field("len", &self.len).finish()
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let index = export_fd(self.fd.as_fd()).map_err(S::Error::custom)?;
        (index, self.len as u64).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (index, len) = <(u32, u64)>::deserialize(deserializer)?;
        let len = usize::try_from(len).map_err(D::Error::custom)?;
        let fd = import_fd(index).map_err(D::Error::custom)?;
        Segment::map(fd, len).map_err(D::Error::custom)
    }
}
