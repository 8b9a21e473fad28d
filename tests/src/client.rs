//! An HTTPS client with a client certificate (rustls), for talking to the gateway Envoy.

use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::{read_response, write_get, Response};

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

    /// Opens a TLS connection to `addr`, with `sni` as the server name.
    pub fn connect(&self, addr: SocketAddr, sni: &str) -> std::io::Result<Connection> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        // Small writes (a handshake flight, a request) must not wait for delayed ACKs.
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
        let conn =
            ClientConnection::new(Arc::clone(&self.config), name).map_err(std::io::Error::other)?;
        Ok(Connection {
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
        })
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
