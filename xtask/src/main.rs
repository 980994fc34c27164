//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `ci`: formatting, clippy (both OS backends), docs with warnings denied, the macOS check
//!   below, then the tests on the default backend and on the portable one, then a look for
//!   shared memory the tests left behind. `.ci/run` installs what it needs and runs this.
//! - `check-macos`: on a Linux host, `cargo clippy -D warnings` of every target for
//!   `aarch64-apple-darwin` (both OS backends' features), so a Linux-only item outside a Linux
//!   cfg gate, or a lint only macOS code trips, fails here instead of on the macOS runner. It
//!   needs the target's standard library (`rustup target add`) and `clang` (one C file in
//!   criterion's dependencies is compiled for the target).
//! - `bench [FILE...]`: the criterion benchmarks (all files, or the named ones: `process_start`,
//!   `sync`, `queue`), free and pinned to one CPU, the synchronization ones on both proc-sync backends, side
//!   by side with Python's multiprocessing and the raw floors; prints one markdown table per file
//!   and writes them to `target/bench/report.md`.
//!
//! This file only dispatches: `ci.rs` holds `ci` and `check-macos`, `bench.rs` the benchmark runs
//! and the report, whose tables (which benchmark makes which row) sit next to the benchmarks in
//! `benches/tables/`; `tidy.rs` holds the repository rules, checked as tests.

mod bench;
mod ci;
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
        _ => {
            eprintln!(
                "usage: cargo xtask ci | cargo xtask check-macos | cargo xtask bench \
                 [process_start|sync|queue|pool|manager]..."
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
