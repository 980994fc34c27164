//! The `sync` table of `cargo xtask bench`: proc-sync's primitives on both backends
//! (`benches/benches/sync.rs`) against the pthread and futex floors, and `benches/python/sync.py`.

use super::{BenchFile, Row, Target, Unit};

pub(crate) const FILE: BenchFile = BenchFile {
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
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "RLock acquire+release, uncontended",
            scenario: "uncontended",
            function: "rlock",
            floor: "floor_pthread_recursive",
            python: "rlock",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Value<u64> update, uncontended",
            scenario: "uncontended",
            function: "value_update",
            floor: "floor_pthread_update",
            python: "value_update",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Value<u64> get, uncontended",
            scenario: "uncontended",
            function: "value_get",
            floor: "floor_pthread_mutex",
            python: "",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Value<u64> set, uncontended",
            scenario: "uncontended",
            function: "value_set",
            floor: "floor_pthread_mutex",
            python: "",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Value<u64> `get_lock` idiom (lock, get, set), uncontended",
            scenario: "uncontended",
            function: "value_idiom",
            floor: "floor_pthread_mutex",
            python: "value_update",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Array<u64> get, uncontended",
            scenario: "uncontended",
            function: "array_get",
            floor: "floor_pthread_mutex",
            python: "",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Array<u64> set, uncontended",
            scenario: "uncontended",
            function: "array_set",
            floor: "floor_pthread_mutex",
            python: "",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Array<u64> `get_lock` idiom (lock, get, set), uncontended",
            scenario: "uncontended",
            function: "array_idiom",
            floor: "floor_pthread_mutex",
            python: "",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 3.0, min_per_sec: 0.0, min_python_speedup: 0.0, text: "≤ 3×"
            }),
        },
        Row {
            label: "Semaphore ping-pong, round trip",
            scenario: "pingpong",
            function: "semaphore",
            floor: "floor_futex",
            python: "pingpong_semaphore",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 1.2,
                min_per_sec: 0.0,
                min_python_speedup: 0.0,
                text: "≤ 1.2×",
            }),
        },
        Row {
            label: "Event ping-pong, round trip",
            scenario: "pingpong",
            function: "event",
            floor: "floor_futex",
            python: "pingpong_event",
            unit: Unit::Auto,
            target: Some(Target {
                max_ratio: 1.2,
                min_per_sec: 0.0,
                min_python_speedup: 0.0,
                text: "≤ 1.2×",
            }),
        },
        Row {
            label: "2 processes increment one Value<u64> (2 ops per iteration)",
            scenario: "counter",
            function: "value_update",
            floor: "floor_pthread_counter",
            python: "counter",
            unit: Unit::Throughput(2.0),
            target: Some(Target {
                max_ratio: 2.0,
                min_per_sec: 0.0,
                min_python_speedup: 0.0,
                text: "≥ 50% of the floor's ops/s (≤ 2×)",
            }),
        },
    ],
    note:
        "Ratios are of times per iteration: for the counter, a time ratio r means 1/r of the floor's ops/s. \
           Each backend's floors are measured in that backend's run. Floors: a process-shared pthread mutex \
           (normal or recursive) in MAP_SHARED memory; a shared-futex ping-pong on one word.",
};
