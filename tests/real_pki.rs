//! Real PKIs in real Envoy (issue 18): issuing CAs under an agreed root, issuers scoped to
//! their own names, identities in the subject, and CRLs, decided by the built module behind
//! Istio-style MUTUAL termination. (Envoy's own CRL check, through the credential's `ca.crl`
//! as Istio delivers it, is the oracle's: `tests/istio`.)

use std::time::Duration;

use peergate_e2e::backend::Backend;
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{filter_wasm, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::DOMAIN;
use serde_json::{json, Value};

const PARTNER_A: &str = "spiffe://partner-a/ns/client/sa/sleep";
const PARTNER_B: &str = "spiffe://partner-b/ns/client/sa/sleep";

struct World {
    root: Ca,
    issuing: Ca,
    unlisted_issuing: Ca,
    partner_b: Ca,
    enterprise: Ca,
    server: Issued,
}

impl World {
    fn new() -> Self {
        let root = Ca::new("agreed-root", KeyKind::P256);
        World {
            issuing: root.intermediate("partner-a-issuing", KeyKind::P256, Some(0)),
            unlisted_issuing: root.intermediate("partner-a-other-issuing", KeyKind::P256, Some(0)),
            partner_b: Ca::new("partner-b-ca", KeyKind::P256),
            enterprise: Ca::new("enterprise-ca", KeyKind::P256),
            server: root.issue(&Leaf::server(DOMAIN, KeyKind::P256)),
            root,
        }
    }

    /// A client of `ca` sending its chain (leaf, then `ca` when it is an issuing CA).
    fn client(&self, ca: &Ca, leaf: &Leaf, chain: bool) -> (Issued, TlsClient) {
        let issued = ca.issue(leaf);
        let sent = if chain {
            format!("{}{}", issued.cert_pem, ca.cert.cert_pem)
        } else {
            issued.cert_pem.clone()
        };
        let client = TlsClient::new(&self.root.cert.cert_pem, Some((&sent, &issued.key_pem)));
        (issued, client)
    }

    fn policy(&self, extra: Value) -> String {
        let mut config = json!({
            "trustedIssuers": [
                { "certificate": self.issuing.cert.cert_pem, "scope": ["spiffe://partner-a/*"] },
                { "certificate": self.partner_b.cert.cert_pem, "scope": ["spiffe://partner-b/*"] },
                self.enterprise.cert.cert_pem,
            ],
            "trustAnchors": [self.root.cert.cert_pem, self.partner_b.cert.cert_pem, self.enterprise.cert.cert_pem],
            "allowedSans": ["spiffe://partner-a/*", "spiffe://partner-b/*"],
        });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                config.insert(k.clone(), v.clone());
            }
        }
        config.to_string()
    }
}

fn get(envoy: &Envoy, listener: &str, client: &TlsClient) -> (u16, String) {
    let response = client
        .get(envoy.listener(listener), DOMAIN, DOMAIN, "/hello", &[])
        .unwrap_or_else(|e| panic!("{listener}: the request failed: {e}"));
    (response.status, response.text().trim().to_owned())
}

#[test]
fn issuing_cas_scopes_subjects_and_revocation_in_envoy() {
    let world = World::new();
    let listed = world.client(
        &world.issuing,
        &Leaf::client("a", &[&format!("URI:{PARTNER_A}")], KeyKind::P256),
        true,
    );
    let unlisted = world.client(
        &world.unlisted_issuing,
        &Leaf::client("a", &[&format!("URI:{PARTNER_A}")], KeyKind::P256),
        true,
    );
    let b_minting_a = world.client(
        &world.partner_b,
        &Leaf::client("b", &[&format!("URI:{PARTNER_A}")], KeyKind::P256),
        false,
    );
    let b_itself = world.client(
        &world.partner_b,
        &Leaf::client("b", &[&format!("URI:{PARTNER_B}")], KeyKind::P256),
        false,
    );
    let subject_only = world.client(
        &world.enterprise,
        &Leaf::client("svc-payments", &[], KeyKind::P256),
        false,
    );
    let revoked = world.client(
        &world.issuing,
        &Leaf::client("a", &[&format!("URI:{PARTNER_A}")], KeyKind::P256),
        true,
    );
    let crls = [world.issuing.crl(
        &[&revoked.0],
        time::OffsetDateTime::now_utc() + time::Duration::days(7),
    )];

    let backend = Backend::start();
    let listener = |name: &str, extra: Value| MtlsListener {
        name: name.into(),
        plugin_config: world.policy(extra),
        xfcc: Xfcc::SanitizeSet,
    };
    let listeners = [
        listener("pki", json!({})),
        listener(
            "subjects",
            json!({ "allowedSubjects": ["CN=svc-*,O=peergate tests"] }),
        ),
        listener("crl", json!({ "crls": crls })),
    ];
    // TLS admits every client of the three roots (a shared trust bundle); the rest is the
    // filter's.
    let bundle = format!(
        "{}{}{}",
        world.root.cert.cert_pem, world.partner_b.cert.cert_pem, world.enterprise.cert.cert_pem
    );
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &bundle,
    };
    let envoy = Envoy::start(&bootstrap(&listeners, &tls, &filter_wasm(), backend.addr))
        .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));

    for (name, listener, client, status, body) in [
        (
            "a leaf under the listed issuing CA",
            "pki",
            &listed.1,
            200,
            "backend ok",
        ),
        (
            "a leaf under an issuing CA of the root that is not listed",
            "pki",
            &unlisted.1,
            403,
            "untrusted_issuer",
        ),
        (
            "partner B's CA minting partner A's name",
            "pki",
            &b_minting_a.1,
            403,
            "outside_issuer_scope",
        ),
        (
            "partner B's CA with its own name",
            "pki",
            &b_itself.1,
            200,
            "backend ok",
        ),
        (
            "a subject-only identity without allowedSubjects",
            "pki",
            &subject_only.1,
            403,
            "san_not_allowed",
        ),
        (
            "a subject-only identity under allowedSubjects",
            "subjects",
            &subject_only.1,
            200,
            "backend ok",
        ),
        (
            "a revoked leaf, where the CRL is not configured",
            "pki",
            &revoked.1,
            200,
            "backend ok",
        ),
        (
            "the revoked leaf under the CRL",
            "crl",
            &revoked.1,
            403,
            "revoked",
        ),
        (
            "a leaf of the same issuing CA, not revoked",
            "crl",
            &listed.1,
            200,
            "backend ok",
        ),
    ] {
        let got = get(&envoy, listener, client);
        assert_eq!(got, (status, body.to_owned()), "{name}\n{}", envoy.log());
    }
    assert_eq!(envoy.counter("wasmcustom.peergate.denied.revoked"), 1);
    assert_eq!(
        envoy.counter("wasmcustom.peergate.denied.outside_issuer_scope"),
        1
    );
    // A fresh CRL: nothing stale to count or warn about.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(envoy.counter("wasmcustom.peergate.crl_stale"), 0);
    assert!(!envoy.log().contains("stale CRL"));
}

#[test]
fn a_stale_crl_is_enforced_counted_and_logged_once() {
    let world = World::new();
    let revoked = world.client(
        &world.issuing,
        &Leaf::client("a", &[&format!("URI:{PARTNER_A}")], KeyKind::P256),
        true,
    );
    let fine = world.client(
        &world.issuing,
        &Leaf::client("a", &[&format!("URI:{PARTNER_A}")], KeyKind::P256),
        true,
    );
    let stale = world.issuing.crl(
        &[&revoked.0],
        time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let backend = Backend::start();
    let listeners = [MtlsListener {
        name: "crl".into(),
        plugin_config: world.policy(json!({ "crls": [stale] })),
        xfcc: Xfcc::SanitizeSet,
    }];
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.root.cert.cert_pem,
    };
    let envoy = Envoy::start(&bootstrap(&listeners, &tls, &filter_wasm(), backend.addr))
        .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    assert_eq!(get(&envoy, "crl", &revoked.1), (403, "revoked".to_owned()));
    assert_eq!(get(&envoy, "crl", &fine.1), (200, "backend ok".to_owned()));
    assert_eq!(get(&envoy, "crl", &fine.1), (200, "backend ok".to_owned()));
    envoy
        .wait_for_log_line(
            &["peergate: stale CRL, still enforced: crls[0] of trustedIssuers[0]"],
            Duration::from_secs(5),
        )
        .expect("the stale-CRL warning");
    // Every decision that consulted it is counted (the two allowed ones come from the
    // cache, which keeps the assessment's CRL time: still stale).
    let stale_count = envoy.counter("wasmcustom.peergate.crl_stale");
    assert_eq!(stale_count, 3, "{}", envoy.log());
    // Once per configuration (per VM: the configuration is handed to each VM).
    let warnings = envoy.log().matches("stale CRL, still enforced").count();
    let vms = envoy.log().matches("peergate: configured:").count();
    assert!(
        warnings >= 1 && warnings <= vms,
        "{warnings} warnings for {vms} configured VMs"
    );
}

/// Why the generator's CRLs live as long as their CA: once Envoy's validation context has
/// CRLs, a stale one fails every handshake, and a CA of the chain without one does too (Istio
/// sets neither `only_verify_leaf_cert_crl` nor anything that would relax it).
#[test]
fn envoy_refuses_handshakes_under_a_stale_crl_or_a_ca_without_one() {
    let world = World::new();
    let client = world.client(
        &world.issuing,
        &Leaf::client("a", &[&format!("URI:{PARTNER_A}")], KeyKind::P256),
        true,
    );
    let fresh = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    let stale = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let backend = Backend::start();
    let listener = |name: &str| MtlsListener {
        name: name.into(),
        plugin_config: world.policy(json!({})),
        xfcc: Xfcc::SanitizeSet,
    };
    let listeners = [listener("fresh"), listener("stale"), listener("partial")];
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.root.cert.cert_pem,
    };
    let mut config = bootstrap(&listeners, &tls, &filter_wasm(), backend.addr);
    let crls = [
        format!(
            "{}{}",
            world.root.crl(&[], fresh),
            world.issuing.crl(&[], fresh)
        ),
        format!(
            "{}{}",
            world.root.crl(&[], fresh),
            world.issuing.crl(&[], stale)
        ),
        world.root.crl(&[], fresh),
    ];
    let configured = config["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(&crls);
    for (listener, crl) in configured {
        for chain in listener["filter_chains"].as_array_mut().unwrap() {
            chain["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
                ["crl"] = json!({ "inline_string": crl });
        }
    }
    let envoy = Envoy::start(&config).unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    assert_eq!(
        get(&envoy, "fresh", &client.1),
        (200, "backend ok".to_owned())
    );
    for listener in ["stale", "partial"] {
        let refused = client
            .1
            .get(envoy.listener(listener), DOMAIN, DOMAIN, "/hello", &[])
            .map(|r| r.status);
        assert!(
            refused.is_err(),
            "{listener}: the handshake passed: {refused:?}"
        );
    }
}
