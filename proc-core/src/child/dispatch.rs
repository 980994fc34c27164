//! The dispatcher: the constructors that run before `main` and turn a re-executed binary into the
//! child its role names.
//!
//! Only `lib.rs` (`init`) imports this module: it sits above every role it runs (a spawned child,
//! the fork server, the resource tracker), so it closes no import circle.

use super::role::{self, DISPATCHER_ENV, ROLE_ENV};
use super::run;

#[ctor::ctor(unsafe, priority = early)]
fn close_inherited() {
    // A child gets its control socket on descriptor 0 and stdout/stderr on 1 and 2; anything else
    // it inherited (a descriptor the parent forgot to mark close-on-exec) is closed right away.
    if std::env::var_os(ROLE_ENV).is_some() && std::env::var_os(DISPATCHER_ENV).is_none_or(|v| v != "off") {
        proc_os::fd::close_fds_except(&[]);
    }
}

#[ctor::ctor(unsafe, priority = late)]
fn dispatch_before_main() {
    if std::env::var_os(DISPATCHER_ENV).is_some_and(|v| v == "off") {
        return;
    }
    dispatch();
}

/// Runs the child role of this process, if it has one, and marks the dispatcher present.
///
/// Returns only in a process that is not a multiproc child.
pub(crate) fn dispatch() {
    role::mark_ready();
    let Some(role) = std::env::var_os(ROLE_ENV) else { return };
    // Children of this child must not see the variable; the ones it starts set their own.
    std::env::remove_var(ROLE_ENV);
    // std's start-up would have ignored SIGPIPE before main; a child never reaches main.
    proc_os::signal::set_signal_ignored(libc::SIGPIPE, true);
    let code = match role.to_str() {
        Some("spawn") => run::run_spawned(),
        Some("forkserver") => crate::start::forkserver::serve(),
        Some("tracker") => crate::shm::tracker::serve(),
        Some("exit") => 0,
        _ => {
            eprintln!("multiproc: unknown child role {role:?}");
            2
        }
    };
    run::flush_stdio();
    proc_os::child::exit_now(code);
}
