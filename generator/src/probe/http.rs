//! One HTTP/1.1 request and its answer, over TCP or TLS.

use std::io::{ErrorKind, Read, Write};

use serde::Serialize;

/// Bytes of an answer's head (status line and headers) read at most.
const MAX_HEAD: usize = 64 * 1024;
/// Bytes of an answer's body kept for the report.
const MAX_BODY: usize = 1024;

/// The request head: `GET path` with `Host`, closing the connection after the answer.
pub fn request_head(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: peergate-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// An HTTP answer.
#[derive(Debug, Clone, Serialize)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// Every header, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The start of the body (at most 1 KiB, lossy UTF-8).
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no HTTP answer came.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExchangeFailure {
    /// The server closed (or reset) the connection without a byte of answer.
    Closed,
    /// The connection failed (reset, timeout, a TLS error): `alert` when the server sent one.
    Broken {
        /// The error.
        error: String,
        /// The TLS alert received, by its RFC 8446 name.
        #[serde(skip_serializing_if = "Option::is_none")]
        alert: Option<String>,
    },
    /// Bytes came that are not an HTTP answer.
    NotHttp {
        /// The first bytes, hex.
        first_bytes: String,
    },
}

impl ExchangeFailure {
    /// From an I/O error (on a TLS stream, the rustls error inside it).
    pub fn from_io(error: &std::io::Error) -> Self {
        // A reset is how Envoy often ends a connection it will not serve: the same as a close.
        let closed = matches!(
            error.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        );
        if closed && error.get_ref().is_none() {
            return ExchangeFailure::Closed;
        }
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        ExchangeFailure::Broken {
            error: rustls_error.map_or_else(|| error.to_string(), ToString::to_string),
            alert: rustls_error.and_then(alert_name),
        }
    }
}

/// The RFC 8446 name of a received alert (`unknown_ca`).
pub fn alert_name(error: &rustls::Error) -> Option<String> {
    match error {
        rustls::Error::AlertReceived(alert) => Some(snake_case(&format!("{alert:?}"))),
        _ => None,
    }
}

/// `UnknownCA` → `unknown_ca`, `CertificateRequired` → `certificate_required`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let prev_lower = i > 0 && chars.get(i - 1).is_some_and(|p| p.is_ascii_lowercase());
        if c.is_ascii_uppercase() && i > 0 && (prev_lower || next_lower) {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Sends `head` and reads the answer.
pub fn exchange<S: Read + Write>(
    mut stream: S,
    head: &[u8],
) -> Result<HttpAnswer, ExchangeFailure> {
    if let Err(e) = stream.write_all(head).and_then(|()| stream.flush()) {
        return Err(ExchangeFailure::from_io(&e));
    }
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find_head_end(&bytes) {
            break end;
        }
        if bytes.len() > MAX_HEAD {
            return Err(not_http(&bytes));
        }
        match stream.read(&mut buffer) {
            Ok(0) if bytes.is_empty() => return Err(ExchangeFailure::Closed),
            Ok(0) => return Err(not_http(&bytes)),
            Ok(n) => bytes.extend_from_slice(buffer.get(..n).unwrap_or_default()),
            Err(e) if bytes.is_empty() => return Err(ExchangeFailure::from_io(&e)),
            Err(_) => return Err(not_http(&bytes)),
        }
        if !bytes.starts_with(b"HTTP/") && bytes.len() >= 5 {
            return Err(not_http(&bytes));
        }
    };
    let mut answer =
        parse_head(bytes.get(..head_end).unwrap_or_default()).ok_or_else(|| not_http(&bytes))?;
    let mut body = bytes.get(head_end..).unwrap_or_default().to_vec();
    while body.len() < MAX_BODY {
        match stream.read(&mut buffer) {
            Ok(n) if n > 0 => body.extend_from_slice(buffer.get(..n).unwrap_or_default()),
            _ => break,
        }
    }
    body.truncate(MAX_BODY);
    answer.body = String::from_utf8_lossy(&body).into_owned();
    Ok(answer)
}

fn not_http(bytes: &[u8]) -> ExchangeFailure {
    ExchangeFailure::NotHttp {
        first_bytes: bytes.iter().take(16).map(|b| format!("{b:02x}")).collect(),
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The status line and headers.
fn parse_head(head: &[u8]) -> Option<HttpAnswer> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse::<u16>().ok()?;
    let headers = lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    Some(HttpAnswer {
        status,
        headers,
        body: String::new(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// A stream that answers `reply` to whatever is written.
    struct Canned(std::io::Cursor<Vec<u8>>);
    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn answer(reply: &[u8]) -> Result<HttpAnswer, ExchangeFailure> {
        exchange(
            Canned(std::io::Cursor::new(reply.to_vec())),
            b"GET / HTTP/1.1\r\n\r\n",
        )
    }

    #[test]
    fn answers_parse_and_other_protocols_are_named() {
        let a = answer(b"HTTP/1.1 403 Forbidden\r\nX-Peergate-Reason: san_not_allowed\r\ncontent-length: 15\r\n\r\nsan_not_allowed").unwrap();
        assert_eq!(a.status, 403);
        assert_eq!(a.header("x-peergate-reason"), Some("san_not_allowed"));
        assert_eq!(a.body, "san_not_allowed");
        assert!(matches!(answer(b""), Err(ExchangeFailure::Closed)));
        match answer(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]) {
            Err(ExchangeFailure::NotHttp { first_bytes }) => {
                assert_eq!(first_bytes, "15030100020246")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(b"HTTP/1.1 200 OK\r\n"),
            Err(ExchangeFailure::NotHttp { .. })
        ));
    }

    #[test]
    fn alert_names_are_rfc_8446s() {
        for (alert, name) in [
            (rustls::AlertDescription::UnknownCA, "unknown_ca"),
            (
                rustls::AlertDescription::CertificateRequired,
                "certificate_required",
            ),
            (rustls::AlertDescription::BadCertificate, "bad_certificate"),
            (
                rustls::AlertDescription::CertificateExpired,
                "certificate_expired",
            ),
            (
                rustls::AlertDescription::HandshakeFailure,
                "handshake_failure",
            ),
        ] {
            assert_eq!(
                alert_name(&rustls::Error::AlertReceived(alert)).as_deref(),
                Some(name)
            );
        }
    }
}
