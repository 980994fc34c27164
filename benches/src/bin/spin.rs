//! What waiting costs in CPU (issue 18, item 3), for `cargo xtask bench spin`: rows of figures,
//! printed as one markdown table.
//!
//! - *Round trips*: a ping-pong between the parent and a child (multiproc's fork start method)
//!   through two `Semaphore`s, two `Event`s, a duplex `Pipe` and two `Queue`s, next to the floors
//!   of the same kind (a raw futex ping-pong and a raw socket-pair one; raw `fork`). For each: the
//!   wall time of a round trip and the CPU time both processes spent on it (user + system, from
//!   `getrusage` of this process and of its reaped children), free and then pinned to one CPU in
//!   the same run. The CPU above the floor's is what spinning before sleeping costs.
//! - *Idle*: a process that waits with nothing to come (a `Semaphore`, an `Event`, a `Queue`, a
//!   `Connection`, each for three seconds; a `Connection` polled, and received from, 1 ms at a time for
//!   three seconds; and an idle pool worker for three seconds): the share of one CPU it uses, spin
//!   budget included. Target: at most 1 %.
//!
//! The figures are only compared within one run (this VM drifts by several times between runs).

use std::time::{Duration, Instant};

use multiproc::sync::{Event, Semaphore};
use multiproc::{pipe, Pool, Queue};
use multiproc_benches::pingpong::{event_pingpong, pipe_pingpong, queue_pingpong, semaphore_pingpong};
use multiproc_benches::{floor_socketpair_pingpong, pin_to_one_cpu};

/// Round trips per measurement.
const ROUNDS: u64 = 20_000;
/// How long each idle wait lasts (a polling waiter's pauses reach their cap after about 0.2 s).
const IDLE: Duration = Duration::from_secs(3);

/// CPU time (user + system) of this process and of its children that have been reaped.
fn cpu_time() -> Duration {
    multiproc_benches::cpu_time(libc::RUSAGE_SELF) + multiproc_benches::cpu_time(libc::RUSAGE_CHILDREN)
}

/// Wall time and CPU time (both processes, the child's start included) per round trip of `f`,
/// which runs `rounds` round trips and returns their wall time.
fn per_round(f: impl Fn(u64) -> Duration) -> (f64, f64) {
    let cpu0 = cpu_time();
    let wall = f(ROUNDS);
    let cpu = cpu_time() - cpu0;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / ROUNDS as f64;
    (us(wall), us(cpu))
}

/// The floor of the primitives' round trip, a raw futex ping-pong (Linux only: elsewhere it is
/// not run, and its figures read NaN).
fn floor_futex(rounds: u64) -> Duration {
    #[cfg(target_os = "linux")]
    return multiproc_benches::floor_futex_pingpong(rounds);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = rounds;
        Duration::ZERO
    }
}

/// The share of one CPU that `wait` (which waits [`IDLE`] with nothing to come) uses.
fn idle_share(wait: impl FnOnce()) -> f64 {
    let (cpu0, t0) = (cpu_time(), Instant::now());
    wait();
    (cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64()
}

/// CPU time of process `pid` from `/proc/<pid>/stat` (Linux), in seconds.
fn proc_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

fn pid_of_worker() -> u32 {
    std::process::id()
}

/// Wall time and CPU time of one round trip, in µs.
type Trip = (f64, f64);

/// One kind of round trip: its name, its floor's name, and how to run it.
struct Kind {
    what: &'static str,
    floor: &'static str,
    run: fn(u64) -> Duration,
}

/// A kind's figures, and its floor's, free and pinned.
struct Row {
    kind: &'static Kind,
    free: Trip,
    pinned: Trip,
    floor_free: Trip,
    floor_pinned: Trip,
}

const KINDS: [Kind; 4] = [
    Kind { what: "Semaphore ping-pong", floor: "raw futex", run: semaphore_pingpong },
    Kind { what: "Event ping-pong", floor: "raw futex", run: event_pingpong },
    Kind { what: "Pipe (Connection) ping-pong", floor: "socket pair", run: pipe_pingpong },
    Kind { what: "Queue ping-pong", floor: "raw futex", run: queue_pingpong },
];

/// Each kind's round trip and its floor's, in this run's current pinning.
fn figures() -> Vec<(Trip, Trip)> {
    let futex = if cfg!(target_os = "linux") { per_round(floor_futex) } else { (f64::NAN, f64::NAN) };
    let socket = per_round(floor_socketpair_pingpong);
    KINDS.iter().map(|k| (per_round(k.run), if k.floor == "socket pair" { socket } else { futex })).collect()
}

fn main() {
    let free = figures();
    pin_to_one_cpu();
    let pinned = figures();
    let rows =
        KINDS.iter().zip(free).zip(pinned).map(|((kind, (free, floor_free)), (pinned, floor_pinned))| Row {
            kind,
            free,
            pinned,
            floor_free,
            floor_pinned,
        });
    let us = |v: f64| format!("{v:.2} µs");
    let mut out = vec![
        "| what | floor: wall / CPU, free; pinned | wall / round trip, free | CPU / round trip, free | wall, pinned | CPU, pinned | CPU above the floor, free / pinned |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for r in rows {
        out.push(format!(
            "| {} | {}: {} / {}; {} / {} | {} | {} | {} | {} | {} / {} |",
            r.kind.what,
            r.kind.floor,
            us(r.floor_free.0),
            us(r.floor_free.1),
            us(r.floor_pinned.0),
            us(r.floor_pinned.1),
            us(r.free.0),
            us(r.free.1),
            us(r.pinned.0),
            us(r.pinned.1),
            us(r.free.1 - r.floor_free.1),
            us(r.pinned.1 - r.floor_pinned.1),
        ));
    }
    println!("{}", out.join("\n"));

    // Idle waits, still pinned (a spinning waiter would show the same share either way).
    let mut idle =
        vec!["| a process waiting three seconds with nothing to come | share of one CPU | target |"
            .to_string()];
    idle.push("|---|---|---|".to_string());
    let mut line = |what: &str, share: f64| {
        // A loop of 1 ms waits wakes a thousand times a second, whatever waits: reported only.
        let verdict = if what.contains("1 ms at a time") {
            "(reported: 1,000 wake-ups a second)"
        } else if share <= 0.01 {
            "≤ 1 %: met"
        } else {
            "≤ 1 %: missed"
        };
        idle.push(format!("| {what} | {:.3} % | {verdict} |", share * 100.0));
    };
    let sem = Semaphore::new(0).expect("semaphore");
    line("`Semaphore::acquire_timeout`", idle_share(|| assert!(!sem.acquire_timeout(IDLE))));
    let event = Event::new().expect("event");
    line("`Event::wait_timeout`", idle_share(|| assert!(!event.wait_timeout(IDLE))));
    let q = Queue::<u64>::new(8).expect("queue");
    line("`Queue::get_timeout`", idle_share(|| assert!(q.get_timeout(IDLE).is_err())));
    let (mine, _theirs) = pipe::<u64>().expect("pipe");
    line("`Connection::recv_timeout`", idle_share(|| assert!(mine.recv_timeout(IDLE).is_err())));
    // A loop of short waits, as `while not conn.poll(0.001)` in Python: each wait that finds the
    // peer idle sleeps without looking first.
    let short = Duration::from_millis(1);
    let each = |wait: &dyn Fn() -> bool| {
        idle_share(|| {
            let end = Instant::now() + IDLE;
            while Instant::now() < end {
                assert!(!wait());
            }
        })
    };
    line("`Connection::poll`, 1 ms at a time", each(&|| mine.poll(short).expect("poll")));
    line("`Connection::recv_timeout`, 1 ms at a time", each(&|| mine.recv_timeout(short).is_ok()));
    if cfg!(target_os = "linux") {
        let pool = Pool::new(1).expect("pool");
        let worker = pool.apply(pid_of_worker, ()).expect("apply");
        let before = proc_cpu(worker);
        let t0 = Instant::now();
        std::thread::sleep(IDLE);
        if let (Some(a), Some(b)) = (before, proc_cpu(worker)) {
            line("idle pool worker (from `/proc`, 10 ms ticks)", (b - a) / t0.elapsed().as_secs_f64());
        }
    }
    println!("\n{}", idle.join("\n"));
}
