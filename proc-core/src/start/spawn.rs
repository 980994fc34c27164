//! The spawn start method: re-execute the current binary with a role in the environment.
//!
//! `std::process::Command` is used as is (no `pre_exec`), so it keeps its `posix_spawn` fast path.
//! The child's control socket is its standard input; the child moves it away and puts `/dev/null`
//! there before anything else runs.
//!
//! Part of the process runtime's import circle, which stays on purpose: see `globals`.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::Started;
use crate::child::role::ROLE_ENV;
use crate::error::{Error, Result};
use crate::process::{Pid, Watch};

/// Starts a child of `role` with `stdin` as its standard input; returns its pid.
pub(crate) fn exec_role(role: &str, stdin: OwnedFd) -> Result<u32> {
    let exe = proc_os::exe_path().map_err(|e| Error::io("cannot find the current executable", e))?;
    let arg0 = std::env::args_os().next().unwrap_or_else(|| exe.clone().into_os_string());
    let child = Command::new(&exe)
        .arg0(arg0)
        .env(ROLE_ENV, role)
        .stdin(Stdio::from(stdin))
        .spawn()
        .map_err(|e| Error::io("cannot start a child process", e))?;
    // The `Child` is not kept: multiproc reaps the pid itself. Dropping it neither waits nor kills.
    Ok(child.id())
}

/// Starts a spawned child; the caller sends it the bootstrap over `ctl`.
pub(crate) fn start() -> Result<Started> {
    let (ctl, child_ctl) =
        proc_os::socket::socketpair().map_err(|e| Error::io("cannot create a control socket", e))?;
    let (sentinel, alive) = proc_os::fd::pipe().map_err(|e| Error::io("cannot create a sentinel pipe", e))?;
    let pid = exec_role("spawn", child_ctl)?;
    Ok(Started { pid: Pid::Known(pid), ctl, sentinel, watch: Watch::Direct, alive: Some(alive) })
}
