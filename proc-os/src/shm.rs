//! POSIX shared-memory objects and the files behind mappings: `shm_open`, `shm_unlink`, size,
//! owner and permissions.
//!
//! For multiproc's crates (proc-core's shared memory); not a stable API.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::fd::{retry, set_cloexec};
use crate::sys::{Backend, Os};

/// Opens the POSIX shared-memory object `name` read-write, creating it (exclusively, mode 0600)
/// if `create`; close-on-exec.
///
/// # Errors
///
/// `shm_open` failed: `AlreadyExists` when `create` and the name is taken, `NotFound` when not
/// `create` and there is no such object, `PermissionDenied`; or `fcntl` failed.
pub fn shm_open(name: &CStr, create: bool) -> io::Result<OwnedFd> {
    let flags = if create { OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR } else { OFlag::O_RDWR };
    let fd = nix::sys::mman::shm_open(name, flags, Mode::S_IRUSR | Mode::S_IWUSR)?;
    set_cloexec(fd.as_fd())?;
    Ok(fd)
}

/// Removes the POSIX shared-memory object `name`.
///
/// # Errors
///
/// `shm_unlink` failed: `NotFound` when there is no such object, `PermissionDenied`.
pub fn shm_unlink(name: &CStr) -> io::Result<()> {
    nix::sys::mman::shm_unlink(name).map_err(io::Error::from)
}

/// Sets the size of the file or shared-memory object `fd` (`ftruncate`, `EINTR` retried).
///
/// # Errors
///
/// `len` does not fit an `off_t` (`InvalidInput`), or `ftruncate` failed (no space, or `fd` is
/// sealed or not writable).
pub fn set_len(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    retry(|| nix::unistd::ftruncate(fd, len).map_err(io::Error::from))
}

/// The size of the file or shared-memory object `fd`.
///
/// # Errors
///
/// `fstat` failed (`fd` is not open).
pub fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    file_info(fd).map(|info| info.size)
}

/// What `fstat` tells of a file or shared-memory object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The size in bytes.
    pub size: u64,
    /// The owner's user id.
    pub owner: u32,
    /// The permission bits.
    pub mode: u32,
}

/// The size, owner and permission bits of the file or shared-memory object `fd` (one `fstat`).
///
/// # Errors
///
/// `fstat` failed (`fd` is not open).
pub fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    let stat = nix::sys::stat::fstat(fd)?;
    // `mode_t` is a u32 on Linux and a u16 on macOS.
    #[allow(clippy::useless_conversion)]
    let mode = u32::from(stat.st_mode) & 0o7777;
    Ok(FileInfo { size: u64::try_from(stat.st_size).unwrap_or(0), owner: stat.st_uid, mode })
}

/// Anonymous shared memory of `len` bytes, close-on-exec, that no process it is passed to can
/// resize: on Linux a memfd whose size is then sealed (a process that shrank it under another's
/// mapping would turn that one's accesses into SIGBUS); elsewhere a POSIX shared-memory object
/// with a short random name, unlinked as soon as it is open.
///
/// # Errors
///
/// `len` does not fit an `off_t` (`InvalidInput`), or creating or sizing the memory failed (no
/// memory, out of descriptors).
pub fn anonymous_memory(len: usize) -> io::Result<OwnedFd> {
    Os::anonymous_memory(len)
}
