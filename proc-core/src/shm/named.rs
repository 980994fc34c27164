//! Named shared memory, as Python's `multiprocessing.shared_memory.SharedMemory`.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};

/// Longest name, leading `/` included: within macOS' limit of 31 characters.
const MAX_NAME: usize = 30;

/// A named block of shared memory that any process may open by name.
///
/// The creator's segment is registered with the resource tracker; [`unlink`](Self::unlink)
/// removes the name (the memory lives on while mapped). Dropping a `SharedMemory` unmaps it
/// (Python's `close()`); it does not unlink it. Serialized, it is its name: the receiver opens it.
///
/// On macOS the size of an opened segment is rounded up to a whole page.
///
/// # Examples
///
/// ```
/// use proc_core::shm::SharedMemory;
///
/// let a = SharedMemory::create(100).unwrap();
/// let b = SharedMemory::open(a.name()).unwrap();
/// a.write(10, &[1, 2, 3]).unwrap();
/// let mut out = [0; 3];
/// b.read(10, &mut out).unwrap();
/// assert_eq!(out, [1, 2, 3]);
/// a.unlink().unwrap();
/// assert!(a.unlink().unwrap_err().is_not_found());
/// ```
pub struct SharedMemory {
    /// The POSIX name, with its leading `/`.
    name: String,
    map: MmapRaw,
    size: usize,
}

impl SharedMemory {
    /// Creates a segment of `size` zero bytes under a new random name.
    ///
    /// # Errors
    ///
    /// `size` is zero; the system refuses (`ENOSPC`, `EMFILE`, ...).
    pub fn create(size: usize) -> Result<Self> {
        loop {
            let name = format!("mp_{:016x}", proc_os::random_u64());
            match Self::create_named(&name, size) {
                Err(e) if e.is_already_exists() => continue,
                other => return other,
            }
        }
    }

    /// Creates a segment of `size` zero bytes named `name` (with or without a leading `/`).
    ///
    /// # Errors
    ///
    /// A segment of that name exists ([`Error::is_already_exists`]); the name is invalid (empty,
    /// longer than 29 characters, or containing `/` or NUL); `size` is zero; the system refuses.
    pub fn create_named(name: &str, size: usize) -> Result<Self> {
        if size == 0 {
            return Err(Error::new(ErrorKind::ZeroSize));
        }
        let name = posix_name(name)?;
        let cname = c_name(&name)?;
        // Registered before it exists (write-ahead): a process killed right after creating it
        // leaves a segment the tracker knows, and unlinks at the program's end. (Registered after,
        // a kill in between left it in /dev/shm until reboot.) A name that never came to exist is
        // unlinked in vain, silently.
        super::tracker::register(&name);
        let fd = match proc_os::shm::shm_open(&cname, true) {
            Ok(fd) => fd,
            Err(e) => {
                // Not ours (it existed already) or never made: the tracker must not unlink it.
                super::tracker::unregister(&name);
                return Err(Error::io("cannot create shared memory", e));
            }
        };
        let mapped = proc_os::shm::set_len(fd.as_fd(), size).and_then(|()| map(&fd, size));
        match mapped {
            Ok(map) => {
                tracing::debug!(name = %name, size, "created shared memory");
                Ok(SharedMemory { name, map, size })
            }
            Err(e) => {
                let _ = proc_os::shm::shm_unlink(&cname);
                super::tracker::unregister(&name);
                Err(Error::io("cannot create shared memory", e))
            }
        }
    }

    /// Opens the existing segment `name` (with or without a leading `/`).
    ///
    /// The segment must be one this user could have made: it is refused unless its owner is this
    /// process' effective user and neither its group nor other users may write it (as
    /// [`create`](Self::create) makes them, mode 0600). A segment that another user planted
    /// under the expected name, or that anyone may rewrite, is not attached.
    /// [`open_unverified`](Self::open_unverified) skips the check.
    ///
    /// # Errors
    ///
    /// No such segment ([`Error::is_not_found`]); the name is invalid; access denied; the segment
    /// belongs to another user or is group- or world-writable ([`Error::is_untrusted_segment`]).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, true)
    }

    /// Opens the existing segment `name` without checking its owner or mode: for segments shared
    /// on purpose between users (mode 0660 for a group, or a segment made by another program).
    /// Whoever can write the segment can change what this process reads from it at any time.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_core::shm::SharedMemory;
    ///
    /// let a = SharedMemory::create(64).unwrap();
    /// let b = SharedMemory::open_unverified(a.name()).unwrap();
    /// assert_eq!(b.size(), a.size());
    /// a.unlink().unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// No such segment ([`Error::is_not_found`]); the name is invalid; access denied.
    pub fn open_unverified(name: &str) -> Result<Self> {
        Self::open_with(name, false)
    }

    fn open_with(name: &str, verify: bool) -> Result<Self> {
        let name = posix_name(name)?;
        let cname = c_name(&name)?;
        let fd =
            proc_os::shm::shm_open(&cname, false).map_err(|e| Error::io("cannot open shared memory", e))?;
        let info =
            proc_os::shm::file_info(fd.as_fd()).map_err(|e| Error::io("cannot open shared memory", e))?;
        if verify {
            let (owner, mode, euid) = (info.owner, info.mode, proc_os::geteuid());
            if owner != euid || mode & 0o022 != 0 {
                return Err(Error::new(ErrorKind::UntrustedSegment { name, owner, mode, euid }));
            }
        }
        let size = usize::try_from(info.size).unwrap_or(0);
        if size == 0 {
            return Err(Error::new(ErrorKind::ZeroSize));
        }
        let map = map(&fd, size).map_err(|e| Error::io("cannot map shared memory", e))?;
        Ok(SharedMemory { name, map, size })
    }

    /// The name, without the leading `/` (as Python's `name`).
    pub fn name(&self) -> &str {
        &self.name[1..]
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The start of the memory, valid for `size()` bytes while `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The memory as a byte slice (Python's `buf`).
    ///
    /// # Safety
    ///
    /// No process may write the bytes while the slice is in use.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `size` bytes while `self` lives; the caller rules out
        // concurrent writes.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size) }
    }

    /// The memory as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// No other process or thread may read or write the bytes while the slice is in use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is valid for `size` bytes while `self` lives; the caller rules out
        // any concurrent access.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size) }
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// The range goes past the end of the segment.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked above) and `buf` is a distinct,
        // exclusively borrowed buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// # Errors
    ///
    /// The range goes past the end of the segment.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: the range is inside the mapping (checked above) and `data` is a distinct buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::new(ErrorKind::OutOfBounds { offset, len, size: self.size })),
        }
    }

    /// Removes the name, so no process can open the segment any more (Python's `unlink()`). The
    /// memory stays valid for every process that has it open.
    ///
    /// # Errors
    ///
    /// The name was already removed ([`Error::is_not_found`]).
    pub fn unlink(&self) -> Result<()> {
        let cname = c_name(&self.name)?;
        proc_os::shm::shm_unlink(&cname).map_err(|e| Error::io("cannot unlink shared memory", e))?;
        super::tracker::unregister(&self.name);
        tracing::debug!(name = %self.name, "unlinked shared memory");
        Ok(())
    }

    /// Unmaps the segment (Python's `close()`); dropping it does the same.
    pub fn close(self) {}
}

fn map(fd: &OwnedFd, size: usize) -> io::Result<MmapRaw> {
    MmapOptions::new().len(size).map_raw(fd.as_raw_fd())
}

/// Validates a user-given name and returns it with a leading `/`.
fn posix_name(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let invalid = |why: &str| Err(Error::new(ErrorKind::InvalidName(format!("{name:?}: {why}"))));
    if bare.is_empty() {
        return invalid("empty");
    }
    if bare.contains('/') || bare.contains('\0') || bare.contains('\n') {
        return invalid("contains '/', NUL or a newline");
    }
    if bare.len() + 1 > MAX_NAME {
        return invalid("longer than 29 characters");
    }
    Ok(format!("/{bare}"))
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::new(ErrorKind::InvalidName(name.to_owned())))
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory").field("name", &self.name()).field("size", &self.size).finish()
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.name().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SharedMemory::open(&name).map_err(D::Error::custom)
    }
}
