//! `cargo xtask bench`: runs the criterion benchmark files free and pinned (the synchronization one
//! on both proc-sync backends), runs their Python counterparts, and turns criterion's results into one
//! markdown table per file, as `benches/tables/` describes them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use crate::{root, run};

// The tables sit next to the benchmarks they describe; they are plain data, compiled in here rather
// than reached through a dependency on the benches crate (which would build the whole workspace).
#[path = "../../benches/tables/mod.rs"]
mod tables;

use tables::{BenchFile, Target, Unit, BENCH_FILES};

mod chart;
mod mpi;
#[cfg(test)]
mod test;

const PORTABLE: &str = "multiproc/force-portable";

pub(crate) fn bench(only: &[String]) -> Result<()> {
    let files: Vec<&BenchFile> =
        BENCH_FILES.iter().filter(|f| only.is_empty() || only.iter().any(|o| o == f.name)).collect();
    // The cluster pool's figures: asked for by name, or with every file where MPI is installed.
    let with_mpi = only.iter().any(|o| o == "mpi")
        || only.is_empty() && Command::new("mpiexec").arg("--version").output().is_ok();
    // Memory and descriptors (figures, not timings): by name, or with every file.
    let with_memory = only.is_empty() || only.iter().any(|o| o == "memory");
    // What waiting costs in CPU (figures, not timings): by name, or with every file.
    let with_spin = only.is_empty() || only.iter().any(|o| o == "spin");
    if files.is_empty() && !with_mpi && !with_memory && !with_spin {
        let names: Vec<_> = BENCH_FILES.iter().map(|f| f.name).chain(["mpi", "memory", "spin"]).collect();
        bail!("no such benchmark file; known: {}", names.join(", "));
    }
    // Criterion writes under cargo's target directory, wherever `CARGO_TARGET_DIR` or a config
    // puts it; it keeps older results, and only what this run wrote is reported.
    let target = target_dir()?;
    let criterion = target.join("criterion");
    let since = SystemTime::now();
    let mut missing = Vec::new();
    let has_python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());

    let mut md = String::new();
    let mut charts = Vec::new();
    writeln!(md, "# multiproc benchmarks\n")?;
    writeln!(
        md,
        "Machine: {} ({} CPUs); {}; commit {}.\n",
        command_line("uname", &["-srm"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_line("rustc", &["--version"]),
        command_line("git", &["rev-parse", "--short", "HEAD"]),
    )?;
    let with_start_ratio = files.iter().any(|f| f.name == "process_start");
    for file in files {
        let features: &[Option<&str>] = if file.both_backends { &[None, Some(PORTABLE)] } else { &[None] };
        for feature in features {
            for pin in ["0", "1"] {
                let mut args = vec!["bench", "-p", "multiproc-benches", "--bench", file.name];
                if let Some(feature) = feature {
                    args.extend(["--features", feature]);
                }
                run("cargo", &args, &[("MULTIPROC_BENCH_PIN", pin)])?;
            }
        }
        let (py_free, py_pinned) =
            if has_python { (python(file.name, false), python(file.name, true)) } else { (None, None) };
        let results = Results { criterion: &criterion, since };
        let (file_missing, panels) = table(&mut md, file, &results, py_free.as_ref(), py_pinned.as_ref())?;
        missing.extend(file_missing);
        charts.push((file, panels));
    }
    if !has_python {
        writeln!(md, "\nPython columns skipped: `python3` was not found.")?;
    }
    if with_start_ratio {
        start_ratio(&mut md)?;
    }
    if with_mpi {
        mpi::bench(&mut md)?;
    }
    if with_memory {
        memory(&mut md)?;
    }
    if with_spin {
        spin(&mut md)?;
    }
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    // A chart per file next to the report, multiproc, Python and the floor on a log axis.
    for (file, panels) in charts {
        let path = dir.join(format!("{}.svg", file.name));
        match chart::render(&path, file.title, &panels) {
            Ok(()) => writeln!(md, "\nChart of {}: `{}`", file.name, path.display())?,
            Err(e) => eprintln!("no chart of {}: {e:#}", file.name),
        }
    }
    std::fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    eprintln!("written to {}", dir.join("report.md").display());
    if !missing.is_empty() {
        bail!(
            "{} benchmark(s) ran but left no result under {}:\n  {}",
            missing.len(),
            criterion.display(),
            missing.join("\n  ")
        );
    }
    Ok(())
}

/// `benches/src/bin/memory.rs`: resident memory of each kind of child next to a raw forked one,
/// an unbounded queue through a 1 GiB burst, descriptors per primitive. Its table as it prints it.
fn memory(md: &mut String) -> Result<()> {
    run("cargo", &["build", "--release", "-p", "multiproc-benches", "--bin", "memory"], &[])?;
    let exe = target_dir()?.join("release/memory");
    let out = Command::new(&exe).current_dir(root()).output()?;
    if !out.status.success() {
        bail!("{} failed: {}", exe.display(), String::from_utf8_lossy(&out.stderr));
    }
    writeln!(md, "\n## Memory and descriptors (`benches/src/bin/memory.rs`)\n")?;
    md.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// `benches/src/bin/start_loop.rs`, free and pinned: the fork server's start+join against the raw
/// `fork`+`waitpid` floor, the two alternating in rounds and the ratio taken per round (criterion
/// measures its rows one after the other, and this VM drifts between them).
fn start_ratio(md: &mut String) -> Result<()> {
    run("cargo", &["build", "--release", "-p", "multiproc-benches", "--bin", "start_loop"], &[])?;
    let exe = target_dir()?.join("release/start_loop");
    writeln!(
        md,
        "\n## Fork-server start against its floor, interleaved (`benches/src/bin/start_loop.rs`)\n"
    )?;
    writeln!(
        md,
        "| mode | rounds × starts | median round: fork server / floor | median ratio | range of the rounds | the parent's own CPU a start: fork server / floor |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for pin in ["0", "1"] {
        let out = Command::new(&exe)
            .args(["20", "300", "--markdown"])
            .env("MULTIPROC_BENCH_PIN", pin)
            .current_dir(root())
            .output()?;
        if !out.status.success() {
            bail!("{} failed: {}", exe.display(), String::from_utf8_lossy(&out.stderr));
        }
        md.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    writeln!(md, "\nTarget (issue 18, item 4): ≤ 2× the floor in every run.")?;
    Ok(())
}

/// `benches/src/bin/spin.rs`, on each backend: the CPU time of a round trip next to its floor's,
/// free and pinned, and the share of a CPU a process uses while it waits with nothing to come.
fn spin(md: &mut String) -> Result<()> {
    writeln!(md, "\n## What waiting costs in CPU (`benches/src/bin/spin.rs`)")?;
    for (backend, features) in [("futex", None), ("polling", Some(PORTABLE))] {
        let mut args = vec!["build", "--release", "-p", "multiproc-benches", "--bin", "spin"];
        if let Some(features) = features {
            args.extend(["--features", features]);
        }
        run("cargo", &args, &[])?;
        let exe = target_dir()?.join("release/spin");
        let out = Command::new(&exe).current_dir(root()).output()?;
        if !out.status.success() {
            bail!("{} failed: {}", exe.display(), String::from_utf8_lossy(&out.stderr));
        }
        writeln!(md, "\n### {backend} backend\n")?;
        md.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}

/// Cargo's target directory for this workspace, as `cargo metadata` reports it (it follows
/// `CARGO_TARGET_DIR` and the configuration files).
pub(crate) fn target_dir() -> Result<PathBuf> {
    metadata_target_dir(None)
}

/// The target directory `cargo metadata` reports, with `CARGO_TARGET_DIR` set to `env` if given.
fn metadata_target_dir(env: Option<&Path>) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]).current_dir(root());
    if let Some(dir) = env {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let out = cmd.output().context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("cargo metadata's output")?;
    match json["target_directory"].as_str() {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => bail!("cargo metadata reported no target_directory"),
    }
}

/// Where criterion's results of this run are: its directory, and the time the run began (older
/// results are not this run's).
struct Results<'a> {
    criterion: &'a Path,
    since: SystemTime,
}

impl Results<'_> {
    /// Mean time in nanoseconds of one criterion benchmark, from its `estimates.json`, if written
    /// by this run.
    fn mean(&self, group: &str, function: &str) -> Option<f64> {
        let path = self.criterion.join(group).join(function).join("new/estimates.json");
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        if modified < self.since {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    }
}

type PythonFigures = BTreeMap<String, f64>;

/// A chart's panels: free and pinned, each with its rows' bars.
type Panels = Vec<(&'static str, Vec<chart::Bars>)>;

/// Writes one bench file's table; returns the benchmarks (`group/function`) it found no result
/// of in this run, and the figures of its chart.
fn table(
    md: &mut String,
    file: &BenchFile,
    results: &Results<'_>,
    py_free: Option<&PythonFigures>,
    py_pinned: Option<&PythonFigures>,
) -> Result<(Vec<String>, Panels)> {
    let mut missing = Vec::new();
    let (mut bars_free, mut bars_pinned) = (Vec::new(), Vec::new());
    let backends: Vec<Option<String>> = if file.both_backends {
        backends_of(file, results).into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    if backends.is_empty() {
        missing.push(format!("{}: no backend's groups", file.name));
    }
    let mut mean = |group: &str, function: &str| {
        let m = results.mean(group, function);
        if m.is_none() {
            missing.push(format!("{group}/{function}"));
        }
        m
    };
    let with_target = file.rows.iter().any(|r| r.target.is_some());
    writeln!(md, "## {}\n", file.title)?;
    let mut header = format!("| {} |", file.first_column);
    if file.both_backends {
        header.push_str(" backend |");
    }
    header.push_str(
        " multiproc free | multiproc pinned | Python free | Python pinned | Python ÷ multiproc (free / pinned) \
         | multiproc ÷ floor (free / pinned) | floor (free / pinned) |",
    );
    if with_target {
        header.push_str(" target (free / pinned) |");
    }
    writeln!(md, "{header}")?;
    writeln!(md, "|{}", "---|".repeat(header.matches('|').count() - 1))?;
    for row in file.rows {
        for backend in &backends {
            let group = |pin: &str| match backend {
                Some(b) => format!("{}_{b}_{pin}", row.scenario),
                None => format!("{}_{pin}", row.scenario),
            };
            let free = mean(&group("free"), row.function);
            let pinned = mean(&group("pinned"), row.function);
            let floor_group = |pin: &str| match (row.floor.split_once('/'), backend) {
                (Some((scenario, function)), Some(b)) => (format!("{scenario}_{b}_{pin}"), function),
                (Some((scenario, function)), None) => (format!("{scenario}_{pin}"), function),
                (None, _) => (group(pin), row.floor),
            };
            let (floor_free_group, floor_function) = floor_group("free");
            let floor_free = mean(&floor_free_group, floor_function);
            let floor_pinned = mean(&floor_group("pinned").0, floor_function);
            let pf = py_free.and_then(|m| m.get(row.python).copied());
            let pp = py_pinned.and_then(|m| m.get(row.python).copied());
            let floor_name =
                if row.floor.contains('/') { row.floor.replace('/', ": ") } else { row.floor.to_owned() };
            let label = match backend {
                Some(b) => format!("{} ({b})", row.label),
                None => row.label.to_owned(),
            };
            bars_free.push(chart::Bars { label: label.clone(), values: [free, pf, floor_free] });
            bars_pinned.push(chart::Bars { label, values: [pinned, pp, floor_pinned] });
            let mut line = format!("| {} |", row.label);
            if let Some(b) = backend {
                write!(line, " {b} |")?;
            }
            write!(
                line,
                " {} | {} | {} | {} | {} / {} | {} / {} | {}: {} / {} |",
                value(row.unit, free),
                value(row.unit, pinned),
                value(row.unit, pf),
                value(row.unit, pp),
                ratio(pf, free),
                ratio(pp, pinned),
                ratio(free, floor_free),
                ratio(pinned, floor_pinned),
                floor_name,
                value(row.unit, floor_free),
                value(row.unit, floor_pinned),
            )?;
            if with_target {
                match &row.target {
                    Some(t) => write!(
                        line,
                        " {}: {} / {} |",
                        t.text,
                        verdict(t, free, floor_free, pf),
                        verdict(t, pinned, floor_pinned, pp)
                    )?,
                    None => line.push_str(" |"),
                }
            }
            writeln!(md, "{line}")?;
        }
    }
    if !file.note.is_empty() {
        writeln!(md, "\n{}\n", file.note)?;
    }
    Ok((missing, vec![("free", bars_free), ("pinned (one CPU)", bars_pinned)]))
}

/// The backends that a bench file's groups (`<scenario>_<backend>_<pin>`) have results of from
/// this run, sorted.
fn backends_of(file: &BenchFile, results: &Results<'_>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(results.criterion) else { return found };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        for row in file.rows {
            for pin in ["free", "pinned"] {
                let backend = name
                    .strip_prefix(row.scenario)
                    .and_then(|s| s.strip_prefix('_'))
                    .and_then(|s| s.strip_suffix(pin))
                    .and_then(|s| s.strip_suffix('_'));
                if let Some(b) = backend.filter(|b| !b.is_empty()) {
                    if results.mean(&name, row.function).is_some() {
                        found.insert(b.to_owned());
                    }
                }
            }
        }
    }
    found
}

/// Python's figures for one bench file (`benches/python/<name>.py`), if the script exists and ran.
fn python(name: &str, pinned: bool) -> Option<PythonFigures> {
    let script = root().join("benches/python").join(format!("{name}.py"));
    if !script.exists() {
        return None;
    }
    eprintln!("$ python3 {}{}", script.display(), if pinned { " --pinned" } else { "" });
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

fn value(unit: Unit, ns: Option<f64>) -> String {
    let Some(ns) = ns else { return "n/a".to_owned() };
    match unit {
        Unit::Ms => format!("{:.3} ms", ns / 1e6),
        Unit::Auto => time(ns),
        Unit::Throughput(ops) => format!("{} ({:.2} M ops/s)", time(ns), ops / ns * 1e3),
        Unit::Msgs => format!("{} ({:.2} M msgs/s)", time(ns), 1e3 / ns),
        Unit::Bytes(bytes) => format!("{} ({:.2} GB/s)", time(ns), bytes / ns),
    }
}

fn time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.3} ms", ns / 1e6)
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".to_owned(),
    }
}

fn verdict(target: &Target, ns: Option<f64>, floor: Option<f64>, python: Option<f64>) -> &'static str {
    if target.min_python_speedup > 0.0 {
        return match (ns, python) {
            (Some(ns), Some(py)) if ns > 0.0 => {
                if py / ns >= target.min_python_speedup {
                    "met"
                } else {
                    "missed"
                }
            }
            _ => "n/a",
        };
    }
    match (ns, floor) {
        (Some(ns), _) if target.min_per_sec > 0.0 && ns > 0.0 => {
            if 1e9 / ns >= target.min_per_sec {
                "met"
            } else {
                "missed"
            }
        }
        (Some(ns), Some(floor)) if floor > 0.0 => {
            if ns / floor <= target.max_ratio {
                "met"
            } else {
                "missed"
            }
        }
        _ => "n/a",
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
