//! The serving certificate: loaded from PEM files, checked (the key must match
//! the certificate), swapped atomically. Every new handshake picks the current
//! pair, so a rotation never cuts existing connections.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

#[derive(Debug, thiserror::Error)]
pub(super) enum CertError {
    #[error("certificate file: {0}")]
    Cert(String),
    #[error("key file: {0}")]
    Key(String),
    #[error("certificate and key do not belong together: {0}")]
    Mismatch(String),
}

/// A certificate pair ready to serve, with its expiry.
pub(super) struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// notAfter as a Unix time.
    pub not_after: i64,
}

/// Parses and checks a PEM certificate chain and private key.
pub(super) fn load_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Cert(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::Cert("no certificate found".into()));
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| CertError::Cert(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| CertError::Mismatch(e.to_string()))?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
    })
}

/// The current certificate, shared by the resolver and the reloader.
#[derive(Debug, Default)]
pub struct CertStore {
    current: ArcSwapOption<CertifiedKey>,
}

impl CertStore {
    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(Some(key));
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current.load_full()
    }
}

/// TLS 1.2 and 1.3 with the ring provider. ALPN offers `h2` for clients that
/// want it and `http/1.1`, which is all the API server's webhook client speaks.
pub(super) fn server_config(store: Arc<CertStore>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Installs ring as the process-wide provider; harmless when already done.
pub fn install_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}
