//! The manager demos: a child fills a shared dict and list; a shared counter through a proxy
//! lock; Python's distributed job queue over TCP with an authkey.

use std::time::Duration;

use multiproc::manager::{Address, Dict, List, Lock, Queue, Value};
use multiproc::{Manager, Process};

fn fill(d: Dict<String, String>, l: List<u32>) {
    d.insert("1".into(), "1".into()).expect("insert");
    d.insert("2".into(), "2".into()).expect("insert");
    l.extend(0..5).expect("extend");
    l.set(0, 10).expect("set");
}

/// `manager.dict()` and `manager.list()` filled by a child; the parent prints them.
pub(crate) fn dict_and_list() {
    let manager = Manager::start().expect("manager");
    let d = manager.dict().expect("dict");
    let l = manager.list().expect("list");
    let p = Process::new(fill, (d.clone(), l.clone())).start().expect("start");
    p.join().expect("join");
    println!("{:?}", d.items().expect("items"));
    println!("{:?}", l.snapshot().expect("snapshot"));
}

fn add_100(counter: Value<u64>, lock: Lock) {
    for _ in 0..100 {
        let _held = lock.acquire().expect("acquire");
        let v = counter.get().expect("get");
        counter.set(v + 1).expect("set");
    }
}

/// Four processes add 100 each to a shared counter under a proxy lock.
pub(crate) fn counter() {
    let manager = Manager::start().expect("manager");
    let counter = manager.value(0u64).expect("value");
    let lock = manager.lock().expect("lock");
    let ps: Vec<_> = (0..4)
        .map(|_| Process::new(add_100, (counter.clone(), lock.clone())).start().expect("start"))
        .collect();
    for p in ps {
        p.join().expect("join");
    }
    println!("counter = {}", counter.get().expect("get"));
}

/// A worker started on its own: it knows only the address and the key.
fn worker(address: String, authkey: Vec<u8>) {
    let m = Manager::connect(&Address::parse(&address).expect("address"), &authkey).expect("connect");
    let tasks: Queue<u64> = m.lookup("get_task_queue").expect("task queue");
    let results: Queue<String> = m.lookup("get_result_queue").expect("result queue");
    while let Ok(n) = tasks.get_timeout(Duration::from_secs(1)) {
        results.put(format!("{n} * {n} = {}", n * n)).expect("put");
    }
}

/// Python's distributed job queue: a master serves a task queue and a result queue over TCP
/// with an authkey; workers connect, take jobs and return results.
pub(crate) fn distributed() {
    let master = Manager::builder()
        .authkey(b"a key of 16 bytes or more".to_vec())
        .start_tcp("127.0.0.1:0".parse().expect("address"))
        .expect("manager");
    let tasks = master.queue::<u64>(0).expect("queue");
    let results = master.queue::<String>(0).expect("queue");
    master.publish("get_task_queue", &tasks).expect("publish");
    master.publish("get_result_queue", &results).expect("publish");
    println!("master listening on {}", master.address());
    for n in 1..=10 {
        tasks.put(n).expect("put");
    }
    let workers: Vec<_> = (0..2)
        .map(|_| {
            Process::new(worker, (master.address().to_string(), b"a key of 16 bytes or more".to_vec()))
                .start()
                .expect("start")
        })
        .collect();
    let mut lines: Vec<String> =
        (0..10).map(|_| results.get_timeout(Duration::from_secs(30)).expect("result")).collect();
    lines.sort_by_key(|l| l.split(' ').next().and_then(|n| n.parse::<u64>().ok()));
    for line in lines {
        println!("{line}");
    }
    for w in workers {
        w.join().expect("join");
    }
    println!("master done");
}
