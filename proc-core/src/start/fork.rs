//! The fork start method: the child is a copy of the caller and runs the target in place.
//!
//! The process-wide state lock is held across `fork`, so the child's copy of that state is
//! consistent; the child then drops what belongs to the parent (its children's control sockets,
//! its fork server connection, its own control socket) and takes its new identity.
//!
//! Part of the process runtime's import circle, which stays on purpose: see `globals`.

use std::io::Write;
use std::sync::{Arc, MutexGuard};

use super::Started;
use crate::child::run;
use crate::error::{Error, Result};
use crate::globals::{Globals, Identity, Parent};
use crate::process::{JobRef, Pid, Watch};

pub(crate) fn start(
    mut g: MutexGuard<'static, Globals>,
    identity: Identity,
    job: JobRef,
) -> Result<(Started, MutexGuard<'static, Globals>)> {
    if !g.warned_fork {
        if let Some(n) = proc_os::thread_count().filter(|&n| n > 1) {
            g.warned_fork = true;
            let message = format!(
                "this process has {n} threads; forking it may deadlock the child \
                 (use the spawn or forkserver start method)"
            );
            tracing::warn!("{message}");
            eprintln!("multiproc: warning: {message}");
        }
    }
    // The child must not take the panic-hook lock (another thread may hold it at the fork): the
    // hook that records a panic for the report is installed here, once, and inherited.
    run::install_panic_hook();
    let (ctl, child_ctl) =
        proc_os::socket::socketpair().map_err(|e| Error::io("cannot create a control socket", e))?;
    let (sentinel, alive) = proc_os::fd::pipe().map_err(|e| Error::io("cannot create a sentinel pipe", e))?;
    let mut who = crate::globals::who_mut();
    let parent_name = who.name();
    // The stdio locks are held across fork too, so that the child does not inherit one held by
    // another thread (its first print would hang). std's locks are reentrant and record their
    // owner in thread-local storage, which the child's only thread inherits: it can release them.
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    // Buffered output would otherwise be written twice, once by each process.
    let _ = stdout.flush();
    let _ = stderr.flush();
    // SAFETY: the child below only runs the target and exits. The process-wide state lock is held
    // by this thread, so its copy is consistent and the child can release it. Other threads'
    // locks are the documented risk of this start method (warned about above).
    let pid = unsafe { proc_os::child::fork() }.map_err(|e| Error::io("cannot fork", e))?;
    drop((stdout, stderr));
    if pid == 0 {
        drop(ctl);
        drop(sentinel);
        g.forget_parent_state(&mut who);
        let ctl = Arc::new(child_ctl);
        let daemon = identity.daemon;
        let name = identity.name.clone();
        who.identity = identity;
        who.parent = Some(Parent { pid: proc_os::getppid(), name: parent_name, ctl: Some(ctl.clone()) });
        g.set_alive(Some(alive));
        g.set_ctl(&ctl);
        drop(who);
        drop(g);
        if daemon {
            run::watch_parent(ctl.clone());
        }
        let setup = crate::logging::forked_child_started(&name);
        let (report, fds, code) = run::run_target(move || setup.run(|| job.run_here()));
        run::finish(&ctl, report, fds, code);
    }
    drop(who);
    drop(child_ctl);
    drop(alive);
    Ok((Started { pid: Pid::Known(pid), ctl, sentinel, watch: Watch::Direct, alive: None }, g))
}
