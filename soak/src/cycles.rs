//! The cycle phase (`soak cycles`): one process starts and joins a child `count` times under one
//! start method, and its descriptors, resident memory and children must stay flat.

use std::time::Instant;

use multiproc::{Process, StartMethod};

use crate::probe;

/// Descriptors may not grow at all; resident memory may grow by this much (allocator caches,
/// the lazily grown tables of the first starts: a leak of even 1 KiB a cycle passes it by the
/// 10,000th cycle, so the long run catches one).
pub(crate) const RSS_SLACK_KIB: u64 = 4096;

fn echo(i: u64) -> u64 {
    i
}

/// A sample: descriptors, resident KiB, children.
fn sample() -> (usize, u64, usize) {
    (probe::fd_count(), probe::rss_kib(), probe::children().len())
}

/// Runs the cycles; prints one `SOAK cycle ...` line and one `SOAK violation ...` per problem.
pub(crate) fn main(method: StartMethod, count: u64) -> i32 {
    let warm_up = (count / 10).clamp(1, 200);
    let mut failures = 0u64;
    let mut first_failure = String::new();
    let mut cycle =
        |i: u64| match Process::new(echo, (i,)).start_method(method).start().and_then(|p| p.join()) {
            Ok(v) if v == i => {}
            Ok(v) => {
                failures += 1;
                first_failure = format!("cycle {i} returned {v}");
            }
            Err(e) => {
                failures += 1;
                if first_failure.is_empty() {
                    first_failure = format!("cycle {i}: {e}");
                }
            }
        };
    for i in 0..warm_up {
        cycle(i);
    }
    let start = Instant::now();
    let first = sample();
    for i in 0..count / 2 {
        cycle(i);
    }
    let middle = sample();
    for i in count / 2..count {
        cycle(i);
    }
    let last = sample();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "SOAK cycle {} {count} fds {} {} {} rss_kib {} {} {} children {} {} {} secs {secs:.1} failures {failures}",
        method.as_str(),
        first.0,
        middle.0,
        last.0,
        first.1,
        middle.1,
        last.1,
        first.2,
        middle.2,
        last.2,
    );
    let mut bad = Vec::new();
    if failures > 0 {
        bad.push(format!("{failures} cycles failed, first: {first_failure}"));
    }
    if middle.0 > first.0 || last.0 > first.0 {
        bad.push(format!("descriptors grew: {} -> {} -> {}", first.0, middle.0, last.0));
    }
    if last.1 > first.1 + RSS_SLACK_KIB {
        bad.push(format!("resident memory grew by {} KiB (slack {RSS_SLACK_KIB})", last.1 - first.1));
    }
    if last.2 > first.2 {
        bad.push(format!("children: {} -> {} -> {}", first.2, middle.2, last.2));
    }
    for b in &bad {
        println!("SOAK violation {} cycles: {b}", method.as_str());
    }
    0
}
