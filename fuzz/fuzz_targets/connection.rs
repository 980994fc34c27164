//! proc-queue's connection reader on arbitrary bytes written into its socket: messages then an
//! error, never a panic or a hang, as raw bytes and as values.

#![no_main]

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;
use proc_queue::Error;

fuzz_target!(|data: &[u8]| {
    for as_values in [false, true] {
        let (a, b) = proc_queue::pipe::<(u64, String, Vec<u8>)>().expect("pipe");
        let raw = a.as_fd().try_clone_to_owned().expect("dup");
        drop(a);
        let bytes = data.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = UnixStream::from(raw).write_all(&bytes);
        });
        loop {
            let got = if as_values { b.recv().map(drop) } else { b.recv_bytes().map(drop) };
            if let Err(Error::Disconnected | Error::Truncated) = got {
                break;
            }
        }
        drop(b);
        let _ = writer.join();
    }
});
