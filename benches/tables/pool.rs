//! The `pool` table of `cargo xtask bench`: the process pool (`benches/benches/pool.rs`) against
//! rayon, and `benches/python/pool.py`.

use super::{BenchFile, Row, Target, Unit};

pub(crate) const FILE: BenchFile = BenchFile {
    name: "pool",
    title: "Process pool (mean per task; per map of 64 ~1 ms tasks for the CPU-bound rows)",
    first_column: "benchmark",
    both_backends: false,
    rows: ROWS,
    note: "Trivial tasks on 2 workers (Python: multiprocessing.Pool(2), fork context); floor_rayon: rayon's \
           par_iter().map().collect() of the same function on 2 threads, the in-process floor. Python's \
           ProcessPoolExecutor(2) (fork context) measured in the same run: see the executor rows. The CPU-bound \
           rows map 64 tasks of about 1 ms on 1 worker and on every usable CPU (no Python counterpart: it would \
           compare arithmetic speed); the speed-up is their ratio.",
};

const ROWS: &[Row] = &[
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
