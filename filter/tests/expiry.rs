//! Expiry you can see coming (issue 19): an allowed peer inside `expiryWarningDays` carries
//! `daysLeft` in its decision and its decision-log line; trusted issuers and anchors inside the
//! window are listed for the configure-time warning.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_filter::decision_log::{decision_log_line, CertSource};
use peergate_filter::{compile, compile_json, Decision, Layer, Mode, PluginConfig, Reason};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

const PEER: &str = "spiffe://partner/ns/client/sa/sleep";

fn leaf_expiring_in(ca: &Ca, days: i64) -> Issued {
    ca.issue(&Leaf {
        // An hour past the whole day, so "days left" is exactly `days` while the test runs.
        not_after: OffsetDateTime::now_utc() + Duration::days(days) + Duration::hours(1),
        ..Leaf::client("client", &[&format!("URI:{PEER}")], KeyKind::P256)
    })
}

fn config(ca: &Ca, window: u32) -> PluginConfig {
    PluginConfig {
        trusted_issuers: vec![ca.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![PEER.into()]),
        expiry_warning_days: window,
        ..Default::default()
    }
}

fn decide(config: &PluginConfig, leaf: &Issued) -> Decision {
    compile(config).unwrap_or_else(|e| panic!("{e}")).decide(
        Some(&leaf.cert_der),
        "h",
        SystemTime::now(),
    )
}

fn line(decision: &Decision) -> Value {
    serde_json::from_str(&decision_log_line(
        decision,
        Mode::Enforce,
        Layer::Request,
        "h",
        CertSource::Connection,
        SystemTime::now(),
    ))
    .unwrap()
}

#[test]
fn a_peer_inside_the_window_is_allowed_with_its_days_left() {
    let ca = Ca::new("agreed-root", KeyKind::P256);
    let soon = leaf_expiring_in(&ca, 10);
    let later = leaf_expiring_in(&ca, 40);

    let decision = decide(&config(&ca, 30), &soon);
    assert_eq!(decision.reason, Reason::Allowed);
    assert_eq!(decision.days_left, Some(10));
    assert_eq!(line(&decision)["daysLeft"], 10);

    // Outside the window: no daysLeft, and the line has no such key.
    let decision = decide(&config(&ca, 30), &later);
    assert_eq!(decision.reason, Reason::Allowed);
    assert_eq!(decision.days_left, None);
    assert!(line(&decision).get("daysLeft").is_none());

    // The window is the configuration's: 60 days takes in the 40-day peer, 0 turns it off.
    assert_eq!(decide(&config(&ca, 60), &later).days_left, Some(40));
    assert_eq!(decide(&config(&ca, 0), &soon).days_left, None);
}

#[test]
fn a_denied_peer_carries_no_days_left() {
    let ca = Ca::new("agreed-root", KeyKind::P256);
    let soon = leaf_expiring_in(&ca, 3);
    let mut other = config(&ca, 30);
    other.allowed_sans = Some(vec!["spiffe://someone-else/*".into()]);
    let decision = decide(&other, &soon);
    assert_eq!(decision.reason, Reason::SanNotAllowed);
    assert_eq!(decision.days_left, None);
}

#[test]
fn the_window_defaults_to_thirty_days_and_is_bounded() {
    let ca = Ca::new("agreed-root", KeyKind::P256);
    let issuer = serde_json::to_string(&ca.cert.cert_pem).unwrap();
    let json = format!(r#"{{"trustedIssuers":[{issuer}],"allowedSans":["{PEER}"]}}"#);
    let policy = compile_json(json.as_bytes()).unwrap();
    assert_eq!(policy.expiry_warning_days(), 30);
    let soon = leaf_expiring_in(&ca, 29);
    let decision = policy.decide(Some(&soon.cert_der), "h", SystemTime::now());
    assert_eq!(decision.days_left, Some(29));

    let err = compile(&config(&ca, 3651)).err().unwrap().to_string();
    assert!(err.starts_with("expiryWarningDays: 3651 days"), "{err}");
    assert!(compile(&config(&ca, 3650)).is_ok());
}

#[test]
fn trusted_issuers_and_anchors_inside_the_window_are_listed_for_the_configure_warning() {
    let now = OffsetDateTime::now_utc();
    let root = Ca::with_validity(
        "agreed-root",
        KeyKind::P256,
        now - Duration::days(1),
        now + Duration::days(20) + Duration::hours(1),
    );
    let issuing = root.intermediate("partner-issuing", KeyKind::P256, Some(0));
    let config = PluginConfig {
        trusted_issuers: vec![issuing.cert.cert_pem.clone().into()],
        trust_anchors: vec![root.cert.cert_pem.clone()],
        allowed_sans: Some(vec![PEER.into()]),
        ..Default::default()
    };
    let policy = compile(&config).unwrap();
    let expiring = policy.expiring_cas(SystemTime::now());
    assert_eq!(expiring.len(), 1, "{expiring:?}");
    assert!(
        expiring[0].starts_with(
            "trustAnchors[0] \"O=peergate tests, CN=agreed-root\" expires in 20 days ("
        ),
        "{expiring:?}"
    );
    // A long-lived root: nothing to warn about.
    let root = Ca::new("agreed-root", KeyKind::P256);
    let policy = compile(&PluginConfig {
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        trust_anchors: Vec::new(),
        ..config
    })
    .unwrap();
    assert!(policy.expiring_cas(SystemTime::now()).is_empty());
}
