//! proc-os's `FrameReader` (proc-core's control sockets) reads arbitrary bytes from a socket pair
//! until the end: frames, the end or an error, never a panic or a hang.

#![no_main]

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;
use proc_os::frame::{FrameReader, Read};

fuzz_target!(|data: &[u8]| {
    let (a, b) = proc_os::socket::socketpair().expect("socketpair");
    let bytes = data.to_vec();
    // A writer thread: the input may be larger than the socket's buffer.
    let writer = std::thread::spawn(move || {
        let mut raw = UnixStream::from(a);
        let _ = raw.write_all(&bytes);
    });
    let mut reader = FrameReader::default();
    loop {
        match reader.read(b.as_fd(), true) {
            Ok(Read::Frame(..)) => {}
            Ok(Read::Eof) | Err(_) => break,
            Ok(Read::Pending) => panic!("a blocking read answered Pending"),
        }
    }
    drop(b);
    let _ = writer.join();
});
