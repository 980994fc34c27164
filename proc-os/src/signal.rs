//! Signal names.

/// The conventional name of signal `n` (`"SIGTERM"`), or `None` for a number that names no
/// signal on this system.
///
/// # Examples
///
/// ```
/// assert_eq!(proc_os::signal_name(libc::SIGKILL), Some("SIGKILL"));
/// assert_eq!(proc_os::signal_name(-1), None);
/// ```
pub fn signal_name(n: i32) -> Option<&'static str> {
    nix::sys::signal::Signal::try_from(n).ok().map(nix::sys::signal::Signal::as_str)
}
