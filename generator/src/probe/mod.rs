//! `peergate probe`: one request to the gateway as cluster A's sidecar makes it, reported step
//! by step (address, TCP, TLS, the server's chain, the client certificate the server asked
//! for, the HTTP answer), with the most likely cause when something refused it.
//!
//! The stages run in order and each reads only what the earlier ones produced: [`kit`] reads
//! the inputs (PEM files, or a generated folder as the sidecar sees it) that make a
//! [`ProbeRequest`], [`run`] makes the request (through [`tls`] and [`http`]), and
//! [`diagnosis`] names the cause from the record.

pub mod diagnosis;
pub mod http;
pub mod kit;
pub mod target;
pub mod tls;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Serialize;

pub use peergate_filter::audit::Outcome;
pub use target::{Scheme, Target};

/// How long each network step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Bad input to a probe: the CLI exits 2 on these.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL does not parse.
    #[error("URL {url:?}: {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// `--connect` is not `HOST:PORT`.
    #[error("--connect {0:?}: expected HOST:PORT (as curl's --connect-to target)")]
    Connect(String),
    /// A PEM file holds nothing usable.
    #[error("{file}: {why}")]
    Pem {
        /// The file.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// A file cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// A generated folder lacks what `--from` needs.
    #[error("{file}: {why}")]
    Kit {
        /// The file or folder.
        file: String,
        /// What is missing.
        why: String,
    },
    /// The TLS client cannot be built from the inputs.
    #[error("TLS client: {0}")]
    Tls(String),
}

/// The client certificate a probe presents: the chain (leaf first) and its key.
#[derive(Debug)]
pub struct ClientIdentity {
    /// Leaf first, then any intermediates, DER.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key, PKCS#8, PKCS#1 or SEC1 DER.
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
    /// Where the chain was read from, for the report.
    pub source: String,
}

/// Everything one probe needs.
#[derive(Debug)]
pub struct ProbeRequest {
    /// The URL requested.
    pub target: Target,
    /// The TLS server name sent, and the name the server's certificate must hold.
    pub sni: String,
    /// The HTTP `Host` header.
    pub host: String,
    /// Dial this address instead of the URL's (curl's `--connect-to`).
    pub connect: Option<String>,
    /// The client certificate, when one is presented.
    pub client: Option<ClientIdentity>,
    /// The agreed root(s) the server's chain must verify to, and the client's should.
    pub roots: Vec<CertificateDer<'static>>,
    /// Where the roots were read from, for the report.
    pub roots_source: String,
}

/// One step of a probe.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `resolve`, `connect`, `tls_handshake`, `server_certificate`, `client_certificate`,
    /// `http`.
    pub step: &'static str,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What happened, for people.
    pub detail: String,
}

/// The whole probe: what `peergate probe --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// `ok` when the request got a non-error HTTP answer, else `refused`.
    pub verdict: Verdict,
    /// The URL probed.
    pub url: String,
    /// The address dialled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Each step in order.
    pub steps: Vec<Step>,
    /// The TLS session, when a handshake was attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<tls::TlsRecord>,
    /// The HTTP answer, when one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<http::HttpAnswer>,
    /// What most likely refused the request, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The request got an answer below 400.
    Ok,
    /// Something refused it.
    Refused,
}

/// What the network steps recorded, before diagnosis.
#[derive(Debug)]
pub struct Record {
    /// The addresses the name resolved to, or why it did not.
    pub resolved: Result<Vec<SocketAddr>, String>,
    /// The address connected to, or why no connection was made.
    pub connected: Option<Result<SocketAddr, String>>,
    /// The TLS session (https only).
    pub tls: Option<tls::TlsRecord>,
    /// The HTTP exchange, when the request was sent.
    pub http: Option<Result<http::HttpAnswer, http::ExchangeFailure>>,
    /// For a plain-HTTP probe that got no HTTP answer: whether the port speaks TLS.
    pub port_speaks_tls: Option<bool>,
}

/// Runs the probe: the network steps, then the diagnosis.
pub fn run(request: &ProbeRequest) -> Result<ProbeReport, ProbeError> {
    let client = match request.target.scheme {
        Scheme::Https => Some(tls::Client::new(request)?),
        Scheme::Http => None,
    };
    let record = exchange(request, client.as_ref());
    Ok(diagnosis::report(request, record))
}

/// The network steps: resolve, connect, TLS (for https), one HTTP request.
fn exchange(request: &ProbeRequest, client: Option<&tls::Client>) -> Record {
    let mut record = Record {
        resolved: resolve(request),
        connected: None,
        tls: None,
        http: None,
        port_speaks_tls: None,
    };
    let Ok(addresses) = &record.resolved else {
        return record;
    };
    let stream = match connect(addresses) {
        Ok((stream, address)) => {
            record.connected = Some(Ok(address));
            stream
        }
        Err(why) => {
            record.connected = Some(Err(why));
            return record;
        }
    };
    let head = http::request_head(&request.target.path, &request.host);
    match client {
        Some(client) => {
            let (tls, answer) = client.exchange(stream, &head);
            record.tls = Some(tls);
            record.http = answer;
        }
        None => {
            let answer = http::exchange(stream, &head);
            if answer.is_err() {
                record.port_speaks_tls = Some(tls::speaks_tls(addresses, &request.sni));
            }
            record.http = Some(answer);
        }
    }
    record
}

/// The addresses to dial: `--connect`'s, else the URL's host and port.
fn resolve(request: &ProbeRequest) -> Result<Vec<SocketAddr>, String> {
    let name = match &request.connect {
        Some(connect) => connect.clone(),
        None => request.target.authority_for_dialling(),
    };
    match name.to_socket_addrs() {
        Ok(addresses) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                Err(format!("{name} resolved to no address"))
            } else {
                Ok(addresses)
            }
        }
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// The first address that accepts a TCP connection.
fn connect(addresses: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), String> {
    let mut errors = Vec::new();
    for address in addresses {
        match TcpStream::connect_timeout(address, STEP_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(STEP_TIMEOUT));
                let _ = stream.set_write_timeout(Some(STEP_TIMEOUT));
                return Ok((stream, *address));
            }
            Err(e) => errors.push(format!("{address}: {e}")),
        }
    }
    Err(errors.join("; "))
}
