//! `cargo xtask bench mpi`: the cluster pool (proc-mpi) next to `mpi4py.futures` and raw MPI, in
//! one run. The figures come from `benches/src/bin/mpi.rs` (its modes `cluster`, `local` and
//! `floor`, see its docs) and `benches/python/mpi.py`, each run free and pinned to CPU 0
//! (`taskset -c 0`, every rank on one CPU), under `mpiexec -n 3` (rank 0 and two node agents or
//! mpi4py workers of one worker each) and `timeout`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::time;
use crate::{root, run};

type Figures = BTreeMap<String, f64>;

/// The figures of every run, free and pinned.
struct Runs {
    cluster: [Option<Figures>; 2],
    local: [Option<Figures>; 2],
    floor: [Option<Figures>; 2],
    mpi4py: [Option<Figures>; 2],
}

/// Runs the MPI benchmarks and appends their table to `md`.
pub(crate) fn bench(md: &mut String) -> Result<()> {
    if Command::new("mpiexec").arg("--version").output().is_err() {
        bail!(
            "`cargo xtask bench mpi` needs mpiexec (Debian: apt-get install mpich libmpich-dev libclang-dev)"
        );
    }
    run(
        "cargo",
        &["build", "--release", "-p", "multiproc-benches", "--features", "mpi", "--bin", "mpi"],
        &[],
    )?;
    let exe = super::target_dir()?.join("release/mpi");
    let exe = exe.to_str().context("the target directory is not UTF-8")?.to_owned();
    let has_mpi4py = Command::new("python3")
        .args(["-c", "import mpi4py.futures"])
        .output()
        .is_ok_and(|o| o.status.success());
    let script = root().join("benches/python/mpi.py");
    let script = script.to_str().context("the repository path is not UTF-8")?.to_owned();
    let mut runs =
        Runs { cluster: [None, None], local: [None, None], floor: [None, None], mpi4py: [None, None] };
    for (i, pinned) in [false, true].into_iter().enumerate() {
        runs.local[i] = figures(pinned, &[&exe, "local"], &[]);
        runs.floor[i] = figures(pinned, &["mpiexec", "-n", "3", &exe, "floor"], &[("MULTIPROC_MPI", "off")]);
        runs.cluster[i] = figures(pinned, &["mpiexec", "-n", "3", &exe, "cluster"], &[]);
        if has_mpi4py {
            runs.mpi4py[i] =
                figures(pinned, &["mpiexec", "-n", "3", "python3", "-m", "mpi4py.futures", &script], &[]);
        }
    }
    table(md, &runs, has_mpi4py)
}

/// Runs a command (under `taskset -c 0` if `pinned`, and `timeout`) and parses the last line of
/// its output that is a JSON object of numbers.
fn figures(pinned: bool, command: &[&str], envs: &[(&str, &str)]) -> Option<Figures> {
    let mut argv: Vec<&str> = vec!["timeout", "-s", "KILL", "900"];
    if pinned {
        argv.extend(["taskset", "-c", "0"]);
    }
    argv.extend(command);
    eprintln!("$ {}", argv.join(" "));
    let out = Command::new(argv[0]).args(&argv[1..]).envs(envs.iter().copied()).current_dir(root()).output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("cannot run it: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{'))?;
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(json.as_object()?.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect())
}

fn get(runs: &[Option<Figures>; 2], i: usize, key: &str) -> Option<f64> {
    runs[i].as_ref()?.get(key).copied()
}

fn per_sec(ns: Option<f64>) -> String {
    match ns {
        Some(ns) if ns > 0.0 => format!("{} ({:.0} k/s)", time(ns), 1e6 / ns),
        _ => "n/a".to_owned(),
    }
}

fn both(f: impl Fn(usize) -> String) -> String {
    format!("{} / {}", f(0), f(1))
}

fn table(md: &mut String, r: &Runs, has_mpi4py: bool) -> Result<()> {
    writeln!(md, "## Cluster pool on MPI (mean per task; free / pinned)\n")?;
    writeln!(
        md,
        "| benchmark | multiproc (free / pinned) | mpi4py.futures (free / pinned) | mpi4py ÷ multiproc | floor (free / pinned) | multiproc ÷ floor | target: met? (free / pinned) |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    // Trivial tasks against mpi4py: ≥ 10×.
    for (label, key) in [
        ("map, chunksize 1", "map_chunk1"),
        ("map, default chunks", "map_default"),
        ("submit + result", "submit"),
    ] {
        let ours = |i| get(&r.cluster, i, key);
        let theirs = |i| get(&r.mpi4py, i, key);
        let speedup = |i: usize| match (ours(i), theirs(i)) {
            (Some(o), Some(t)) if o > 0.0 => format!("{:.1}×", t / o),
            _ => "n/a".to_owned(),
        };
        let met = |i: usize| match (ours(i), theirs(i)) {
            (Some(o), Some(t)) if o > 0.0 => if t / o >= 10.0 { "met" } else { "missed" }.to_owned(),
            _ => "n/a".to_owned(),
        };
        let floor = |i| get(&r.floor, i, "floor_farm");
        writeln!(
            md,
            "| {label} | {} | {} | {} | {} (raw farm) | {} | ≥ 10× mpi4py: {} |",
            both(|i| per_sec(ours(i))),
            both(|i| per_sec(theirs(i))),
            both(speedup),
            both(|i| per_sec(floor(i))),
            both(|i| ratio(ours(i), floor(i))),
            both(met),
        )?;
    }
    // Per-task overhead against a raw round trip of the same size: ≤ 2×.
    let ours = |i| get(&r.cluster, i, "map_chunk1");
    let rtt = |i| get(&r.floor, i, "floor_rtt");
    let met = |i: usize| match (ours(i), rtt(i)) {
        (Some(o), Some(f)) if f > 0.0 => if o / f <= 2.0 { "met" } else { "missed" }.to_owned(),
        _ => "n/a".to_owned(),
    };
    writeln!(
        md,
        "| per-task overhead (map, chunksize 1) | {} | | | {} (raw round trip) | {} | ≤ 2× the round trip: {} |",
        both(|i| opt_time(ours(i))),
        both(|i| opt_time(rtt(i))),
        both(|i| ratio(ours(i), rtt(i))),
        both(met),
    )?;
    let lat = |i| get(&r.cluster, i, "apply_latency");
    writeln!(
        md,
        "| one apply at a time (round trip) | {} | | | {} (raw round trip) | {} | |",
        both(|i| opt_time(lat(i))),
        both(|i| opt_time(rtt(i))),
        both(|i| ratio(lat(i), rtt(i))),
    )?;
    // CPU-bound: ≥ 90 % of a local Pool(2).
    let cl = |i| get(&r.cluster, i, "cpu_map");
    let lo = |i| get(&r.local, i, "cpu_map_local");
    let share = |i: usize| match (cl(i), lo(i)) {
        (Some(c), Some(l)) if c > 0.0 => format!("{:.0} %", l / c * 100.0),
        _ => "n/a".to_owned(),
    };
    let met = |i: usize| match (cl(i), lo(i)) {
        (Some(c), Some(l)) if c > 0.0 => if l / c >= 0.9 { "met" } else { "missed" }.to_owned(),
        _ => "n/a".to_owned(),
    };
    writeln!(
        md,
        "| CPU-bound map (64 tasks of 1 M xorshift steps), 2 agents × 1 worker | {} | | | {} (local Pool(2)) | throughput {} of local | ≥ 90 % of local: {} |",
        both(|i| opt_time(cl(i))),
        both(|i| opt_time(lo(i))),
        both(share),
        both(met),
    )?;
    let cpu = |runs: &[Option<Figures>; 2], i| {
        get(runs, i, "frontend_cpu_pct_waiting").map_or_else(|| "n/a".to_owned(), |p| format!("{p:.2} %"))
    };
    let met = |i: usize| match get(&r.cluster, i, "frontend_cpu_pct_waiting") {
        Some(p) => if p <= 5.0 { "met" } else { "missed" }.to_owned(),
        None => "n/a".to_owned(),
    };
    writeln!(
        md,
        "| rank 0's CPU while 2 tasks sleep 2 s | {} | {} | | | | ≤ 5 %: {} |",
        both(|i| cpu(&r.cluster, i)),
        both(|i| cpu(&r.mpi4py, i)),
        both(met),
    )?;
    writeln!(
        md,
        "\nmpiexec -n 3 (MPICH), one host: rank 0 and 2 node agents of 1 worker each (mpi4py: `python3 -m \
         mpi4py.futures`, 2 workers). Floors in the same run: raw MPI (rsmpi, blocking calls that busy-poll) \
         round trip of a task-sized and a reply-sized message between ranks 0 and 1, and a raw dynamic task \
         farm of the same messages on ranks 1 and 2 (4 in flight each). Pinned: every rank under `taskset -c 0`.{}",
        if has_mpi4py { "" } else { " mpi4py columns skipped: `import mpi4py.futures` failed (pip install mpi4py)." }
    )?;
    Ok(())
}

fn opt_time(ns: Option<f64>) -> String {
    ns.map_or_else(|| "n/a".to_owned(), time)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    super::ratio(a, b)
}
