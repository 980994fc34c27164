//! One round, run as a program of its own (`soak round`): the round parent starts the workloads,
//! its chaos thread SIGKILLs participants at random moments, then it accounts for every message,
//! task and lock, tears everything down and checks its own descriptors and children.
//!
//! It reports to the orchestrator on stdout, one `SOAK <kind> <text>` line per fact: `phase`,
//! `stat <key> <n>`, `violation <text>`. The participants write what they did to files in the
//! round's directory, one line per completed step with a single `write`, so a SIGKILL leaves
//! every line whole but the last, which the reader drops.
//!
//! The workloads, all at once:
//! - producers putting sequence-numbered, checksummed messages (a few large enough to spill) on a
//!   bounded and on an unbounded queue, and consumers recording what they got (a killed consumer
//!   is replaced, so the queues keep draining);
//! - a pool mapping a stream of tasks, whose workers the chaos thread kills by pid;
//! - manager clients that, in a loop, bump a shared-memory counter under a shared-memory `Lock`,
//!   bump a total and their own key of a manager dict under a manager lock, and put then get on a
//!   manager queue.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use multiproc::manager::{Dict, Lock as ManagerLock, Queue as ManagerQueue};
use multiproc::{Lock, Manager, Opts, Pool, Process, Queue, StartMethod, Value};
use serde::{Deserialize, Serialize};

use crate::probe;
use crate::rng::{fnv, Rng};

/// How long any participant waits for anything before it calls it a hang (generous: the machine
/// may be busy with other work, and a consumer idles while the pool's stream ends).
const WAIT: Duration = Duration::from_secs(60);

/// How long the round parent waits for a participant to end, once it should.
const JOIN: Duration = Duration::from_secs(90);

/// A queue message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Msg {
    Data { producer: u32, seq: u32, payload: Vec<u8>, sum: u64 },
    Stop,
}

fn checksum(producer: u32, seq: u32, payload: &[u8]) -> u64 {
    let mut bytes = Vec::with_capacity(8 + payload.len());
    bytes.extend_from_slice(&producer.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(payload);
    fnv(&bytes)
}

/// The shape of a round, all drawn from its seed.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) method: StartMethod,
    producers: u32,
    consumers: u32,
    messages: u32,
    bounded: u32,
    tasks: u64,
    workers: usize,
    clients: u32,
    iterations: u32,
    kills: u32,
    gap_ms: (u64, u64),
}

impl Params {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let method = match rng.range(0, 2) {
            0 => StartMethod::Spawn,
            1 => StartMethod::ForkServer,
            _ => StartMethod::Fork,
        };
        Params {
            method,
            producers: rng.range(1, 3) as u32,
            consumers: rng.range(1, 2) as u32,
            messages: rng.range(500, 3000) as u32,
            bounded: rng.range(1, 64) as u32,
            tasks: rng.range(200, 800),
            workers: rng.range(2, 3) as usize,
            clients: rng.range(1, 3) as u32,
            iterations: rng.range(100, 500) as u32,
            kills: rng.range(3, 12) as u32,
            gap_ms: (5, rng.range(30, 150)),
        }
    }
}

/// A line appended with one `write`.
fn log(file: &mut File, line: &str) {
    // A failed write shows up in the accounting (a missing line).
    let _ = file.write_all(line.as_bytes());
}

fn open(path: &str) -> File {
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("soak: cannot open {path}: {e}");
            std::process::exit(12)
        }
    }
}

/// Records why this participant gives up and exits with `code`.
fn fail(file: &mut File, code: i32, what: &str) -> ! {
    log(file, &format!("ERR {what}\n"));
    std::process::exit(code)
}

fn producer(q: Queue<Msg>, id: u32, count: u32, seed: u64, path: String) {
    let mut file = open(&path);
    let mut rng = Rng::new(seed);
    for seq in 0..count {
        // One message in 64 is large enough to go through a spill chunk.
        let len = if rng.chance(1.0 / 64.0) { rng.range(64 << 10, 256 << 10) } else { rng.range(0, 48) };
        let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ (seq as u8)).collect();
        let sum = checksum(id, seq, &payload);
        if let Err(e) = q.put_timeout(Msg::Data { producer: id, seq, payload, sum }, WAIT) {
            fail(&mut file, 10, &format!("put of {seq}: {}", e.without_value()));
        }
        log(&mut file, &format!("{seq}\n"));
    }
}

fn consumer(q: Queue<Msg>, path: String) {
    let mut file = open(&path);
    loop {
        match q.get_timeout(WAIT) {
            Ok(Msg::Stop) => return,
            Ok(Msg::Data { producer, seq, payload, sum }) => {
                let torn = if checksum(producer, seq, &payload) == sum { "" } else { "BAD " };
                log(&mut file, &format!("{torn}{producer} {seq}\n"));
            }
            Err(e) => fail(&mut file, 11, &format!("get: {e}")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn client(
    dict: Dict<String, u64>,
    mlock: ManagerLock,
    mqueue: ManagerQueue<u64>,
    lock: Lock,
    counter: Value<u64>,
    id: u32,
    iterations: u32,
    path: String,
) {
    let mut file = open(&path);
    let key = format!("c{id}");
    for i in 0..iterations {
        // The shared-memory lock: a holder killed inside gives the next one OwnerDied.
        let guard = match lock.acquire_timeout(WAIT) {
            Ok(Some(g)) => g,
            Ok(None) => fail(&mut file, 13, "the shared-memory lock is stuck"),
            Err(died) => {
                log(&mut file, &format!("OWNERDIED {}\n", died.pid()));
                match died.into_guard() {
                    Some(g) => g,
                    None => fail(&mut file, 13, "OwnerDied without a guard"),
                }
            }
        };
        counter.set(counter.get() + 1);
        // The manager lock and dict: only this client writes its key, so it must read back what
        // it wrote last, and the total must count every completed iteration.
        let step = (|| -> Result<(), String> {
            let text = |e: multiproc::manager::Error| e.to_string();
            let _held = mlock.acquire_timeout(WAIT).map_err(text)?;
            let total = dict.get("total").map_err(text)?.unwrap_or(0);
            dict.insert("total".to_string(), total + 1).map_err(text)?;
            let mine = dict.get(&key).map_err(text)?.unwrap_or(0);
            if mine != u64::from(i) {
                return Err(format!("{key} reads {mine}, expected {i}"));
            }
            dict.insert(key.clone(), u64::from(i) + 1).map_err(text)?;
            Ok(())
        })();
        // Held across the manager calls, so that a kill lands inside it now and then.
        drop(guard);
        if let Err(e) = step {
            fail(&mut file, 14, &format!("manager dict/lock at {i}: {e}"));
        }
        if let Err(e) = mqueue.put(u64::from(id) << 32 | u64::from(i)) {
            fail(&mut file, 14, &format!("manager queue put at {i}: {e}"));
        }
        if let Err(e) = mqueue.get_timeout(WAIT) {
            fail(&mut file, 14, &format!("manager queue get at {i}: {e}"));
        }
        log(&mut file, &format!("{i}\n"));
    }
}

fn task(x: u64) -> (u32, u64) {
    std::thread::sleep(Duration::from_micros(300 + (x % 4) * 400));
    (std::process::id(), expected(x))
}

fn expected(x: u64) -> u64 {
    x.wrapping_mul(x) ^ 0x5EED
}

fn noop() {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Producer,
    Consumer,
    Client,
}

struct Member {
    kind: Kind,
    id: u32,
    queue: usize,
    process: Process<()>,
    killed: bool,
}

#[derive(Default)]
struct Tally {
    kills: BTreeMap<&'static str, u64>,
    killed_workers: BTreeSet<u32>,
    consumer_kills: [u64; 2],
    violations: Vec<String>,
}

/// Prints one report line for the orchestrator.
fn say(kind: &str, text: &str) {
    println!("SOAK {kind} {text}");
}

struct Round {
    params: Params,
    dir: PathBuf,
    marker: String,
    queues: [Queue<Msg>; 2],
    roster: Mutex<Vec<Member>>,
    next_id: Mutex<u32>,
    tally: Mutex<Tally>,
}

impl Round {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn violation(&self, text: String) {
        if let Ok(mut t) = self.tally.lock() {
            t.violations.push(text);
        }
    }

    fn new_id(&self) -> u32 {
        let mut next = self.next_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *next += 1;
        *next
    }

    fn start_consumer(&self, queue: usize) -> multiproc::Result<Member> {
        let id = self.new_id();
        let path = self.path(&format!("c{id}"));
        let process = Process::new(consumer, (self.queues[queue].clone(), path))
            .daemon(true)
            .start_method(self.params.method)
            .start()?;
        Ok(Member { kind: Kind::Consumer, id, queue, process, killed: false })
    }

    /// The chaos thread: kills a random participant every so often, until `done` or its budget
    /// is spent.
    fn chaos(&self, seed: u64, pool: &Pool, done: &AtomicBool) {
        let mut rng = Rng::new(seed);
        let mut left = self.params.kills;
        while left > 0 && !done.load(Ordering::Acquire) {
            // A chaos monkey's pause, not a synchronization.
            std::thread::sleep(Duration::from_millis(rng.range(self.params.gap_ms.0, self.params.gap_ms.1)));
            if done.load(Ordering::Acquire) {
                break;
            }
            let kind = match rng.range(0, 3) {
                0 => Some(Kind::Producer),
                1 => Some(Kind::Consumer),
                2 => Some(Kind::Client),
                _ => None,
            };
            let killed = match kind {
                Some(kind) => self.kill_member(kind, &mut rng),
                None => self.kill_worker(pool, &mut rng),
            };
            if killed {
                left -= 1;
            }
        }
    }

    fn kill_member(&self, kind: Kind, rng: &mut Rng) -> bool {
        let mut roster = self.roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let alive: Vec<usize> = (0..roster.len())
            .filter(|i| roster[*i].kind == kind && !roster[*i].killed && roster[*i].process.is_alive())
            .collect();
        if alive.is_empty() {
            return false;
        }
        let pick = alive[rng.range(0, alive.len() as u64 - 1) as usize];
        let member = &mut roster[pick];
        if member.process.kill().is_err() {
            return false;
        }
        member.killed = true;
        let queue = member.queue;
        let name = match kind {
            Kind::Producer => "producer",
            Kind::Consumer => "consumer",
            Kind::Client => "client",
        };
        if let Ok(mut t) = self.tally.lock() {
            *t.kills.entry(name).or_default() += 1;
            if kind == Kind::Consumer {
                t.consumer_kills[queue] += 1;
            }
        }
        if kind == Kind::Consumer {
            // Keep the queue draining.
            match self.start_consumer(queue) {
                Ok(m) => roster.push(m),
                Err(e) => self.violation(format!("cannot start a replacement consumer: {e}")),
            }
        }
        true
    }

    fn kill_worker(&self, pool: &Pool, rng: &mut Rng) -> bool {
        let pids = pool.worker_pids();
        if pids.is_empty() {
            return false;
        }
        let pid = pids[rng.range(0, pids.len() as u64 - 1) as usize];
        // Recorded before the signal: the task's WorkerLost can come back before this thread
        // runs again.
        let Ok(mut t) = self.tally.lock() else { return false };
        let fresh = t.killed_workers.insert(pid);
        if !probe::kill_marked(pid, &self.marker) {
            if fresh {
                t.killed_workers.remove(&pid);
            }
            return false;
        }
        *t.kills.entry("worker").or_default() += 1;
        true
    }
}

/// The lines of a participant's file that end with a newline (a SIGKILL can cut the last).
fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    // The text after the last newline: empty, or a line cut short.
    lines.pop();
    lines
}

/// Runs one round; returns the process's exit code (0: the round ran to its end, whatever it
/// found, which it reported as violations).
pub(crate) fn main(seed: u64, dir: PathBuf, marker: String) -> i32 {
    let params = Params::new(seed);
    say("phase", "setup");
    match run(seed, params, dir, marker) {
        Ok(()) => 0,
        Err(e) => {
            say("violation", &format!("the round could not run: {e}"));
            0
        }
    }
}

fn run(seed: u64, params: Params, dir: PathBuf, marker: String) -> multiproc::Result<()> {
    let method = params.method;
    multiproc::set_start_method(method)?;
    // The helpers (fork server, resource tracker) start with the first child: count after it. The
    // same for proc-sync's arena in use (one descriptor that small primitives share, kept while the
    // process lives): made by a first lock.
    Process::new(noop, ()).start()?.join()?;
    drop(Lock::new()?);
    let fds_before = probe::fd_count();
    let children_before = probe::children();

    let queues = [Queue::new(params.bounded)?, Queue::unbounded()?];
    let lock = Lock::new()?;
    let counter = Value::new(0u64)?;
    let manager = Manager::builder().start_method(method).start()?;
    let dict = manager.dict::<String, u64>()?;
    let mlock = manager.lock()?;
    let mqueue = manager.queue::<u64>(0)?;
    let pool = Pool::builder().processes(params.workers).start_method(method).build()?;

    let round = Round {
        params: params.clone(),
        dir,
        marker,
        queues,
        roster: Mutex::new(Vec::new()),
        next_id: Mutex::new(0),
        tally: Mutex::new(Tally::default()),
    };
    let mut producers = Vec::new();
    let mut clients = Vec::new();
    {
        let mut roster = round.roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for queue in 0..2 {
            for _ in 0..params.consumers {
                roster.push(round.start_consumer(queue)?);
            }
        }
        for queue in 0..2 {
            for _ in 0..params.producers {
                let id = round.new_id();
                let args = (
                    round.queues[queue].clone(),
                    id,
                    params.messages,
                    seed ^ u64::from(id),
                    round.path(&format!("p{id}")),
                );
                let process = Process::new(producer, args).daemon(true).start_method(method).start()?;
                producers.push((id, queue));
                roster.push(Member { kind: Kind::Producer, id, queue, process, killed: false });
            }
        }
        for _ in 0..params.clients {
            let id = round.new_id();
            let args = (
                dict.clone(),
                mlock.clone(),
                mqueue.clone(),
                lock.clone(),
                counter.clone(),
                id,
                params.iterations,
                round.path(&format!("m{id}")),
            );
            let process = Process::new(client, args).daemon(true).start_method(method).start()?;
            clients.push(id);
            roster.push(Member { kind: Kind::Client, id, queue: 0, process, killed: false });
        }
    }
    say("phase", "chaos");

    let done = AtomicBool::new(false);
    let (mut tasks_ok, mut tasks_lost) = (0u64, 0u64);
    std::thread::scope(|s| {
        let chaos = s.spawn(|| round.chaos(seed.rotate_left(17), &pool, &done));
        // The pool's stream of tasks.
        let mut results = pool.imap_with(task, 0..params.tasks, Opts::new().chunksize(1));
        for x in 0..params.tasks {
            match results.next_timeout(JOIN) {
                Some(Ok((_, value))) if value == expected(x) => tasks_ok += 1,
                Some(Ok((pid, value))) => {
                    round
                        .violation(format!("task {x} on worker {pid} returned {value}, not {}", expected(x)));
                }
                Some(Err(multiproc::pool::Error::WorkerLost { pid, signal, exit_code })) => {
                    tasks_lost += 1;
                    let ours = round.tally.lock().is_ok_and(|t| t.killed_workers.contains(&pid));
                    if !ours || signal != Some(libc::SIGKILL) {
                        round.violation(format!(
                            "task {x} lost with worker {pid} (signal {signal:?}, exit {exit_code:?}), which the soak did not kill"
                        ));
                    }
                }
                Some(Err(e)) => round.violation(format!("task {x} failed: {e}")),
                None => {
                    round.violation(format!("the pool stream ended or hung at task {x} of {}", params.tasks));
                    break;
                }
            }
        }
        drop(results);
        say("phase", "join-producers-clients");
        // Producers and clients run to their end (or their death).
        let roster = round.roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in roster.iter().filter(|m| m.kind != Kind::Consumer) {
            if !matches!(m.process.join_timeout(JOIN), Ok(Some(())) | Err(_)) {
                round.violation(format!("{:?} {} still runs after {JOIN:?}", m.kind, m.id));
                let _ = m.process.kill();
            }
        }
        drop(roster);
        done.store(true, Ordering::Release);
        let _ = chaos.join();
    });

    say("phase", "stop-consumers");
    let tally_kills = {
        let roster = round.roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for queue in 0..2 {
            let live =
                roster.iter().filter(|m| m.kind == Kind::Consumer && m.queue == queue && !m.killed).count();
            for _ in 0..live {
                if let Err(e) = round.queues[queue].put_timeout(Msg::Stop, WAIT) {
                    round.violation(format!(
                        "cannot stop the consumers of queue {queue}: {}",
                        e.without_value()
                    ));
                }
            }
        }
        for m in roster.iter().filter(|m| m.kind == Kind::Consumer) {
            if !matches!(m.process.join_timeout(JOIN), Ok(Some(())) | Err(_)) {
                round.violation(format!("consumer {} still runs after {JOIN:?}", m.id));
                let _ = m.process.kill();
            }
        }
        // Exit codes: a participant not killed must have ended well.
        for m in roster.iter() {
            let code = m.process.exitcode();
            let why = lines(Path::new(&round.path(&member_file(m))))
                .into_iter()
                .find(|l| l.starts_with("ERR "))
                .unwrap_or_default();
            if !m.killed && code != Some(0) {
                round.violation(format!("{:?} {} ended with exit code {code:?} {why}", m.kind, m.id));
            }
            if m.killed && !matches!(code, Some(0) | Some(-9)) {
                round.violation(format!("killed {:?} {} ended with exit code {code:?} {why}", m.kind, m.id));
            }
        }
        round.tally.lock().map(|t| t.consumer_kills).unwrap_or_default()
    };

    // Whatever the consumers left in the queues, the round parent takes.
    for (queue, q) in round.queues.iter().enumerate() {
        let mut file = open(&round.path(&format!("d{queue}")));
        loop {
            match q.get_nowait() {
                Ok(Msg::Data { producer, seq, payload, sum }) => {
                    let torn = if checksum(producer, seq, &payload) == sum { "" } else { "BAD " };
                    log(&mut file, &format!("{torn}{producer} {seq}\n"));
                }
                Ok(Msg::Stop) => {}
                Err(multiproc::GetError::Empty) => break,
                Err(e) => {
                    round.violation(format!("draining queue {queue}: {e}"));
                    break;
                }
            }
        }
    }

    inject(&round);
    say("phase", "account");
    account_messages(&round, &producers, tally_kills);
    account_manager(&round, &clients, &dict, &mqueue, &counter);
    // No lock stuck: a fresh acquire succeeds (OwnerDied is a success: the lock came back).
    match lock.acquire_timeout(Duration::from_secs(5)) {
        Ok(Some(_)) | Err(_) => {}
        Ok(None) => round.violation("the shared-memory lock is stuck after the round".into()),
    }
    if let Err(e) = mlock.acquire_timeout(Duration::from_secs(5)) {
        round.violation(format!("the manager lock is stuck after the round: {e}"));
    }
    let kills = round.tally.lock().map(|t| t.kills.clone()).unwrap_or_default();
    let killed_workers = kills.get("worker").copied().unwrap_or(0);
    if tasks_lost > killed_workers {
        round.violation(format!("{tasks_lost} tasks lost for {killed_workers} workers killed"));
    }

    say("phase", "teardown");
    pool.close();
    match pool.join_timeout(JOIN) {
        Ok(true) => {}
        Ok(false) => round.violation("the pool did not join after close".into()),
        Err(e) => round.violation(format!("the pool's join failed: {e}")),
    }
    drop(pool);
    drop((dict, mlock, mqueue));
    drop(manager);
    drop((lock, counter));
    let Round { queues, tally, roster, .. } = round;
    drop(roster);
    drop(queues);
    // The helpers stay; every other child must be gone, and the descriptors back where they were
    // (a daemon's end and a server's shutdown are seen a little after they happen).
    let settle = Instant::now();
    let (mut fds_after, mut extra);
    loop {
        fds_after = probe::fd_count();
        extra = probe::children().difference(&children_before).copied().collect::<Vec<_>>();
        if (fds_after <= fds_before && extra.is_empty()) || settle.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if fds_after > fds_before {
        say("violation", &format!("descriptors: {fds_before} before the round, {fds_after} after"));
    }
    if !extra.is_empty() {
        let seen: Vec<String> = extra.iter().filter_map(|p| probe::stat(*p)).map(|s| s.to_string()).collect();
        say("violation", &format!("children left after the round: {}", seen.join(", ")));
    }

    let tally = tally.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (kind, n) in &tally.kills {
        say("stat", &format!("kills_{kind} {n}"));
    }
    say("stat", &format!("tasks {}", params.tasks));
    say("stat", &format!("tasks_ok {tasks_ok}"));
    say("stat", &format!("tasks_lost_with_worker {tasks_lost}"));
    for v in &tally.violations {
        say("violation", v);
    }
    say("phase", "end");
    Ok(())
}

/// The variable that plants one fault in every round (`lost`, `duplicate`, `fd`, `shm`,
/// `orphan`), so that a check that could not fail shows: each must make the soak fail.
pub(crate) const INJECT: &str = "MULTIPROC_SOAK_INJECT";

fn inject(round: &Round) {
    let Ok(what) = std::env::var(INJECT) else { return };
    match what.as_str() {
        // A message that the first producer put, taken off the consumer's record.
        "lost" | "duplicate" => {
            let file = round.path("d0");
            let mut out = open(&file);
            let Some(first) = round.roster.lock().ok().and_then(|r| {
                r.iter().find(|m| m.kind == Kind::Producer && m.queue == 0 && !m.killed).map(|m| m.id)
            }) else {
                return;
            };
            if what == "duplicate" {
                log(&mut out, &format!("{first} 0\n"));
            } else {
                // Forget every consumer record of message 0 of that producer.
                let roster = round.roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for m in roster.iter().filter(|m| m.kind == Kind::Consumer && m.queue == 0) {
                    let path = round.path(&member_file(m));
                    let kept: String = lines(Path::new(&path))
                        .into_iter()
                        .filter(|l| *l != format!("{first} 0"))
                        .map(|l| l + "\n")
                        .collect();
                    let _ = std::fs::write(&path, kept);
                }
                let kept: String = lines(Path::new(&file))
                    .into_iter()
                    .filter(|l| *l != format!("{first} 0"))
                    .map(|l| l + "\n")
                    .collect();
                let _ = std::fs::write(&file, kept);
            }
        }
        "fd" => {
            if let Ok(f) = File::open("/dev/null") {
                std::mem::forget(f);
            }
        }
        "shm" => {
            // SAFETY: shm_open takes a NUL-terminated name and plain integers.
            let fd =
                unsafe { libc::shm_open(c"/mp_soak_injected".as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600) };
            if fd >= 0 {
                // SAFETY: `fd` was just opened here and is closed once.
                unsafe { libc::close(fd) };
            }
        }
        "orphan" => {
            let _ = std::process::Command::new("sleep").arg("600").spawn();
        }
        _ => {}
    }
}

fn member_file(m: &Member) -> String {
    match m.kind {
        Kind::Producer => format!("p{}", m.id),
        Kind::Consumer => format!("c{}", m.id),
        Kind::Client => format!("m{}", m.id),
    }
}

/// Every message delivered exactly once, but for those lost with a killed consumer (at most one
/// per kill) and a killed producer's message in flight (at most once).
fn account_messages(round: &Round, producers: &[(u32, usize)], consumer_kills: [u64; 2]) {
    let roster = round.roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut sent_total, mut delivered_total, mut lost_total, mut inflight_total) = (0u64, 0u64, 0u64, 0u64);
    for (queue, &killed_consumers) in consumer_kills.iter().enumerate() {
        // What each producer of this queue finished putting.
        let mut sent: BTreeMap<u32, (u32, bool)> = BTreeMap::new();
        for (id, _) in producers.iter().filter(|(_, q)| *q == queue) {
            let done = lines(Path::new(&round.path(&format!("p{id}"))));
            let seqs: Vec<u32> = done.iter().filter_map(|l| l.parse().ok()).collect();
            if seqs.iter().enumerate().any(|(i, s)| *s as usize != i) {
                round.violation(format!("producer {id}'s own log is out of order"));
            }
            let killed = roster.iter().any(|m| m.kind == Kind::Producer && m.id == *id && m.killed);
            if !killed && seqs.len() != round.params.messages as usize {
                round.violation(format!(
                    "producer {id} (not killed) put {} of {}",
                    seqs.len(),
                    round.params.messages
                ));
            }
            sent.insert(*id, (seqs.len() as u32, killed));
            sent_total += seqs.len() as u64;
        }
        // What the consumers of this queue (and the final drain) got.
        let mut got: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        let mut files: Vec<String> =
            roster.iter().filter(|m| m.kind == Kind::Consumer && m.queue == queue).map(member_file).collect();
        files.push(format!("d{queue}"));
        for file in files {
            for line in lines(Path::new(&round.path(&file))) {
                if line.starts_with("ERR ") {
                    continue;
                }
                if let Some(rest) = line.strip_prefix("BAD ") {
                    round.violation(format!("queue {queue}: torn message {rest} (checksum mismatch)"));
                    continue;
                }
                let mut parts = line.split(' ').filter_map(|p| p.parse::<u32>().ok());
                if let (Some(p), Some(seq)) = (parts.next(), parts.next()) {
                    *got.entry((p, seq)).or_default() += 1;
                } else {
                    round.violation(format!("queue {queue}: unreadable line {line:?} in {file}"));
                }
            }
        }
        let mut missing = Vec::new();
        for (&(p, seq), &n) in &got {
            delivered_total += 1;
            if n > 1 {
                round.violation(format!("queue {queue}: message {p}/{seq} delivered {n} times"));
            }
            match sent.get(&p) {
                None => round
                    .violation(format!("queue {queue}: message {p}/{seq} of a producer of another queue")),
                Some(&(done, _)) if seq < done => {}
                Some(&(done, true)) if seq == done => inflight_total += 1,
                Some(_) => round.violation(format!("queue {queue}: message {p}/{seq} was never put")),
            }
        }
        for (&p, &(done, _)) in &sent {
            missing.extend(
                (0..done).filter(|seq| !got.contains_key(&(p, *seq))).map(|seq| format!("{p}/{seq}")),
            );
        }
        lost_total += missing.len() as u64;
        if missing.len() as u64 > killed_consumers {
            missing.truncate(10);
            round.violation(format!(
                "queue {queue}: messages lost beyond the {killed_consumers} consumers killed: {} ...",
                missing.join(" ")
            ));
        }
    }
    say("stat", &format!("messages_put {sent_total}"));
    say("stat", &format!("messages_delivered {delivered_total}"));
    say("stat", &format!("messages_lost_with_consumer {lost_total}"));
    say("stat", &format!("messages_in_flight_delivered {inflight_total}"));
}

/// The counters the clients bump count every completed iteration, plus at most one per killed
/// client; the manager queue holds at most one item per killed client.
fn account_manager(
    round: &Round,
    clients: &[u32],
    dict: &Dict<String, u64>,
    mqueue: &ManagerQueue<u64>,
    counter: &Value<u64>,
) {
    let roster = round.roster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let killed = roster.iter().filter(|m| m.kind == Kind::Client && m.killed).count() as u64;
    let mut done = 0u64;
    let mut owner_died = 0u64;
    for id in clients {
        let lines = lines(Path::new(&round.path(&format!("m{id}"))));
        done += lines.iter().filter(|l| l.parse::<u32>().is_ok()).count() as u64;
        owner_died += lines.iter().filter(|l| l.starts_with("OWNERDIED")).count() as u64;
    }
    let range = done..=done + killed;
    let shm = counter.get();
    if !range.contains(&shm) {
        round.violation(format!(
            "shared-memory counter {shm}, expected {range:?} (lost updates under the Lock?)"
        ));
    }
    match dict.get("total") {
        Ok(total) if range.contains(&total.unwrap_or(0)) => {}
        Ok(total) => round.violation(format!("manager dict total {total:?}, expected {range:?}")),
        Err(e) => round.violation(format!("manager dict unreadable after the round: {e}")),
    }
    match mqueue.qsize() {
        Ok(n) if n as u64 <= killed => {}
        Ok(n) => round.violation(format!("manager queue holds {n} items, at most {killed} expected")),
        Err(e) => round.violation(format!("manager queue unreadable after the round: {e}")),
    }
    say("stat", &format!("client_iterations {done}"));
    say("stat", &format!("lock_owner_died {owner_died}"));
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_line_cut_by_a_kill_is_dropped() {
        let dir = std::env::temp_dir().join(format!("soak-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p1");
        std::fs::write(&path, "0\n1\n2").unwrap();
        assert_eq!(lines(&path), ["0", "1"]);
        std::fs::write(&path, "0\n1\n").unwrap();
        assert_eq!(lines(&path), ["0", "1"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_byte_changes_the_checksum() {
        assert_ne!(checksum(1, 2, b"abc"), checksum(1, 2, b"abd"));
        assert_ne!(checksum(1, 2, b"abc"), checksum(2, 1, b"abc"));
    }
}
