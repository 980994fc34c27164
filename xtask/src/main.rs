//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `ci`: formatting, clippy (both OS backends), docs with warnings denied, the macOS check
//!   below, then the tests on the default backend and on the portable one, then a look for
//!   shared memory the tests left behind. `.ci/run` installs what it needs and runs this.
//! - `check-macos`: on a Linux host, `cargo clippy -D warnings` of every target for
//!   `aarch64-apple-darwin` (both OS backends' features), so a Linux-only item outside a Linux
//!   cfg gate, or a lint only macOS code trips, fails here instead of on the macOS runner. It needs the target's standard library (`rustup target add`)
//!   and `clang` (one C file in criterion's dependencies is compiled for the target).
//! - `bench [FILE...]`: the criterion benchmarks (all files, or the named ones: `process_start`,
//!   `sync`, `queue`), free and pinned to one CPU, the synchronization ones on both proc-sync backends, side
//!   by side with Python's multiprocessing and the raw floors; prints one markdown table per file
//!   and writes them to `target/bench/report.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => ci(),
        Some("check-macos") => check_macos(),
        Some("bench") => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: cargo xtask ci | cargo xtask check-macos | cargo xtask bench \
                 [process_start|sync|queue|pool|manager]..."
            );
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
    check_macos()?;
    // The README's test command.
    run("cargo", &["test", "--workspace"], &[])?;
    // The portable backend, as macOS runs it.
    run("cargo", &["test", "--workspace", "--features", "multiproc/force-portable"], &[])?;
    no_shared_memory_left()
}

/// The Apple target that `check-macos` compiles for.
const MACOS_TARGET: &str = "aarch64-apple-darwin";

/// `cargo clippy` (so `cargo check` and the lints the macOS runner applies) of the whole
/// workspace, every target, for macOS, on both backends' features, warnings denied. On macOS
/// itself the native build already does this.
fn check_macos() -> Result<()> {
    if cfg!(target_os = "macos") {
        eprintln!("check-macos: skipped on macOS, whose own build checks the same");
        return Ok(());
    }
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if !installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == MACOS_TARGET))
    {
        run("rustup", &["target", "add", MACOS_TARGET], &[])
            .with_context(|| format!("check-macos needs the {MACOS_TARGET} standard library"))?;
    }
    if Command::new("clang").arg("--version").output().is_err() {
        bail!("check-macos needs clang, to compile criterion's one C file for {MACOS_TARGET}");
    }
    // That file includes only freestanding headers, so clang needs no macOS SDK for it.
    let envs = [
        ("CC_aarch64_apple_darwin", "clang"),
        ("CFLAGS_aarch64_apple_darwin", "-ffreestanding"),
        ("AR_aarch64_apple_darwin", if has_program("llvm-ar") { "llvm-ar" } else { "ar" }),
    ];
    for features in [&[][..], &["--features", "multiproc/force-portable"][..]] {
        let mut args = vec!["clippy", "--workspace", "--all-targets", "--target", MACOS_TARGET];
        args.extend_from_slice(features);
        args.extend(["--", "-D", "warnings"]);
        run("cargo", &args, &envs)?;
    }
    Ok(())
}

fn has_program(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

/// The prefixes of the shared-memory names the crates create (queues' spill segments, named
/// `SharedMemory`, the tests' own).
const SHM_PREFIXES: [&str; 3] = ["mp_", "mpa", "mpt_"];

/// Fails if the tests left shared-memory names in `/dev/shm` (where the system lists them).
fn no_shared_memory_left() -> Result<()> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else { return Ok(()) };
    let left: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| SHM_PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect();
    if !left.is_empty() {
        bail!("the tests left shared memory behind in /dev/shm: {}", left.join(" "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `cargo xtask bench`
// ---------------------------------------------------------------------------------------------

/// One criterion benchmark file (`benches/benches/<name>.rs`), its Python counterpart
/// (`benches/python/<name>.py`, printing a JSON object of mean nanoseconds per key) and its table.
struct BenchFile {
    name: &'static str,
    title: &'static str,
    /// The heading of the first column.
    first_column: &'static str,
    /// Whether it runs on both wait/wake backends of proc-sync: the default one and the portable
    /// one (`--features multiproc/force-portable`). Its groups are then named
    /// `<scenario>_<backend>_<pin>`, else `<scenario>_<pin>`.
    both_backends: bool,
    rows: &'static [Row],
    /// Printed under the table.
    note: &'static str,
}

/// One line of a table: a benchmark, its floor and its Python key (empty: none).
struct Row {
    label: &'static str,
    scenario: &'static str,
    function: &'static str,
    /// A function of the same group, or `scenario/function` for one of another group of the same
    /// run.
    floor: &'static str,
    python: &'static str,
    unit: Unit,
    target: Option<Target>,
}

/// How a row's means read.
#[derive(Clone, Copy)]
enum Unit {
    /// Milliseconds, three decimals.
    Ms,
    /// Nanoseconds or microseconds, whichever reads better.
    Auto,
    /// Time per iteration, and the operations per second of that many operations per iteration.
    Throughput(f64),
    /// Time per message, and messages per second.
    Msgs,
    /// Time per message of that many bytes, and bytes per second.
    Bytes(f64),
}

/// A target: multiproc's time at most `max_ratio` times the floor's (a throughput target of 50 %
/// of the floor's operations per second is a time ratio of 2), and, where `min_per_sec` is not
/// zero, at least that many iterations per second.
struct Target {
    max_ratio: f64,
    min_per_sec: f64,
    /// Where not zero: Python's time at least this many times multiproc's (a speed-up over Python
    /// in the same run).
    min_python_speedup: f64,
    text: &'static str,
}

const BENCH_FILES: &[BenchFile] = &[
    BenchFile {
        name: "process_start",
        title: "Process start + join of a no-op target (mean per process)",
        first_column: "method",
        both_backends: false,
        rows: &[
            Row {
                label: "fork",
                scenario: "process_start",
                function: "fork",
                floor: "floor_fork_waitpid",
                python: "fork",
                unit: Unit::Ms,
                target: None,
            },
            Row {
                label: "forkserver",
                scenario: "process_start",
                function: "forkserver",
                floor: "floor_fork_waitpid",
                python: "forkserver",
                unit: Unit::Ms,
                target: None,
            },
            Row {
                label: "spawn",
                scenario: "process_start",
                function: "spawn",
                floor: "floor_reexec",
                python: "spawn",
                unit: Unit::Ms,
                target: None,
            },
        ],
        note: "Targets: forkserver ≤ 2× the raw fork+waitpid floor; spawn ≤ 1.3× the re-exec floor; both far ahead of Python.",
    },
    BenchFile {
        name: "sync",
        title: "Synchronization (mean per iteration)",
        first_column: "benchmark",
        both_backends: true,
        rows: &[
            Row {
                label: "Lock acquire+release, uncontended",
                scenario: "uncontended",
                function: "lock",
                floor: "floor_pthread_mutex",
                python: "lock",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "RLock acquire+release, uncontended",
                scenario: "uncontended",
                function: "rlock",
                floor: "floor_pthread_recursive",
                python: "rlock",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Value<u64> update, uncontended",
                scenario: "uncontended",
                function: "value_update",
                floor: "floor_pthread_update",
                python: "value_update",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Value<u64> get, uncontended",
                scenario: "uncontended",
                function: "value_get",
                floor: "floor_pthread_mutex",
                python: "",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Value<u64> set, uncontended",
                scenario: "uncontended",
                function: "value_set",
                floor: "floor_pthread_mutex",
                python: "",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Value<u64> `get_lock` idiom (lock, get, set), uncontended",
                scenario: "uncontended",
                function: "value_idiom",
                floor: "floor_pthread_mutex",
                python: "value_update",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Array<u64> get, uncontended",
                scenario: "uncontended",
                function: "array_get",
                floor: "floor_pthread_mutex",
                python: "",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Array<u64> set, uncontended",
                scenario: "uncontended",
                function: "array_set",
                floor: "floor_pthread_mutex",
                python: "",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Array<u64> `get_lock` idiom (lock, get, set), uncontended",
                scenario: "uncontended",
                function: "array_idiom",
                floor: "floor_pthread_mutex",
                python: "",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×" }),
            },
            Row {
                label: "Semaphore ping-pong, round trip",
                scenario: "pingpong",
                function: "semaphore",
                floor: "floor_futex",
                python: "pingpong_semaphore",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
            },
            Row {
                label: "Event ping-pong, round trip",
                scenario: "pingpong",
                function: "event",
                floor: "floor_futex",
                python: "pingpong_event",
                unit: Unit::Auto,
                target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
            },
            Row {
                label: "2 processes increment one Value<u64> (2 ops per iteration)",
                scenario: "counter",
                function: "value_update",
                floor: "floor_pthread_counter",
                python: "counter",
                unit: Unit::Throughput(2.0),
                target: Some(Target { max_ratio: 2.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≥ 50% of the floor's ops/s (≤ 2×)" }),
            },
        ],
        note: "Ratios are of times per iteration: for the counter, a time ratio r means 1/r of the floor's ops/s. \
               Each backend's floors are measured in that backend's run. Floors: a process-shared pthread mutex \
               (normal or recursive) in MAP_SHARED memory; a shared-futex ping-pong on one word.",
    },
    BenchFile {
        name: "queue",
        title: "Queues and pipes (mean per message, or per round trip)",
        first_column: "benchmark",
        both_backends: false,
        rows: QUEUE_ROWS,
        note: "Ratios are of times per message: a time ratio r means 1/r of the floor's messages or bytes per second. \
               Floors: floor_spsc_ring, a raw single-producer single-consumer ring of 65536 8-byte slots in MAP_SHARED \
               memory (the 2 → 2 row is compared with it too); floor_byte_ring, a 2 MiB byte ring, memcpy in and \
               memcpy out (two copies); floor_memcpy, one copy in one process; floor_futex, a shared-futex \
               ping-pong; floor_socketpair, one byte back and forth over a Unix socket pair; \
               floor_socketpair_polling, the same waiting as a Connection's receive does (look for the byte \
               without sleeping for up to 100 us, yielding, then sleep). Backlog rows: the floor is the same \
               queue while its consumer keeps up, measured in the same run.",
    },
    BenchFile {
        name: "pool",
        title: "Process pool (mean per task; per map of 64 ~1 ms tasks for the CPU-bound rows)",
        first_column: "benchmark",
        both_backends: false,
        rows: POOL_ROWS,
        note: "Trivial tasks on 2 workers (Python: multiprocessing.Pool(2), fork context); floor_rayon: rayon's \
               par_iter().map().collect() of the same function on 2 threads, the in-process floor. Python's \
               ProcessPoolExecutor(2) (fork context) measured in the same run: see the executor rows. The CPU-bound \
               rows map 64 tasks of about 1 ms on 1 worker and on every usable CPU (no Python counterpart: it would \
               compare arithmetic speed); the speed-up is their ratio.",
    },
    BenchFile {
        name: "manager",
        title: "Manager proxies (mean per operation)",
        first_column: "benchmark",
        both_backends: false,
        rows: MANAGER_ROWS,
        note: "Floors: floor_roundtrip, one byte there and back over a Unix socket pair between two processes (the \
               socket type the manager uses locally), and floor_two_roundtrips for the operations that take two; \
               the _polling floors wait as proc-manager does (look for the byte without sleeping for up to \
               100 us, yielding, then sleep in read). \
               Python: a multiprocessing.Manager() (fork context) doing the same.",
    },
];

const MANAGER_ROWS: &[Row] = &[
    Row {
        label: "dict set + get (2 round trips)",
        scenario: "manager",
        function: "dict_set_get",
        floor: "floor_two_roundtrips",
        python: "dict_set_get",
        unit: Unit::Auto,
        target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
    },
    Row {
        label: "list append",
        scenario: "manager",
        function: "list_append",
        floor: "floor_roundtrip",
        python: "list_append",
        unit: Unit::Auto,
        target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
    },
    Row {
        label: "Value get",
        scenario: "manager",
        function: "value_get",
        floor: "floor_roundtrip",
        python: "value_get",
        unit: Unit::Auto,
        target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
    },
    Row {
        label: "Lock acquire + release (2 round trips)",
        scenario: "manager",
        function: "lock_acquire_release",
        floor: "floor_two_roundtrips",
        python: "lock_acquire_release",
        unit: Unit::Auto,
        target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
    },
    Row {
        label: "dict update, 100 pairs per call (per pair)",
        scenario: "manager",
        function: "dict_update_100",
        floor: "floor_roundtrip",
        python: "dict_update_100",
        unit: Unit::Auto,
        target: None,
    },
    Row {
        label: "dict set + get, against the polling floor",
        scenario: "manager",
        function: "dict_set_get",
        floor: "floor_two_roundtrips_polling",
        python: "dict_set_get",
        unit: Unit::Auto,
        target: None,
    },
    Row {
        label: "list append, against the polling floor",
        scenario: "manager",
        function: "list_append",
        floor: "floor_roundtrip_polling",
        python: "list_append",
        unit: Unit::Auto,
        target: None,
    },
    Row {
        label: "Value get, against the polling floor",
        scenario: "manager",
        function: "value_get",
        floor: "floor_roundtrip_polling",
        python: "value_get",
        unit: Unit::Auto,
        target: None,
    },
    Row {
        label: "Lock acquire + release, against the polling floor",
        scenario: "manager",
        function: "lock_acquire_release",
        floor: "floor_two_roundtrips_polling",
        python: "lock_acquire_release",
        unit: Unit::Auto,
        target: None,
    },
];

const POOL_ROWS: &[Row] = &[
    Row {
        label: "map, chunksize 1",
        scenario: "tasks",
        function: "map_chunk1",
        floor: "floor_rayon",
        python: "map_chunk1",
        unit: Unit::Msgs,
        target: Some(Target {
            max_ratio: f64::INFINITY,
            min_per_sec: 0.0,
            min_python_speedup: 10.0,
            text: "≥ 10× Python",
        }),
    },
    Row {
        label: "map, default chunksize",
        scenario: "tasks",
        function: "map_default",
        floor: "floor_rayon",
        python: "map_default",
        unit: Unit::Msgs,
        target: Some(Target {
            max_ratio: f64::INFINITY,
            min_per_sec: 0.0,
            min_python_speedup: 5.0,
            text: "≥ 5× Python",
        }),
    },
    Row {
        label: "apply_async + get",
        scenario: "tasks",
        function: "apply_async",
        floor: "floor_rayon",
        python: "apply_async",
        unit: Unit::Msgs,
        target: Some(Target {
            max_ratio: f64::INFINITY,
            min_per_sec: 0.0,
            min_python_speedup: 10.0,
            text: "≥ 10× Python",
        }),
    },
    Row {
        label: "imap_unordered, chunksize 1",
        scenario: "tasks",
        function: "imap_unordered",
        floor: "floor_rayon",
        python: "imap_unordered",
        unit: Unit::Msgs,
        target: None,
    },
    Row {
        label: "vs ProcessPoolExecutor: submit + result",
        scenario: "tasks",
        function: "apply_async",
        floor: "floor_rayon",
        python: "executor_submit",
        unit: Unit::Msgs,
        target: None,
    },
    Row {
        label: "vs ProcessPoolExecutor: map",
        scenario: "tasks",
        function: "map_chunk1",
        floor: "floor_rayon",
        python: "executor_map",
        unit: Unit::Msgs,
        target: None,
    },
    Row {
        label: "CPU-bound map, 1 worker",
        scenario: "cpu_bound",
        function: "one_process",
        floor: "one_process",
        python: "",
        unit: Unit::Ms,
        target: None,
    },
    Row {
        label: "CPU-bound map, every usable CPU",
        scenario: "cpu_bound",
        function: "all_cpus",
        floor: "one_process",
        python: "",
        unit: Unit::Ms,
        target: None,
    },
];

const QUEUE_ROWS: &[Row] = &[
    Row {
        label: "u64, 1 → 1, Queue",
        scenario: "small_1to1",
        function: "queue",
        floor: "floor_spsc_ring",
        python: "small_queue",
        unit: Unit::Msgs,
        target: Some(Target {
            max_ratio: f64::INFINITY,
            min_per_sec: 10e6,
            min_python_speedup: 0.0,
            text: "≥ 10 M msgs/s",
        }),
    },
    Row {
        label: "u64, 1 → 1, SimpleQueue",
        scenario: "small_1to1",
        function: "simple_queue",
        floor: "floor_spsc_ring",
        python: "small_simplequeue",
        unit: Unit::Msgs,
        target: Some(Target {
            max_ratio: f64::INFINITY,
            min_per_sec: 10e6,
            min_python_speedup: 0.0,
            text: "≥ 10 M msgs/s",
        }),
    },
    Row {
        label: "u64, 1 → 1, Pipe",
        scenario: "small_1to1",
        function: "pipe",
        floor: "floor_spsc_ring",
        python: "small_pipe",
        unit: Unit::Msgs,
        target: None,
    },
    Row {
        label: "u64, 2 → 2, Queue",
        scenario: "small_2to2",
        function: "queue",
        floor: "small_1to1/floor_spsc_ring",
        python: "small_2to2_queue",
        unit: Unit::Msgs,
        target: None,
    },
    Row {
        label: "64 KiB, 1 → 1, Queue (spills)",
        scenario: "bytes_64k",
        function: "queue",
        floor: "floor_byte_ring",
        python: "bytes_64k_queue",
        unit: Unit::Bytes(65536.0),
        target: None,
    },
    Row {
        label: "64 KiB, 1 → 1, Queue (128 KiB slots)",
        scenario: "bytes_64k",
        function: "queue_slot128k",
        floor: "floor_byte_ring",
        python: "bytes_64k_queue",
        unit: Unit::Bytes(65536.0),
        target: None,
    },
    Row {
        label: "64 KiB, 1 → 1, Pipe (send_bytes)",
        scenario: "bytes_64k",
        function: "pipe",
        floor: "floor_byte_ring",
        python: "bytes_64k_pipe",
        unit: Unit::Bytes(65536.0),
        target: None,
    },
    Row {
        label: "64 KiB, memcpy (one copy, one process)",
        scenario: "bytes_64k",
        function: "floor_memcpy",
        floor: "floor_byte_ring",
        python: "",
        unit: Unit::Bytes(65536.0),
        target: None,
    },
    Row {
        label: "4 MiB, 1 → 1, Queue (spills)",
        scenario: "bytes_4m",
        function: "queue",
        floor: "floor_byte_ring",
        python: "bytes_4m_queue",
        unit: Unit::Bytes(4194304.0),
        target: Some(Target {
            max_ratio: 2.0,
            min_per_sec: 0.0,
            min_python_speedup: 0.0,
            text: "≥ 50% of the ring's bytes/s (≤ 2×)",
        }),
    },
    Row {
        label: "4 MiB, 1 → 1, Pipe (send_bytes)",
        scenario: "bytes_4m",
        function: "pipe",
        floor: "floor_byte_ring",
        python: "bytes_4m_pipe",
        unit: Unit::Bytes(4194304.0),
        target: None,
    },
    Row {
        label: "4 MiB, memcpy (one copy, one process)",
        scenario: "bytes_4m",
        function: "floor_memcpy",
        floor: "floor_byte_ring",
        python: "",
        unit: Unit::Bytes(4194304.0),
        target: None,
    },
    backlog_row("4 KiB, Queue, backlog vs keeping up", "backlog_4k", "queue_backlog", "queue", 4096.0),
    backlog_row(
        "4 KiB, Queue(maxsize), backlog vs keeping up",
        "backlog_4k",
        "bounded_queue_backlog",
        "bounded_queue",
        4096.0,
    ),
    backlog_row(
        "4 KiB, SimpleQueue, backlog vs keeping up",
        "backlog_4k",
        "simple_queue_backlog",
        "simple_queue",
        4096.0,
    ),
    backlog_row(
        "4 KiB, JoinableQueue, backlog vs keeping up",
        "backlog_4k",
        "joinable_queue_backlog",
        "joinable_queue",
        4096.0,
    ),
    backlog_row("64 KiB, Queue, backlog vs keeping up", "backlog_64k", "queue_backlog", "queue", 65536.0),
    backlog_row(
        "64 KiB, Queue(maxsize), backlog vs keeping up",
        "backlog_64k",
        "bounded_queue_backlog",
        "bounded_queue",
        65536.0,
    ),
    backlog_row(
        "64 KiB, SimpleQueue, backlog vs keeping up",
        "backlog_64k",
        "simple_queue_backlog",
        "simple_queue",
        65536.0,
    ),
    backlog_row(
        "64 KiB, JoinableQueue, backlog vs keeping up",
        "backlog_64k",
        "joinable_queue_backlog",
        "joinable_queue",
        65536.0,
    ),
    backlog_row("1 MiB, Queue, backlog vs keeping up", "backlog_1m", "queue_backlog", "queue", 1048576.0),
    backlog_row(
        "1 MiB, Queue(maxsize), backlog vs keeping up",
        "backlog_1m",
        "bounded_queue_backlog",
        "bounded_queue",
        1048576.0,
    ),
    backlog_row(
        "1 MiB, SimpleQueue, backlog vs keeping up",
        "backlog_1m",
        "simple_queue_backlog",
        "simple_queue",
        1048576.0,
    ),
    backlog_row(
        "1 MiB, JoinableQueue, backlog vs keeping up",
        "backlog_1m",
        "joinable_queue_backlog",
        "joinable_queue",
        1048576.0,
    ),
    Row {
        label: "Queue ping-pong (two queues), round trip",
        scenario: "pingpong",
        function: "queue",
        floor: "floor_futex",
        python: "pingpong_queue",
        unit: Unit::Auto,
        target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
    },
    Row {
        label: "Pipe ping-pong (duplex), round trip",
        scenario: "pingpong",
        function: "pipe",
        floor: "floor_socketpair",
        python: "pingpong_pipe",
        unit: Unit::Auto,
        target: Some(Target { max_ratio: 1.2, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 1.2×" }),
    },
    Row {
        label: "Pipe ping-pong, against the polling floor",
        scenario: "pingpong",
        function: "pipe",
        floor: "floor_socketpair_polling",
        python: "pingpong_pipe",
        unit: Unit::Auto,
        target: None,
    },
];

/// A queue row whose consumer starts once the producer has put a whole backlog, next to the same
/// queue kept up with (its floor): the target is half of that throughput or more.
const fn backlog_row(
    label: &'static str,
    scenario: &'static str,
    function: &'static str,
    floor: &'static str,
    bytes: f64,
) -> Row {
    Row {
        label,
        scenario,
        function,
        floor,
        python: "",
        unit: Unit::Bytes(bytes),
        target: Some(Target {
            max_ratio: 2.0,
            min_per_sec: 0.0,
            min_python_speedup: 0.0,
            text: "≥ 50% of keeping up's bytes/s (≤ 2×)",
        }),
    }
}

const PORTABLE: &str = "multiproc/force-portable";

fn bench(only: &[String]) -> Result<()> {
    let files: Vec<&BenchFile> =
        BENCH_FILES.iter().filter(|f| only.is_empty() || only.iter().any(|o| o == f.name)).collect();
    if files.is_empty() {
        let names: Vec<_> = BENCH_FILES.iter().map(|f| f.name).collect();
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
    writeln!(md, "# multiproc benchmarks\n")?;
    writeln!(
        md,
        "Machine: {} ({} CPUs); {}; commit {}.\n",
        command_line("uname", &["-srm"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_line("rustc", &["--version"]),
        command_line("git", &["rev-parse", "--short", "HEAD"]),
    )?;
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
        missing.extend(table(&mut md, file, &results, py_free.as_ref(), py_pinned.as_ref())?);
    }
    if !has_python {
        writeln!(md, "\nPython columns skipped: `python3` was not found.")?;
    }
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
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

/// Cargo's target directory for this workspace, as `cargo metadata` reports it (it follows
/// `CARGO_TARGET_DIR` and the configuration files).
fn target_dir() -> Result<PathBuf> {
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

/// Writes one bench file's table; returns the benchmarks (`group/function`) it found no result
/// of in this run.
fn table(
    md: &mut String,
    file: &BenchFile,
    results: &Results<'_>,
    py_free: Option<&PythonFigures>,
    py_pinned: Option<&PythonFigures>,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
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
    Ok(missing)
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

#[cfg(test)]
mod bench_results {
    //! Where `cargo xtask bench` finds criterion's results, and what it does when one is missing.

    use super::{metadata_target_dir, root, table, Results, BENCH_FILES};
    use std::path::Path;
    use std::time::SystemTime;

    #[test]
    fn the_target_directory_follows_cargo_target_dir() {
        let elsewhere = std::env::temp_dir().join("multiproc-xtask-target-dir-test");
        assert_eq!(metadata_target_dir(Some(&elsewhere)).unwrap(), elsewhere);
        let default = metadata_target_dir(None).unwrap();
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(default, root().join("target"));
        }
    }

    #[test]
    fn a_benchmark_without_a_result_is_reported_missing() {
        let dir = std::env::temp_dir().join(format!("multiproc-xtask-results-{}", std::process::id()));
        let file = &BENCH_FILES[0];
        let row = &file.rows[0];
        let group = |pin: &str| {
            if file.both_backends {
                format!("{}_default_{pin}", row.scenario)
            } else {
                format!("{}_{pin}", row.scenario)
            }
        };
        // One result written by "this run": that one is found, every other is missing.
        let since = SystemTime::now() - std::time::Duration::from_secs(1);
        let found = Path::new(&dir).join(group("free")).join(row.function).join("new");
        std::fs::create_dir_all(&found).unwrap();
        std::fs::write(found.join("estimates.json"), r#"{"mean":{"point_estimate":12.5}}"#).unwrap();
        let results = Results { criterion: &dir, since };
        assert_eq!(results.mean(&group("free"), row.function), Some(12.5));
        let mut md = String::new();
        let missing = table(&mut md, file, &results, None, None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let free = format!("{}/{}", group("free"), row.function);
        let pinned = format!("{}/{}", group("pinned"), row.function);
        assert!(!missing.contains(&free), "{missing:?}");
        assert!(missing.contains(&pinned), "{missing:?}");
    }
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
