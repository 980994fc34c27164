//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `ci`: formatting, clippy (both OS backends), docs with warnings denied, then the tests on the
//!   default backend and on the portable one.
//! - `bench`: the criterion benchmarks, free and pinned to one CPU, side by side with Python's
//!   multiprocessing and the raw floors; prints a markdown table and writes it to
//!   `target/bench/report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => ci(),
        Some("bench") => bench(),
        _ => {
            eprintln!("usage: cargo xtask <ci|bench>");
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

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

fn ci() -> Result<()> {
    run("cargo", &["fmt", "--all", "--check"], &[])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            "multiproc/force-portable",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    run("cargo", &["doc", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    run("cargo", &["test", "--workspace"], &[])?;
    run("cargo", &["test", "--workspace", "--features", "multiproc/force-portable"], &[])?;
    Ok(())
}

/// Mean time in nanoseconds of one criterion benchmark, from its `estimates.json`.
fn criterion_mean(group: &str, function: &str) -> Option<f64> {
    let path = root().join("target/criterion").join(group).join(function).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn python(pinned: bool) -> Option<BTreeMap<String, f64>> {
    let script = root().join("benches/python/process_start.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    if pinned {
        cmd.arg("--pinned");
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn ms(ns: Option<f64>) -> String {
    ns.map_or_else(|| "n/a".to_owned(), |ns| format!("{:.3} ms", ns / 1e6))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".to_owned(),
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn bench() -> Result<()> {
    for pin in ["0", "1"] {
        run(
            "cargo",
            &["bench", "-p", "multiproc-benches", "--bench", "process_start"],
            &[("MULTIPROC_BENCH_PIN", pin)],
        )?;
    }
    let has_python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    let (py_free, py_pinned) = if has_python { (python(false), python(true)) } else { (None, None) };

    let mut md = String::new();
    writeln!(md, "# multiproc benchmarks\n")?;
    writeln!(
        md,
        "Machine: {} ({} CPUs); {}; commit {}.\n",
        command_line("uname", &["-srm"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_line("rustc", &["--version"]),
        command_line("git", &["rev-parse", "--short", "HEAD"]),
    )?;
    writeln!(md, "## Process start + join of a no-op target (mean per process)\n")?;
    writeln!(
        md,
        "| method | multiproc free | multiproc pinned | Python free | Python pinned | Python ÷ multiproc (free / pinned) | multiproc ÷ floor (free / pinned) | floor |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    for (method, floor) in
        [("fork", "floor_fork_waitpid"), ("forkserver", "floor_fork_waitpid"), ("spawn", "floor_reexec")]
    {
        let free = criterion_mean("process_start_free", method);
        let pinned = criterion_mean("process_start_pinned", method);
        let floor_free = criterion_mean("process_start_free", floor);
        let floor_pinned = criterion_mean("process_start_pinned", floor);
        let pf = py_free.as_ref().and_then(|m| m.get(method).copied());
        let pp = py_pinned.as_ref().and_then(|m| m.get(method).copied());
        writeln!(
            md,
            "| {method} | {} | {} | {} | {} | {} / {} | {} / {} | {floor}: {} / {} |",
            ms(free),
            ms(pinned),
            ms(pf),
            ms(pp),
            ratio(pf, free),
            ratio(pp, pinned),
            ratio(free, floor_free),
            ratio(pinned, floor_pinned),
            ms(floor_free),
            ms(floor_pinned),
        )?;
    }
    writeln!(
        md,
        "\nTargets: forkserver ≤ 2× the raw fork+waitpid floor; spawn ≤ 1.3× the re-exec floor; both far ahead of Python."
    )?;
    if !has_python {
        writeln!(md, "\nPython columns skipped: `python3` was not found.")?;
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    eprintln!("written to {}", dir.join("report.md").display());
    Ok(())
}

#[cfg(test)]
mod tidy {
    //! Repository rules.

    use super::root;
    use std::path::Path;

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_rust_file_opens_with_module_docs() {
        let mut files = Vec::new();
        rust_files(&root(), &mut files);
        assert!(files.len() > 10);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(text.starts_with("//!"), "{} does not start with `//!`", file.display());
        }
    }

    #[test]
    fn internal_dependencies_carry_a_version() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap_or_default();
        for line in manifest.lines().filter(|l| l.contains("path = ")) {
            assert!(line.contains("version = "), "internal dependency without a version: {line}");
        }
    }
}
