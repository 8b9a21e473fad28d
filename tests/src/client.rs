//! An HTTPS client with a client certificate (rustls), for talking to the gateway Envoy.

use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::{read_response, write_get, Response};

/// How long a read may wait before the test calls it a hang.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request got: an HTTP response, or its connection ended (refused handshake, closed,
/// reset) without one. A read that timed out is neither: [`Outcome::of`] fails the test, since
/// a hung connection must never pass for a refusal.
#[derive(Debug)]
pub enum Outcome {
    /// An HTTP response.
    Response(Response),
    /// The connection ended without a response; the error says how.
    Closed(std::io::Error),
}

impl Outcome {
    /// Classifies a request's result, `started` when it was sent. Panics on a timeout or when
    /// the end came so late that it was the timeout in disguise.
    pub fn of(result: std::io::Result<Response>, started: Instant, what: &str) -> Self {
        match result {
            Ok(response) => Outcome::Response(response),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "{what}: no answer and no close after {:?} ({e}): a hang is not a refusal",
                    started.elapsed()
                )
            }
            Err(e) => {
                assert!(
                    started.elapsed() < READ_TIMEOUT,
                    "{what}: the connection ended only after {:?} ({e})",
                    started.elapsed()
                );
                Outcome::Closed(e)
            }
        }
    }

    /// The response, failing the test if the connection ended without one.
    pub fn response(self, what: &str) -> Response {
        match self {
            Outcome::Response(r) => r,
            Outcome::Closed(e) => panic!("{what}: the connection ended without a response ({e})"),
        }
    }

    /// Checks that the filter refused the request: a local reply with `status`, the reason in
    /// `x-peergate-reason` and the body.
    pub fn assert_denied(self, status: u16, reason: &str, what: &str) {
        let response = self.response(what);
        assert_eq!(
            (
                response.status,
                response.header("x-peergate-reason"),
                response.text().trim()
            ),
            (status, Some(reason), reason),
            "{what}: want the filter's {status} {reason}"
        );
    }

    /// Checks that the connection ended without any response.
    pub fn assert_closed(self, what: &str) {
        if let Outcome::Response(r) = self {
            panic!(
                "{what}: the connection should have ended, got {} {:?}",
                r.status,
                r.text()
            );
        }
    }
}

/// A TLS client identity and the CA it trusts for the server.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Trusts `server_ca_pem`; presents `identity` (cert PEM, key PEM) when given.
    pub fn new(server_ca_pem: &str, identity: Option<(&str, &str)>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client cert PEM");
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client identity")
            }
            None => builder.with_no_client_auth(),
        };
        Self {
            config: Arc::new(config),
        }
    }

    /// The same client, resuming no TLS session: every connection is a full handshake (the
    /// benchmark's cold runs, where a resumed handshake's share would depend on how fast a
    /// variant is).
    pub fn without_resumption(&self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            config: Arc::new(config),
        }
    }

    /// Opens a TLS connection to `addr`, with `sni` as the server name.
    pub fn connect(&self, addr: SocketAddr, sni: &str) -> std::io::Result<Connection> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        // Small writes (a handshake flight, a request) must not wait for delayed ACKs.
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
        let conn =
            ClientConnection::new(Arc::clone(&self.config), name).map_err(std::io::Error::other)?;
        Ok(Connection {
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
        })
    }

    /// One GET on a fresh connection, its outcome classified ([`Outcome::of`]).
    pub fn try_get(
        &self,
        addr: SocketAddr,
        sni: &str,
        host: &str,
        path: &str,
        what: &str,
    ) -> Outcome {
        let started = Instant::now();
        Outcome::of(self.get(addr, sni, host, path, &[]), started, what)
    }

    /// One GET on a fresh connection.
    pub fn get(
        &self,
        addr: SocketAddr,
        sni: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        self.connect(addr, sni)?.get(host, path, headers)
    }
}

/// A kept-alive TLS connection.
pub struct Connection {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl Connection {
    /// A GET on this connection, its outcome classified ([`Outcome::of`]).
    pub fn try_get(&mut self, host: &str, path: &str, what: &str) -> Outcome {
        let started = Instant::now();
        Outcome::of(self.get(host, path, &[]), started, what)
    }

    /// Sends a GET and reads its response; the connection stays open.
    pub fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        write_get(self.stream.get_mut(), host, path, headers)?;
        read_response(&mut self.stream)
    }

    /// Sends `request` exactly as given (for requests no well-behaved client would write)
    /// and reads the response.
    pub fn send_raw(&mut self, request: &[u8]) -> std::io::Result<Response> {
        use std::io::Write;
        let stream = self.stream.get_mut();
        stream.write_all(request)?;
        stream.flush()?;
        read_response(&mut self.stream)
    }
}
