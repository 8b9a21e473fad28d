//! The decision log: one JSON object per decision, on one line. [`DecisionRecord`] is both what
//! the filter writes and what `peergate audit --logs` reads back, so the two cannot drift.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::clock::rfc3339_millis;
use crate::config::{Layer, Mode};
use crate::peer::San;
use crate::policy::{Decision, Reason};

/// Where the filter found the peer certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// The policy's answer, as logs and reports spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Allow,
    /// A check failed (acted on only in enforce mode).
    Deny,
}

impl Verdict {
    /// The verdict of a decision.
    pub fn of(decision: &Decision) -> Self {
        if decision.is_allowed() {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }

    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// One decision-log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord<'a> {
    /// When the decision was taken (RFC 3339, UTC, milliseconds); absent in lines written
    /// before peergate 0.1 stamped them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Cow<'a, str>>,
    /// `allow` or `deny`.
    pub decision: Verdict,
    /// The reason code.
    pub reason: Reason,
    /// The plugin's mode.
    pub mode: Mode,
    /// Where the decision was taken; absent for `request`.
    #[serde(default, skip_serializing_if = "Layer::is_request")]
    pub layer: Layer,
    /// Whether a denial was acted on (false in audit mode and for allowed requests).
    pub enforced: bool,
    /// The request's `:authority` as received; at layer `connection`, the TLS server name
    /// (SNI) the client sent.
    pub authority: Cow<'a, str>,
    /// Where the certificate came from.
    pub source: CertSource,
    /// The `pathPrefix` of the route that decided, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Cow<'a, str>>,
    /// The peer's subject DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Cow<'a, str>>,
    /// The peer's issuer DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Cow<'a, str>>,
    /// The peer's SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sans: Option<Cow<'a, [San]>>,
    /// Serial number, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<Cow<'a, str>>,
    /// SHA-256 of the certificate's DER, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Cow<'a, str>>,
    /// Whole days to the peer's notAfter, on an allowed peer inside `expiryWarningDays`.
    #[serde(rename = "daysLeft", default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
}

impl<'a> DecisionRecord<'a> {
    /// The record of one decision taken at `now`, borrowing from it.
    pub fn of(
        decision: &'a Decision,
        mode: Mode,
        layer: Layer,
        authority: &'a str,
        source: CertSource,
        now: SystemTime,
    ) -> Self {
        let peer = decision.peer();
        DecisionRecord {
            time: Some(Cow::Owned(rfc3339_millis(now))),
            decision: Verdict::of(decision),
            reason: decision.reason,
            mode,
            layer,
            enforced: decision.is_refused_in(mode),
            authority: Cow::Borrowed(authority),
            source,
            route: decision.route.as_deref().map(Cow::Borrowed),
            subject: peer.map(|p| Cow::Borrowed(p.subject.as_str())),
            issuer: peer.map(|p| Cow::Borrowed(p.issuer.as_str())),
            sans: peer.map(|p| Cow::Borrowed(p.sans.as_slice())),
            serial: peer.map(|p| Cow::Borrowed(p.serial.as_str())),
            fingerprint: peer.map(|p| Cow::Borrowed(p.fingerprint.as_str())),
            days_left: decision.days_left,
        }
    }

    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        // Every field is a string, a bool or a unit enum: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The JSON line for one decision taken at `now`. `enforced` says whether a denial was acted
/// on (false in audit mode).
pub fn decision_log_line(
    decision: &Decision,
    mode: Mode,
    layer: Layer,
    authority: &str,
    source: CertSource,
    now: SystemTime,
) -> String {
    DecisionRecord::of(decision, mode, layer, authority, source, now).to_line()
}
