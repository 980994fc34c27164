//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `ci`: formatting, clippy (both OS backends), docs with warnings denied, the macOS check
//!   below, then the tests on the default backend and on the portable one, then a look for
//!   shared memory the tests left behind, then the one-minute soak. `.ci/run` installs what it
//!   needs and runs this.
//! - `check-macos`: on a Linux host, `cargo clippy -D warnings` of every target for
//!   `aarch64-apple-darwin` (both OS backends' features), so a Linux-only item outside a Linux
//!   cfg gate, or a lint only macOS code trips, fails here instead of on the macOS runner. It
//!   needs the target's standard library (`rustup target add`) and `clang` (one C file in
//!   criterion's dependencies is compiled for the target).
//! - `bench [FILE...]`: the criterion benchmarks (all files, or the named ones: `process_start`,
//!   `sync`, `queue`), free and pinned to one CPU, the synchronization ones on both proc-sync backends, side
//!   by side with Python's multiprocessing and the raw floors; prints one markdown table per file
//!   and writes them to `target/bench/report.md`.
//! - `soak [--minutes N] [--seed S] [--cycles N]`: the soak under chaos (the `multiproc-soak`
//!   crate in `soak/`, built in release mode): workloads on queues, a pool and a manager while
//!   participants and whole round parents are SIGKILLed; fails on any message or task not
//!   accounted for, lock stuck, process or shared memory left, descriptors or memory growing.
//!   One minute by default (the profile `ci` runs); RELIABILITY.md holds a 30-minute run.
//!
//! This file only dispatches: `ci.rs` holds `ci` and `check-macos`, `bench.rs` the benchmark runs
//! and the report, whose tables (which benchmark makes which row) sit next to the benchmarks in
//! `benches/tables/`; `soak.rs` builds and runs the soak; `tidy.rs` holds the repository rules, checked as tests.

mod bench;
mod ci;
mod soak;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => ci::ci(),
        Some("check-macos") => ci::check_macos(),
        Some("bench") => bench::bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("soak") => soak::soak(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: cargo xtask ci | cargo xtask check-macos | cargo xtask bench \
                 [process_start|sync|queue|pool|manager]... | cargo xtask soak [--minutes N] [--seed S] \
                 [--cycles N]"
            );
            std::process::exit(2);
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs `program` in the workspace root and fails unless it succeeds.
fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed: {status}", args.join(" "));
    }
    Ok(())
}
