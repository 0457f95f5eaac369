//! The serving certificate: loaded from PEM files, checked (the key must match
//! the certificate), swapped atomically. Every new handshake picks the current
//! pair, so a rotation never cuts existing connections. With `--client-ca-file`,
//! the CA a client certificate must chain to, swapped the same way.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme, version,
};

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

/// A client CA file that cannot serve as one.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientCaError {
    #[error("not PEM certificates: {0}")]
    Pem(String),
    #[error("no certificate found")]
    Empty,
    #[error("not a usable CA certificate: {0}")]
    Unusable(String),
}

/// Parses a PEM bundle of CA certificates into a verifier that requires a
/// client certificate chaining to one of them (chain, validity, key usage).
pub(super) fn load_client_ca(pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, ClientCaError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientCaError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(ClientCaError::Empty);
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| ClientCaError::Unusable(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| ClientCaError::Unusable(e.to_string()))
}

/// The client CA in force, swapped on reload; every handshake asks the
/// current one, as it picks the current serving certificate.
#[derive(Debug)]
pub(super) struct ClientCaStore {
    current: arc_swap::ArcSwap<Arc<dyn ClientCertVerifier>>,
}

impl ClientCaStore {
    pub(super) fn new(first: Arc<dyn ClientCertVerifier>) -> ClientCaStore {
        ClientCaStore {
            current: arc_swap::ArcSwap::from_pointee(first),
        }
    }

    pub(super) fn set(&self, verifier: Arc<dyn ClientCertVerifier>) {
        self.current.store(Arc::new(verifier));
    }

    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.current.load())
    }
}

/// Delegates to the current client CA. A client certificate is mandatory:
/// a client without one fails the handshake.
#[derive(Debug)]
struct CurrentClientCa(Arc<ClientCaStore>);

impl ClientCertVerifier for CurrentClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from a verifier that may be swapped under
        // us; they are optional, and the API server has one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().supported_verify_schemes()
    }
}

/// Why a handshake failed over the client's certificate, for the metric
/// label; `None` when it failed for another reason.
pub(super) fn client_auth_failure(e: &std::io::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error};
    let e = e.get_ref()?.downcast_ref::<Error>()?;
    Some(match e {
        Error::NoCertificatesPresented => "no-certificate",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown-issuer",
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "expired",
        Error::InvalidCertificate(_) => "invalid-certificate",
        _ => return None,
    })
}

/// TLS 1.2 and 1.3 with the ring provider. ALPN offers `h2` for clients that
/// want it and `http/1.1`, which is all the API server's webhook client speaks.
/// With `client_ca`, a client must present a certificate signed by it.
pub(super) fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<Arc<ClientCaStore>>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(CurrentClientCa(ca))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Installs ring as the process-wide provider; harmless when already done.
pub fn install_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}
