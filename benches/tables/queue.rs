//! The `queue` table of `cargo xtask bench`: queues and pipes (`benches/benches/queue.rs`) against
//! the ring, memcpy, futex and socket-pair floors, and `benches/python/queue.py`.

use super::{BenchFile, Row, Target, Unit};

pub(crate) const FILE: BenchFile = BenchFile {
    name: "queue",
    title: "Queues and pipes (mean per message, or per round trip)",
    first_column: "benchmark",
    both_backends: false,
    rows: ROWS,
    note: "Ratios are of times per message: a time ratio r means 1/r of the floor's messages or bytes per second. \
           Floors: floor_spsc_ring, a raw single-producer single-consumer ring of 65536 8-byte slots in MAP_SHARED \
           memory (the 2 → 2 row is compared with it too); floor_byte_ring, a 2 MiB byte ring, memcpy in and \
           memcpy out (two copies); floor_memcpy, one copy in one process; floor_futex, a shared-futex \
           ping-pong; floor_socketpair, one byte back and forth over a Unix socket pair; \
           floor_socketpair_polling, the same waiting as a Connection's receive does (look for the byte \
           without sleeping for up to 100 us, yielding, then sleep). Backlog rows: the floor is the same \
           queue while its consumer keeps up, measured in the same run; the raw backlog (floor_backlog) is the \
           same backlog with no queue (a fresh child per round copies the round into shared memory it has not \
           mapped yet, then the parent copies it out), and its row against keeping up says how far a backlog \
           can go on this machine.",
};

const ROWS: &[Row] = &[
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
        label: "64 KiB, 1 → 1, Queue<Vec<u8>> (element by element)",
        scenario: "bytes_64k",
        function: "queue_vec",
        floor: "floor_byte_ring",
        python: "bytes_64k_queue",
        unit: Unit::Bytes(65536.0),
        target: None,
    },
    Row {
        label: "64 KiB, 1 → 1, Queue<ByteBuf>",
        scenario: "bytes_64k",
        function: "queue_bytebuf",
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
        label: "64 KiB, 1 → 1, Pipe typed (send(&ByteBuf) → recv)",
        scenario: "bytes_64k",
        function: "pipe_typed",
        floor: "pipe",
        python: "bytes_64k_pipe",
        unit: Unit::Bytes(65536.0),
        target: Some(Target {
            max_ratio: 1.25,
            min_per_sec: 0.0,
            min_python_speedup: 0.0,
            text: "≥ 80% of send_bytes' bytes/s (≤ 1.25×)",
        }),
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
        label: "4 MiB, 1 → 1, Queue<Vec<u8>> (element by element)",
        scenario: "bytes_4m",
        function: "queue_vec",
        floor: "floor_byte_ring",
        python: "bytes_4m_queue",
        unit: Unit::Bytes(4194304.0),
        target: None,
    },
    Row {
        label: "4 MiB, 1 → 1, Queue<ByteBuf>",
        scenario: "bytes_4m",
        function: "queue_bytebuf",
        floor: "floor_byte_ring",
        python: "bytes_4m_queue",
        unit: Unit::Bytes(4194304.0),
        target: None,
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
        label: "4 MiB, 1 → 1, Pipe typed (send(&ByteBuf) → recv)",
        scenario: "bytes_4m",
        function: "pipe_typed",
        floor: "pipe",
        python: "bytes_4m_pipe",
        unit: Unit::Bytes(4194304.0),
        target: Some(Target {
            max_ratio: 1.25,
            min_per_sec: 0.0,
            min_python_speedup: 0.0,
            text: "≥ 80% of send_bytes' bytes/s (≤ 1.25×)",
        }),
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
    backlog_row(
        "4 KiB, raw backlog (no queue) vs keeping up",
        "backlog_4k",
        "floor_backlog",
        "queue",
        4096.0,
    ),
    floor_row("4 KiB, Queue backlog vs raw backlog", "backlog_4k", "queue_backlog", "floor_backlog", 4096.0),
    floor_row("4 KiB, Queue drain only vs keeping up", "backlog_4k", "queue_drain", "queue", 4096.0),
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
    backlog_row(
        "64 KiB, raw backlog (no queue) vs keeping up",
        "backlog_64k",
        "floor_backlog",
        "queue",
        65536.0,
    ),
    floor_row(
        "64 KiB, Queue backlog vs raw backlog",
        "backlog_64k",
        "queue_backlog",
        "floor_backlog",
        65536.0,
    ),
    floor_row("64 KiB, Queue drain only vs keeping up", "backlog_64k", "queue_drain", "queue", 65536.0),
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
    backlog_row(
        "1 MiB, raw backlog (no queue) vs keeping up",
        "backlog_1m",
        "floor_backlog",
        "queue",
        1048576.0,
    ),
    floor_row(
        "1 MiB, Queue backlog vs raw backlog",
        "backlog_1m",
        "queue_backlog",
        "floor_backlog",
        1048576.0,
    ),
    floor_row("1 MiB, Queue drain only vs keeping up", "backlog_1m", "queue_drain", "queue", 1048576.0),
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

/// A backlog row next to a floor, for scale: no target.
const fn floor_row(
    label: &'static str,
    scenario: &'static str,
    function: &'static str,
    floor: &'static str,
    bytes: f64,
) -> Row {
    Row { label, scenario, function, floor, python: "", unit: Unit::Bytes(bytes), target: None }
}

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
