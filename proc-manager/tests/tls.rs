//! A TCP manager over TLS (feature `tls`), on loopback: proxies work, in this process and in a child
//! (which reconnects over TLS); a client in the clear, one trusting another authority, one with a
//! wrong authkey, and one without a required client certificate are refused, and the server goes on
//! serving.
//!
//! The certificates in `tests/tls/` are test fixtures, valid for a century, made with OpenSSL as the
//! `tls` module's docs describe (EC P-256): an authority `ca.pem` (`CN=multiproc test CA`, its key
//! not kept), `server.pem`/`server.key` for `DNS:localhost,IP:127.0.0.1` (`serverAuth`),
//! `client.pem`/`client.key` for `DNS:worker-1` (`clientAuth`), both signed by it, and an unrelated
//! authority `other-ca.pem`. (Made once rather than at test time: a certificate generator would
//! bring a C build of `ring` into the macOS cross-check.)

#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use proc_core::Process;
use proc_manager::{Address, Dict, Error, Manager, TlsClient, TlsServer};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"a manager key of more than 16 bytes";

const CA: &[u8] = include_bytes!("tls/ca.pem");
const OTHER_CA: &[u8] = include_bytes!("tls/other-ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("tls/server.key");
const CLIENT_CERT: &[u8] = include_bytes!("tls/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("tls/client.key");

fn server() -> TlsServer {
    TlsServer::from_pem(SERVER_CERT, SERVER_KEY).unwrap()
}

fn tls_manager(server: TlsServer) -> (Manager, SocketAddr) {
    let owner = TlsClient::from_pem("localhost", CA).unwrap();
    let manager = Manager::builder()
        .authkey(KEY.to_vec())
        .tls(server, owner)
        .start_tcp("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let Address::Tls(addr, _) = manager.address().clone() else { panic!("not a TLS address") };
    (manager, addr)
}

fn fill(d: Dict<String, u32>) -> usize {
    d.insert("child".into(), 7).unwrap();
    d.len().unwrap()
}

#[test]
fn proxies_work_over_tls_here_and_in_a_child() {
    let _s = serial();
    let _w = Watchdog::new("tls_proxies", LIMIT);
    let (manager, _) = tls_manager(server());
    let d = manager.dict::<String, u32>().unwrap();
    d.insert("parent".into(), 1).unwrap();
    let p = Process::new(fill, (d.clone(),)).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    assert_eq!(d.get("child").unwrap(), Some(7));
    manager.shutdown().unwrap();
}

#[test]
fn clients_that_do_not_speak_tls_right_are_refused() {
    let _s = serial();
    let _w = Watchdog::new("tls_refused", LIMIT);
    let (manager, addr) = tls_manager(server());
    // In the clear.
    let err = Manager::connect(&Address::Tcp(addr), KEY).unwrap_err();
    assert!(matches!(err, Error::Connection(_) | Error::Authentication(_) | Error::Protocol(_)), "{err}");
    // Trusting another authority.
    let tls = TlsClient::from_pem("localhost", OTHER_CA).unwrap();
    let err = Manager::connect(&Address::Tls(addr, tls), KEY).unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err}");
    // Expecting another name.
    let tls = TlsClient::from_pem("elsewhere", CA).unwrap();
    assert!(matches!(Manager::connect(&Address::Tls(addr, tls), KEY), Err(Error::Connection(_))));
    // The right TLS, the wrong key: the authkey handshake runs inside.
    let tls = TlsClient::from_pem("localhost", CA).unwrap();
    let err = Manager::connect(&Address::Tls(addr, tls.clone()), b"another key of 16+ bytes!!").unwrap_err();
    assert!(matches!(err, Error::Authentication(_) | Error::Connection(_)), "{err}");
    // The server serves on, and a right client gets in.
    let client = Manager::connect(&Address::Tls(addr, tls), KEY).unwrap();
    assert!(client.number_of_objects().is_ok());
    drop(client);
    manager.shutdown().unwrap();
}

#[test]
fn a_server_requiring_client_certificates_refuses_clients_without_one() {
    let _s = serial();
    let _w = Watchdog::new("tls_mutual", LIMIT);
    let server = server().require_client_certs(CA).unwrap();
    let owner =
        TlsClient::from_pem("localhost", CA).unwrap().with_identity_pem(CLIENT_CERT, CLIENT_KEY).unwrap();
    let manager = Manager::builder()
        .authkey(KEY.to_vec())
        .tls(server, owner.clone())
        .start_tcp("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let Address::Tls(addr, _) = manager.address().clone() else { panic!("not a TLS address") };
    let bare = TlsClient::from_pem("localhost", CA).unwrap();
    let err = Manager::connect(&Address::Tls(addr, bare), KEY).unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err}");
    let client = Manager::connect(&Address::Tls(addr, owner), KEY).unwrap();
    let l = client.list::<u8>().unwrap();
    l.append(1).unwrap();
    assert_eq!(l.len().unwrap(), 1);
    drop((l, client));
    manager.shutdown().unwrap();
}

#[test]
fn a_unix_manager_refuses_tls_and_keys_stay_out_of_debug() {
    let server = server();
    let owner = TlsClient::from_pem("localhost", CA).unwrap();
    let shown = format!("{server:?} {owner:?}");
    assert!(shown.contains("<redacted>") && !shown.contains("PRIVATE"), "{shown}");
    let err = Manager::builder().tls(server, owner).start().unwrap_err();
    assert!(matches!(err, Error::Start { .. }), "{err}");
    assert!(TlsServer::from_pem(b"not pem", b"not pem").is_err());
    assert!(TlsClient::from_pem("localhost", b"").is_err());
}
