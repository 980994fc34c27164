//! TLS for TCP managers (feature `tls`): rustls with its `ring` provider under the authkey
//! handshake, which still runs inside the encrypted stream.
//!
//! - [`TlsServer`]: the server's certificate chain and key, and, when asked, the roots that
//!   client certificates must chain to ([`TlsServer::require_client_certs`]).
//! - [`TlsClient`]: the roots a client trusts, the name the server's certificate must carry, and
//!   optionally the client's own certificate and key. It is part of an [`Address::Tls`], so a proxy
//!   passed to a child reconnects the same way.
//!
//! Both keep certificates and keys as DER bytes (they travel to the server process and inside
//! addresses); neither prints a key in its `Debug` output.
//!
//! # Making a certificate authority and a server certificate for a cluster
//!
//! With OpenSSL, a CA (kept offline) signs one certificate per manager host, named as clients
//! reach it (a DNS name, or an IP address in the `subjectAltName`):
//!
//! ```text
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
//!     -subj "/CN=multiproc cluster CA" -keyout ca.key -out ca.pem
//! openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
//!     -subj "/CN=head-node" -keyout server.key -out server.csr
//! printf "subjectAltName=DNS:head-node,IP:10.0.0.1\n" > san.ext
//! openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
//!     -extfile san.ext -out server.pem
//! ```
//!
//! The manager uses `server.pem` and `server.key` ([`TlsServer::from_pem`]); clients trust
//! `ca.pem` and name the host as in its certificate ([`TlsClient::from_pem`]). Client certificates
//! are made the same way (`CN`/`subjectAltName` as you like) and given with
//! [`TlsClient::with_identity_pem`].

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A server's TLS identity: its certificate chain (leaf first) and private key, in DER, and the
/// roots client certificates must chain to, if it requires them.
///
/// # Examples
///
/// ```no_run
/// use proc_manager::{Manager, TlsClient, TlsServer};
///
/// let server = TlsServer::from_pem(&std::fs::read("server.pem")?, &std::fs::read("server.key")?)?;
/// let owner = TlsClient::from_pem("head-node", &std::fs::read("ca.pem")?)?;
/// let manager = Manager::builder().tls(server, owner).start_tcp("10.0.0.1:50000".parse()?)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct TlsServer {
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
    client_roots: Option<Vec<Vec<u8>>>,
}

impl TlsServer {
    /// An identity from DER: the chain (leaf first) and a PKCS#8, PKCS#1 or SEC1 key.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] for an empty chain, or a key rustls cannot use.
    pub fn from_der(chain: Vec<Vec<u8>>, key: Vec<u8>) -> Result<Self> {
        let server = TlsServer { chain, key, client_roots: None };
        server.config()?;
        Ok(server)
    }

    /// An identity from PEM: every certificate in `chain_pem` (leaf first) and the first private
    /// key in `key_pem`.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] for PEM without a certificate or a key, or a key rustls cannot use.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        Self::from_der(certs_pem(chain_pem)?, key_pem_der(key_pem)?)
    }

    /// Requires every client to show a certificate chaining to one of `roots_pem` (mutual TLS),
    /// on top of the authkey.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] for PEM without a certificate, or roots rustls cannot use.
    pub fn require_client_certs(mut self, roots_pem: &[u8]) -> Result<Self> {
        self.client_roots = Some(certs_pem(roots_pem)?);
        self.config()?;
        Ok(self)
    }

    /// The rustls configuration.
    pub(crate) fn config(&self) -> Result<Arc<ServerConfig>> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS protocol versions", e))?;
        let builder = match &self.client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(store(roots)?),
                    provider,
                )
                .build()
                .map_err(|e| tls_error("the client roots", e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = self.chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
        let key = PrivateKeyDer::try_from(self.key.clone())
            .map_err(|e| Error::start(format!("the TLS key: {e}")))?;
        let config =
            builder.with_single_cert(chain, key).map_err(|e| tls_error("the server certificate", e))?;
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .field("client_certs_required", &self.client_roots.is_some())
            .finish()
    }
}

/// What a client trusts and shows: the roots the server's certificate must chain to, the name it
/// must carry, and optionally a certificate and key of the client's own.
///
/// # Examples
///
/// ```no_run
/// use proc_manager::{Address, Manager, TlsClient};
///
/// let tls = TlsClient::from_pem("head-node", &std::fs::read("ca.pem")?)?;
/// let manager = Manager::connect(&Address::Tls("10.0.0.1:50000".parse()?, tls), b"a key of at least 16 bytes")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlsClient {
    server_name: String,
    roots: Vec<Vec<u8>>,
    identity: Option<(Vec<Vec<u8>>, Vec<u8>)>,
}

impl TlsClient {
    /// Trusts `roots` (DER) for a server whose certificate names `server_name` (a DNS name or an
    /// IP address).
    ///
    /// # Errors
    ///
    /// [`Error::Start`] for an invalid name, no roots, or roots rustls cannot use.
    pub fn from_der(server_name: &str, roots: Vec<Vec<u8>>) -> Result<Self> {
        let client = TlsClient { server_name: server_name.to_owned(), roots, identity: None };
        client.config()?;
        Ok(client)
    }

    /// As [`from_der`](Self::from_der), with every certificate in `roots_pem`.
    ///
    /// # Errors
    ///
    /// As [`from_der`](Self::from_der); also for PEM without a certificate.
    pub fn from_pem(server_name: &str, roots_pem: &[u8]) -> Result<Self> {
        Self::from_der(server_name, certs_pem(roots_pem)?)
    }

    /// Shows this certificate chain (leaf first) and key to servers that require client
    /// certificates.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] for PEM without a certificate or a key, or a key rustls cannot use.
    pub fn with_identity_pem(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        self.identity = Some((certs_pem(chain_pem)?, key_pem_der(key_pem)?));
        self.config()?;
        Ok(self)
    }

    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The rustls configuration and the server's name.
    pub(crate) fn config(&self) -> Result<(Arc<ClientConfig>, ServerName<'static>)> {
        let name = ServerName::try_from(self.server_name.clone())
            .map_err(|e| Error::start(format!("the TLS server name {:?}: {e}", self.server_name)))?;
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS protocol versions", e))?
            .with_root_certificates(store(&self.roots)?);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
                let key = PrivateKeyDer::try_from(key.clone())
                    .map_err(|e| Error::start(format!("the TLS key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error("the client certificate", e))?
            }
        };
        Ok((Arc::new(config), name))
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// rustls' `ring` provider: a small build (no C toolchain beyond a compiler for ring's assembly,
/// unlike `aws-lc-rs`, which also needs cmake), at the price of no post-quantum key exchange, for
/// which rustls deprecates it.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root store of `roots` (DER).
fn store(roots: &[Vec<u8>]) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(CertificateDer::from(root.clone())).map_err(|e| tls_error("a root certificate", e))?;
    }
    if store.is_empty() {
        return Err(Error::start("no TLS root certificate"));
    }
    Ok(store)
}

/// Every certificate in `pem`, as DER.
fn certs_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::start(format!("PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::start("no certificate in the PEM"));
    }
    Ok(certs)
}

/// The first private key in `pem`, as DER.
fn key_pem_der(pem: &[u8]) -> Result<Vec<u8>> {
    let key =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| Error::start(format!("a PEM private key: {e}")))?;
    Ok(key.secret_der().to_vec())
}

fn tls_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::start_in(format_args!("TLS: {what}"), e)
}
