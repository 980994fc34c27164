//! proc-core's codec and handle decoding on arbitrary bytes: message-shaped values, handles with
//! no descriptors beside them, and a function's place (`CodeAddr`) that must never be read
//! outside the program's code.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use proc_core::codec::from_bytes;
use proc_core::handle::{deserialize_with_fds, CodeAddr, Fd, StaticFn};

fuzz_target!(|data: &[u8]| {
    let _ = from_bytes::<(bool, String, Vec<u32>, u32, Vec<u8>, Option<String>)>(data);
    let _ = from_bytes::<Vec<Vec<u64>>>(data);
    let _ = from_bytes::<BTreeMap<String, Option<Vec<i128>>>>(data);
    let _ = deserialize_with_fds::<(Fd, Vec<Fd>)>(data, Vec::new());
    let _ = deserialize_with_fds::<StaticFn>(data, Vec::new());
    if let Some(bytes) = data.first_chunk::<16>() {
        let _ = CodeAddr::from_bytes(bytes).resolve();
    }
});
