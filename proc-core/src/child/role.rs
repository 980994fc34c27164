//! A process' role as a child, and whether it may start children of its own.
//!
//! Kept apart from the dispatcher that runs the roles, so that the code that starts children (the
//! start methods, the resource tracker) can name a role and check readiness without importing
//! the roles themselves.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, ErrorKind, Result};

/// The environment variable naming a child's role.
pub(crate) const ROLE_ENV: &str = "MULTIPROC_CHILD";
/// Set to `off` to skip the constructor-based dispatcher (to exercise the `init()` fallback).
pub(crate) const DISPATCHER_ENV: &str = "MULTIPROC_DISPATCHER";

/// Whether the dispatcher ran in this process (from its constructor or from `init()`).
static READY: AtomicBool = AtomicBool::new(false);

/// Records that the dispatcher ran in this process.
pub(crate) fn mark_ready() {
    READY.store(true, Ordering::SeqCst);
}

/// Fails unless this process can start children: the dispatcher ran, and this is not a child that
/// was started by multiproc but reached `main` anyway.
pub(crate) fn ensure_ready() -> Result<()> {
    if std::env::var_os(ROLE_ENV).is_some() {
        return Err(Error::new(ErrorKind::RerunMain));
    }
    if !READY.load(Ordering::SeqCst) {
        return Err(Error::new(ErrorKind::DispatcherMissing));
    }
    Ok(())
}
