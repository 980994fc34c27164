//! What several test files of proc-manager need: a raw connection that authenticates by hand.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Authenticates a raw connection by hand (the client's side of the handshake) and says hello.
pub(crate) fn authenticated(path: &Path, key: &[u8]) -> UnixStream {
    use hmac::{Hmac, Mac};
    let mac = |msg: &[u8]| {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    };
    let mut s = UnixStream::connect(path).unwrap();
    let mut challenge = [0u8; 40];
    s.read_exact(&mut challenge).unwrap();
    s.write_all(&mac(&challenge[8..])).unwrap();
    let mut verdict = [0u8; 8];
    s.read_exact(&mut verdict).unwrap();
    assert_eq!(&verdict, b"#WELCOM#");
    let nonce = [7u8; 32];
    assert_eq!(&challenge[..8], b"#CH0001#", "the manager protocol's version 1");
    let mut ours = b"#CH0001#".to_vec();
    ours.extend_from_slice(&nonce);
    s.write_all(&ours).unwrap();
    let mut digest = [0u8; 32];
    s.read_exact(&mut digest).unwrap();
    assert_eq!(digest.to_vec(), mac(&nonce));
    s.write_all(b"#WELCOM#").unwrap();
    // Hello: a session id (u128, varint) and a pid (u32, varint), nothing more.
    let hello = [2u8, 1];
    s.write_all(&(hello.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&hello).unwrap();
    s
}
