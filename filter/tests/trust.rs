//! Real PKIs (issue 18): issuing CAs under an agreed root (`trustAnchors`), issuers scoped to
//! their own names (`scope`), identities in the subject (`allowedSubjects`), and revocation
//! (`crls`), against certificates made at test time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use peergate_e2e::pki::{BasicConstraints, Ca, IsCa, Issued, KeyKind, KeyUsagePurpose, Leaf};
use peergate_filter::audit::{CheckName, Outcome};
use peergate_filter::{
    compile, compile_json, PluginConfig, Reason, ScopedIssuer, TrustedIssuerConfig,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

const PARTNER_A: &str = "spiffe://partner-a/ns/client/sa/sleep";
const PARTNER_B: &str = "spiffe://partner-b/ns/client/sa/sleep";

fn leaf(ca: &Ca, sans: &[&str]) -> Issued {
    let sans: Vec<String> = sans.iter().map(|s| format!("URI:{s}")).collect();
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    ca.issue(&Leaf::client("client", &sans, KeyKind::P256))
}

fn reason(config: &PluginConfig, leaf: &Issued) -> Reason {
    compile(config)
        .unwrap_or_else(|e| panic!("{e}"))
        .decide(Some(&leaf.cert_der), "h", SystemTime::now())
        .reason
}

fn error(config: &PluginConfig) -> String {
    compile(config)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// root → issuing CA (pathLen 0) → leaves.
struct Pki {
    root: Ca,
    issuing: Ca,
    client: Issued,
}

fn pki() -> Pki {
    let root = Ca::new("agreed-root", KeyKind::P256);
    let issuing = root.intermediate("partner-a-issuing", KeyKind::P256, Some(0));
    let client = leaf(&issuing, &[PARTNER_A]);
    Pki {
        root,
        issuing,
        client,
    }
}

fn anchored(issuers: &[&Ca], anchors: &[&Ca], allowed: &[&str]) -> PluginConfig {
    PluginConfig {
        trusted_issuers: issuers
            .iter()
            .map(|ca| ca.cert.cert_pem.clone().into())
            .collect(),
        trust_anchors: anchors.iter().map(|ca| ca.cert.cert_pem.clone()).collect(),
        allowed_sans: Some(allowed.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    }
}

#[test]
fn a_leaf_under_a_listed_issuing_ca_of_the_agreed_root_is_admitted() {
    let p = pki();
    let config = anchored(&[&p.issuing], &[&p.root], &[PARTNER_A]);
    assert_eq!(reason(&config, &p.client), Reason::Allowed);
    let policy = compile(&config).unwrap();
    assert_eq!(policy.anchor_count(), 1);
    let report = policy.audit(&p.client.cert_der, "h", None, SystemTime::now());
    let chain = report
        .checks
        .iter()
        .find(|c| c.check == CheckName::IssuerChain)
        .unwrap();
    assert_eq!(chain.outcome, Outcome::Pass);
    assert!(
        chain.detail.contains("trustedIssuers[0]") && chain.detail.contains("trustAnchors[0]"),
        "{}",
        chain.detail
    );
    // The root's own leaves are not admitted: the root is an anchor, not an issuer.
    let from_root = leaf(&p.root, &[PARTNER_A]);
    assert_eq!(reason(&config, &from_root), Reason::UntrustedIssuer);
}

#[test]
fn a_leaf_under_an_issuing_ca_that_is_not_listed_is_refused() {
    let p = pki();
    let other_issuing = p
        .root
        .intermediate("partner-b-issuing", KeyKind::P256, Some(0));
    let config = anchored(&[&p.issuing], &[&p.root], &[PARTNER_A]);
    assert_eq!(
        reason(&config, &leaf(&other_issuing, &[PARTNER_A])),
        Reason::UntrustedIssuer
    );
    // The same name as the listed one, another key: refused by key id or signature.
    let look_alike = p
        .root
        .intermediate_with("partner-a-issuing", KeyKind::P256, |_| {});
    let refused = reason(&config, &leaf(&look_alike, &[PARTNER_A]));
    assert!(
        matches!(refused, Reason::IssuerKeyIdMismatch | Reason::BadSignature),
        "{refused:?}"
    );
}

#[test]
fn an_issuer_that_does_not_chain_to_the_anchors_refuses_the_configuration() {
    let p = pki();
    let other_root = Ca::new("other-root", KeyKind::P256);
    let foreign_issuing = other_root.intermediate("partner-a-issuing", KeyKind::P256, Some(0));
    let e = error(&anchored(&[&foreign_issuing], &[&p.root], &[PARTNER_A]));
    assert!(
        e.starts_with("trustedIssuers[0]: ") && e.contains("does not chain to trustAnchors"),
        "{e}"
    );
    // A root's pathLenConstraint 0 allows no issuing CA below it.
    let strict_root = Ca::with_params("strict-root", KeyKind::P256, |params| {
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    });
    let below = strict_root.intermediate("issuing", KeyKind::P256, Some(0));
    let e = error(&anchored(&[&below], &[&strict_root], &[PARTNER_A]));
    assert!(e.contains("pathLenConstraint 0"), "{e}");
    // An issuing CA whose keyUsage leaves out keyCertSign.
    let no_cert_sign = p
        .root
        .intermediate_with("no-cert-sign", KeyKind::P256, |params| {
            params.key_usages = vec![KeyUsagePurpose::CrlSign];
        });
    let e = error(&anchored(&[&no_cert_sign], &[&p.root], &[PARTNER_A]));
    assert!(
        e.starts_with("trustedIssuers[0]: ") && e.contains("keyCertSign"),
        "{e}"
    );
    // Two levels: root → A → B, with A listed too.
    let a = p.root.intermediate("level-a", KeyKind::P256, Some(1));
    let b = a.intermediate("level-b", KeyKind::P256, Some(0));
    let config = anchored(&[&b, &a], &[&p.root], &[PARTNER_A]);
    assert_eq!(reason(&config, &leaf(&b, &[PARTNER_A])), Reason::Allowed);
    // Without A listed, B has no way to the root.
    let e = error(&anchored(&[&b], &[&p.root], &[PARTNER_A]));
    assert!(
        e.contains("has no issuer among trustedIssuers and trustAnchors"),
        "{e}"
    );
}

#[test]
fn an_expired_issuing_ca_or_anchor_refuses_its_leaves() {
    let now = OffsetDateTime::now_utc();
    let root = Ca::new("agreed-root", KeyKind::P256);
    let expired = root.intermediate_with("old-issuing", KeyKind::P256, |params| {
        params.not_before = now - Duration::days(30);
        params.not_after = now - Duration::days(1);
    });
    let config = anchored(&[&expired], &[&root], &[PARTNER_A]);
    assert_eq!(
        reason(&config, &leaf(&expired, &[PARTNER_A])),
        Reason::IssuerExpired
    );
    let old_root = Ca::with_validity(
        "old-root",
        KeyKind::P256,
        now - Duration::days(30),
        now - Duration::days(1),
    );
    let issuing = old_root.intermediate("issuing", KeyKind::P256, Some(0));
    let config = anchored(&[&issuing], &[&old_root], &[PARTNER_A]);
    assert_eq!(
        reason(&config, &leaf(&issuing, &[PARTNER_A])),
        Reason::IssuerExpired
    );
}

fn scoped(ca: &Ca, scope: &[&str]) -> TrustedIssuerConfig {
    TrustedIssuerConfig::Scoped(ScopedIssuer {
        certificate: ca.cert.cert_pem.clone(),
        scope: Some(scope.iter().map(|s| (*s).to_owned()).collect()),
    })
}

#[test]
fn a_second_trusted_ca_cannot_mint_the_first_partners_names() {
    let ca_a = Ca::new("partner-a-ca", KeyKind::P256);
    let ca_b = Ca::new("partner-b-ca", KeyKind::P256);
    let config = PluginConfig {
        trusted_issuers: vec![
            scoped(&ca_a, &["spiffe://partner-a/*"]),
            scoped(&ca_b, &["spiffe://partner-b/*"]),
        ],
        allowed_sans: Some(vec![
            "spiffe://partner-a/*".into(),
            "spiffe://partner-b/*".into(),
        ]),
        ..Default::default()
    };
    assert_eq!(reason(&config, &leaf(&ca_a, &[PARTNER_A])), Reason::Allowed);
    assert_eq!(reason(&config, &leaf(&ca_b, &[PARTNER_B])), Reason::Allowed);
    assert_eq!(
        reason(&config, &leaf(&ca_b, &[PARTNER_A])),
        Reason::OutsideIssuerScope
    );
    // A SAN in scope beside one outside: the scope bounds the whole certificate (issue 26).
    assert_eq!(
        reason(&config, &leaf(&ca_b, &[PARTNER_A, PARTNER_B])),
        Reason::OutsideIssuerScope
    );
    // Unscoped, as before: any trusted CA vouches for any allowed name.
    let unscoped = PluginConfig {
        trusted_issuers: vec![
            ca_a.cert.cert_pem.clone().into(),
            ca_b.cert.cert_pem.clone().into(),
        ],
        ..config.clone()
    };
    assert_eq!(
        reason(&unscoped, &leaf(&ca_b, &[PARTNER_A])),
        Reason::Allowed
    );
    let report = compile(&config).unwrap().audit(
        &leaf(&ca_b, &[PARTNER_A]).cert_der,
        "h",
        None,
        SystemTime::now(),
    );
    assert_eq!(
        report.deciding_check().unwrap().check,
        CheckName::IssuerScope
    );
    // The scope in the JSON form users write.
    let json = json!({
        "trustedIssuers": [
            { "certificate": ca_a.cert.cert_pem, "scope": ["spiffe://partner-a/*"] },
            ca_b.cert.cert_pem,
        ],
        "allowedSans": ["spiffe://partner-a/*"],
    });
    let policy = compile_json(json.to_string().as_bytes()).unwrap();
    let decided = policy.decide(
        Some(&leaf(&ca_a, &[PARTNER_A]).cert_der),
        "h",
        SystemTime::now(),
    );
    assert_eq!(decided.reason, Reason::Allowed);
}

#[test]
fn a_subject_only_identity_passes_by_allowed_subjects() {
    let root = Ca::new("enterprise-ca", KeyKind::P256);
    let subject_only = root.issue(&Leaf::client("svc-payments", &[], KeyKind::P256));
    let other = root.issue(&Leaf::client("admin", &[], KeyKind::P256));
    let mut config = PluginConfig {
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![PARTNER_A.into()]),
        ..Default::default()
    };
    assert_eq!(reason(&config, &subject_only), Reason::SanNotAllowed);
    // RFC 4514 order (CN first), type names in any case, a CN prefix.
    config.allowed_subjects = Some(vec!["cn=svc-*, O=peergate tests".into()]);
    assert_eq!(reason(&config, &subject_only), Reason::Allowed);
    assert_eq!(reason(&config, &other), Reason::SanNotAllowed);
    // Values are exact: another organisation, or the RDNs in the certificate's own order.
    for miss in [
        "CN=svc-*,O=Peergate tests",
        "O=peergate tests,CN=svc-payments",
        "CN=svc-payments",
    ] {
        config.allowed_subjects = Some(vec![miss.into()]);
        assert_eq!(
            reason(&config, &subject_only),
            Reason::SanNotAllowed,
            "{miss}"
        );
    }
    // Only subjects, no SAN list: fine, and per host.
    let hosts: PluginConfig = serde_json::from_value(json!({
        "trustedIssuers": [root.cert.cert_pem],
        "hosts": { "h": { "allowedSubjects": ["CN=svc-payments,O=peergate tests"] } },
    }))
    .unwrap();
    assert_eq!(reason(&hosts, &subject_only), Reason::Allowed);
    // A scoped issuer: the subject does not escape the scope.
    let scoped_config = PluginConfig {
        trusted_issuers: vec![scoped(&root, &["spiffe://enterprise/*"])],
        allowed_subjects: Some(vec!["CN=svc-*,O=peergate tests".into()]),
        ..Default::default()
    };
    assert_eq!(
        reason(&scoped_config, &subject_only),
        Reason::OutsideIssuerScope
    );
}

#[test]
fn revoked_leaves_and_revoked_issuing_cas_are_refused() {
    let p = pki();
    let other = leaf(&p.issuing, &[PARTNER_A]);
    let next_week = OffsetDateTime::now_utc() + Duration::days(7);
    let mut config = anchored(&[&p.issuing], &[&p.root], &[PARTNER_A]);
    config.crls = vec![p.issuing.crl(&[&p.client], next_week)];
    assert_eq!(reason(&config, &p.client), Reason::Revoked);
    assert_eq!(reason(&config, &other), Reason::Allowed);
    let policy = compile(&config).unwrap();
    assert_eq!(policy.crl_count(), 1);
    let report = policy.audit(&p.client.cert_der, "h", None, SystemTime::now());
    assert_eq!(
        report.deciding_check().unwrap().check,
        CheckName::Revocation
    );

    // The issuing CA on the root's CRL: every leaf under it.
    config.crls = vec![p.root.crl(&[&p.issuing.cert], next_week)];
    assert_eq!(reason(&config, &p.client), Reason::Revoked);
    assert_eq!(reason(&config, &other), Reason::Revoked);

    // Without trustAnchors, a directly trusted CA's CRL.
    let root = Ca::new("direct", KeyKind::P256);
    let revoked = leaf(&root, &[PARTNER_A]);
    let direct = PluginConfig {
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![PARTNER_A.into()]),
        crls: vec![root.crl(&[&revoked], next_week)],
        ..Default::default()
    };
    assert_eq!(reason(&direct, &revoked), Reason::Revoked);
}

#[test]
fn a_stale_crl_is_still_enforced_and_reported() {
    let p = pki();
    let other = leaf(&p.issuing, &[PARTNER_A]);
    let yesterday = OffsetDateTime::now_utc() - Duration::days(1);
    let mut config = anchored(&[&p.issuing], &[&p.root], &[PARTNER_A]);
    config.crls = vec![p.issuing.crl(&[&p.client], yesterday)];
    let policy = compile(&config).unwrap();
    let now = SystemTime::now();
    let decision = policy.decide(Some(&p.client.cert_der), "h", now);
    assert_eq!(decision.reason, Reason::Revoked);
    assert!(decision.crl_stale);
    let decision = policy.decide(Some(&other.cert_der), "h", now);
    assert_eq!(decision.reason, Reason::Allowed);
    assert!(decision.crl_stale);
    let stale = policy.stale_crls(now);
    assert_eq!(stale.len(), 1);
    assert!(
        stale[0].starts_with("crls[0] of trustedIssuers[0]"),
        "{stale:?}"
    );
    // Fresh: not stale.
    config.crls = vec![p
        .issuing
        .crl(&[&p.client], OffsetDateTime::now_utc() + Duration::days(1))];
    let policy = compile(&config).unwrap();
    assert!(!policy.decide(Some(&other.cert_der), "h", now).crl_stale);
    assert!(policy.stale_crls(now).is_empty());
}

#[test]
fn new_configuration_errors_name_their_field() {
    let p = pki();
    let next_week = OffsetDateTime::now_utc() + Duration::days(7);
    let stranger = Ca::new("stranger", KeyKind::P256);
    let base = anchored(&[&p.issuing], &[&p.root], &[PARTNER_A]);
    let with = |change: &dyn Fn(&mut PluginConfig)| {
        let mut config = base.clone();
        change(&mut config);
        error(&config)
    };
    for (e, starts) in [
        (
            with(&|c| c.trust_anchors = vec!["nope".into()]),
            "trustAnchors[0]: not a PEM certificate",
        ),
        (
            with(&|c| c.crls = vec!["nope".into()]),
            "crls[0]: not a PEM CRL",
        ),
        (
            with(&|c| c.crls = vec![stranger.crl(&[], next_week)]),
            "crls[0]: issued by",
        ),
        (
            with(&|c| c.trusted_issuers = vec![scoped(&p.issuing, &["spiffe://a/*/b"])]),
            "trustedIssuers[0].scope[0]: ",
        ),
        (
            with(&|c| c.trusted_issuers = vec![scoped(&p.issuing, &[])]),
            "trustedIssuers[0].scope: the list is empty",
        ),
        (
            with(&|c| c.allowed_subjects = Some(vec!["CN=a".into(), "XX=b".into()])),
            "allowedSubjects[1]: ",
        ),
        (
            with(&|c| c.allowed_subjects = Some(vec![])),
            "allowedSubjects: the list is empty",
        ),
        (
            with(&|c| {
                c.hosts.insert("h".into(), Default::default());
            }),
            "hosts.h: give allowedSans or allowedSubjects",
        ),
        (
            with(&|c| {
                c.hosts.insert(
                    "h".into(),
                    peergate_filter::HostConfig {
                        allowed_subjects: vec!["CN=*x".into()],
                        ..Default::default()
                    },
                );
            }),
            "hosts.h.allowedSubjects[0]: ",
        ),
    ] {
        assert!(e.starts_with(starts), "{e:?} should start with {starts:?}");
    }
}

#[test]
fn configurations_from_before_keep_their_meaning() {
    // PEM strings in trustedIssuers, no anchors, no subjects, no CRLs: the same decisions.
    let root = Ca::new("root", KeyKind::P256);
    let json = json!({
        "trustedIssuers": [root.cert.cert_pem],
        "allowedSans": [PARTNER_A],
    });
    let config = PluginConfig::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        config.trusted_issuers[0],
        TrustedIssuerConfig::Pem(root.cert.cert_pem.clone())
    );
    // Written back the same way: a string, not an object.
    assert!(config
        .to_json()
        .contains(r#""trustedIssuers":["-----BEGIN CERTIFICATE-----"#));
    assert_eq!(reason(&config, &leaf(&root, &[PARTNER_A])), Reason::Allowed);
    assert_eq!(
        reason(&config, &leaf(&root, &[PARTNER_B])),
        Reason::SanNotAllowed
    );
}
