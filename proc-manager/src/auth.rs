//! Mutual challenge–response authentication on the authkey, HMAC-SHA256.
//!
//! The server sends a random challenge; the client answers with its HMAC under the key; the
//! server checks it in constant time and says welcome or failure. Then the same the other way, so
//! the client knows it talks to a holder of the key too. Every message has a fixed size, so
//! nothing but these bytes is read before both sides are satisfied, and the caller bounds the
//! whole exchange with a deadline (socket timeouts).
//!
//! A challenge names the protocol version of its sender (`#CH` and four digits, then `#`;
//! [`PROTOCOL_VERSION`]): each side refuses a challenge of another version with
//! [`Error::ProtocolVersion`], before anything else is read. The challenge of multiprocs from
//! before versions (`#CHALNG#`) reads as version 0.

use std::fmt;
use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::wire::PROTOCOL_VERSION;

/// The shortest authkey a manager accepts, in bytes.
///
/// Python accepts any key, even one byte. A manager may listen on TCP, where anyone who can
/// reach the port may try keys: a short or guessable key is no protection there, so a key must
/// have at least this many bytes (the default key has 32 random bytes).
pub const MIN_AUTHKEY_LEN: usize = 16;

/// An authkey. Its `Debug` shows only its length, so that no log, panic message or debug print
/// of a type holding one reveals it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct AuthKey(Vec<u8>);

impl AuthKey {
    /// A key given by the user: at least [`MIN_AUTHKEY_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::AuthkeyTooShort`] for a shorter key.
    pub(crate) fn new(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < MIN_AUTHKEY_LEN {
            return Err(Error::AuthkeyTooShort { len: bytes.len() });
        }
        Ok(AuthKey(bytes.to_vec()))
    }

    /// A key of the user's, not checked yet (a builder checks it when it starts a server).
    pub(crate) fn unchecked(bytes: Vec<u8>) -> Self {
        AuthKey(bytes)
    }

    /// Checks a key that was taken [`unchecked`](Self::unchecked).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub(crate) fn checked(self) -> Result<Self> {
        if self.0.len() < MIN_AUTHKEY_LEN {
            return Err(Error::AuthkeyTooShort { len: self.0.len() });
        }
        Ok(self)
    }

    /// 32 random bytes from the operating system.
    ///
    /// # Errors
    ///
    /// As [`random`].
    pub(crate) fn random() -> Result<Self> {
        Ok(AuthKey(random::<32>()?.to_vec()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey(<redacted, {} bytes>)", self.0.len())
    }
}

/// The challenge of the protocol before versions: version 0.
const UNVERSIONED_CHALLENGE: &[u8; 8] = b"#CHALNG#";
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
    getrandom::fill(&mut buf).map_err(|e| Error::start(format!("no randomness: {e}")))?;
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

/// A challenge's first 8 bytes for protocol `version`: `#CH`, four digits, `#`.
fn challenge_magic(version: u16) -> [u8; 8] {
    let mut magic = *b"#CH0000#";
    let mut v = version % 10_000;
    for digit in magic[3..7].iter_mut().rev() {
        *digit = b'0' + (v % 10) as u8;
        v /= 10;
    }
    magic
}

/// The protocol version a challenge's first 8 bytes name; `None` if they are no challenge.
fn challenge_version(magic: &[u8]) -> Option<u16> {
    if magic == UNVERSIONED_CHALLENGE {
        return Some(0);
    }
    let digits = magic.strip_prefix(b"#CH")?.strip_suffix(b"#")?;
    if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |v, d| v * 10 + u16::from(d - b'0')))
}

/// Sends a challenge and checks the answer.
fn challenge(stream: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    let nonce: [u8; NONCE] = random()?;
    let mut msg = Vec::with_capacity(8 + NONCE);
    msg.extend_from_slice(&challenge_magic(PROTOCOL_VERSION));
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
    match challenge_version(&msg[..8]) {
        Some(PROTOCOL_VERSION) => {}
        Some(theirs) => return Err(Error::ProtocolVersion { ours: PROTOCOL_VERSION, theirs }),
        None => return Err(Error::Authentication("the peer did not send a challenge".into())),
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
/// [`Error::Authentication`] when either side's digest is wrong; [`Error::ProtocolVersion`] when
/// the peer speaks another protocol version; [`Error::Connection`] when the stream fails or the
/// deadline (socket timeout) passes.
pub(crate) fn server_side(stream: &mut (impl Read + Write), key: &AuthKey) -> Result<()> {
    challenge(stream, key.as_bytes())?;
    answer(stream, key.as_bytes())
}

/// The client's side: answer the server's challenge, then challenge it.
///
/// # Errors
///
/// As [`server_side`].
pub(crate) fn client_side(stream: &mut (impl Read + Write), key: &AuthKey) -> Result<()> {
    answer(stream, key.as_bytes())?;
    challenge(stream, key.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::{challenge_magic, challenge_version, digest, AuthKey, PROTOCOL_VERSION};
    use crate::Error;

    fn key(bytes: &[u8]) -> AuthKey {
        AuthKey::new(bytes).unwrap()
    }

    #[test]
    fn the_same_key_passes_and_another_fails_on_both_sides() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || super::client_side(&mut b, &key(b"the key, 16 bytes")));
        super::server_side(&mut a, &key(b"the key, 16 bytes")).unwrap();
        t.join().unwrap().unwrap();

        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || super::client_side(&mut b, &key(b"another key, 16 bytes")));
        let refused = super::server_side(&mut a, &key(b"the key, 16 bytes"));
        assert!(matches!(refused, Err(crate::Error::Authentication(_))));
        assert!(t.join().unwrap().is_err());
    }

    /// A challenge names its sender's protocol version, and reads back as it; the unversioned
    /// challenge reads as 0; anything else is no challenge.
    #[test]
    fn challenges_name_their_version() {
        assert_eq!(&challenge_magic(1), b"#CH0001#");
        for v in [0, 1, 9, 42, 9999] {
            assert_eq!(challenge_version(&challenge_magic(v)), Some(v));
        }
        assert_eq!(challenge_version(b"#CHALNG#"), Some(0));
        for not in [&b"#CH00x1#"[..], b"#WELCOM#", b"CH0001##", b"#CH001#", b"#CH00001#"] {
            assert_eq!(challenge_version(not), None, "{not:?}");
        }
    }

    /// A peer of another protocol version is refused by name, on either side, before anything
    /// but the challenges was read; an unversioned peer is version 0.
    #[test]
    fn a_peer_of_another_protocol_version_is_refused_by_name() {
        let k = b"the key, 16 bytes";
        // A server of another version: the client refuses its challenge.
        for (magic, theirs) in [(*b"#CHALNG#", 0), (*b"#CH0009#", 9)] {
            let (mut server, mut client) = UnixStream::pair().unwrap();
            let mut challenge = magic.to_vec();
            challenge.extend_from_slice(&[3u8; 32]);
            server.write_all(&challenge).unwrap();
            match super::client_side(&mut client, &key(k)) {
                Err(Error::ProtocolVersion { ours, theirs: t }) => {
                    assert_eq!((ours, t), (PROTOCOL_VERSION, theirs));
                }
                other => panic!("a version {theirs} server: {other:?}"),
            }
            // Nothing was answered.
            drop(client);
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "the client answered a version {theirs} challenge");
        }
        // A client of another version (with the right key): the server refuses its challenge.
        let (mut server, mut client) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut challenge = [0u8; 40];
            client.read_exact(&mut challenge).unwrap();
            client.write_all(&digest(k, &challenge[8..]).unwrap()).unwrap();
            let mut verdict = [0u8; 8];
            client.read_exact(&mut verdict).unwrap();
            assert_eq!(&verdict, b"#WELCOM#");
            let mut ours = challenge_magic(PROTOCOL_VERSION + 1).to_vec();
            ours.extend_from_slice(&[5u8; 32]);
            client.write_all(&ours).unwrap();
        });
        match super::server_side(&mut server, &key(k)) {
            Err(Error::ProtocolVersion { ours, theirs }) => {
                assert_eq!((ours, theirs), (PROTOCOL_VERSION, PROTOCOL_VERSION + 1))
            }
            other => panic!("a newer client: {other:?}"),
        }
        t.join().unwrap();
    }

    #[test]
    fn a_key_shorter_than_16_bytes_is_refused_and_debug_never_shows_one() {
        for len in [0, 1, 8, 15] {
            let refused = AuthKey::new(&vec![b'k'; len]);
            assert!(matches!(refused, Err(crate::Error::AuthkeyTooShort { len: l }) if l == len));
            assert!(AuthKey::unchecked(vec![b'k'; len]).checked().is_err());
        }
        let k = key(b"0123456789abcdef-SECRET");
        assert_eq!(format!("{k:?}"), "AuthKey(<redacted, 23 bytes>)");
        assert_eq!(format!("{:?}", Some(k.clone())), "Some(AuthKey(<redacted, 23 bytes>))");
        assert_eq!(AuthKey::random().unwrap().as_bytes().len(), 32);
        // On the wire (inside a proxy sent to a child), as the bytes of a Vec<u8>.
        let bytes = proc_core::codec::to_vec(&k).unwrap();
        assert_eq!(bytes, proc_core::codec::to_vec(&k.as_bytes().to_vec()).unwrap());
        assert_eq!(proc_core::codec::from_bytes::<AuthKey>(&bytes).unwrap(), k);
    }
}
