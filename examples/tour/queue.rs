//! The queue demos: Queue basics, IPC through a queue (parent to child, child to child), and
//! producers and consumers with sentinels, then with a JoinableQueue and daemon consumers.

use multiproc::{GetError, JoinableQueue, Process, Queue};

use crate::{random, sleep};

/// `Queue(5)`: full/empty, put/get, and `get_nowait` on an empty queue; then `Queue(3)`.
pub(crate) fn basics() {
    let q = Queue::new(5).expect("queue");
    println!("full: {}", q.full());
    println!("empty: {}", q.empty());
    for i in 0..5 {
        q.put(i).expect("put"); // a put on a full queue would block
        println!("{}", q.get().expect("get"));
    }
    println!("full: {}", q.full());
    println!("empty: {}", q.empty());
    match q.get_nowait() {
        Err(GetError::Empty) => println!("\nqueue.Empty"),
        other => println!("unexpected: {other:?}"),
    }

    let q = Queue::new(3).expect("queue");
    for i in 1..=3 {
        q.put(i).expect("put");
    }
    println!("empty: {}, full: {}, qsize: {}", q.empty(), q.full(), q.qsize());
    for n in ["first", "second", "third"] {
        println!("{n} get: {}", q.get().expect("get"));
    }
}

fn print_one(q: Queue<String>) {
    println!("{}", q.get().expect("get"));
}

fn put_111(q: Queue<String>) {
    q.put("111".to_string()).expect("put");
}

/// Parent to child, then child to child, through a queue.
pub(crate) fn ipc() {
    let q = Queue::unbounded().expect("queue");
    q.put("111".to_string()).expect("put");
    let p = Process::new(print_one, (q.clone(),)).start().expect("start");
    p.join().expect("join");

    let q = Queue::unbounded().expect("queue");
    let p1 = Process::new(put_111, (q.clone(),)).start().expect("start");
    let p2 = Process::new(print_one, (q.clone(),)).start().expect("start");
    p1.join().expect("join");
    p2.join().expect("join");
}

fn producer(name: String, food: String, q: Queue<Option<String>>) {
    for i in 0..5 {
        sleep(random());
        let data = format!("{name} made {food} {i}");
        println!("{data}");
        q.put(Some(data)).expect("put");
    }
}

fn consumer(name: String, q: Queue<Option<String>>) {
    while let Some(eat) = q.get().expect("get") {
        println!("{name} ate {eat}");
    }
}

/// Two producers, two consumers, and one `None` per consumer to stop them.
pub(crate) fn producers_consumers() {
    let q = Queue::unbounded().expect("queue");
    let p1 = Process::new(producer, ("Jon".into(), "buns".into(), q.clone())).start().expect("start");
    let p2 = Process::new(producer, ("Lin".into(), "cutlets".into(), q.clone())).start().expect("start");
    let c1 = Process::new(consumer, ("c1".into(), q.clone())).start().expect("start");
    let c2 = Process::new(consumer, ("c2".into(), q.clone())).start().expect("start");
    p1.join().expect("join");
    p2.join().expect("join");
    // One end marker per consumer.
    q.put(None).expect("put");
    q.put(None).expect("put");
    c1.join().expect("join");
    c2.join().expect("join");
    println!("all eaten, consumers stopped");
}

fn joinable_producer(name: String, food: String, q: JoinableQueue<String>) {
    for i in 0..5 {
        sleep(random());
        let data = format!("{name} made {food} {i}");
        println!("{data}");
        q.put(data).expect("put");
    }
}

fn joinable_consumer(name: String, q: JoinableQueue<String>) {
    loop {
        let eat = q.get().expect("get");
        println!("{name} ate {eat}");
        q.task_done().expect("task_done");
    }
}

/// The JoinableQueue version: daemon consumers, and `q.join()` waits until all is eaten.
pub(crate) fn joinable() {
    let q = JoinableQueue::new(0).expect("queue");
    let p1 =
        Process::new(joinable_producer, ("Jon".into(), "buns".into(), q.clone())).start().expect("start");
    let p2 =
        Process::new(joinable_producer, ("Lin".into(), "cutlets".into(), q.clone())).start().expect("start");
    let c1 = Process::new(joinable_consumer, ("c1".into(), q.clone())).daemon(true).start().expect("start");
    let c2 = Process::new(joinable_consumer, ("c2".into(), q.clone())).daemon(true).start().expect("start");
    p1.join().expect("join");
    p2.join().expect("join");
    // Wait until every item put has been marked done.
    q.join().expect("join");
    println!("queue joined: {} unfinished", q.unfinished_tasks());
    // The daemon consumers end with the main process (here: terminated explicitly).
    for c in [c1, c2] {
        c.terminate().expect("terminate");
        let _ = c.join();
    }
}
