//! Memory and descriptors (issue 18, item 5), for `cargo xtask bench memory`: rows of figures,
//! not timings, printed as one markdown table (Linux: it reads `/proc`).
//!
//! - Resident memory (RSS, and PSS, which shares a page among the processes that map it) of an
//!   idle child of each kind next to the floor, a raw `fork`ed child blocked in `read`: a child
//!   started by the fork server and by spawn (each blocked on an `Event`), the fork server itself,
//!   and an idle pool worker.
//! - An unbounded queue's shared memory (the bytes of its segments in `/dev/shm`, allocated pages
//!   only) and this process' RSS: before, at the peak of a burst of 1 GiB of 100-byte messages put
//!   with no consumer, and once the burst is drained.
//! - Descriptors held per `Lock` and `Value<u64>` (10,000 of each: small primitives share arenas, a
//!   descriptor per about 1,000 locks) and per `Queue<u64>` (100), and how many `Lock`s a process can
//!   make under a limit of 256 descriptors (macOS's default; counted up to 20,000).

use std::os::fd::AsRawFd;

use multiproc::sync::{Event, Lock, Value};
use multiproc::{ByteBuf, Pool, Process, Queue, StartMethod};

/// RSS and PSS of `pid` in KiB, from `/proc/<pid>/smaps_rollup`.
fn rss_pss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// The descriptors this process holds.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(Iterator::count).unwrap_or(0)
}

/// Bytes allocated to multiproc's segments in `/dev/shm` (not their sizes: a sparse ring counts
/// the pages it touched).
fn shm_bytes() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return 0 };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("mp_"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// An idle child: says it is ready, then blocks until `go`.
fn wait_event(ready: Event, go: Event) {
    ready.set();
    go.wait();
}

fn pid_of_worker() -> u32 {
    std::process::id()
}

/// How many locks a process makes under a soft limit of 256 descriptors (at most 20,000).
fn locks_under_256_fds() -> usize {
    let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
    // SAFETY: a valid rlimit struct; lowering this process' own limit affects only this process.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return 0;
    }
    let mut locks = Vec::new();
    while locks.len() < 20_000 {
        match Lock::new() {
            Ok(l) => locks.push(l),
            Err(_) => break,
        }
    }
    locks.len()
}

fn row(out: &mut Vec<String>, what: &str, value: String, floor: &str) {
    out.push(format!("| {what} | {value} | {floor} |"));
}

fn main() {
    if !cfg!(target_os = "linux") {
        println!("memory: skipped (it reads /proc)");
        return;
    }
    let mut out = vec!["| what | figure | floor / note |".to_string(), "|---|---|---|".to_string()];

    // The floor: a raw fork of this process, blocked in read(2).
    let (r, w) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    // SAFETY: the child only writes and reads one byte and exits with _exit; no allocation, no
    // locks.
    let raw = unsafe { libc::fork() };
    if raw == 0 {
        let mut b = [0u8; 1];
        // SAFETY: writing and reading one byte from valid buffers, then leaving without running
        // destructors.
        unsafe {
            libc::write(r.as_raw_fd(), b.as_ptr().cast(), 1);
            libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    // Its byte says it is about to block in read(2).
    let mut ready = [0u8; 1];
    std::io::Read::read_exact(&mut &w, &mut ready).expect("the forked child's byte");
    let (raw_rss, raw_pss) = rss_pss(raw as u32);
    // The child holds a copy of `w` too: it needs a byte, not an end of stream.
    let _ = std::io::Write::write_all(&mut &w, b"x");
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(raw, std::ptr::null_mut(), 0) };
    let floor = format!("raw forked child: RSS {raw_rss} KiB, PSS {raw_pss} KiB");
    row(&mut out, "raw forked child (floor), RSS / PSS", format!("{raw_rss} / {raw_pss} KiB"), "");

    for (name, method) in
        [("fork-server child", StartMethod::ForkServer), ("spawned child", StartMethod::Spawn)]
    {
        let (ready, e) = (Event::new().expect("event"), Event::new().expect("event"));
        let p =
            Process::new(wait_event, (ready.clone(), e.clone())).start_method(method).start().expect("start");
        ready.wait();
        let (rss, pss) = rss_pss(p.pid());
        row(&mut out, &format!("idle {name}, RSS / PSS"), format!("{rss} / {pss} KiB"), &floor);
        if method == StartMethod::ForkServer {
            if let Some(server) = multiproc::process::fork_server_pid() {
                let (rss, pss) = rss_pss(server);
                row(&mut out, "fork server, RSS / PSS", format!("{rss} / {pss} KiB"), &floor);
            }
        }
        e.set();
        p.join().expect("join");
    }

    let pool = Pool::new(1).expect("pool");
    // Idle once its task has returned.
    let worker = pool.apply(pid_of_worker, ()).expect("apply");
    let (rss, pss) = rss_pss(worker);
    row(&mut out, "idle pool worker, RSS / PSS", format!("{rss} / {pss} KiB"), &floor);
    drop(pool);

    // An unbounded queue through a burst of 1 GiB.
    let q = Queue::<ByteBuf>::unbounded().expect("queue");
    let message = ByteBuf::from(vec![7u8; 100]);
    let n = (1u64 << 30) / 100;
    let (shm0, rss0) = (shm_bytes(), rss_pss(std::process::id()).0);
    for _ in 0..n {
        q.put(message.clone()).expect("put");
    }
    let (shm1, rss1) = (shm_bytes(), rss_pss(std::process::id()).0);
    for _ in 0..n {
        let _ = q.get().expect("get");
    }
    let (shm2, rss2) = (shm_bytes(), rss_pss(std::process::id()).0);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    row(
        &mut out,
        "unbounded queue, 1 GiB of 100-byte messages: /dev/shm before / at peak / drained",
        format!("{:.1} / {:.1} / {:.1} MiB", mib(shm0), mib(shm1), mib(shm2)),
        "drained: what the queue keeps until dropped",
    );
    row(
        &mut out,
        "the same, this process' RSS before / at peak / drained",
        format!(
            "{:.1} / {:.1} / {:.1} MiB",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            rss2 as f64 / 1024.0
        ),
        "",
    );
    drop(q);
    row(&mut out, "the same, /dev/shm once the queue is dropped", format!("{:.1} MiB", mib(shm_bytes())), "");

    const SMALL: usize = 10_000;
    let base = open_fds();
    let locks: Vec<_> = (0..SMALL).map(|_| Lock::new().expect("lock")).collect();
    let per_lock = (open_fds() - base) as f64 / SMALL as f64;
    let base = open_fds();
    let values: Vec<_> = (0..SMALL).map(|_| Value::new(0u64).expect("value")).collect();
    let per_value = (open_fds() - base) as f64 / SMALL as f64;
    let base = open_fds();
    let queues: Vec<_> = (0..100).map(|_| Queue::<u64>::new(8).expect("queue")).collect();
    let per_queue = (open_fds() - base) as f64 / 100.0;
    drop((locks, values, queues));
    row(
        &mut out,
        "descriptors per Lock / Value<u64> / Queue<u64>",
        format!("{per_lock:.4} / {per_value:.4} / {per_queue}"),
        "10,000 locks and values, 100 queues",
    );
    let p = Process::new(locks_under_256_fds, ()).start().expect("start");
    let most = p.join().expect("join");
    row(
        &mut out,
        "Locks one process can make under a 256-descriptor limit",
        most.to_string(),
        "macOS' default limit; target: 10,000",
    );

    println!("{}", out.join("\n"));
}
