//! The TLS side of a probe: a rustls client that records what the server showed (its chain,
//! whether it asked for a client certificate and from which CAs) instead of stopping at the
//! first surprise, so the report can say what was wrong.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::Serialize;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use super::http::{self, ExchangeFailure, HttpAnswer};
use super::{ProbeError, ProbeRequest};

/// A certificate the server sent, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChainCertificate {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Every SAN (`DNS:…`, `URI:…`).
    pub sans: Vec<String>,
    /// notAfter, RFC 3339.
    pub not_after: String,
}

/// What the TLS handshake showed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsRecord {
    /// The server name sent (SNI) and checked in the server's certificate.
    pub sni: String,
    /// Why the handshake failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<ExchangeFailure>,
    /// `TLSv1_3`, `TLSv1_2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The cipher suite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The server's chain as sent, leaf first.
    pub server_chain: Vec<ChainCertificate>,
    /// Whether that chain verifies to the agreed root for the server name; absent when the
    /// server sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_verified: Option<bool>,
    /// Why it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_verification_error: Option<String>,
    /// Whether the server asked for a client certificate.
    pub client_certificate_requested: bool,
    /// The CA names the server listed in its request (may be empty: the list is optional).
    pub acceptable_ca_names: Vec<String>,
    /// The agreed root's subject is among those names.
    pub agreed_root_listed: bool,
    /// The subject of the client certificate presented, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Whether the client certificate chains to the agreed root (checked here, with webpki,
    /// as a client-auth certificate); absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_chains_to_agreed_root: Option<bool>,
    /// Why it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_chain_error: Option<String>,
}

/// What the verifier and the certificate resolver saw during a handshake.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    server_verification: Option<Result<(), String>>,
    requested: bool,
    ca_names: Vec<Vec<u8>>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Verifies the server like a sidecar would, but records the outcome and lets the handshake
/// go on, so the rest of it (the certificate request) is seen too. Nothing is sent over a
/// connection whose server did not verify.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    schemes: Vec<SignatureScheme>,
    provider: Arc<CryptoProvider>,
    seen: Shared,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.as_ref().map(|inner| {
            inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let mut seen = lock(&self.seen);
        seen.chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        seen.server_verification = result;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// Presents the client certificate (when there is one) and records the server's request.
#[derive(Debug)]
struct RecordingResolver {
    key: Option<Arc<CertifiedKey>>,
    seen: Shared,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let mut seen = lock(&self.seen);
        seen.requested = true;
        seen.ca_names = root_hint_subjects.iter().map(|n| n.to_vec()).collect();
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// A probe's TLS client.
pub struct Client {
    config: Arc<ClientConfig>,
    seen: Shared,
    sni: String,
    agreed_root_subjects: Vec<Vec<u8>>,
    client_subject: Option<String>,
    client_chain: Result<(), String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Client {
    /// The client for `request`: its roots, its client certificate, its server name.
    pub fn new(request: &ProbeRequest) -> Result<Self, ProbeError> {
        let provider = provider();
        let roots = root_store(&request.roots)?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
                .build()
                .map_err(|e| ProbeError::Tls(e.to_string()))?;
        let key = request
            .client
            .as_ref()
            .map(|c| {
                CertifiedKey::from_der(c.chain.clone(), c.key.clone_key(), &provider)
                    .map(Arc::new)
                    .map_err(|e| ProbeError::Pem {
                        file: c.source.clone(),
                        why: format!("the key does not fit the certificate: {e}"),
                    })
            })
            .transpose()?;
        let client_chain = match &request.client {
            Some(client) => client_chains_to(&roots, &client.chain, &provider),
            None => Ok(()),
        };
        let seen = Shared::default();
        let config = config(&provider, Some(server_verifier), key, &seen)?;
        Ok(Client {
            config,
            seen,
            sni: request.sni.clone(),
            agreed_root_subjects: request
                .roots
                .iter()
                .filter_map(|r| subject_der(r))
                .collect(),
            client_subject: request
                .client
                .as_ref()
                .and_then(|c| c.chain.first())
                .and_then(|c| subject_text(c)),
            client_chain,
        })
    }

    /// The handshake, then (when the server verified) the request.
    pub fn exchange(
        &self,
        stream: TcpStream,
        head: &[u8],
    ) -> (TlsRecord, Option<Result<HttpAnswer, ExchangeFailure>>) {
        let mut record = TlsRecord {
            sni: self.sni.clone(),
            client_certificate: self.client_subject.clone(),
            client_chains_to_agreed_root: self
                .client_subject
                .as_ref()
                .map(|_| self.client_chain.is_ok()),
            client_chain_error: self.client_chain.clone().err(),
            ..TlsRecord::default()
        };
        let (connection, stream) = match handshake(&self.config, &self.sni, stream) {
            Ok(done) => done,
            Err(failure) => {
                record.failure = Some(failure);
                self.fill(&mut record);
                return (record, None);
            }
        };
        record.version = connection.protocol_version().map(|v| format!("{v:?}"));
        record.cipher = connection
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()));
        self.fill(&mut record);
        if record.server_verified != Some(true) {
            return (record, None);
        }
        // The certificate request came in the server's first flight (TLS 1.3 included), so
        // the record is complete; a refusal of the client's certificate arrives in the answer.
        let answer = http::exchange(rustls::StreamOwned::new(connection, stream), head);
        (record, Some(answer))
    }

    /// Copies what the verifier and resolver saw into `record`.
    fn fill(&self, record: &mut TlsRecord) {
        let seen = lock(&self.seen);
        record.server_chain = seen.chain.iter().filter_map(chain_certificate).collect();
        record.server_verified = seen.server_verification.as_ref().map(Result::is_ok);
        record.server_verification_error = seen.server_verification.clone().and_then(Result::err);
        record.client_certificate_requested = seen.requested;
        record.acceptable_ca_names = seen
            .ca_names
            .iter()
            .map(|n| dn_text(n).unwrap_or_else(|| format!("(unparsable name, {} bytes)", n.len())))
            .collect();
        record.agreed_root_listed = seen
            .ca_names
            .iter()
            .any(|n| self.agreed_root_subjects.iter().any(|r| r == n));
    }
}

/// Whether anything at `addresses` answers a TLS ClientHello (for a plain-HTTP probe that got
/// no HTTP answer).
pub fn speaks_tls(addresses: &[SocketAddr], sni: &str) -> bool {
    let provider = provider();
    let seen = Shared::default();
    let Ok(config) = config(&provider, None, None, &seen) else {
        return false;
    };
    let Some(stream) = addresses
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, super::STEP_TIMEOUT).ok())
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(super::STEP_TIMEOUT));
    let outcome = handshake(&config, sni, stream);
    let seen = lock(&seen);
    outcome.is_ok()
        || !seen.chain.is_empty()
        || matches!(outcome, Err(ExchangeFailure::Broken { alert: Some(_), .. }))
}

fn config(
    provider: &Arc<CryptoProvider>,
    server_verifier: Option<Arc<WebPkiServerVerifier>>,
    key: Option<Arc<CertifiedKey>>,
    seen: &Shared,
) -> Result<Arc<ClientConfig>, ProbeError> {
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let verifier = RecordingVerifier {
        inner: server_verifier,
        schemes,
        provider: provider.clone(),
        seen: seen.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(RecordingResolver {
            key,
            seen: seen.clone(),
        }));
    Ok(Arc::new(config))
}

/// Drives the handshake to its end.
fn handshake(
    config: &Arc<ClientConfig>,
    sni: &str,
    mut stream: TcpStream,
) -> Result<(ClientConnection, TcpStream), ExchangeFailure> {
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| ExchangeFailure::Broken {
        error: format!("server name {sni:?}: {e}"),
        alert: None,
    })?;
    let mut connection =
        ClientConnection::new(config.clone(), name).map_err(|e| ExchangeFailure::Broken {
            error: e.to_string(),
            alert: None,
        })?;
    while connection.is_handshaking() {
        if let Err(e) = connection.complete_io(&mut stream) {
            return Err(ExchangeFailure::from_io(&e));
        }
    }
    Ok((connection, stream))
}

fn root_store(roots: &[CertificateDer<'static>]) -> Result<RootCertStore, ProbeError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| ProbeError::Tls(format!("the agreed root: {e}")))?;
    }
    Ok(store)
}

/// Whether `chain` (leaf first) verifies as a TLS client certificate under `roots`.
fn client_chains_to(
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<(), String> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
    let (leaf, intermediates) = chain.split_first().ok_or("no certificate")?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn chain_certificate(der: &CertificateDer<'_>) -> Option<ChainCertificate> {
    let info = peergate_filter::inspect::inspect(der, std::time::SystemTime::now()).ok()?;
    Some(ChainCertificate {
        subject: info.subject,
        issuer: info.issuer,
        sans: info.sans.iter().map(ToString::to_string).collect(),
        not_after: info.not_after,
    })
}

fn subject_der(der: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.subject().as_raw().to_vec())
}

fn subject_text(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.subject().to_string())
}

fn dn_text(der: &[u8]) -> Option<String> {
    let (_, name) = X509Name::from_der(der).ok()?;
    Some(name.to_string())
}
