//! Named shared memory: creation, attachment, errors, and cleanup after a crashed creator.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{methods, run_helper, serial, Watchdog};
use proc_core::get_context;
use proc_core::shm::{Segment, SharedMemory};

const LIMIT: Duration = Duration::from_secs(120);

fn unique(tag: &str) -> String {
    format!("mpt_{tag}_{}", std::process::id())
}

fn add_one_to_each(name: String) -> usize {
    let shm = SharedMemory::open(&name).unwrap();
    // SAFETY: the parent does not touch the memory while the child runs.
    let bytes = unsafe { shm.as_mut_slice() };
    for b in bytes.iter_mut().take(100) {
        *b += 1;
    }
    shm.size()
}

#[test]
fn child_writes_parent_reads() {
    let _s = serial();
    let _w = Watchdog::new("child_writes_parent_reads", LIMIT);
    let shm = SharedMemory::create(100).unwrap();
    assert_eq!(shm.size(), 100);
    assert!(!shm.name().starts_with('/'));
    for m in methods() {
        let size = get_context(m)
            .process(add_one_to_each, (shm.name().to_owned(),))
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert!(size >= 100);
    }
    // SAFETY: no child runs any more.
    let bytes = unsafe { shm.as_slice() };
    assert!(bytes.iter().all(|&b| b == methods().len() as u8));
    shm.unlink().unwrap();
}

#[test]
fn errors_are_typed() {
    let _s = serial();
    let name = unique("errors");
    let shm = SharedMemory::create_named(&name, 10).unwrap();
    assert_eq!(shm.name(), name);
    assert!(SharedMemory::create_named(&name, 10).unwrap_err().is_already_exists());
    assert!(SharedMemory::create_named(&format!("/{name}"), 10).unwrap_err().is_already_exists());
    let e = shm.write(8, &[0; 3]).unwrap_err();
    assert!(e.is_invalid_input(), "{e}");
    assert!(shm.read(usize::MAX, &mut [0; 2]).unwrap_err().is_invalid_input());
    shm.unlink().unwrap();
    assert!(shm.unlink().unwrap_err().is_not_found());
    assert!(SharedMemory::open(&name).unwrap_err().is_not_found());
    assert!(SharedMemory::create(0).unwrap_err().is_invalid_input());
    for bad in ["", "/", "a/b", "x\0y", &"n".repeat(40)] {
        assert!(SharedMemory::create_named(bad, 10).unwrap_err().is_invalid_input(), "{bad:?}");
    }
    // The memory outlives the name while mapped.
    shm.write(0, b"still here").unwrap();
}

#[test]
fn segments_are_private_to_their_owner() {
    let _s = serial();
    let name = unique("mode");
    let shm = SharedMemory::create_named(&name, 10).unwrap();
    let meta = std::fs::metadata(format!("/dev/shm/{name}"));
    if let Ok(meta) = meta {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    shm.unlink().unwrap();
}

#[test]
#[ignore = "helper: run by crashed_creator_leaks_nothing"]
fn helper_create_and_crash() {
    let name = std::env::var("MPT_SHM_NAME").unwrap();
    let shm = SharedMemory::create_named(&name, 4096).unwrap();
    shm.write(0, b"orphan").unwrap();
    std::process::abort();
}

#[test]
fn crashed_creator_leaks_nothing() {
    let _s = serial();
    let _w = Watchdog::new("crashed_creator_leaks_nothing", LIMIT);
    let name = unique("crash");
    // output() returns when every holder of the helper's stderr has exited: the tracker too,
    // after its cleanup.
    let out = run_helper("helper_create_and_crash", &[("MPT_SHM_NAME", &name)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("unlinked leaked shared memory /{name}")), "{stderr}");
    assert!(stderr.contains("which exited without unlinking it"), "{stderr}");
    assert!(SharedMemory::open(&name).unwrap_err().is_not_found());
}

#[test]
#[ignore = "helper: run by a_name_that_is_not_ours_or_gone_is_left_alone"]
fn helper_collide_then_lose_one_and_crash() {
    // Someone else's segment: creating it again fails, and it must survive this program.
    let theirs = std::env::var("MPT_SHM_THEIRS").unwrap();
    assert!(SharedMemory::create_named(&theirs, 4096).unwrap_err().is_already_exists());
    // A segment of ours that disappears behind the library's back (as one whose creator was
    // killed between registering and creating it never appears): nothing to report at the end.
    let gone = std::env::var("MPT_SHM_GONE").unwrap();
    let _shm = SharedMemory::create_named(&gone, 4096).unwrap();
    let cname = std::ffi::CString::new(format!("/{gone}")).unwrap();
    // SAFETY: a valid NUL-terminated name; shm_unlink only removes the name.
    assert_eq!(unsafe { libc::shm_unlink(cname.as_ptr()) }, 0);
    std::process::abort();
}

/// A name is registered with the tracker before the segment is created (so a creator killed in
/// between leaves nothing): a creation that fails because the name exists unregisters it again,
/// and a registered name that does not exist at the end is no leak to report.
#[test]
fn a_name_that_is_not_ours_or_gone_is_left_alone() {
    let _s = serial();
    let _w = Watchdog::new("a_name_that_is_not_ours_or_gone_is_left_alone", LIMIT);
    let theirs = SharedMemory::create_named(&unique("theirs"), 4096).unwrap();
    let gone = unique("gone");
    let out = run_helper(
        "helper_collide_then_lose_one_and_crash",
        &[("MPT_SHM_THEIRS", theirs.name()), ("MPT_SHM_GONE", &gone)],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("unlinked leaked shared memory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The other program's segment is still there.
    assert_eq!(SharedMemory::open(theirs.name()).unwrap().size(), 4096);
    theirs.unlink().unwrap();
}

#[test]
#[ignore = "helper: run by a_directory_left_by_a_crash_is_removed_at_the_end"]
fn helper_make_dir_and_crash() {
    let dir = std::path::PathBuf::from(std::env::var("MPT_DIR").unwrap());
    proc_core::shm::remove_dir_at_end(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("manager.sock"), b"").unwrap();
    std::process::abort();
}

/// A directory registered with the tracker (a manager's socket directory, which its janitor
/// would have removed had it started) goes at the program's end, its file with it.
#[test]
fn a_directory_left_by_a_crash_is_removed_at_the_end() {
    let _s = serial();
    let _w = Watchdog::new("a_directory_left_by_a_crash_is_removed_at_the_end", LIMIT);
    let dir = std::env::temp_dir().join(unique("dir"));
    let out = run_helper("helper_make_dir_and_crash", &[("MPT_DIR", dir.to_str().unwrap())]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("removed leaked directory {}", dir.display())), "{stderr}");
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// Creates a segment, says so through `ready`, and waits to be terminated.
fn create_and_wait(name: String, ready: proc_core::handle::Fd) {
    let shm = SharedMemory::create_named(&name, 4096).unwrap();
    let mut ready = std::fs::File::from(ready.into_owned());
    std::io::Write::write_all(&mut ready, b"!").unwrap();
    std::mem::forget(shm);
    loop {
        std::thread::park();
    }
}

#[test]
#[ignore = "run by terminated_creator_is_named_in_the_warning"]
fn helper_create_in_a_child_and_terminate_it() {
    let name = std::env::var("MPT_SHM_NAME").unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let theirs = proc_core::handle::Fd::from(std::os::fd::OwnedFd::from(theirs));
    let p = proc_core::Process::new(create_and_wait, (name, theirs)).start().unwrap();
    let mut byte = [0u8];
    std::io::Read::read_exact(&mut &ours, &mut byte).unwrap();
    p.terminate().unwrap();
    assert!(p.join().is_err());
    println!("child pid {}", p.pid());
}

/// A segment left by a process that multiproc terminated is reported as such, not as leaked by
/// a creator that exited on its own.
#[test]
fn terminated_creator_is_named_in_the_warning() {
    let _s = serial();
    let _w = Watchdog::new("terminated_creator_is_named_in_the_warning", LIMIT);
    let name = unique("terminated");
    let out = run_helper("helper_create_in_a_child_and_terminate_it", &[("MPT_SHM_NAME", &name)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    // The test harness may print its "test ... " line ahead of ours.
    let pid = stdout.split("child pid ").nth(1).and_then(|rest| rest.split_whitespace().next());
    let pid = pid.unwrap_or_else(|| panic!("{stdout}{stderr}"));
    let line = format!(
        "unlinked leaked shared memory /{name} (created by process {pid}, which multiproc terminated before it could unlink it)"
    );
    assert!(stderr.contains(&line), "{stderr}");
    assert!(SharedMemory::open(&name).unwrap_err().is_not_found());
}

fn read_segment(seg: Segment) -> Vec<u8> {
    // SAFETY: the parent wrote before starting the child and does not write meanwhile.
    unsafe { std::slice::from_raw_parts(seg.as_ptr(), 4).to_vec() }
}

#[test]
fn anonymous_segments_cross_as_handles() {
    let _s = serial();
    let _w = Watchdog::new("anonymous_segments_cross_as_handles", LIMIT);
    let seg = Segment::new(1 << 20).unwrap();
    // SAFETY: no other process has the segment yet.
    unsafe { std::ptr::copy_nonoverlapping(b"abcd".as_ptr(), seg.as_ptr(), 4) };
    for m in methods() {
        let p = get_context(m).process(read_segment, (seg.try_clone().unwrap(),)).start().unwrap();
        assert_eq!(p.join().unwrap(), b"abcd", "{m}");
    }
    // Anywhere but a start, a handle refuses to serialize, and says why.
    let e = proc_core::codec::to_vec(&seg).unwrap_err();
    assert!(
        e.to_string().contains("a handle can only be sent to a child as part of its start arguments"),
        "{e}"
    );
    assert!(Segment::new(0).unwrap_err().is_invalid_input());
}

fn create_in_child(size: usize) -> String {
    let shm = SharedMemory::create(size).unwrap();
    shm.write(0, b"made by a child").unwrap();
    shm.name().to_owned()
}

#[test]
fn a_segment_created_in_a_child_outlives_it() {
    let _s = serial();
    let _w = Watchdog::new("a_segment_created_in_a_child_outlives_it", LIMIT);
    for m in methods() {
        let name = get_context(m).process(create_in_child, (4096,)).start().unwrap().join().unwrap();
        let shm = SharedMemory::open(&name).unwrap();
        let mut buf = [0u8; 15];
        shm.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"made by a child", "{m}");
        shm.unlink().unwrap();
    }
}

/// Sets the mode (and, if given, the owner) of the segment `name` as another program could.
/// (`fchmod`/`fchown` of a POSIX shared-memory object is Linux behavior that macOS need not offer,
/// so these tests are Linux's; the check itself is the same `fstat` on both backends, and runs on
/// Linux under `force-portable` too.)
#[cfg(target_os = "linux")]
fn chmod_segment(name: &str, mode: libc::mode_t, owner: Option<libc::uid_t>) {
    let cname = std::ffi::CString::new(format!("/{name}")).unwrap();
    // SAFETY: `cname` is a valid NUL-terminated string; flags and mode are plain integers.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR, 0 as libc::c_uint) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just opened and is closed below; fchmod/fchown take plain integers.
    unsafe {
        assert_eq!(libc::fchmod(fd, mode), 0, "{}", std::io::Error::last_os_error());
        if let Some(uid) = owner {
            assert_eq!(libc::fchown(fd, uid, libc::gid_t::MAX), 0, "{}", std::io::Error::last_os_error());
        }
        libc::close(fd);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_world_writable_segment_is_refused_unless_unverified() {
    let _s = serial();
    let name = unique("planted");
    let shm = SharedMemory::create_named(&name, 64).unwrap();
    // A segment made the normal way opens.
    assert_eq!(SharedMemory::open(&name).unwrap().size(), shm.size());
    chmod_segment(&name, 0o666, None);
    let e = SharedMemory::open(&name).unwrap_err();
    assert!(e.is_untrusted_segment(), "{e}");
    assert!(e.to_string().contains("mode 0666"), "{e}");
    // Group-writable is refused as well.
    chmod_segment(&name, 0o620, None);
    assert!(SharedMemory::open(&name).unwrap_err().is_untrusted_segment());
    // Readable by others is not a way to plant data: allowed.
    chmod_segment(&name, 0o644, None);
    assert!(SharedMemory::open(&name).is_ok());
    // The explicit opt-out attaches to what `open` refuses.
    chmod_segment(&name, 0o666, None);
    let b = SharedMemory::open_unverified(&name).unwrap();
    shm.write(0, b"planted").unwrap();
    let mut out = [0u8; 7];
    b.read(0, &mut out).unwrap();
    assert_eq!(&out, b"planted");
    shm.unlink().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_segment_of_another_user_is_refused() {
    let _s = serial();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Giving a segment away needs root.
        eprintln!("skipped: changing a segment's owner needs root");
        return;
    }
    let name = unique("owner");
    let shm = SharedMemory::create_named(&name, 64).unwrap();
    chmod_segment(&name, 0o600, Some(65534));
    let e = SharedMemory::open(&name).unwrap_err();
    assert!(e.is_untrusted_segment(), "{e}");
    assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    assert!(SharedMemory::open_unverified(&name).is_ok());
    shm.unlink().unwrap();
}
