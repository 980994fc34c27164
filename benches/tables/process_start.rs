//! The `process_start` table of `cargo xtask bench`: start + join per start method
//! (`benches/benches/process_start.rs`) against the raw floors, and `benches/python/process_start.py`.

use super::{BenchFile, Row, Unit};

pub(crate) const FILE: BenchFile = BenchFile {
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
};
