//! Nested processes, names and identities, parents, active children, CPU counts.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{methods, serial, Watchdog};
use proc_core::{current_process, get_context, parent_process, Process, StartMethod};

const LIMIT: Duration = Duration::from_secs(120);

/// What a process of the tree reports: its name, its parent's name, and its children's reports.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Node {
    name: String,
    parent: String,
    parent_alive: bool,
    children: Vec<Node>,
}

fn node(depth: u32, method: String) -> Node {
    let method: StartMethod = method.parse().unwrap();
    let children = if depth == 0 {
        Vec::new()
    } else {
        let procs: Vec<_> = (0..2)
            .map(|_| get_context(method).process(node, (depth - 1, method.to_string())).start().unwrap())
            .collect();
        procs.into_iter().map(|p| p.join().unwrap()).collect()
    };
    let parent = parent_process().unwrap();
    Node {
        name: current_process().name().to_owned(),
        parent: parent.name().to_owned(),
        parent_alive: parent.is_alive(),
        children,
    }
}

#[test]
fn depth_two_fan_out_two() {
    let _s = serial();
    let _w = Watchdog::new("depth_two_fan_out_two", LIMIT);
    for m in methods() {
        let p = get_context(m).process(node, (2, m.to_string())).start().unwrap();
        let top_name = p.name().to_owned();
        let top = p.join().unwrap();
        assert_eq!(top.name, top_name);
        assert_eq!(top.parent, "MainProcess");
        assert!(top.parent_alive);
        assert_eq!(top.children.len(), 2);
        for (i, child) in top.children.iter().enumerate() {
            assert_eq!(child.name, format!("{top_name}:{}", i + 1), "{m}");
            assert_eq!(child.parent, top_name);
            assert!(child.parent_alive);
            for (j, grandchild) in child.children.iter().enumerate() {
                assert_eq!(grandchild.name, format!("{}:{}", child.name, j + 1));
                assert_eq!(grandchild.parent, child.name);
                assert!(grandchild.children.is_empty());
            }
        }
    }
}

fn identity() -> (String, Vec<u32>, u32, u32) {
    let me = current_process();
    (me.name().to_owned(), me.ident().to_vec(), me.pid(), parent_process().unwrap().pid())
}

#[test]
fn names_pids_and_parents() {
    let _s = serial();
    let _w = Watchdog::new("names_pids_and_parents", LIMIT);
    assert_eq!(current_process().name(), "MainProcess");
    assert!(current_process().ident().is_empty());
    assert!(parent_process().is_none());
    for m in methods() {
        let p = get_context(m).process(identity, ()).name("worker").start().unwrap();
        let (name, ident, pid, ppid) = p.join().unwrap();
        assert_eq!(name, "worker");
        assert_eq!(ident.len(), 1);
        assert_eq!(pid, p.pid());
        assert_eq!(ppid, std::process::id(), "{m}");
        let p = get_context(m).process(identity, ()).start().unwrap();
        assert_eq!(p.name(), format!("Process-{}", p.join().unwrap().1[0]));
    }
}

fn wait_for_byte(fd: proc_core::handle::Fd) {
    let mut file = std::fs::File::from(fd.into_owned());
    let _ = std::io::Read::read(&mut file, &mut [0u8; 1]);
}

#[test]
fn active_children_lists_running_and_reaps_ended() {
    let _s = serial();
    let _w = Watchdog::new("active_children_lists_running_and_reaps_ended", LIMIT);
    let (r, w) = std::io::pipe().unwrap();
    let mut running = Vec::new();
    for m in methods() {
        let fd = proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(r.try_clone().unwrap()));
        running.push(get_context(m).process(wait_for_byte, (fd,)).start().unwrap());
    }
    let listed: Vec<u32> = proc_core::active_children().iter().map(|c| c.pid()).collect();
    for p in &running {
        assert!(listed.contains(&p.pid()));
    }
    // Release them all: each reads one byte.
    std::io::Write::write_all(&mut &w, &vec![0u8; running.len()]).unwrap();
    for p in &running {
        p.join().unwrap();
    }
    let listed: Vec<u32> = proc_core::active_children().iter().map(|c| c.pid()).collect();
    for p in &running {
        assert!(!listed.contains(&p.pid()));
    }
    // A dropped handle is still reaped by active_children.
    let p = Process::new(|| (), ()).start().unwrap();
    let pid = p.pid();
    let sentinel = p.sentinel();
    drop(p);
    let mut pfd =
        libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&sentinel), events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd; bounded by the watchdog.
    unsafe { libc::poll(&mut pfd, 1, -1) };
    assert!(proc_core::active_children().iter().all(|c| c.pid() != pid));
    // SAFETY: waitpid with WNOHANG on a reaped pid only reports ECHILD.
    let ret = unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(ret, -1, "the child was reaped, not left a zombie");
}

#[test]
fn cpu_counts() {
    let total = proc_core::cpu_count();
    let usable = proc_core::process_cpu_count();
    assert!(total >= 1);
    assert!(usable >= 1 && usable <= total, "{usable} of {total}");
}

#[cfg(target_os = "linux")]
fn usable_cpus_on_one_cpu() -> usize {
    // SAFETY: `set` is a zeroed cpu_set_t (an empty set) that CPU_SET fills; the call reads
    // exactly its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
    proc_core::process_cpu_count()
}

#[cfg(target_os = "linux")]
#[test]
fn usable_cpu_count_respects_affinity() {
    let _s = serial();
    let _w = Watchdog::new("usable_cpu_count_respects_affinity", LIMIT);
    let p = get_context(StartMethod::Spawn).process(usable_cpus_on_one_cpu, ()).start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
}

#[test]
fn start_method_settings() {
    let all = proc_core::get_all_start_methods();
    assert_eq!(all.len(), 3);
    let expected = if proc_core::backend() == "linux" { StartMethod::ForkServer } else { StartMethod::Spawn };
    assert_eq!(all[0], expected);
    for m in &all {
        assert_eq!(m.as_str().parse::<StartMethod>().unwrap(), *m);
    }
    assert!("thread".parse::<StartMethod>().is_err());
    let current = proc_core::get_start_method();
    proc_core::set_start_method(current).unwrap();
    let other = all.iter().copied().find(|m| *m != current).unwrap();
    let e = proc_core::set_start_method(other).unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");
}
