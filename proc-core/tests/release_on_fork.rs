//! `handle::ReleaseOnFork` beyond 1024 descriptors: a child made by a plain `fork` sees every listed
//! descriptor pointing at `/dev/null`, and the places of dropped guards are reused.
//!
//! Its own test binary: it raises this process's descriptor limit and grows the list for good.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use common::{run_helper, serial, Watchdog};
use proc_core::handle::ReleaseOnFork;

const LIMIT: Duration = Duration::from_secs(120);

/// Pipes whose ends the test lists: 3000 descriptors, well past the first chunk of 1024.
const PIPES: usize = 1500;

/// The soft descriptor limit the test needs: the listed descriptors and room for the rest.
const NEEDED: libc::rlim_t = 4096;

/// This process's descriptor limits.
fn descriptor_limit() -> libc::rlimit {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes into `limit`, a live rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) }, 0);
    // SAFETY: getrlimit succeeded, so it filled `limit`.
    unsafe { limit.assume_init() }
}

/// Sets this process's soft descriptor limit to `soft`.
fn set_soft_descriptor_limit(soft: libc::rlim_t) {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: descriptor_limit().rlim_max };
    // SAFETY: setrlimit reads `limit`, a live rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Raises the soft descriptor limit to at least [`NEEDED`] if the hard limit allows it.
fn raise_descriptor_limit() -> bool {
    let limit = descriptor_limit();
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= NEEDED {
        return true;
    }
    if limit.rlim_max != libc::RLIM_INFINITY && limit.rlim_max < NEEDED {
        return false;
    }
    // Twice what is needed, within the hard limit (macOS refuses an infinite soft limit).
    set_soft_descriptor_limit(if limit.rlim_max == libc::RLIM_INFINITY {
        2 * NEEDED
    } else {
        limit.rlim_max.min(2 * NEEDED)
    });
    true
}

/// The device and inode of what `fd` refers to.
fn identity(fd: RawFd) -> Option<(libc::dev_t, libc::ino_t)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes into `st`, a live stat; it is async-signal-safe (this runs in a child
    // made by `fork` of a process with threads too).
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// Forks a plain child that checks each of `listed` (and, as a control, `unlisted`) against
/// `null`, the identity of `/dev/null`, and reports through `report`: the count of listed
/// descriptors that are `/dev/null`, the index of the first that is not (`u32::MAX`: none), and
/// whether the unlisted one is not. Returns what the child reported.
fn fork_and_check(listed: &[RawFd], unlisted: RawFd, null: (libc::dev_t, libc::ino_t)) -> (u32, u32, bool) {
    let (mut report_r, report_w) = std::os::unix::net::UnixStream::pair().unwrap();
    // SAFETY: the child makes only async-signal-safe calls (fstat, write, _exit) and reads memory
    // allocated before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut nulls = 0u32;
        let mut first_other = u32::MAX;
        for (i, &fd) in listed.iter().enumerate() {
            if identity(fd) == Some(null) {
                nulls += 1;
            } else if first_other == u32::MAX {
                first_other = i as u32;
            }
        }
        let control = identity(unlisted).is_some_and(|id| id != null);
        let mut out = [0u8; 9];
        out[..4].copy_from_slice(&nulls.to_le_bytes());
        out[4..8].copy_from_slice(&first_other.to_le_bytes());
        out[8] = u8::from(control);
        // SAFETY: write of a live buffer to a descriptor the child holds, then _exit; both
        // async-signal-safe.
        unsafe {
            libc::write(report_w.as_raw_fd(), out.as_ptr().cast(), out.len());
            libc::_exit(0);
        }
    }
    drop(report_w);
    let mut out = Vec::new();
    report_r.read_to_end(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a live c_int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    assert_eq!(out.len(), 9, "the child's report");
    let nulls = u32::from_le_bytes(out[..4].try_into().unwrap());
    let first_other = u32::from_le_bytes(out[4..8].try_into().unwrap());
    (nulls, first_other, out[8] == 1)
}

#[test]
fn thousands_of_descriptors_are_released_and_their_places_reused() {
    let _s = serial();
    let _w = Watchdog::new("thousands_of_descriptors_are_released_and_their_places_reused", LIMIT);
    if !raise_descriptor_limit() {
        eprintln!("skipped: the hard descriptor limit is under {NEEDED}");
        return;
    }
    let null = identity(std::fs::File::open("/dev/null").unwrap().as_raw_fd()).unwrap();
    let ends: Vec<OwnedFd> = (0..PIPES)
        .flat_map(|_| {
            let (r, w) = std::io::pipe().unwrap();
            [OwnedFd::from(r), OwnedFd::from(w)]
        })
        .collect();
    let listed: Vec<RawFd> = ends.iter().map(AsRawFd::as_raw_fd).collect();
    let (unlisted, _unlisted_w) = std::io::pipe().unwrap();

    let guards: Vec<ReleaseOnFork> = ends.iter().map(|fd| ReleaseOnFork::new(fd.as_fd())).collect();
    let first: Vec<usize> = guards.iter().map(|g| g.slot().expect("a place in the list")).collect();
    assert!(first.iter().any(|&s| s >= 2048), "the list grew past its first chunks");

    let (nulls, first_other, control) = fork_and_check(&listed, unlisted.as_raw_fd(), null);
    assert_eq!(first_other, u32::MAX, "listed descriptor {first_other} lived on in the child");
    assert_eq!(nulls as usize, listed.len());
    assert!(control, "an unlisted descriptor was released too");
    // The parent's own descriptors are untouched.
    assert!(listed.iter().all(|&fd| identity(fd).is_some_and(|id| id != null)));

    // Dropped guards give their places back: listing as many again, three times over, takes
    // places the first round had, and grows nothing.
    let most = first.iter().copied().max().unwrap();
    drop(guards);
    for round in 0..3 {
        let guards: Vec<ReleaseOnFork> = ends.iter().map(|fd| ReleaseOnFork::new(fd.as_fd())).collect();
        let again: Vec<usize> = guards.iter().map(|g| g.slot().unwrap()).collect();
        assert!(again.iter().all(|&s| s <= most), "round {round}: the list grew instead of reusing places");
        let (nulls, first_other, _) = fork_and_check(&listed, unlisted.as_raw_fd(), null);
        assert_eq!((nulls as usize, first_other), (listed.len(), u32::MAX), "round {round}");
    }

    // Unlisted, the descriptors live on in a forked child as descriptors do.
    let (nulls, first_other, _) = fork_and_check(&listed, unlisted.as_raw_fd(), null);
    assert_eq!((nulls, first_other), (0, 0));
}

/// How many more times `fd` can be listed before the list is full; the guards stay listed.
fn list_until_full(fd: std::os::fd::BorrowedFd<'_>, guards: &mut Vec<ReleaseOnFork>) -> usize {
    let before = guards.len();
    loop {
        let guard = ReleaseOnFork::new(fd);
        if guard.slot().is_none() {
            return guards.len() - before;
        }
        guards.push(guard);
    }
}

#[test]
#[ignore = "helper: run by the_list_fits_the_descriptor_limit"]
fn helper_list_to_the_limit() {
    // A fresh process: nothing is listed yet, and the list has only its first 1024 places.
    if descriptor_limit().rlim_max != libc::RLIM_INFINITY && descriptor_limit().rlim_max < 2048 {
        println!("skipped: the hard descriptor limit is under 2048");
        return;
    }
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut guards = Vec::new();
    // One descriptor listed again and again fills the list without opening thousands.
    set_soft_descriptor_limit(1000);
    assert_eq!(list_until_full(null.as_fd(), &mut guards), 1024, "under a limit of 1000");
    set_soft_descriptor_limit(1500);
    assert_eq!(list_until_full(null.as_fd(), &mut guards), 1024, "under a limit of 1500");
    set_soft_descriptor_limit(2048);
    assert_eq!(list_until_full(null.as_fd(), &mut guards), 0, "under a limit of 2048");
    // A dropped guard's place is taken again, not a new one.
    let freed = guards.swap_remove(100).slot();
    assert_eq!(ReleaseOnFork::new(null.as_fd()).slot(), freed);
    println!("the list fits the limit");
}

#[test]
fn the_list_fits_the_descriptor_limit() {
    let _s = serial();
    let _w = Watchdog::new("the_list_fits_the_descriptor_limit", LIMIT);
    let out = run_helper("helper_list_to_the_limit", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    if stdout.contains("skipped:") {
        eprintln!("{stdout}");
        return;
    }
    assert!(stdout.contains("the list fits the limit"), "{stdout}");
}
