//! The `manager` table of `cargo xtask bench`: manager proxies (`benches/benches/manager.rs`)
//! against socket-pair round trips, and `benches/python/manager.py`.

use super::{BenchFile, Row, Target, Unit};

pub(crate) const FILE: BenchFile = BenchFile {
    name: "manager",
    title: "Manager proxies (mean per operation)",
    first_column: "benchmark",
    both_backends: false,
    rows: ROWS,
    note:
        "Floors: floor_roundtrip, one byte there and back over a Unix socket pair between two processes (the \
           socket type the manager uses locally), and floor_two_roundtrips for the operations that take two; \
           the _polling floors wait as proc-manager does (look for the byte without sleeping for up to \
           100 us, yielding, then sleep in read). \
           Python: a multiprocessing.Manager() (fork context) doing the same.",
};

const ROWS: &[Row] = &[
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
