//! The process demos: start, subclass, join, isolation, pids, daemons, CPUs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use multiproc::{active_children, cpu_count, current_process, parent_process, Process, Run};
use serde::{Deserialize, Serialize};

use crate::sleep;

fn func(name: String) {
    println!("{name}");
    for i in 1..=3 {
        sleep(1.0);
        println!("{i}");
    }
}

/// `Process(target=func, args=('hkw',)).start()`.
pub(crate) fn start_with_args() {
    let p = Process::new(func, ("hkw".to_string(),)).start().expect("start");
    println!("main");
    p.join().expect("join");
}

/// `class MyProcess(Process): def run(self): ...`
#[derive(Serialize, Deserialize)]
struct MyProcess {
    squad: String,
    url: String,
}

impl Run for MyProcess {
    type Output = ();
    fn run(self) {
        let me = current_process();
        println!("current process name: {} ({}, url {:?})", me.name(), self.squad, self.url);
        println!("current process id: {}", me.pid());
        println!("parent process id: {}", parent_process().map_or(0, |p| p.pid()));
    }
}

pub(crate) fn subclass() {
    let squads: Vec<_> = (1..=3)
        .map(|i| {
            let run = MyProcess { squad: format!("squad {i}"), url: String::new() };
            Process::from_run(run).name(format!("squad-{i}")).start().expect("start")
        })
        .collect();
    println!("main process id: {}", current_process().pid());
    for p in squads {
        p.join().expect("join");
    }
}

fn sleeper(name: String, n: u32) {
    println!("{name}");
    sleep(f64::from(n));
    println!("{n}");
}

/// Three sleepers of 1, 2 and 3 s: one after the other (≈6 s), then all at once (≈3 s).
pub(crate) fn join_sequential_vs_parallel() {
    let start = Instant::now();
    for n in 1..=3 {
        let p = Process::new(sleeper, ("hkw".to_string(), n)).start().expect("start");
        p.join().expect("join");
    }
    let sequential = start.elapsed().as_secs_f64() / crate::scale();
    println!("main (sequential) {sequential:.2} s");

    let start = Instant::now();
    let ps: Vec<_> =
        (1..=3).map(|n| Process::new(sleeper, ("hkw".to_string(), n)).start().expect("start")).collect();
    for p in ps {
        p.join().expect("join");
    }
    let parallel = start.elapsed().as_secs_f64() / crate::scale();
    println!("main (parallel) {parallel:.2} s");
}

static NAME: AtomicU32 = AtomicU32::new(1);

fn change_global() -> u32 {
    NAME.store(2, Ordering::SeqCst);
    println!("func {}", NAME.load(Ordering::SeqCst));
    NAME.load(Ordering::SeqCst)
}

/// A child changing a global changes its own copy only.
pub(crate) fn globals_are_not_shared() {
    let p = Process::new(change_global, ()).start().expect("start");
    assert_eq!(p.join().expect("join"), 2);
    println!("main {}", NAME.load(Ordering::SeqCst));
}

fn show_pids() {
    println!("func---PID: {}", current_process().pid());
    println!("func---PID: {}", std::process::id());
    println!("func---PPID: {}", std::os::unix::process::parent_id());
    // Unscaled: the parent terminates it long before.
    std::thread::sleep(std::time::Duration::from_secs(10));
}

/// Pids, then `terminate` and `is_alive`.
pub(crate) fn pids_terminate_is_alive() {
    let p = Process::new(show_pids, ()).start().expect("start");
    println!("{}", p.is_alive());
    p.terminate().expect("terminate");
    let _ = p.join();
    println!("{} (exit code {:?})", p.is_alive(), p.exitcode());
    println!("main---PID: {}", std::process::id());
    println!("main---PPID: {}", std::os::unix::process::parent_id());
}

fn talker(name: String, secs: f64) {
    println!("{name} is alive");
    sleep(secs);
    println!("{name} is over");
}

fn little_main() {
    let daemon = Process::new(talker, ("daemon".to_string(), 100.0)).daemon(true).start().expect("start");
    let worker = Process::new(talker, ("worker".to_string(), 0.5)).start().expect("start");
    println!("main is over: the worker finishes, the daemon is terminated");
    drop((daemon, worker));
}

/// A process that starts a daemon and a non-daemon and returns: at its exit the non-daemon is
/// joined and the daemon is terminated, as Python does at the end of a program.
pub(crate) fn daemon_vs_non_daemon() {
    Process::new(little_main, ()).start().expect("start").join().expect("join");
}

fn stay(secs: f64) {
    sleep(secs);
}

pub(crate) fn cpus_and_active_children() {
    println!("my CPU has {} cores ({} usable by this process)", cpu_count(), multiproc::process_cpu_count());
    let ps: Vec<_> = (0..3).map(|_| Process::new(stay, (0.5,)).start().expect("start")).collect();
    let names: Vec<String> = active_children().iter().map(|c| format!("{}({})", c.name(), c.pid())).collect();
    println!("active children: {}", names.join(", "));
    for p in ps {
        p.join().expect("join");
    }
    println!("active children after join: {}", active_children().len());
}

fn parse_port(s: String) -> u16 {
    s.parse().expect("a port number")
}

/// What Python cannot do: a typed result, and a child's panic as an error with its location.
pub(crate) fn values_and_panics() {
    let p = Process::new(parse_port, ("8080".to_string(),)).start().expect("start");
    println!("port = {}", p.join().expect("join"));
    let p = Process::new(parse_port, ("eighty".to_string(),)).start().expect("start");
    match p.join() {
        Ok(port) => println!("port = {port}"),
        Err(e) => println!("error: {e} (exit code {:?})", p.exitcode()),
    }
}
