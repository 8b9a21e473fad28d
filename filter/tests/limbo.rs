//! The direct-issuer check against cases derived from the x509-limbo suite.
//!
//! Each case gives a trusted certificate, a peer leaf, a time and the verdict a direct-issuer
//! check must give, computed independently (pyca/cryptography) with the first failing check
//! and each check's own result. The policy is asked with an allow-list that cannot match, so
//! "passed the issuer and validity checks" shows as `san_not_allowed`. Two things are checked:
//! the decision, reason included, against the fixture's verdict and `failing_check`; and every
//! case's audit, check by check, against the fixture's `checks` (its issuer name, signature and
//! validity results), an oracle the audit does not share code with.
//!
//! Limbo's leaves are server certificates (validation kind SERVER), and the filter profiles
//! leaves as TLS clients. So each file runs twice: with `clientProfile` off, against the
//! fixture (plus the deliberate differences below); and as deployed, with the profile on,
//! against the first run, where every change must be a stricter denial that is either listed
//! or follows from the leaf's extendedKeyUsage lacking clientAuth (read here, independently).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use peergate_filter::audit::{AuditReport, CheckName, Outcome as CheckOutcome};
use peergate_filter::{compile, PluginConfig, Reason};
use serde_json::Value;
use x509_parser::prelude::FromDer;

fn parse_time(text: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("bad time {text:?}: {e}"));
    let nanos = t.unix_timestamp_nanos();
    let d = std::time::Duration::from_nanos(u64::try_from(nanos).unwrap());
    SystemTime::UNIX_EPOCH + d
}

/// The outcome the fixture's verdict means for the filter. The fixture's first failing check
/// maps to a reason: `issuer-name` is `untrusted_issuer`, `signature` is `bad_signature`,
/// `expired` and `not-yet-valid` are themselves, an unverifiable algorithm
/// (`signature-unsupported`) is `unsupported_signature_algorithm`; passing every check shows
/// as `ALLOW` (the allow-list then refuses with `san_not_allowed`).
fn expected_outcome(case: &Value) -> String {
    let reason = match case["failing_check"].as_str() {
        None => return "ALLOW".into(),
        Some("issuer-name") => Reason::UntrustedIssuer,
        Some("signature") => Reason::BadSignature,
        Some("expired") => Reason::Expired,
        Some("not-yet-valid") => Reason::NotYetValid,
        Some("signature-unsupported") => Reason::UnsupportedSignatureAlgorithm,
        Some(other) => panic!("a failing check this test does not map: {other}"),
    };
    format!("DENY ({})", reason.code())
}

/// Cases where the filter's outcome deliberately differs from the fixture's, with the outcome
/// it gives and why. Each is a stricter denial or the same denial under a more precise reason
/// (never an allow); the list is exact, so any change in behaviour shows up here.
const DIFFERENT: &[(&str, &str)] = &[
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
    // A trusted issuer whose key cannot verify anything (explicit curve parameters, DSA, a
    // malformed RSA key) makes the plugin refuse the whole configuration (fail closed), where a
    // bare check would deny each peer as unverifiable.
    ("webpki::explicit-curve", "config-rejected"),
    ("webpki::forbidden-dsa-root", "config-rejected"),
    (
        "invalid::invalid-issuer-key#leaf-vs-intermediate",
        "config-rejected",
    ),
    // The outer signatureAlgorithm differs from the signed one: refused as not DER-framed as
    // RFC 5280 requires (filter/src/der.rs) before any signature is tried, rather than as a
    // bad signature.
    (
        "rfc5280::mismatching-signature-algorithm#leaf-vs-intermediate",
        "DENY (unparsable_certificate)",
    ),
];

/// Cases denied more strictly since the trust hardening (issue 17), with any client profile:
/// weak trusted keys, and nameConstraints that are malformed (the configuration is refused)
/// or that the leaf violates (a bare direct-issuer check ignores them), and trusted issuers
/// outside their own validity. For every one, limbo's own expected result is FAILURE.
const STRICTER: &[(&str, &str)] = &[
    // An RSA-1024 root is not a safe anchor: the configuration is refused.
    ("webpki::forbidden-weak-rsa-key-in-root", "config-rejected"),
    // iPAddress subtrees of 4 and 16 bytes: an address without its mask.
    ("rfc5280::nc::invalid-ipv4-address", "config-rejected"),
    ("rfc5280::nc::invalid-ipv6-address", "config-rejected"),
    // An email SAN outside the root's permitted email subtree (`invalid@invalid@example.com`,
    // which names no mailbox the leaf could have).
    (
        "rfc5280::nc::invalid-email-address",
        "DENY (outside_name_constraints)",
    ),
    // Names outside the issuer's permitted subtrees or inside its excluded ones (limbo's
    // own expected result for each is FAILURE, which a direct-issuer check ignoring
    // nameConstraints missed).
    (
        "rfc5280::nc::permitted-dns-mismatch",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::excluded-dns-match-second",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::permitted-ip-mismatch",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::excluded-ipv4-match",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::excluded-ipv6-match",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::excluded-match-permitted-and-excluded",
        "DENY (outside_name_constraints)",
    ),
    // A permitted dNSName subtree written `*.example.com` (RFC 5280 has no wildcards in
    // constraints): compared literally, it holds no real host, so `foo.example.com` is
    // outside it.
    (
        "rfc5280::nc::invalid-dnsname-wildcard",
        "DENY (outside_name_constraints)",
    ),
    (
        "cve::cve-2025-61727-nc-permits-variant#leaf-vs-intermediate",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::excluded-dns-match#leaf-vs-intermediate",
        "DENY (outside_name_constraints)",
    ),
    // An iPAddress SAN of the wrong length is no address any subtree holds.
    (
        "rfc5280::nc::nc-permits-invalid-ip-san#leaf-vs-intermediate",
        "DENY (outside_name_constraints)",
    ),
    // An otherName subtree cannot be compared: a leaf with an otherName SAN is refused.
    (
        "rfc5280::nc::nc-forbids-othername#leaf-vs-intermediate",
        "DENY (outside_name_constraints)",
    ),
    // A trusted issuer whose keyUsage leaves out keyCertSign may not sign certificates
    // (RFC 5280 §4.2.1.3): the configuration is refused (issue 18, with the chain checks).
    (
        "rfc5280::root-inconsistent-ca-extensions",
        "config-rejected",
    ),
    // A trusted issuer with a critical extension the filter does not process (RFC 5280 §4.2:
    // such a certificate must be rejected; issue 26): the configuration is refused, naming
    // the extension's OID.
    (
        "rfc5280::unknown-critical-extension-root",
        "config-rejected",
    ),
    (
        "rfc5280::unknown-critical-extension-intermediate#leaf-vs-intermediate",
        "config-rejected",
    ),
    // The trusted issuer itself has expired at the validation time.
    (
        "rfc5280::validity::expired-intermediate#leaf-vs-intermediate",
        "DENY (issuer_expired)",
    ),
    // Email subtrees with a literal `*`: a mailbox constraint is compared as written, so
    // `*@example.com` holds no mailbox but that one (RFC 5280 has no wildcards in
    // constraints).
    (
        "rfc5280::nc::nc-permits-email-literal-asterisk-rejects-user#leaf-vs-intermediate",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-asterisk-rejects-subdomain#leaf-vs-intermediate",
        "DENY (outside_name_constraints)",
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-double-asterisk-rejects-single#leaf-vs-intermediate",
        "DENY (outside_name_constraints)",
    ),
];

/// With the client profile on: cases whose new reason is not the extendedKeyUsage rule (a CA
/// certificate as the leaf is refused before its key usages are looked at).
const PROFILE: &[(&str, &str)] = &[
    ("rfc5280::ca-as-leaf", "DENY (leaf_is_ca)"),
    ("rfc5280::ca-as-leaf-wrong-san", "DENY (leaf_is_ca)"),
    ("webpki::ee-basicconstraints-ca", "DENY (leaf_is_ca)"),
    ("webpki::ca-as-leaf", "DENY (leaf_is_ca)"),
    (
        "pathlen::validation-ignores-pathlen-in-leaf#leaf-vs-intermediate",
        "DENY (leaf_is_ca)",
    ),
];

struct Outcome {
    id: String,
    expected: String,
    got: String,
    /// Whether the leaf has an extendedKeyUsage without clientAuth or anyExtendedKeyUsage.
    server_only: bool,
}

/// Read with x509-parser directly, not through the filter's profile code.
fn lacks_client_auth(der: &[u8]) -> bool {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    matches!(cert.extended_key_usage(), Ok(Some(eku)) if !eku.value.client_auth && !eku.value.any)
}

fn run(file: &str, client_profile: bool) -> Vec<Outcome> {
    run_with(file, client_profile, false)
}

/// `anchored`: the trusted certificate is also the configuration's only trust anchor, so every
/// case goes through the chain code (a chain of one link).
fn run_with(file: &str, client_profile: bool, anchored: bool) -> Vec<Outcome> {
    let path = format!("{}/tests/fixtures/limbo/{file}", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut outcomes = Vec::new();
    for case in doc["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap().to_owned();
        let when = case["validation_time"]
            .as_str()
            .or(case["effective_time"].as_str())
            .unwrap();
        let trusted = case["trusted_cert"].as_str().unwrap();
        let config = PluginConfig {
            trusted_issuers: vec![trusted.into()],
            trust_anchors: if anchored {
                vec![trusted.to_owned()]
            } else {
                Vec::new()
            },
            allowed_sans: Some(vec!["never.matches.invalid".into()]),
            client_profile,
            ..Default::default()
        };
        let der = peergate_filter::xfcc::certificate_der_from_pem(
            case["peer_certificate"].as_str().unwrap().as_bytes(),
        );
        let server_only = der.as_deref().is_some_and(|der| {
            x509_parser::certificate::X509Certificate::from_der(der).is_ok()
                && lacks_client_auth(der)
        });
        let got = match compile(&config) {
            // A trusted certificate the filter cannot use (not a CA, unsupported key): the
            // plugin would refuse to start, so nothing is ever allowed.
            Err(e) => format!("config-rejected ({e})"),
            Ok(policy) => {
                let der = der.clone().unwrap();
                let at = parse_time(when);
                let reason = policy.decide(Some(&der), "h", at).reason;
                let report = policy.audit(&der, "h", None, at);
                // The audit and the decision share the engine: this only says the report is
                // consistent with itself. Its checks get their own oracle below.
                assert_eq!(report.reason, reason, "{id}: audit verdict");
                assert_eq!(
                    report.deciding_check().and_then(|c| c.reason),
                    Some(reason),
                    "{id}: deciding check in {:#?}",
                    report.checks
                );
                check_against_fixture(&id, &report, case);
                match reason {
                    Reason::SanNotAllowed => "ALLOW".to_owned(),
                    other => format!("DENY ({})", other.code()),
                }
            }
        };
        outcomes.push(Outcome {
            id,
            expected: expected_outcome(case),
            got,
            server_only,
        });
    }
    outcomes
}

/// The audit's issuer-name, signature and validity checks against the fixture's own results
/// for them. A check the audit could not make (`skip`) is only allowed where an earlier one
/// failed (the certificate did not parse, no issuer of that name, a mismatching key id).
fn check_against_fixture(id: &str, report: &AuditReport, case: &Value) {
    let outcome = |name: CheckName| {
        report
            .checks
            .iter()
            .find(|c| c.check == name)
            .unwrap_or_else(|| panic!("{id}: no {} check", name.as_str()))
            .outcome
    };
    if outcome(CheckName::Parse) == CheckOutcome::Fail {
        return; // The deliberate unparsable cases (see DIFFERENT): nothing else can be made.
    }
    let checks = &case["checks"];
    let name_equal = checks["issuer_name_der_equal"].as_bool().unwrap();
    let name = outcome(CheckName::IssuerName);
    assert_eq!(
        name,
        if name_equal {
            CheckOutcome::Pass
        } else {
            CheckOutcome::Fail
        },
        "{id}: issuer_name against the fixture's issuer_name_der_equal={name_equal}"
    );
    let signature = outcome(CheckName::IssuerSignature);
    let key_id = outcome(CheckName::IssuerKeyId);
    if name == CheckOutcome::Pass && key_id != CheckOutcome::Fail {
        let expected = match checks["signature"].as_str().unwrap() {
            "valid" => CheckOutcome::Pass,
            "invalid" | "unsupported" => CheckOutcome::Fail,
            other => panic!("{id}: signature result {other:?}"),
        };
        assert_eq!(
            signature, expected,
            "{id}: issuer_signature against the fixture's signature={}",
            checks["signature"]
        );
    } else {
        assert_eq!(
            signature,
            CheckOutcome::Skip,
            "{id}: no signature to verify after issuer_name={name:?} issuer_key_id={key_id:?}"
        );
    }
    let (before, after) = match checks["validity"].as_str().unwrap() {
        "ok" => (CheckOutcome::Pass, CheckOutcome::Pass),
        "expired" => (CheckOutcome::Pass, CheckOutcome::Fail),
        "not-yet-valid" => (CheckOutcome::Fail, CheckOutcome::Pass),
        other => panic!("{id}: validity result {other:?}"),
    };
    assert_eq!(
        (outcome(CheckName::NotBefore), outcome(CheckName::NotAfter)),
        (before, after),
        "{id}: not_before/not_after against the fixture's validity={}",
        checks["validity"]
    );
}

fn listed<'a>(list: &[(&str, &'a str)], id: &str) -> Option<&'a str> {
    list.iter().find(|(i, _)| *i == id).map(|(_, got)| *got)
}

/// A listed outcome: a prefix of what the filter gave (config rejections carry their message),
/// and never an allow.
fn assert_listed(id: &str, listed: &str, got: &str) {
    assert!(
        got.starts_with(listed),
        "{id}: expected the listed {listed}, got {got}"
    );
    assert_ne!(got, "ALLOW", "{id}: a listed difference is never an allow");
}

/// Outcomes a configuration, a parser or an issuer check decides, before any leaf profile.
fn decided_before_the_profile(outcome: &str) -> bool {
    outcome.starts_with("config-rejected")
        || [
            Reason::UnparsableCertificate,
            Reason::UntrustedIssuer,
            Reason::IssuerKeyIdMismatch,
            Reason::UnsupportedSignatureAlgorithm,
            Reason::BadSignature,
        ]
        .iter()
        .any(|r| outcome == format!("DENY ({})", r.code()))
}

fn check(file: &str, expected_cases: usize, expected_server_only: usize) {
    // Without the profile: the fixture's verdicts, but for the listed differences.
    let unprofiled = run(file, false);
    assert_eq!(unprofiled.len(), expected_cases, "{file}: case count");
    let mut mismatches = Vec::new();
    for o in &unprofiled {
        match listed(DIFFERENT, &o.id).or_else(|| listed(STRICTER, &o.id)) {
            Some(outcome) => assert_listed(&o.id, outcome, &o.got),
            None if o.got != o.expected => {
                mismatches.push(format!("{}: want {}, got {}", o.id, o.expected, o.got));
            }
            None => {}
        }
    }
    assert!(
        mismatches.is_empty(),
        "{file}: outcomes (reason included) other than the fixture's: {mismatches:#?}"
    );

    // As deployed: the same, or a listed profile denial, or not_client_auth for a leaf
    // whose extendedKeyUsage leaves clientAuth out.
    let profiled = run(file, true);
    let mut server_only_denials = 0;
    for (o, before) in profiled.iter().zip(&unprofiled) {
        let expected = if let Some(outcome) = listed(PROFILE, &o.id) {
            assert_listed(&o.id, outcome, &o.got);
            continue;
        } else if o.server_only && !decided_before_the_profile(&before.got) {
            server_only_denials += 1;
            "DENY (not_client_auth)"
        } else {
            before.got.as_str()
        };
        if o.got != expected {
            mismatches.push(format!("{}: want {expected}, got {}", o.id, o.got));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{file}: with the client profile, outcomes other than expected: {mismatches:#?}"
    );
    assert_eq!(
        server_only_denials, expected_server_only,
        "{file}: leaves refused as not_client_auth for an extendedKeyUsage without clientAuth"
    );
}

#[test]
fn direct_issuer_cases() {
    check("direct-issuer.json", 87, 65);
}

/// The cases' trusted certificates are limbo's intermediates, cut from their chains: limbo's
/// roots are not in these fixtures (and x509-limbo itself is on no registry this build can
/// reach), so full root → intermediate → leaf chains are tested with certificates made at test
/// time (`filter/tests/trust.rs`). Here each intermediate anchors itself, and the outcome must
/// be exactly the unanchored one: the chain code adds no allow and no denial of its own.
#[test]
fn anchoring_the_trusted_certificate_changes_no_outcome() {
    for (file, count) in [
        ("leaf-vs-intermediate.json", 56),
        ("direct-issuer.json", 87),
    ] {
        let plain = run_with(file, true, false);
        let anchored = run_with(file, true, true);
        assert_eq!(anchored.len(), count, "{file}");
        for (a, p) in anchored.iter().zip(&plain) {
            assert_eq!((&a.id, &a.got), (&p.id, &p.got), "{file}: anchored vs not");
        }
    }
}

#[test]
fn leaf_vs_intermediate_cases() {
    check("leaf-vs-intermediate.json", 56, 36);
}
