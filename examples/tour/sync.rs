//! The synchronization demos: ticket grabbing with and without a Lock, a Semaphore limiting
//! concurrency, shared counters with Value and Array, Event signalling, a Condition and a Barrier.

use std::path::PathBuf;

use multiproc::{current_process, Array, Barrier, Condition, Event, Lock, Process, Semaphore, Value};

use crate::{random, sleep};

fn read_tickets(path: &PathBuf) -> i64 {
    let text = std::fs::read_to_string(path).expect("ticket file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("ticket json");
    json["ticket_num"].as_i64().unwrap_or(0)
}

fn search(user: u32, path: &PathBuf) {
    println!("user {user} sees {} ticket(s) left", read_tickets(path));
}

fn buy(user: u32, path: &PathBuf, sold: &Value<u32>) {
    let left = read_tickets(path);
    sleep(random()); // network delay
    if left > 0 {
        // Write a new file and rename it over the old one, so a concurrent `search` never reads
        // a half-written file.
        let tmp = path.with_extension(format!("{}", std::process::id()));
        std::fs::write(&tmp, serde_json::json!({ "ticket_num": left - 1 }).to_string()).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
        sold.update(|s| *s += 1);
        println!("user {user} got a ticket");
    } else {
        println!("user {user}: sold out!");
    }
}

fn run_locked(user: u32, path: PathBuf, mutex: Lock, sold: Value<u32>) {
    search(user, &path);
    let _guard = mutex.acquire().unwrap_or_else(|died| died.into_guard());
    buy(user, &path, &sold);
}

fn run_unlocked(user: u32, path: PathBuf, sold: Value<u32>) {
    search(user, &path);
    buy(user, &path, &sold);
}

/// Python's ticket-grabbing demo: one ticket, ten buyers; with the Lock exactly one buys it.
pub(crate) fn tickets() {
    let path = std::env::temp_dir().join(format!("multiproc-ticket-{}", std::process::id()));
    for locked in [true, false] {
        std::fs::write(&path, r#"{"ticket_num": 1}"#).expect("write ticket file");
        let sold = Value::new(0u32).expect("value");
        let mutex = Lock::new().expect("lock");
        let buyers: Vec<_> = (1..=10)
            .map(|user| {
                let p = if locked {
                    Process::new(run_locked, (user, path.clone(), mutex.clone(), sold.clone())).start()
                } else {
                    Process::new(run_unlocked, (user, path.clone(), sold.clone())).start()
                };
                p.expect("start")
            })
            .collect();
        for b in buyers {
            b.join().expect("join");
        }
        let how = if locked { "with the lock" } else { "without the lock" };
        println!("{how}: {} ticket(s) sold for 1 seat", sold.get());
    }
    let _ = std::fs::remove_file(&path);
}

fn limited(sem: Semaphore, running: Value<u32>, most: Value<u32>) {
    sem.acquire();
    let name = current_process().name().to_owned();
    let now = running.update(|r| {
        *r += 1;
        *r
    });
    most.update(|m| *m = (*m).max(now));
    println!("child starts: {name}");
    sleep(3.0);
    println!("child ends: {name}");
    running.update(|r| *r -= 1);
    sem.release();
}

/// `Semaphore(3)` lets at most three of eight processes work at once.
pub(crate) fn semaphore() {
    let sem = Semaphore::new(3).expect("semaphore");
    let (running, most) = (Value::new(0u32).expect("value"), Value::new(0u32).expect("value"));
    let ps: Vec<_> = (0..8)
        .map(|i| {
            Process::new(limited, (sem.clone(), running.clone(), most.clone()))
                .name(format!("squad-{i}"))
                .start()
                .expect("start")
        })
        .collect();
    for p in ps {
        p.join().expect("join");
    }
    println!("at most {} ran at once", most.get());
}

fn count(counter: Value<i64>, squares: Array<f64>, index: usize) {
    for _ in 0..1000 {
        counter.update(|c| *c += 1);
    }
    squares.set(index, (index * index) as f64);
}

/// A counter and an array shared by four processes.
pub(crate) fn shared_values() {
    let counter = Value::new(0i64).expect("value");
    let squares = Array::<f64>::zeroed(4).expect("array");
    let ps: Vec<_> = (0..4)
        .map(|i| Process::new(count, (counter.clone(), squares.clone(), i)).start().expect("start"))
        .collect();
    for p in ps {
        p.join().expect("join");
    }
    println!("counter = {} (4 processes x 1000 increments)", counter.get());
    println!("squares = {:?}", squares.to_vec());
}

fn waiter(event: Event) {
    println!("waiter: waiting for the event");
    event.wait();
    println!("waiter: the event is set");
}

/// One process waits until another sets an Event.
pub(crate) fn event() {
    let event = Event::new().expect("event");
    let p = Process::new(waiter, (event.clone(),)).start().expect("start");
    sleep(0.5);
    println!("main: setting the event");
    event.set();
    p.join().expect("join");
}

fn produce(cond: Condition, items: Value<u32>) {
    for _ in 0..3 {
        sleep(0.2);
        let mut guard = cond.acquire().expect("the producer's lock");
        items.set(items.get() + 1);
        println!("producer: made item {}", items.get());
        guard.notify_all();
    }
}

/// A consumer waits on a Condition until a producer process has made three items.
pub(crate) fn condition() {
    let (cond, items) = (Condition::new().expect("condition"), Value::new(0u32).expect("value"));
    let p = Process::new(produce, (cond.clone(), items.clone())).start().expect("start");
    let mut guard = cond.acquire().expect("lock");
    guard.wait_for(|| items.get() == 3).expect("wait_for");
    println!("consumer: all {} items are there", items.get());
    drop(guard);
    p.join().expect("join");
}

fn round_done() {
    println!("  (barrier action: every party arrived)");
}

fn meet(barrier: Barrier, who: u32) {
    for round in 0..3 {
        sleep(0.1 * f64::from(who));
        let index = barrier.wait().expect("barrier");
        println!("party {who}: passed round {round} as arrival {index}");
    }
}

/// Three processes meet at a Barrier for three rounds; its action runs once per round.
pub(crate) fn barrier() {
    let barrier = Barrier::with_action(3, round_done).expect("barrier");
    let ps: Vec<_> =
        (0..3).map(|who| Process::new(meet, (barrier.clone(), who)).start().expect("start")).collect();
    for p in ps {
        p.join().expect("join");
    }
}
