//! The direct-issuer check against cases derived from the x509-limbo suite.
//!
//! Each case gives a trusted certificate, a peer leaf, a time and the verdict a direct-issuer
//! check must give. The policy is asked with an allow-list that cannot match, so "passed the
//! issuer and validity checks" shows as `san_not_allowed`. Every case is audited too: the
//! audit's verdict and deciding check must agree with the decision.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use peergate_filter::{compile, PluginConfig, Reason};
use serde_json::Value;

fn parse_time(text: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("bad time {text:?}: {e}"));
    let nanos = t.unix_timestamp_nanos();
    let d = std::time::Duration::from_nanos(u64::try_from(nanos).unwrap());
    SystemTime::UNIX_EPOCH + d
}

struct Outcome {
    id: String,
    expected: String,
    got: String,
}

fn run(file: &str) -> Vec<Outcome> {
    let path = format!("{}/tests/fixtures/limbo/{file}", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut outcomes = Vec::new();
    for case in doc["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap().to_owned();
        let expected = case["our_verdict"].as_str().unwrap().to_owned();
        let when = case["validation_time"]
            .as_str()
            .or(case["effective_time"].as_str())
            .unwrap();
        let config = PluginConfig {
            trusted_issuers: vec![case["trusted_cert"].as_str().unwrap().to_owned()],
            allowed_sans: Some(vec!["never.matches.invalid".into()]),
            ..Default::default()
        };
        let got = match compile(&config) {
            // A trusted certificate the filter cannot use (not a CA, unsupported key): the
            // plugin would refuse to start, so nothing is ever allowed.
            Err(e) => format!("config-rejected ({e})"),
            Ok(policy) => {
                let der = peergate_filter::xfcc::certificate_der_from_pem(
                    case["peer_certificate"].as_str().unwrap().as_bytes(),
                )
                .unwrap();
                let at = parse_time(when);
                let reason = policy.decide(Some(&der), "h", at).reason;
                // The audit of the same case must reach the same verdict, and its first
                // failed check must be the one that gives the reason.
                let report = policy.audit(&der, "h", at);
                assert_eq!(report.reason, reason, "{id}: audit verdict");
                assert_eq!(
                    report.deciding_check().and_then(|c| c.reason),
                    Some(reason),
                    "{id}: deciding check in {:#?}",
                    report.checks
                );
                match reason {
                    Reason::SanNotAllowed => "ALLOW".to_owned(),
                    other => format!("DENY ({})", other.code()),
                }
            }
        };
        outcomes.push(Outcome { id, expected, got });
    }
    outcomes
}

/// Cases where the filter is deliberately stricter than a bare direct-issuer check, with the
/// outcome it gives and why. Denying an admissible peer is safe; the list is exact so any change
/// in behaviour shows up here.
const STRICTER: &[(&str, &str)] = &[
    // x509-parser refuses a malformed SAN extension; the policy cannot match SANs it cannot read.
    ("rfc5280::san::malformed", "DENY (unparsable_certificate)"),
    // The leaf's authority key identifier differs from the root's subject key identifier; the
    // policy requires them to match when both are present.
    (
        "rfc5280::ski::critical-ski",
        "DENY (issuer_key_id_mismatch)",
    ),
    // RFC 5280 forbids two extensions with the same OID; x509-parser refuses the certificate.
    (
        "rfc5280::duplicate-extensions",
        "DENY (unparsable_certificate)",
    ),
    // Trusted issuers must be CA certificates (basicConstraints CA:true).
    ("rfc5280::root-missing-basic-constraints", "config-rejected"),
    (
        "rfc5280::intermediate-ca-without-ca-bit#leaf-vs-intermediate",
        "config-rejected",
    ),
    // P-192 is not a supported curve for a trusted issuer.
    ("webpki::forbidden-p192-root", "config-rejected"),
];

fn check(file: &str, expected_cases: usize) {
    let outcomes = run(file);
    assert_eq!(outcomes.len(), expected_cases, "{file}: case count");
    let mut wrongly_allowed = Vec::new();
    let mut wrongly_denied = Vec::new();
    for o in &outcomes {
        let allowed = o.got == "ALLOW";
        let stricter = STRICTER
            .iter()
            .find(|(id, _)| *id == o.id)
            .map(|(_, got)| *got);
        if let Some(expected_outcome) = stricter {
            assert!(
                o.got.starts_with(expected_outcome),
                "{}: expected the deliberate {expected_outcome}, got {}",
                o.id,
                o.got
            );
            continue;
        }
        match (o.expected.as_str(), allowed) {
            ("ALLOW", false) => wrongly_denied.push(format!("{}: {}", o.id, o.got)),
            ("DENY" | "unsupported", true) => wrongly_allowed.push(o.id.clone()),
            _ => {}
        }
    }
    assert!(
        wrongly_allowed.is_empty(),
        "{file}: allowed where the verdict is DENY/unsupported: {wrongly_allowed:#?}"
    );
    assert!(
        wrongly_denied.is_empty(),
        "{file}: denied where the verdict is ALLOW: {wrongly_denied:#?}"
    );
}

#[test]
fn direct_issuer_cases() {
    check("direct-issuer.json", 87);
}

#[test]
fn leaf_vs_intermediate_cases() {
    check("leaf-vs-intermediate.json", 56);
}
