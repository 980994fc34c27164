//! Mutual challenge–response authentication on the authkey, HMAC-SHA256.
//!
//! The server sends a random challenge; the client answers with its HMAC under the key; the
//! server checks it in constant time and says welcome or failure. Then the same the other way, so
//! the client knows it talks to a holder of the key too. Every message has a fixed size, so
//! nothing but these bytes is read before both sides are satisfied, and the caller bounds the
//! whole exchange with a deadline (socket timeouts).

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

const CHALLENGE: &[u8; 8] = b"#CHALNG#";
const WELCOME: &[u8; 8] = b"#WELCOM#";
const FAILURE: &[u8; 8] = b"#FAILUR#";
const NONCE: usize = 32;
const DIGEST: usize = 32;

/// Random bytes from the operating system.
///
/// # Errors
///
/// [`Error::Start`] when the system has no randomness to give.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::Start(format!("no randomness: {e}")))?;
    Ok(buf)
}

fn digest(key: &[u8], message: &[u8]) -> Result<[u8; DIGEST]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| Error::Authentication(e.to_string()))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().into())
}

fn verify(key: &[u8], message: &[u8], answer: &[u8]) -> Result<bool> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| Error::Authentication(e.to_string()))?;
    mac.update(message);
    // Constant-time comparison.
    Ok(mac.verify_slice(answer).is_ok())
}

/// Sends a challenge and checks the answer.
fn challenge(stream: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    let nonce: [u8; NONCE] = random()?;
    let mut msg = Vec::with_capacity(8 + NONCE);
    msg.extend_from_slice(CHALLENGE);
    msg.extend_from_slice(&nonce);
    stream.write_all(&msg)?;
    let mut answer = [0u8; DIGEST];
    stream.read_exact(&mut answer)?;
    if verify(key, &nonce, &answer)? {
        stream.write_all(WELCOME)?;
        Ok(())
    } else {
        let _ = stream.write_all(FAILURE);
        Err(Error::Authentication("digest received was wrong".into()))
    }
}

/// Answers a challenge.
fn answer(stream: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    let mut msg = [0u8; 8 + NONCE];
    stream.read_exact(&mut msg)?;
    if &msg[..8] != CHALLENGE {
        return Err(Error::Authentication("the peer did not send a challenge".into()));
    }
    stream.write_all(&digest(key, &msg[8..])?)?;
    let mut verdict = [0u8; 8];
    stream.read_exact(&mut verdict)?;
    if &verdict == WELCOME {
        Ok(())
    } else {
        Err(Error::Authentication("the peer refused our key".into()))
    }
}

/// The server's side: challenge the client, then answer its challenge.
///
/// # Errors
///
/// [`Error::Authentication`] when either side's digest is wrong; [`Error::Connection`] when
/// the stream fails or the deadline (socket timeout) passes.
pub(crate) fn server_side(stream: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    challenge(stream, key)?;
    answer(stream, key)
}

/// The client's side: answer the server's challenge, then challenge it.
///
/// # Errors
///
/// As [`server_side`].
pub(crate) fn client_side(stream: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    answer(stream, key)?;
    challenge(stream, key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::net::UnixStream;

    #[test]
    fn the_same_key_passes_and_another_fails_on_both_sides() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || super::client_side(&mut b, b"key"));
        super::server_side(&mut a, b"key").unwrap();
        t.join().unwrap().unwrap();

        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || super::client_side(&mut b, b"other"));
        assert!(matches!(super::server_side(&mut a, b"key"), Err(crate::Error::Authentication(_))));
        assert!(t.join().unwrap().is_err());
    }
}
