//! `SharedMemoryManager`: the segments made through it are unlinked at its shutdown or drop, a
//! child uses them meanwhile, and a server killed first leaves them to their makers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_core::shm::{Item, ShareableList, SharedMemory};
use proc_core::Process;
use proc_manager::{Error, SharedMemoryManager};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

fn exists(name: &str) -> bool {
    match SharedMemory::open(name) {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// The names of multiproc's segments in `/dev/shm` (Linux; elsewhere none are listed).
fn segments() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return Vec::new() };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mp_"))
        .collect();
    names.sort();
    names
}

/// A child's work on the list: the sum of its integers, written into item 0.
fn sum_into_first(list: ShareableList) -> i64 {
    let sum = list.to_vec().unwrap().into_iter().filter_map(|i| i64::try_from(i).ok()).sum();
    list.set(0, sum).unwrap();
    sum
}

#[test]
fn shutdown_unlinks_every_segment_made_through_it() {
    let _s = serial();
    let _w = Watchdog::new("smm_shutdown", LIMIT);
    let smm = SharedMemoryManager::start().unwrap();
    let blocks: Vec<_> = (1..=3).map(|i| smm.shared_memory(i * 100).unwrap()).collect();
    let list = smm.shareable_list([1, 2, 3, 4]).unwrap();
    assert_eq!(smm.tracked().unwrap(), 4);
    // A child uses the list meanwhile.
    let child = Process::new(sum_into_first, (list.try_clone().unwrap(),)).start().unwrap();
    assert_eq!(child.join().unwrap(), 10);
    assert_eq!(list.get(0).unwrap(), Item::Int(10));
    // A segment unlinked by its maker is no trouble at shutdown.
    blocks[0].unlink().unwrap();
    let names: Vec<String> =
        blocks.iter().map(|b| b.name().to_owned()).chain([list.name().to_owned()]).collect();
    assert!(names[1..].iter().all(|n| exists(n)));
    smm.shutdown().unwrap();
    for name in &names {
        assert!(!exists(name), "{name} outlived the manager's shutdown");
    }
    // The mappings stay valid.
    blocks[2].write(299, &[1]).unwrap();
    assert_eq!(list.get(3).unwrap(), Item::Int(4));
}

#[test]
fn dropping_the_manager_unlinks_too() {
    let _s = serial();
    let _w = Watchdog::new("smm_drop", LIMIT);
    let smm = SharedMemoryManager::start().unwrap();
    let block = smm.shared_memory(64).unwrap();
    let server = smm.manager().unwrap().server_pid().unwrap();
    drop(smm);
    assert!(!exists(block.name()));
    // The server is gone too (reaped by the manager's shutdown).
    assert!(!proc_os::process_alive(server), "the server {server} still runs");
}

#[test]
fn bad_requests_make_nothing_that_leaks() {
    let _s = serial();
    let _w = Watchdog::new("smm_bad", LIMIT);
    let smm = SharedMemoryManager::start().unwrap();
    let err = smm.shared_memory(0).unwrap_err();
    assert!(matches!(&err, Error::SharedMemory(e) if e.is_invalid_input()), "{err}");
    assert_eq!(smm.tracked().unwrap(), 0);
    smm.shutdown().unwrap();
}

#[test]
fn a_server_killed_first_leaves_the_segments_to_their_makers() {
    let _s = serial();
    let _w = Watchdog::new("smm_killed", LIMIT);
    let smm = SharedMemoryManager::start().unwrap();
    let block = smm.shared_memory(64).unwrap();
    let server = smm.manager().unwrap().server_pid().unwrap();
    // SAFETY: signalling the manager's own server process, a child of this process.
    assert_eq!(unsafe { libc::kill(server as i32, libc::SIGKILL) }, 0);
    // The segment cannot be recorded any more: it is unlinked again, not leaked.
    let before = segments();
    let err = smm.shared_memory(64).unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert_eq!(segments(), before, "a segment the server could not record was left");
    // Shutting down reports the lost server; the segment made before is still there, for its
    // maker (or the resource tracker at the program's end) to unlink.
    assert!(smm.shutdown().is_err());
    assert!(exists(block.name()));
    block.unlink().unwrap();
}
