//! The admission holes a security review found (issue 17), each tried as an attacker would:
//! a denied ECDSA certificate re-signed as its twin, host rules sidestepped at the connection
//! layer, server and CA certificates and weak keys passing as clients, a trusted issuer's own
//! validity and name constraints ignored, URI prefixes and DNS wildcards matched on raw bytes.
//!
//! Reasons are compared by their codes, and configurations are built from fields that
//! existed before these fixes, so the same tests run against the code before them (where
//! each fails) and after.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use peergate_e2e::pki::{
    ecdsa_twin, Ca, ExtendedKeyUsagePurpose, Issued, KeyKind, KeyUsagePurpose, Leaf,
};
use peergate_filter::peer::{fingerprint, hex};
use peergate_filter::{compile, HostConfig, Layer, PluginConfig};
use time::{Duration, OffsetDateTime};

const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";
const CLIENT_SAN: &str = "URI:spiffe://cluster-a/ns/client/sa/sleep";

fn config(root: &Ca, allowed: &[&str]) -> PluginConfig {
    PluginConfig {
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        allowed_sans: Some(allowed.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    }
}

fn code(config: &PluginConfig, der: &[u8], authority: &str) -> &'static str {
    compile(config)
        .unwrap()
        .decide(Some(der), authority, SystemTime::now())
        .reason
        .code()
}

// --- 1. ECDSA twins -----------------------------------------------------------------------

#[test]
fn both_ecdsa_encodings_of_a_denied_certificate_are_denied() {
    for kind in [KeyKind::P256, KeyKind::P384] {
        let root = Ca::new("a-b-root-ca", kind);
        let client = root.issue(&Leaf::client("c", &[CLIENT_SAN], kind));
        let twin = ecdsa_twin(&client, kind).cert_der;
        assert_ne!(twin, client.cert_der, "{kind:?}");
        assert_ne!(fingerprint(&twin), fingerprint(&client.cert_der));
        // The twin is a valid certificate: without a deny list it is admitted.
        let open = config(&root, &[CLIENT_ID]);
        assert_eq!(
            code(&open, &twin, "h"),
            "allowed",
            "{kind:?}: the twin verifies"
        );

        // Either encoding on the list denies both.
        for denied in [&client.cert_der, &twin] {
            let mut closed = open.clone();
            closed.denied_fingerprints = vec![hex(&fingerprint(denied))];
            for presented in [&client.cert_der, &twin] {
                assert_eq!(
                    code(&closed, presented, "h"),
                    "denied_fingerprint",
                    "{kind:?}: presented {} with {} denied",
                    if presented == &twin {
                        "the twin"
                    } else {
                        "the original"
                    },
                    if denied == &twin {
                        "the twin"
                    } else {
                        "the original"
                    },
                );
                let report =
                    compile(&closed)
                        .unwrap()
                        .audit(presented, "h", None, SystemTime::now());
                assert_eq!(report.reason.code(), "denied_fingerprint");
            }
        }
    }
}

// --- 2. Host rules at the connection layer ------------------------------------------------

#[test]
fn connection_layer_host_rules_a_host_header_could_sidestep_are_refused() {
    let root = Ca::new("a-b-root-ca", KeyKind::P256);
    let rule = |sans: &[&str]| HostConfig {
        allowed_sans: sans.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    let mut two_hosts = PluginConfig {
        layer: Layer::Connection,
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        ..Default::default()
    };
    two_hosts
        .hosts
        .insert("a.example".into(), rule(&[CLIENT_ID]));
    two_hosts
        .hosts
        .insert("b.example".into(), rule(&["spiffe://other/*"]));
    let error = compile(&two_hosts).err().map(|e| e.to_string());
    assert!(
        error.as_deref().is_some_and(|e| e.starts_with("hosts:")),
        "two host rules at the connection layer: {error:?}"
    );

    let mut host_and_default = two_hosts.clone();
    host_and_default.hosts.remove("b.example");
    host_and_default.allowed_sans = Some(vec!["spiffe://other/*".into()]);
    let error = compile(&host_and_default).err().map(|e| e.to_string());
    assert!(
        error.as_deref().is_some_and(|e| e.starts_with("hosts:")),
        "a host rule beside allowedSans at the connection layer: {error:?}"
    );

    // One rule for every admitted connection is fine: one host (other names have no rule),
    // or the top-level list alone; and any of them at the request layer.
    let mut one_host = two_hosts.clone();
    one_host.hosts.remove("b.example");
    assert!(compile(&one_host).is_ok());
    let client = root.issue(&Leaf::client("c", &[CLIENT_SAN], KeyKind::P256));
    assert_eq!(code(&one_host, &client.cert_der, "a.example"), "allowed");
    assert_eq!(
        code(&one_host, &client.cert_der, "b.example"),
        "no_rule_for_host"
    );
    let mut request = two_hosts.clone();
    request.layer = Layer::Request;
    assert!(compile(&request).is_ok());
    let mut request = host_and_default;
    request.layer = Layer::Request;
    assert!(compile(&request).is_ok());
}

// --- 3. The client profile ----------------------------------------------------------------

struct Profiled {
    root: Ca,
}

impl Profiled {
    fn new() -> Self {
        Profiled {
            root: Ca::new("a-b-root-ca", KeyKind::P256),
        }
    }

    fn issue(&self, change: impl FnOnce(&mut Leaf)) -> Issued {
        let mut leaf = Leaf::client("c", &[CLIENT_SAN, "DNS:c.zufar.io"], KeyKind::P256);
        change(&mut leaf);
        self.root.issue(&leaf)
    }

    fn code(&self, leaf: &Issued) -> &'static str {
        code(
            &config(&self.root, &[CLIENT_ID, "*.zufar.io"]),
            &leaf.cert_der,
            "h",
        )
    }
}

#[test]
fn the_gateways_own_server_certificate_is_not_a_client() {
    let p = Profiled::new();
    // What `peergate gen` issues the gateway from the same root, under a `*.zufar.io` rule.
    let server = p
        .root
        .issue(&Leaf::server("helloworld.zufar.io", KeyKind::P256));
    assert_eq!(p.code(&server), "not_client_auth");
    let code_signing = p.issue(|l| {
        l.extended_key_usages = Some(vec![ExtendedKeyUsagePurpose::CodeSigning]);
    });
    assert_eq!(p.code(&code_signing), "not_client_auth");
    let no_signing = p.issue(|l| l.key_usages = Some(vec![KeyUsagePurpose::KeyEncipherment]));
    assert_eq!(p.code(&no_signing), "not_client_auth");
    // No extendedKeyUsage restricts nothing; anyExtendedKeyUsage and clientAuth allow it.
    for purposes in [
        vec![],
        vec![ExtendedKeyUsagePurpose::Any],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    ] {
        let leaf = p.issue(|l| l.extended_key_usages = Some(purposes.clone()));
        assert_eq!(p.code(&leaf), "allowed", "{purposes:?}");
    }
}

#[test]
fn a_ca_certificate_is_not_a_client() {
    let p = Profiled::new();
    assert_eq!(p.code(&p.issue(|l| l.ca = true)), "leaf_is_ca");
}

#[test]
fn an_unknown_critical_extension_is_refused() {
    let p = Profiled::new();
    let leaf = p.issue(|l| l.critical_extensions = vec![vec![1, 3, 6, 1, 4, 1, 99999, 1]]);
    assert_eq!(p.code(&leaf), "unknown_critical_extension");
}

#[test]
fn rsa_keys_under_2048_bits_are_refused_in_leaves_and_issuers() {
    let rsa_root = Ca::new("rsa-root", KeyKind::Rsa2048);
    let weak_leaf = rsa_root.issue(&Leaf::client("c", &[CLIENT_SAN], KeyKind::Rsa1024));
    assert_eq!(
        code(&config(&rsa_root, &[CLIENT_ID]), &weak_leaf.cert_der, "h"),
        "weak_key"
    );
    let weak_root = peergate_e2e::pki::weak_rsa_ca("weak-root");
    let error = compile(&PluginConfig {
        trusted_issuers: vec![weak_root.cert_pem.into()],
        allowed_sans: Some(vec![CLIENT_ID.into()]),
        ..Default::default()
    })
    .err()
    .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with("trustedIssuers[0]") && e.contains("1024 bits")),
        "{error:?}"
    );
}

#[test]
fn a_leaf_under_a_trusted_issuer_outside_its_own_validity_is_refused() {
    let now = OffsetDateTime::now_utc();
    let expired = Ca::with_validity(
        "expired-root",
        KeyKind::P256,
        now - Duration::days(30),
        now - Duration::days(1),
    );
    let leaf = expired.issue(&Leaf::client("c", &[CLIENT_SAN], KeyKind::P256));
    // The configuration stays valid (a rotation may be under way); its leaves are refused.
    assert_eq!(
        code(&config(&expired, &[CLIENT_ID]), &leaf.cert_der, "h"),
        "issuer_expired"
    );
    let future = Ca::with_validity(
        "future-root",
        KeyKind::P256,
        now + Duration::days(1),
        now + Duration::days(30),
    );
    let leaf = future.issue(&Leaf::client("c", &[CLIENT_SAN], KeyKind::P256));
    assert_eq!(
        code(&config(&future, &[CLIENT_ID]), &leaf.cert_der, "h"),
        "issuer_expired"
    );
}

#[test]
fn a_trusted_issuers_name_constraints_bind_its_leaves() {
    let partner = Ca::constrained(
        "partner-a-ca",
        KeyKind::P256,
        &[
            "partner-a.example",
            "email:partner-a.example",
            "IP:10.1.0.0/16",
        ],
        &["secret.partner-a.example"],
    );
    // The gateway's allow-list is broad; the CA's constraints still hold.
    let policy = config(
        &partner,
        &[
            "*.partner-a.example",
            "*.bank.example",
            "10.1.2.3",
            "10.2.0.1",
        ],
    );
    let with = |sans: &[&str]| {
        let leaf = partner.issue(&Leaf::client("c", sans, KeyKind::P256));
        code(&policy, &leaf.cert_der, "h")
    };
    assert_eq!(with(&["DNS:svc.partner-a.example"]), "allowed");
    assert_eq!(with(&["IP:10.1.2.3"]), "allowed");
    assert_eq!(with(&["DNS:svc.bank.example"]), "outside_name_constraints");
    // One name outside is enough, even beside one inside.
    assert_eq!(
        with(&["DNS:svc.partner-a.example", "DNS:svc.bank.example"]),
        "outside_name_constraints"
    );
    assert_eq!(
        with(&["DNS:x.secret.partner-a.example"]),
        "outside_name_constraints"
    );
    assert_eq!(with(&["IP:10.2.0.1"]), "outside_name_constraints");
    assert_eq!(
        with(&["DNS:svc.partner-a.example", "email:ops@bank.example"]),
        "outside_name_constraints"
    );
    // A URI's host is its name under DNS-less URI constraints: none here, so URIs are free.
    assert_eq!(
        with(&["DNS:svc.partner-a.example", "URI:spiffe://anything/x"]),
        "allowed"
    );
}

// --- 4. URI prefixes and DNS characters ---------------------------------------------------

#[test]
fn uri_prefix_patterns_admit_plain_segments_only() {
    let root = Ca::new("a-b-root-ca", KeyKind::P256);
    let policy = config(&root, &["spiffe://cluster-a/*"]);
    let with = |uri: &str| {
        let leaf = root.issue(&Leaf::client("c", &[&format!("URI:{uri}")], KeyKind::P256));
        code(&policy, &leaf.cert_der, "h")
    };
    assert_eq!(with("spiffe://cluster-a/ns/client/sa/sleep"), "allowed");
    for sneaky in [
        "spiffe://cluster-a/../b",
        "spiffe://cluster-a/ns/../../b",
        "spiffe://cluster-a/./ns",
        "spiffe://cluster-a/%2e%2e/b",
        "spiffe://cluster-a/%2E%2e/b",
        "spiffe://cluster-a/ns%2fx",
        "spiffe://cluster-a//b",
        "spiffe://cluster-a/ns/",
        "spiffe://cluster-a/x?y#z",
        "spiffe://cluster-a/x#z",
        "spiffe://cluster-a/x%zz",
    ] {
        assert_eq!(with(sneaky), "san_not_allowed", "{sneaky}");
    }
}

#[test]
fn dns_patterns_admit_host_names_only() {
    let root = Ca::new("a-b-root-ca", KeyKind::P256);
    let policy = config(&root, &["*.zufar.io", "exact.zufar.io"]);
    let with = |dns: &str| {
        let leaf = root.issue(&Leaf::client("c", &[&format!("DNS:{dns}")], KeyKind::P256));
        code(&policy, &leaf.cert_der, "h")
    };
    assert_eq!(with("svc.zufar.io"), "allowed");
    assert_eq!(with("EXACT.zufar.io"), "allowed");
    for sneaky in [
        "a_b.zufar.io",
        "a/b.zufar.io",
        "-a.zufar.io",
        "a b.zufar.io",
        "a\u{0}.zufar.io",
        "exact.zufar.io.",
    ] {
        assert_eq!(with(sneaky), "san_not_allowed", "{sneaky:?}");
    }
    for bad_pattern in ["a_b.zufar.io", "*.zu_far.io", "exa/ct.io"] {
        let error = compile(&config(&root, &[bad_pattern])).err();
        assert!(error.is_some(), "{bad_pattern} accepted");
    }
}
