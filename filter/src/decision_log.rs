//! The decision log: one JSON object per decision, on one line.

use serde::Serialize;

use crate::config::Mode;
use crate::peer::San;
use crate::policy::{Decision, Reason};

/// Where the filter found the peer certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// The `connection.peer_certificate` property (Envoy >= 1.38).
    Connection,
    /// `Cert=` of `x-forwarded-client-cert`, checked against the connection's digest.
    Xfcc,
    /// An earlier request's assessment of the same certificate, found by the connection's
    /// digest.
    Cache,
    /// No certificate was read.
    None,
}

#[derive(Serialize)]
struct Line<'a> {
    decision: &'static str,
    reason: Reason,
    mode: Mode,
    enforced: bool,
    authority: &'a str,
    source: CertSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sans: Option<&'a [San]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
}

/// The JSON line for one decision. `enforced` says whether a denial was acted on (false in
/// audit mode).
pub fn decision_log_line(
    decision: &Decision,
    mode: Mode,
    authority: &str,
    source: CertSource,
) -> String {
    let peer = decision.peer();
    let line = Line {
        decision: if decision.is_allowed() {
            "allow"
        } else {
            "deny"
        },
        reason: decision.reason,
        mode,
        enforced: !decision.is_allowed() && mode == Mode::Enforce,
        authority,
        source,
        subject: peer.map(|p| p.subject.as_str()),
        issuer: peer.map(|p| p.issuer.as_str()),
        sans: peer.map(|p| p.sans.as_slice()),
        serial: peer.map(|p| p.serial.as_str()),
        fingerprint: peer.map(|p| p.fingerprint.as_str()),
    };
    // Every field is a plain string or an enum: serialization cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}
