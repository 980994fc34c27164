//! Faults and abuse: wrong keys, garbage, oversized and slow handshakes, silent connections, a
//! client killed holding a lock, the server killed, the owner killed; a remote manager over TCP.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::authenticated;
use proc_core::Process;
use proc_manager::{Address, Error, Lock, Manager, Queue, Value};
use proc_queue::Queue as LocalQueue;
#[cfg(target_os = "linux")]
use test_support::until;
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn unix_path(m: &Manager) -> PathBuf {
    match m.address() {
        Address::Unix(p) => p.clone(),
        _ => panic!("expected a Unix socket"),
    }
}

#[test]
fn the_socket_is_private_and_a_wrong_key_is_refused() {
    let _g = serial();
    let _w = Watchdog::new("wrong_key", LIMIT);
    let m = Manager::start().unwrap();
    let path = unix_path(&m);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let err = Manager::connect(m.address(), b"not the key, but as long").unwrap_err();
    assert!(matches!(err, Error::Authentication(_)), "{err}");
    // A key shorter than 16 bytes is refused before anything is sent.
    let err = Manager::connect(m.address(), b"not the key").unwrap_err();
    assert!(matches!(err, Error::AuthkeyTooShort { len: 11 }), "{err}");
    // The server keeps serving.
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    let other = Manager::connect(m.address(), m.authkey()).unwrap();
    assert_eq!(other.number_of_objects().unwrap(), 1);
}

/// Reads until the server closes the connection; true if it did within `within`.
fn closed_by_server(stream: &mut UnixStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            // Closed with our bytes unread: a reset.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn garbage_oversized_and_slow_handshakes_cost_only_their_connection() {
    let _g = serial();
    let _w = Watchdog::new("abuse", LIMIT);
    let m = Manager::start().unwrap();
    let path = unix_path(&m);
    let v = m.value(1u32).unwrap();

    // Garbage instead of an answer to the challenge.
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(&[0xff; 64]).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(30)));

    // A huge length where the answer should be: only 32 bytes are read, then failure.
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    s.write_all(&[0u8; 28]).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(30)));

    // Silent: closed after the handshake deadline (5 s), not before 4.
    let t = Instant::now();
    let mut s = UnixStream::connect(&path).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(30)));
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());

    assert_eq!(v.get().unwrap(), 1);
}

#[test]
fn oversized_garbage_and_truncated_frames_close_that_connection_only() {
    let _g = serial();
    let _w = Watchdog::new("frames", LIMIT);
    let m = Manager::builder().max_frame(1 << 20).start().unwrap();
    let path = unix_path(&m);
    let q = m.queue::<Vec<u8>>(0).unwrap();

    // A length above the limit: closed without reading (or allocating) the body.
    let mut s = authenticated(&path, m.authkey());
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(30)));
    // Garbage that does not decode as a request.
    let mut s = authenticated(&path, m.authkey());
    s.write_all(&8u32.to_le_bytes()).unwrap();
    s.write_all(&[0xff; 8]).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(30)));
    // A frame cut short, then the end.
    let mut s = authenticated(&path, m.authkey());
    s.write_all(&100u32.to_le_bytes()).unwrap();
    s.write_all(&[1u8; 10]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(30)));

    // A proxy call larger than the server's limit fails, and the next one works.
    assert!(q.put(vec![7u8; 2 << 20]).unwrap_err().into_error().is_connection());
    q.put(vec![1u8; 1000]).unwrap();
    assert_eq!(q.get().unwrap().len(), 1000);
}

/// Reads what the server sends until it closes the connection (within `within`): the bytes, or
/// `None` if it did not close it.
fn read_until_closed(stream: &mut UnixStream, within: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
            Err(_) => return None,
        }
    }
}

#[test]
fn a_request_followed_by_more_bytes_is_refused_unanswered() {
    let _g = serial();
    let _w = Watchdog::new("trailing", LIMIT);
    let m = Manager::start().unwrap();
    let path = unix_path(&m);
    let v = m.value(5u32).unwrap();
    // Request::Shutdown is variant 9, CountObjects variant 8: one byte each in postcard. Followed
    // by more bytes, neither may be carried out, nor answered.
    for request in [&[9u8, 0xaa, 0xbb][..], &[9, 0], &[8, 1, 2, 3]] {
        let mut s = authenticated(&path, m.authkey());
        s.write_all(&(request.len() as u32).to_le_bytes()).unwrap();
        s.write_all(request).unwrap();
        let answer = read_until_closed(&mut s, Duration::from_secs(30));
        assert_eq!(answer.as_deref(), Some(&[][..]), "{request:?} was answered or not refused");
    }
    // The server still serves, and the same requests without the extra bytes are answered.
    assert_eq!(v.get().unwrap(), 5);
    let mut s = authenticated(&path, m.authkey());
    s.write_all(&1u32.to_le_bytes()).unwrap();
    s.write_all(&[8]).unwrap();
    let mut answer = [0u8; 6];
    s.read_exact(&mut answer).unwrap();
    // A frame of two bytes: Response::Count (variant 9) of one object.
    assert_eq!(answer, [2, 0, 0, 0, 9, 1]);
}

/// A connection as the flood tests use it: Unix or TCP.
trait Silent: Read {
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()>;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl Silent for UnixStream {
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

impl Silent for TcpStream {
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

/// Whether the server ended the connection: waits up to `within` for its end when `wait`, else
/// looks without waiting. The server's challenge may be there to read first; its end is what
/// counts.
fn ended<S: Silent>(s: &mut S, wait: bool, within: Duration) -> bool {
    s.set_nonblocking(!wait).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// How many threads process `pid` has now (Linux's /proc).
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

/// Opens `n` connections that never say a word, to a manager that lets `cap` be in their
/// handshake: the server closes the oldest as new ones come, keeps its threads bounded, and a
/// client with the key is served at once.
fn flood<S: Silent>(m: &Manager, cap: usize, n: usize, connect: impl Fn() -> S) {
    let mut silent: Vec<S> = (0..n).map(|_| connect()).collect();
    // The oldest n − cap were closed as newer ones came: by the cap, not at their deadline (which
    // the callers set far beyond this test's time).
    for (i, s) in silent[..n - cap].iter_mut().enumerate() {
        assert!(ended(s, true, Duration::from_secs(30)), "silent connection {i} was not closed");
    }
    // Their threads end with them: the server has about one thread per connection still in its
    // handshake, not one per connection ever opened.
    #[cfg(target_os = "linux")]
    {
        let pid = m.server_pid().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while threads_of(pid) > cap + 16 {
            assert!(Instant::now() < deadline, "the server kept {} threads", threads_of(pid));
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The newest `cap` still wait in their handshake: the server did not simply time them out.
    for (i, s) in silent[n - cap..].iter_mut().enumerate() {
        assert!(!ended(s, false, Duration::from_secs(1)), "silent connection {} was closed", n - cap + i);
    }
    // A new client with the key (another process: its own connections, each with a handshake)
    // is served meanwhile.
    let good = Process::new(a_good_client, (m.address().to_string(), m.authkey().to_vec())).start().unwrap();
    assert_eq!(good.join_timeout(Duration::from_secs(60)).unwrap(), Some(100));
    drop(silent);
}

/// Connects, makes a dict and fills it: how many entries it holds.
fn a_good_client(address: String, key: Vec<u8>) -> u32 {
    let m = Manager::connect(&Address::parse(&address).unwrap(), &key).unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    for i in 0..100 {
        d.insert(i, i).unwrap();
    }
    d.len().unwrap() as u32
}

#[test]
fn hundreds_of_silent_tcp_connections_are_capped_and_a_good_client_is_served() {
    let _g = serial();
    let _w = Watchdog::new("silent_tcp", LIMIT);
    // A deadline far beyond the test's own steps: a silent connection is closed only by the cap,
    // however slowly a loaded machine runs the test.
    let m = Manager::builder()
        .handshake_timeout(Duration::from_secs(600))
        .start_tcp("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let Address::Tcp(address) = *m.address() else { panic!("expected TCP") };
    // The default cap: 64.
    flood(&m, 64, 300, || TcpStream::connect(address).unwrap());
}

#[test]
fn silent_unix_connections_are_capped_too() {
    let _g = serial();
    let _w = Watchdog::new("silent_unix", LIMIT);
    let m = Manager::builder().max_handshakes(8).handshake_timeout(Duration::from_secs(600)).start().unwrap();
    let path = unix_path(&m);
    flood(&m, 8, 100, || UnixStream::connect(&path).unwrap());
}

fn grab_and_hang(lock: Lock, held: LocalQueue<u32>) {
    let guard = lock.acquire().unwrap();
    held.put(std::process::id()).unwrap();
    std::mem::forget(guard);
    loop {
        std::thread::park();
    }
}

#[test]
fn a_lock_held_by_a_killed_client_is_released() {
    let _g = serial();
    let _w = Watchdog::new("killed_holder", LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let held = LocalQueue::new(1).unwrap();
    let p = Process::new(grab_and_hang, (lock.clone(), held.clone())).start().unwrap();
    held.get_timeout(Duration::from_secs(60)).unwrap();
    assert!(lock.try_acquire().unwrap().is_none());
    p.kill().unwrap();
    let _ = p.join_timeout(Duration::from_secs(60));
    let _guard = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
}

#[test]
fn when_the_server_is_killed_every_call_fails_and_nothing_hangs() {
    let _g = serial();
    let _w = Watchdog::new("server_killed", LIMIT);
    let m = Manager::start().unwrap();
    let q = m.queue::<u32>(0).unwrap();
    let v = m.value(3u32).unwrap();
    let pid = m.server_pid().unwrap();
    // A blocked get in another thread learns the news too.
    let q2 = q.clone();
    let blocked = std::thread::spawn(move || q2.get());
    // SAFETY: a signal to the server process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(blocked.join().unwrap().unwrap_err().is_connection());
    assert!(v.get().unwrap_err().is_connection());
    assert!(q.put(1).unwrap_err().into_error().is_connection());
    drop(v);
    drop(q);
    // Shutdown reaps the dead server and reports it gone.
    assert!(m.shutdown().is_err());
}

fn own_a_manager(report: LocalQueue<(u32, String)>) {
    let m = Manager::start().unwrap();
    report.put((m.server_pid().unwrap(), unix_path(&m).to_string_lossy().into_owned())).unwrap();
    loop {
        std::thread::park();
    }
}

/// Whether `pid` is gone (ended; a zombie waiting to be reaped counts as gone).
fn gone(pid: u32) -> bool {
    !proc_sync::raw::process_alive(pid)
}

#[test]
fn the_server_exits_and_its_socket_directory_goes_when_its_owner_is_killed() {
    let _g = serial();
    let _w = Watchdog::new("owner_killed", LIMIT);
    let report = LocalQueue::new(1).unwrap();
    let p = Process::new(own_a_manager, (report.clone(),)).start().unwrap();
    let (server, socket) = report.get_timeout(Duration::from_secs(60)).unwrap();
    let dir = PathBuf::from(socket).parent().unwrap().to_path_buf();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("multiproc-manager-{}-", p.pid())), "{name}");
    assert!(dir.is_dir());
    // SIGKILL: the owner runs nothing on its way out.
    p.kill().unwrap();
    let _ = p.join_timeout(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone(server) {
        assert!(Instant::now() < deadline, "the server {server} outlived its owner");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The server's janitor removes the directory once the server has ended.
    while dir.exists() {
        assert!(Instant::now() < deadline, "{} outlived the server", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_shut_down_manager_leaves_no_directory_and_no_process() {
    let _g = serial();
    let _w = Watchdog::new("shutdown_cleanup", LIMIT);
    let m = Manager::start().unwrap();
    let dir = unix_path(&m).parent().unwrap().to_path_buf();
    let server = m.server_pid().unwrap();
    #[cfg(target_os = "linux")]
    let janitors = children_of(server);
    #[cfg(target_os = "linux")]
    assert_eq!(janitors.len(), 1, "{janitors:?}");
    m.shutdown().unwrap();
    assert!(!dir.exists());
    assert!(gone(server));
    // The server reaped its janitor before it exited.
    #[cfg(target_os = "linux")]
    assert!(janitors.iter().all(|&j| gone(j)), "{janitors:?}");
}

/// The children of `pid` (Linux's /proc).
#[cfg(target_os = "linux")]
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|c| c.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// A separately started worker: knows only the address and the key.
fn remote_worker(address: String, key: Vec<u8>) {
    let m = Manager::connect(&Address::parse(&address).unwrap(), &key).unwrap();
    let jobs: Queue<u64> = m.lookup("jobs").unwrap();
    let results: Queue<u64> = m.lookup("results").unwrap();
    while let Ok(n) = jobs.get_timeout(Duration::from_secs(30)) {
        if n == 0 {
            break;
        }
        results.put(n * n).unwrap();
    }
}

#[test]
fn a_tcp_manager_serves_a_separately_started_worker() {
    let _g = serial();
    let _w = Watchdog::new("tcp", LIMIT);
    let unspecified: SocketAddr = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(Manager::builder().start_tcp(unspecified), Err(Error::Start { .. })));
    let m = Manager::builder()
        .authkey(b"abracadabra, abracadabra".to_vec())
        .start_tcp("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let jobs = m.queue::<u64>(0).unwrap();
    let results = m.queue::<u64>(0).unwrap();
    m.publish("jobs", &jobs).unwrap();
    m.publish("results", &results).unwrap();
    let address = m.address().to_string();
    assert!(address.starts_with("tcp:127.0.0.1:"), "{address}");
    // A wrong key over TCP.
    assert!(matches!(
        Manager::connect(m.address(), b"the wrong key, long enough"),
        Err(Error::Authentication(_))
    ));
    let p = Process::new(remote_worker, (address, b"abracadabra, abracadabra".to_vec())).start().unwrap();
    for n in 1..=10 {
        jobs.put(n).unwrap();
    }
    jobs.put(0).unwrap();
    let mut got: Vec<u64> = (0..10).map(|_| results.get_timeout(Duration::from_secs(30)).unwrap()).collect();
    got.sort();
    assert_eq!(got, (1..=10).map(|n| n * n).collect::<Vec<_>>());
    p.join().unwrap();
    // Raw garbage over TCP is dropped too.
    if let Address::Tcp(a) = m.address() {
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    }
    let v: Value<u8> = m.value(1).unwrap();
    assert_eq!(v.get().unwrap(), 1);
}

/// A server in the foreground of its own process.
fn serve_here(path: String) {
    let address = Address::parse(&format!("unix:{path}")).unwrap();
    Manager::builder().authkey(b"the foreground server's key".to_vec()).serve(&address).unwrap();
}

#[test]
fn a_foreground_server_serves_until_shut_down() {
    let _g = serial();
    let _w = Watchdog::new("serve", LIMIT);
    let dir = std::env::temp_dir().join(format!("proc-manager-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let p = Process::new(serve_here, (path.to_string_lossy().into_owned(),)).start().unwrap();
    let address = Address::Unix(path.clone());
    // Connect once the socket exists (the server binds it as it starts).
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        match Manager::connect(&address, b"the foreground server's key") {
            Ok(m) => break m,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let l = m.list::<u8>().unwrap();
    l.append(1).unwrap();
    assert_eq!(l.len().unwrap(), 1);
    drop(l);
    m.shutdown().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether every thread of `pid` is in the stopped state (Linux's /proc).
#[cfg(target_os = "linux")]
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('T')))
    })
}

#[cfg(target_os = "linux")]
#[test]
fn a_stopped_server_does_not_hang_its_clients() {
    let _g = serial();
    let _w = Watchdog::new("stopped_server", LIMIT);
    let m = Manager::start().unwrap();
    let v = m.value(4u32).unwrap();
    let pid = m.server_pid().unwrap() as i32;
    proc_manager::set_answer_timeout(Duration::from_millis(300));
    let stopped = stop_server(pid);
    let t = Instant::now();
    let err = v.get().unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    drop(stopped);
    proc_manager::set_answer_timeout(Duration::from_secs(60));
    assert_eq!(v.get().unwrap(), 4);
}

/// Lets a stopped server run again when dropped: a failed assertion does not leave it stopped.
#[cfg(target_os = "linux")]
struct Stopped(i32);

#[cfg(target_os = "linux")]
impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: a signal to the server process this test started.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Stops the server `pid` and waits until every thread of it is stopped (a stop takes effect
/// asynchronously); it runs again when the guard is dropped. The caller's watchdog bounds the wait.
#[cfg(target_os = "linux")]
fn stop_server(pid: i32) -> Stopped {
    // SAFETY: a signal to the server process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Stopped(pid);
    until(|| all_threads_stopped(pid as u32));
    stopped
}

/// Lets the stopped server run again, then waits until the given-up calls are undone (bounded by
/// the caller's watchdog, past which the answer grace has long ended).
#[cfg(target_os = "linux")]
fn resume_server_and_wait_for_undos(stopped: Stopped) {
    drop(stopped);
    until(|| proc_manager::pending_undos() == 0);
}

/// A blocking call that gave up on a stopped manager (past its time and the answer grace) leaves
/// nothing granted once the manager runs again: the lock it takes for the call is released, the
/// semaphore's permit given back, the queue's value put back at the front.
#[cfg(target_os = "linux")]
#[test]
fn a_call_given_up_on_a_stopped_server_is_undone_once_it_runs_again() {
    let _g = serial();
    let _w = Watchdog::new("given_up_undone", LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let sem = m.semaphore(1).unwrap();
    let q = m.queue::<u32>(0).unwrap();
    q.put(7).unwrap();
    q.put(8).unwrap();
    let pid = m.server_pid().unwrap() as i32;
    // Long enough for the undoing worker to outlast the signal that resumes the server.
    proc_manager::set_answer_timeout(Duration::from_secs(1));
    // One call per stop: each undoing waits for the answer for one grace from its start.
    let stopped = stop_server(pid);
    let err = lock.acquire_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert_eq!(proc_manager::pending_undos(), 1);
    resume_server_and_wait_for_undos(stopped);
    let stopped = stop_server(pid);
    let err = sem.acquire_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_connection(), "{err}");
    resume_server_and_wait_for_undos(stopped);
    let stopped = stop_server(pid);
    let err = q.get_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_connection(), "{err}");
    resume_server_and_wait_for_undos(stopped);
    proc_manager::set_answer_timeout(Duration::from_secs(60));
    // The lock is free (this thread's owner would not get it twice), the permit back, the value
    // back in front of the next.
    assert!(lock.try_acquire().unwrap().is_some());
    assert!(sem.acquire_timeout(Duration::ZERO).unwrap());
    assert_eq!(q.get_nowait().unwrap(), 7);
    assert_eq!(q.get_nowait().unwrap(), 8);
    m.shutdown().unwrap();
}

/// Whether `text` shows `key`: as text, or as the numbers `Debug` prints for its bytes.
fn shows(text: &str, key: &[u8]) -> bool {
    let numbers = key[..6].iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    text.contains(&*String::from_utf8_lossy(key)) || text.contains("SECRET") || text.contains(&numbers)
}

#[test]
fn no_debug_output_or_error_shows_an_authkey() {
    let _g = serial();
    let _w = Watchdog::new("redacted", LIMIT);
    let key = b"SECRET-0123456789abcdef".to_vec();
    // Builder.
    let builder = Manager::builder().authkey(key.clone());
    let text = format!("{builder:?}");
    assert!(!shows(&text, &key) && text.contains("redacted"), "{text}");
    // Manager, and proxies (which hold the key to hand it to children).
    let m = builder.start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let lock = m.lock().unwrap();
    for text in [format!("{m:?}"), format!("{d:?}"), format!("{lock:?}"), format!("{:?}", m.address())] {
        assert!(!shows(&text, &key), "{text}");
    }
    // Errors: a wrong key (neither key shows), a short one.
    let wrong = b"SECRET-but-the-wrong-one".to_vec();
    let err = Manager::connect(m.address(), &wrong).unwrap_err();
    assert!(matches!(err, Error::Authentication(_)), "{err}");
    for text in [format!("{err}"), format!("{err:?}")] {
        assert!(!shows(&text, &key) && !shows(&text, &wrong), "{text}");
    }
    let short = b"SECRET-short".to_vec();
    for err in [
        Manager::connect(m.address(), &short).unwrap_err(),
        Manager::builder().authkey(short.clone()).start().unwrap_err(),
        Manager::builder().authkey(Vec::new()).start().unwrap_err(),
    ] {
        assert!(matches!(err, Error::AuthkeyTooShort { .. }), "{err}");
        for text in [format!("{err}"), format!("{err:?}")] {
            assert!(!text.contains("SECRET"), "{text}");
        }
    }
    assert_eq!(
        Manager::builder().authkey(short).start().unwrap_err().to_string(),
        "an authkey of 12 bytes is too short: at least 16 are required"
    );
}

#[test]
fn the_handshake_timeout_is_the_builders() {
    let _g = serial();
    let _w = Watchdog::new("handshake_timeout", LIMIT);
    let m = Manager::builder().handshake_timeout(Duration::from_millis(300)).start().unwrap();
    let path = unix_path(&m);
    // A silent connection is closed at the builder's deadline, well before the default 5 s one
    // (4 s: thirteen times the deadline, for a loaded machine).
    let t = Instant::now();
    let mut s = UnixStream::connect(&path).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(4)), "not closed before the default deadline");
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    // A client with the key still gets through.
    let good = Process::new(a_good_client, (m.address().to_string(), m.authkey().to_vec())).start().unwrap();
    assert_eq!(good.join_timeout(Duration::from_secs(60)).unwrap(), Some(100));
}
