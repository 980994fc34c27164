//! The tables of `cargo xtask bench`: for each criterion benchmark file in `benches/benches/`, which
//! benchmark ids (`<group>/<function>`) make which report rows, the floor each row is divided by, the
//! key of its Python counterpart in `benches/python/<file>.py`, and its target. One module per file.
//!
//! This is plain, dependency-free data: `xtask` compiles it in with `#[path]` (so it need not depend on
//! this crate, and builds in seconds), and nothing else uses it. A criterion group is named
//! `<scenario>_<pin>`, or `<scenario>_<backend>_<pin>` for a file run on both proc-sync backends, where
//! `<pin>` is `free` or `pinned` (see `group_name` in `benches/src/lib.rs`).

mod manager;
mod pool;
mod process_start;
mod queue;
mod sync;

/// Every table, in the order `cargo xtask bench` runs and prints them.
pub(crate) const BENCH_FILES: &[BenchFile] =
    &[process_start::FILE, sync::FILE, queue::FILE, pool::FILE, manager::FILE];

/// One criterion benchmark file (`benches/benches/<name>.rs`), its Python counterpart
/// (`benches/python/<name>.py`, printing a JSON object of mean nanoseconds per key) and its table.
pub(crate) struct BenchFile {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    /// The heading of the first column.
    pub(crate) first_column: &'static str,
    /// Whether it runs on both wait/wake backends of proc-sync: the default one and the portable
    /// one (`--features multiproc/force-portable`). Its groups are then named
    /// `<scenario>_<backend>_<pin>`, else `<scenario>_<pin>`.
    pub(crate) both_backends: bool,
    pub(crate) rows: &'static [Row],
    /// Printed under the table.
    pub(crate) note: &'static str,
}

/// One line of a table: a benchmark, its floor and its Python key (empty: none).
pub(crate) struct Row {
    pub(crate) label: &'static str,
    pub(crate) scenario: &'static str,
    pub(crate) function: &'static str,
    /// A function of the same group, or `scenario/function` for one of another group of the same
    /// run.
    pub(crate) floor: &'static str,
    pub(crate) python: &'static str,
    pub(crate) unit: Unit,
    pub(crate) target: Option<Target>,
}

/// How a row's means read.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
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
pub(crate) struct Target {
    pub(crate) max_ratio: f64,
    pub(crate) min_per_sec: f64,
    /// Where not zero: Python's time at least this many times multiproc's (a speed-up over Python
    /// in the same run).
    pub(crate) min_python_speedup: f64,
    pub(crate) text: &'static str,
}
