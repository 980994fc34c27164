//! The start methods by name, and the platform's default.
//!
//! A leaf of the crate (it needs only the error type), so that the process-wide state and the
//! process records can name a start method without importing the machinery that starts one.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How a child process is created, as Python's start methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Fork the calling process. Fast, and the only method that accepts capturing closures; but the
    /// child is a copy of a possibly multi-threaded process, in which only the forking thread
    /// exists. multiproc warns (once, on stderr and through `tracing`) when forking a process with
    /// several threads, as Python 3.12 does.
    Fork,
    /// Re-execute the current binary. The default on macOS.
    Spawn,
    /// Ask a single-threaded fork server (itself started by spawn) to fork the child. The default
    /// on Linux.
    ForkServer,
}

impl StartMethod {
    /// The platform's default, after proc-os's backend: Python 3.14 made the fork server the
    /// default on Linux, and so do we. macOS cannot fork safely once system frameworks started
    /// threads, so Python (and we) default to spawn there; the portable backend keeps that default
    /// on Linux too (`force-portable`), so the tests cover it.
    pub(crate) const DEFAULT: StartMethod = match proc_os::BACKEND.as_bytes() {
        b"linux" => StartMethod::ForkServer,
        _ => StartMethod::Spawn,
    };

    /// Python's name of the method: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }

    /// The method with Python's name `name`.
    const fn from_name(name: &str) -> Option<StartMethod> {
        match name.as_bytes() {
            b"fork" => Some(StartMethod::Fork),
            b"spawn" => Some(StartMethod::Spawn),
            b"forkserver" => Some(StartMethod::ForkServer),
            _ => None,
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        StartMethod::from_name(s).ok_or_else(|| {
            Error::io(
                "unknown start method",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{s:?}")),
            )
        })
    }
}
