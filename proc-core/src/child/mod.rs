//! The child side: the life-before-main dispatcher, entry points, the bootstrap message and running
//! the target.
//!
//! A re-executed child (spawn, and the helpers: fork server, resource tracker) finds its role in the
//! `MULTIPROC_CHILD` environment variable. Two constructors run before `main`: an early one closes
//! descriptors the child inherited by accident, a late one (after other libraries' constructors, so
//! a target sees them initialized) runs the role and exits. A child never enters the user's `main`
//! or the test harness, so processes work the same in binaries, tests, doctests and benches.
//!
//! One file per job, from the leaves up:
//!
//! - `entry.rs`: where a function lives in the binary (`EntryPoint`) and the fingerprint that
//!   checks it; imports nothing else of the crate.
//! - `role.rs`: the role variable, and whether this process may start children.
//! - `bootstrap.rs`: the `Bootstrap` and `Report` messages of the control socket.
//! - `run.rs`: the child's main, shared by every start method (in the process runtime's circle;
//!   see `globals`).
//! - `dispatch.rs`: the constructors and `init()`'s dispatcher, which run a role; only `lib.rs`
//!   imports it.

pub(crate) mod bootstrap;
pub(crate) mod dispatch;
pub(crate) mod entry;
pub(crate) mod role;
pub(crate) mod run;
