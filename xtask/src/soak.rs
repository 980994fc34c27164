//! `cargo xtask soak [--minutes N] [--seed S] [--cycles N]`: builds the soak (the
//! `multiproc-soak` crate, `soak/`) in release mode and runs it; it prints a summary table and
//! fails if it found anything. RELIABILITY.md describes the checks and holds a long run's figures.

use anyhow::Result;

use crate::run;

/// The soak's own flags, passed through.
pub(crate) fn soak(args: &[String]) -> Result<()> {
    let mut command =
        vec!["run", "--release", "--quiet", "-p", "multiproc-soak", "--bin", "soak", "--", "run"];
    command.extend(args.iter().map(String::as_str));
    run("cargo", &command, &[])
}
