//! The verified identity handed to the backend in plain headers (`forwardIdentity`): what
//! an allowed peer passed as, its SANs, subject, issuer and fingerprint, under one prefix
//! (default `x-peergate-`). Every header with that prefix the client sent is removed first,
//! on every request the filter sees, so a backend can trust what it finds there.

use crate::peer::PeerSummary;
use crate::policy::{Decision, PeerIdentity};

pub use crate::config::DEFAULT_HEADER_PREFIX as DEFAULT_PREFIX;

/// Whether a request header is one of ours (ASCII case-insensitive: HTTP/1.1 names are).
pub fn is_ours(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .as_bytes()
            .iter()
            .zip(prefix.as_bytes())
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// The headers for an allowed decision: `peer`, `sans`, `subject`, `issuer`, `fingerprint`
/// (each after the prefix). Values are visible ASCII: other bytes, and `%`, are
/// percent-encoded, so two different names never give the same header.
pub fn identity_headers(decision: &Decision, prefix: &str) -> Vec<(String, String)> {
    let Some(peer) = decision.peer() else {
        return Vec::new();
    };
    let mut headers = Vec::with_capacity(5);
    if let Some(identity) = decision.identity {
        headers.push((format!("{prefix}peer"), encode(&passed_as(peer, identity))));
    }
    let sans: Vec<String> = peer
        .sans
        .iter()
        .map(|san| sf_string(&encode(&san.to_string())))
        .collect();
    headers.push((format!("{prefix}sans"), sans.join(", ")));
    headers.push((format!("{prefix}subject"), encode(&peer.subject_rfc4514)));
    headers.push((format!("{prefix}issuer"), encode(&peer.issuer)));
    headers.push((format!("{prefix}fingerprint"), peer.fingerprint.clone()));
    headers
}

/// The header an audit-mode denial carries: `deny <reason>`.
pub fn audit_header(decision: &Decision, prefix: &str) -> Option<(String, String)> {
    (!decision.is_allowed()).then(|| {
        (
            format!("{prefix}audit"),
            format!("deny {}", decision.reason.code()),
        )
    })
}

/// The SAN's value (without its `URI:` kind), or the subject.
fn passed_as(peer: &PeerSummary, identity: PeerIdentity) -> String {
    match identity {
        PeerIdentity::San(position) => peer
            .sans
            .get(position)
            .map(|san| {
                let text = san.to_string();
                text.split_once(':')
                    .map_or(text.clone(), |(_, value)| value.to_owned())
            })
            .unwrap_or_default(),
        PeerIdentity::Subject => peer.subject_rfc4514.clone(),
    }
}

/// Percent-encodes `%` and every byte outside visible ASCII and space.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An RFC 8941 sf-string of visible-ASCII text: quoted, `"` and `\` escaped.
fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_headers_whatever_their_case() {
        for name in [
            "x-peergate-peer",
            "X-PeerGate-Peer",
            "x-peergate-",
            "X-PEERGATE-AUDIT",
        ] {
            assert!(is_ours(name, DEFAULT_PREFIX), "{name}");
        }
        for name in [
            "x-peergate",
            "x-peer-gate-peer",
            "peergate-peer",
            "",
            "x-forwarded-client-cert",
        ] {
            assert!(!is_ours(name, DEFAULT_PREFIX), "{name}");
        }
    }

    #[test]
    fn values_are_injective_visible_ascii() {
        assert_eq!(encode("CN=admin"), "CN=admin");
        assert_eq!(encode("CN=adm\u{200b}in"), "CN=adm%E2%80%8Bin");
        assert_eq!(encode("CN=a%b"), "CN=a%25b");
        assert_eq!(
            encode("a\r\nx-peergate-peer: admin"),
            "a%0D%0Ax-peergate-peer: admin"
        );
        assert_eq!(sf_string(r#"URI:a"b\c"#), r#""URI:a\"b\\c""#);
    }
}
