//! The built peergate module inside a real Envoy, with real TLS, real client certificates and
//! real HTTP: a gateway set up like Istio's ingress gateway with `tls.mode: MUTUAL`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use peergate_e2e::backend::Backend;
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{envoy_binary, filter_wasm, legacy_envoy_binary, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::http::url_encode;
use peergate_e2e::pki::{ecdsa_twin, Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::assert_fails_closed;
use peergate_e2e::scenario::{CLIENT_ID, DOMAIN};
use peergate_filter::{Mode, PluginConfig};

/// The certificates of one scenario, all made for this test run.
struct World {
    root: Ca,
    server: Issued,
    /// Allowed: SAN = CLIENT_ID.
    client: Issued,
    /// From the right root, SAN not allowed.
    stranger: Issued,
    /// From a CA whose subject DN is byte-identical to the root's (its own key id).
    impostor: Issued,
    /// The same, without an authority key identifier: only the signature tells.
    impostor_without_aki: Issued,
    look_alike: Ca,
}

impl World {
    fn new(kind: KeyKind) -> Self {
        let root = Ca::new("a-b-root-ca", kind);
        let look_alike = root.same_name(kind);
        let client_san = format!("URI:{CLIENT_ID}");
        let mut without_aki = Leaf::client("cluster-a-client", &[&client_san], kind);
        without_aki.authority_key_id = false;
        World {
            server: root.issue(&Leaf::server(DOMAIN, kind)),
            client: root.issue(&Leaf::client("cluster-a-client", &[&client_san], kind)),
            stranger: root.issue(&Leaf::client(
                "stranger",
                &["URI:spiffe://cluster-x/ns/x/sa/x"],
                kind,
            )),
            impostor: look_alike.issue(&Leaf::client("cluster-a-client", &[&client_san], kind)),
            impostor_without_aki: look_alike.issue(&without_aki),
            look_alike,
            root,
        }
    }

    fn policy(&self, allowed: &[&str]) -> PluginConfig {
        PluginConfig {
            trusted_issuers: vec![self.root.cert.cert_pem.clone().into()],
            allowed_sans: Some(allowed.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        }
    }

    /// The CA bundle of the gateway's credential: the look-alike and the agreed root, as a
    /// shared trust bundle would have them. TLS admits both; only the filter tells them apart.
    /// (The look-alike comes first: Envoy 1.40's BoringSSL then picks it for a leaf without a
    /// key id, so the handshake passes and the filter sees the leaf.)
    fn bundle(&self) -> String {
        format!(
            "{}{}",
            self.look_alike.cert.cert_pem, self.root.cert.cert_pem
        )
    }

    fn client_for(&self, leaf: &Issued) -> TlsClient {
        TlsClient::new(
            &self.root.cert.cert_pem,
            Some((&leaf.cert_pem, &leaf.key_pem)),
        )
    }
}

struct Gateway {
    envoy: Envoy,
    backend: Backend,
}

fn listener(name: &str, config: &PluginConfig, xfcc: Xfcc) -> MtlsListener {
    MtlsListener {
        name: name.into(),
        plugin_config: config.to_json(),
        xfcc,
    }
}

fn start_gateway(world: &World, listeners: &[MtlsListener]) -> Gateway {
    start_gateway_on(&envoy_binary(), world, listeners)
}

fn start_gateway_on(binary: &Path, world: &World, listeners: &[MtlsListener]) -> Gateway {
    let backend = Backend::start();
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.bundle(),
    };
    let config = bootstrap(listeners, &tls, &filter_wasm(), backend.addr);
    let envoy = Envoy::start_with(binary, &config)
        .unwrap_or_else(|f| panic!("Envoy did not start (exited: {}):\n{}", f.exited, f.log));
    Gateway { envoy, backend }
}

/// The filter's counters (Envoy lists custom wasm metrics under `wasmcustom.`). The filter
/// defines every one when it is configured, so the totals must be there: missing is not 0.
fn counters(envoy: &Envoy) -> BTreeMap<String, u64> {
    let counters: BTreeMap<String, u64> = envoy
        .stats("peergate")
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("wasmcustom.")?.to_owned(), v)))
        // Whether a decision came from the cache depends on which worker took the connection;
        // `tests/metrics.rs` checks those two on one connection.
        .filter(|(k, _)| !k.ends_with("_decisions"))
        .collect();
    for name in [
        "peergate.allowed",
        "peergate.denied",
        "peergate.audit_would_deny",
    ] {
        assert!(
            counters.contains_key(name),
            "Envoy lists no {name}: a missing counter is not 0 ({counters:?})"
        );
    }
    counters
}

/// What changed from `before` to `after`; a counter that appeared in between is a failure (the
/// filter defines them all at once).
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let was = before
                .get(k)
                .unwrap_or_else(|| panic!("counter {k} appeared after the start"));
            let d = v - was;
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn expect_counters(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn owned(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn filter_log_tail(envoy: &Envoy) -> String {
    std::thread::sleep(Duration::from_millis(200)); // the log is flushed every 100 ms
    let log = envoy.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("[wasm]")).collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

struct Case<'a> {
    name: &'a str,
    listener: &'a str,
    client: TlsClient,
    authority: &'a str,
    headers: Vec<(&'a str, String)>,
    status: u16,
    counters: Vec<(String, u64)>,
}

/// Every listener's filter took Envoy's signature verifier (so the impostors below are
/// refused by BoringSSL's verdict; `host_verifier.rs` checks it decides as the module's own).
fn expect_envoys_verifier(envoy: &Envoy) {
    // The worker VMs configure as Envoy starts; on a loaded machine their lines can follow
    // the listeners' readiness.
    envoy.wait_for_log_line(&["peergate: configured:"], Duration::from_secs(20));
    let log = envoy.log();
    let configured: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("peergate: configured:"))
        .collect();
    assert!(!configured.is_empty(), "no configured line:\n{log}");
    for line in configured {
        assert!(line.contains(" signatures=envoy "), "{line}");
    }
}

fn run(gateway: &Gateway, case: &Case<'_>) {
    let before = counters(&gateway.envoy);
    let backend_before = gateway.backend.count();
    let headers: Vec<(&str, &str)> = case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let response = case
        .client
        .get(
            gateway.envoy.listener(case.listener),
            DOMAIN,
            case.authority,
            "/hello",
            &headers,
        )
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", case.name));
    assert_eq!(
        response.status,
        case.status,
        "{}: status (body {:?}); the filter's recent log:\n{}",
        case.name,
        response.text(),
        filter_log_tail(&gateway.envoy)
    );
    let reached = gateway.backend.count() - backend_before;
    if case.status == 200 {
        assert_eq!(
            reached, 1,
            "{}: the backend should see the request",
            case.name
        );
    } else {
        assert_eq!(
            reached, 0,
            "{}: the backend must not see a denied request",
            case.name
        );
        assert_eq!(
            response.header("x-peergate-reason"),
            Some(response.text().trim()),
            "{}: the reply names the reason",
            case.name
        );
    }
    // Counters are summed over the worker VMs and allowed ones flushed every 250 ms: wait for
    // the expected changes, then check that nothing more arrives.
    let want: BTreeMap<String, u64> = case.counters.iter().cloned().collect();
    gateway
        .envoy
        .settle(&format!("{}: counter changes", case.name), &want, |envoy| {
            delta(&before, &counters(envoy))
        });
}

/// An XFCC element claiming `leaf` (what a client forging the header would send).
fn forged_xfcc(leaf: &Issued) -> String {
    format!(
        "By=spiffe://forged;Hash=00;Cert=\"{}\";Subject=\"CN=cluster-a-client\";URI={CLIENT_ID}",
        url_encode(&leaf.cert_pem)
    )
}

fn table(kind: KeyKind) {
    let world = World::new(kind);
    let allowed = world.policy(&[CLIENT_ID]);
    let mut audit = allowed.clone();
    audit.mode = Mode::Audit;
    let hosts: PluginConfig = serde_json::from_value(serde_json::json!({
        "trustedIssuers": [world.root.cert.cert_pem],
        "hosts": {
            DOMAIN: { "allowedSans": [CLIENT_ID] },
            "admin.zufar.io": { "allowedSans": ["spiffe://cluster-a/ns/admin/*"] }
        }
    }))
    .unwrap();
    let patterns = world.policy(&["*.x", "spiffe://cluster-a/*"]);
    let mut deny_429 = allowed.clone();
    deny_429.deny_status = Some(429);
    let gw = start_gateway(
        &world,
        &[
            listener("enforce", &allowed, Xfcc::SanitizeSet),
            listener("deny429", &deny_429, Xfcc::SanitizeSet),
            listener("append", &allowed, Xfcc::AppendForward),
            listener("audit", &audit, Xfcc::SanitizeSet),
            listener("hosts", &hosts, Xfcc::SanitizeSet),
            listener("patterns", &patterns, Xfcc::SanitizeSet),
        ],
    );

    expect_envoys_verifier(&gw.envoy);
    let client = world.client_for(&world.client);
    let stranger = world.client_for(&world.stranger);
    let impostor = world.client_for(&world.impostor);
    let impostor_without_aki = world.client_for(&world.impostor_without_aki);
    let one_label = world.client_for(&world.root.issue(&Leaf::client("x", &["DNS:a.x"], kind)));
    let two_labels = world.client_for(&world.root.issue(&Leaf::client("x", &["DNS:a.b.x"], kind)));
    let denied = |reason: &str| {
        owned(&[
            ("peergate.denied", 1),
            (&format!("peergate.denied.{reason}"), 1),
        ])
    };
    let san_denied = denied("san_not_allowed");
    let sig_denied = denied("bad_signature");
    let key_id_denied = denied("issuer_key_id_mismatch");
    let allowed_once = owned(&[("peergate.allowed", 1)]);
    let audit_once = owned(&[
        ("peergate.audit_would_deny", 1),
        ("peergate.audit_would_deny.san_not_allowed", 1),
    ]);

    let cases = [
        Case {
            name: "allowed client",
            listener: "enforce",
            client: client.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: allowed_once.clone(),
        },
        Case {
            name: "right root, SAN not allowed",
            listener: "enforce",
            client: stranger.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: san_denied.clone(),
        },
        Case {
            name: "right root, SAN not allowed, under denyStatus 429",
            listener: "deny429",
            client: stranger.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 429,
            counters: san_denied.clone(),
        },
        Case {
            name: "allowed client under denyStatus 429",
            listener: "deny429",
            client: client.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: allowed_once.clone(),
        },
        Case {
            name: "CA with the root's exact subject DN (TLS passes), by key id",
            listener: "enforce",
            client: impostor.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: key_id_denied.clone(),
        },
        Case {
            name: "CA with the root's exact subject DN (TLS passes), leaf without key id",
            listener: "enforce",
            client: impostor_without_aki.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: sig_denied.clone(),
        },
        Case {
            name: "forged XFCC carrying the allowed cert, SANITIZE_SET",
            listener: "enforce",
            client: stranger.clone(),
            authority: DOMAIN,
            headers: vec![("x-forwarded-client-cert", forged_xfcc(&world.client))],
            status: 403,
            counters: san_denied.clone(),
        },
        Case {
            name: "forged XFCC carrying the allowed cert, APPEND_FORWARD",
            listener: "append",
            client: stranger.clone(),
            authority: DOMAIN,
            headers: vec![("x-forwarded-client-cert", forged_xfcc(&world.client))],
            status: 403,
            counters: san_denied.clone(),
        },
        Case {
            name: "allowed client with a forged XFCC of another cert, APPEND_FORWARD",
            listener: "append",
            client: client.clone(),
            authority: DOMAIN,
            headers: vec![("x-forwarded-client-cert", forged_xfcc(&world.stranger))],
            status: 200,
            counters: allowed_once.clone(),
        },
        Case {
            name: "audit mode lets a not-allowed client through",
            listener: "audit",
            client: stranger.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: audit_once.clone(),
        },
        Case {
            name: "audit mode, allowed client",
            listener: "audit",
            client: client.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: allowed_once.clone(),
        },
        Case {
            name: "host rule allows on its authority",
            listener: "hosts",
            client: client.clone(),
            authority: "HelloWorld.zufar.io:443",
            headers: vec![],
            status: 200,
            counters: allowed_once.clone(),
        },
        Case {
            name: "host rule denies the same client on another authority",
            listener: "hosts",
            client: client.clone(),
            authority: "admin.zufar.io",
            headers: vec![],
            status: 403,
            counters: san_denied.clone(),
        },
        Case {
            name: "wildcard *.x matches a.x",
            listener: "patterns",
            client: one_label,
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: allowed_once.clone(),
        },
        Case {
            name: "wildcard *.x does not match a.b.x",
            listener: "patterns",
            client: two_labels,
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: san_denied.clone(),
        },
        Case {
            name: "URI prefix spiffe://cluster-a/* matches the client",
            listener: "patterns",
            client: client.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: allowed_once.clone(),
        },
    ];
    for case in &cases {
        run(&gw, case);
    }

    // The backend saw Envoy's own XFCC for the real client: under SANITIZE_SET only that one,
    // under APPEND_FORWARD the forged element first and Envoy's last.
    let seen = gw.backend.seen();
    let sanitized = seen[0].header("x-forwarded-client-cert").unwrap();
    assert!(sanitized.contains(CLIENT_ID), "{sanitized}");
    assert!(!sanitized.contains("forged"), "{sanitized}");
    let appended = seen
        .iter()
        .filter_map(|s| s.header("x-forwarded-client-cert"))
        .find(|x| x.contains("forged"))
        .expect("the APPEND_FORWARD request reached the backend");
    assert!(
        appended.ends_with(&format!("URI={CLIENT_ID}")),
        "{appended}"
    );

    // Decision log: one JSON line per denial, naming the reason and the peer.
    let impostor_fp = peergate_filter::peer::hex(&peergate_filter::peer::fingerprint(
        &world.impostor_without_aki.cert_der,
    ));
    let line = gw
        .envoy
        .wait_for_log_line(
            &["\"decision\":\"deny\"", &impostor_fp],
            Duration::from_secs(5),
        )
        .expect("a decision-log line for the impostor");
    let json: serde_json::Value = serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap();
    assert_eq!(json["reason"], "bad_signature");
    assert_eq!(json["mode"], "enforce");
    assert_eq!(json["enforced"], true);
    assert_eq!(json["authority"], DOMAIN);
    assert_eq!(json["sans"][0], format!("URI:{CLIENT_ID}"));
    assert!(json["issuer"].as_str().unwrap().contains("a-b-root-ca"));
    let audit_line = gw
        .envoy
        .wait_for_log_line(
            &["\"mode\":\"audit\"", "\"enforced\":false"],
            Duration::from_secs(5),
        )
        .expect("a decision-log line for the audit would-deny");
    assert!(audit_line.contains("san_not_allowed"), "{audit_line}");

    // Keep-alive: later requests on one connection are judged from the cache, still correctly.
    let before = counters(&gw.envoy);
    let mut conn = client
        .connect(gw.envoy.listener("enforce"), DOMAIN)
        .unwrap();
    for _ in 0..5 {
        assert_eq!(conn.get(DOMAIN, "/hello", &[]).unwrap().status, 200);
    }
    let mut conn = stranger
        .connect(gw.envoy.listener("enforce"), DOMAIN)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(conn.get(DOMAIN, "/hello", &[]).unwrap().status, 403);
    }
    gw.envoy.settle(
        "keep-alive counters",
        &expect_counters(&[
            ("peergate.allowed", 5),
            ("peergate.denied", 3),
            ("peergate.denied.san_not_allowed", 3),
        ]),
        |envoy| delta(&before, &counters(envoy)),
    );

    // Istio's MUTUAL: no client certificate, no TLS session at all.
    let anonymous = TlsClient::new(&world.root.cert.cert_pem, None);
    anonymous
        .try_get(
            gw.envoy.listener("enforce"),
            DOMAIN,
            DOMAIN,
            "/hello",
            "no client certificate",
        )
        .assert_closed("a client without a certificate must fail the handshake");
}

/// The trust hardening in Envoy: a denied ECDSA certificate re-encoded as its twin (s ↔ n − s,
/// which TLS accepts with the same key) is still denied, and a CA certificate from the agreed
/// root, under a pattern that covers its name, is refused as a client.
fn hardening(kind: KeyKind) {
    let world = World::new(kind);
    let mut deny_list = world.policy(&[CLIENT_ID]);
    deny_list.denied_fingerprints = vec![peergate_filter::peer::hex(
        &peergate_filter::peer::fingerprint(&world.client.cert_der),
    )];
    let broad = world.policy(&[CLIENT_ID, "*.zufar.io"]);
    let gw = start_gateway(
        &world,
        &[
            listener("denylist", &deny_list, Xfcc::SanitizeSet),
            listener("broad", &broad, Xfcc::SanitizeSet),
        ],
    );
    let twin = ecdsa_twin(&world.client, kind);
    assert_ne!(twin.cert_der, world.client.cert_der);
    let mut ca_leaf = Leaf::client("ca-as-client", &["DNS:ca.zufar.io"], kind);
    ca_leaf.ca = true;
    let ca_leaf = world.root.issue(&ca_leaf);
    let denied = |reason: &str| {
        owned(&[
            ("peergate.denied", 1),
            (&format!("peergate.denied.{reason}"), 1),
        ])
    };
    let cases = [
        Case {
            name: "the denied certificate",
            listener: "denylist",
            client: world.client_for(&world.client),
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: denied("denied_fingerprint"),
        },
        Case {
            name: "its ECDSA twin, same key, other fingerprint",
            listener: "denylist",
            client: world.client_for(&twin),
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: denied("denied_fingerprint"),
        },
        Case {
            name: "the twin is a valid certificate: admitted where nothing is denied",
            listener: "broad",
            client: world.client_for(&twin),
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: owned(&[("peergate.allowed", 1)]),
        },
        Case {
            name: "a CA certificate as a client, under *.zufar.io",
            listener: "broad",
            client: world.client_for(&ca_leaf),
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: denied("leaf_is_ca"),
        },
    ];
    for case in &cases {
        run(&gw, case);
    }

    // The gateway's own serverAuth certificate never reaches the filter here: Envoy's
    // BoringSSL checks the client purpose in the handshake (extendedKeyUsage, and keyUsage
    // digitalSignature) and sends an alert. The filter's not_client_auth check (tested
    // natively) holds where the handshake is not BoringSSL's, and keeps the audit honest.
    let backend_before = gw.backend.count();
    let refused = world
        .client_for(&world.server)
        .get(gw.envoy.listener("broad"), DOMAIN, DOMAIN, "/hello", &[])
        .map(|r| r.status);
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("UnsupportedCertificate")),
        "a serverAuth certificate as a client: {refused:?}"
    );
    assert_eq!(gw.backend.count(), backend_before);
}

#[test]
fn p256_twins_and_the_client_profile() {
    hardening(KeyKind::P256);
}

#[test]
fn p384_twins_and_the_client_profile() {
    hardening(KeyKind::P384);
}

#[test]
fn ecdsa_p256_root_and_clients() {
    table(KeyKind::P256);
}

#[test]
fn rsa_2048_root_and_clients() {
    table(KeyKind::Rsa2048);
}

/// A bad `pluginConfig` must keep every request away from the backend, and Envoy's log must
/// say why.
fn fails_closed(plugin_config: &str, expected_log: &str) {
    let world = World::new(KeyKind::P256);
    let backend = Backend::start();
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.bundle(),
    };
    let bad = MtlsListener {
        name: "bad".into(),
        plugin_config: plugin_config.into(),
        xfcc: Xfcc::SanitizeSet,
    };
    let config = bootstrap(&[bad], &tls, &filter_wasm(), backend.addr);
    let client = world.client_for(&world.client);
    assert_fails_closed(&config, "bad", &client, &backend, expected_log);
}

#[test]
fn bad_config_not_pem_fails_closed() {
    let world = World::new(KeyKind::P256);
    let mut config = world.policy(&[CLIENT_ID]);
    config.trusted_issuers = vec!["this is not a certificate".into()];
    fails_closed(
        &config.to_json(),
        "trustedIssuers[0]: not a PEM certificate",
    );
}

#[test]
fn bad_config_unknown_field_fails_closed() {
    let config = r#"{"trustedIssuers":["x"],"allowedSan":["spiffe://a"]}"#;
    fails_closed(config, "unknown field `allowedSan`");
}

/// On an Envoy older than 1.38 the connection property is missing: the filter reads `Cert=` of
/// `x-forwarded-client-cert` and trusts it only where it is the connection's own certificate.
#[test]
fn xfcc_fallback_on_an_envoy_without_the_peer_certificate_property() {
    let world = World::new(KeyKind::P256);
    let allowed = world.policy(&[CLIENT_ID]);
    let gw = start_gateway_on(
        &legacy_envoy_binary(),
        &world,
        &[
            listener("sanitize-set", &allowed, Xfcc::SanitizeSet),
            listener("append", &allowed, Xfcc::AppendForward),
            listener("no-xfcc", &allowed, Xfcc::Sanitize),
        ],
    );
    expect_envoys_verifier(&gw.envoy);
    let client = world.client_for(&world.client);
    let stranger = world.client_for(&world.stranger);
    let fresh_client = world.client_for(&world.root.issue(&Leaf::client(
        "cluster-a-client",
        &[&format!("URI:{CLIENT_ID}")],
        KeyKind::P256,
    )));
    // With a key id, BoringSSL picks the look-alike by it and TLS passes on every Envoy.
    let impostor = world.client_for(&world.impostor);
    let denied = |reason: &str| {
        owned(&[
            ("peergate.denied", 1),
            (&format!("peergate.denied.{reason}"), 1),
        ])
    };
    let cases = [
        Case {
            name: "allowed client, from XFCC",
            listener: "sanitize-set",
            client: client.clone(),
            authority: DOMAIN,
            headers: vec![],
            status: 200,
            counters: owned(&[("peergate.allowed", 1)]),
        },
        Case {
            name: "stranger forging XFCC with the allowed cert, SANITIZE_SET",
            listener: "sanitize-set",
            client: stranger.clone(),
            authority: DOMAIN,
            headers: vec![("x-forwarded-client-cert", forged_xfcc(&world.client))],
            status: 403,
            counters: denied("san_not_allowed"),
        },
        Case {
            name: "stranger forging XFCC with the allowed cert, APPEND_FORWARD",
            listener: "append",
            client: stranger.clone(),
            authority: DOMAIN,
            headers: vec![("x-forwarded-client-cert", forged_xfcc(&world.client))],
            status: 403,
            counters: denied("san_not_allowed"),
        },
        Case {
            name: "look-alike CA, from XFCC",
            listener: "sanitize-set",
            client: impostor,
            authority: DOMAIN,
            headers: vec![],
            status: 403,
            counters: denied("issuer_key_id_mismatch"),
        },
        Case {
            // A certificate not seen before: one already assessed is found in the cache by the
            // connection's own digest and needs no header at all.
            name: "no XFCC from the proxy: nothing matches the connection",
            listener: "no-xfcc",
            client: fresh_client,
            authority: DOMAIN,
            headers: vec![("x-forwarded-client-cert", forged_xfcc(&world.client))],
            status: 403,
            counters: denied("xfcc_mismatch"),
        },
    ];
    for case in &cases {
        run(&gw, case);
    }
    let line = gw
        .envoy
        .wait_for_log_line(
            &["\"source\":\"xfcc\"", "issuer_key_id_mismatch"],
            Duration::from_secs(5),
        )
        .expect("the decision log says the certificate came from XFCC");
    assert!(line.contains("\"decision\":\"deny\""), "{line}");
}

/// Envoy checks a client certificate's validity at the handshake only; the filter checks it
/// on every request, at the time its root context keeps (refreshed every tick, 250 ms, so a
/// decision costs no clock host call). A connection opened shortly before its certificate
/// expires is refused on that same connection once notAfter has passed: the kept time does
/// move on.
#[test]
fn a_certificate_expiring_on_an_open_connection_is_refused_on_it() {
    let world = World::new(KeyKind::P256);
    let gateway = start_gateway(
        &world,
        &[listener(
            "enforce",
            &world.policy(&[CLIENT_ID]),
            Xfcc::SanitizeSet,
        )],
    );
    // Issued once the gateway is up, so a slow start on a loaded machine cannot use up its
    // three seconds before the first request.
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let leaf = world.root.issue(&Leaf {
        not_after,
        ..Leaf::client(
            "cluster-a-client",
            &[&format!("URI:{CLIENT_ID}")],
            KeyKind::P256,
        )
    });
    let mut connection = world
        .client_for(&leaf)
        .connect(gateway.envoy.listener("enforce"), DOMAIN)
        .unwrap();
    let first = connection.get(DOMAIN, "/hello", &[]).unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    // notAfter has whole seconds (UTCTime); then wait a few ticks more.
    while time::OffsetDateTime::now_utc() < not_after + time::Duration::milliseconds(1500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = connection.get(DOMAIN, "/hello", &[]).unwrap();
    assert_eq!(
        (after.status, after.text().trim()),
        (403, "expired"),
        "the same connection after notAfter"
    );
    assert_eq!(gateway.backend.count(), 1);
}

/// On a gateway shared with other hosts (`protectedServerNames`), a request for the protected
/// host is decided even when its connection was opened for another server name: HTTP/2
/// connection coalescing sends exactly that, and any client can. Only a request whose server
/// name and authority are both another host's passes untouched.
#[test]
fn a_protected_host_is_decided_on_a_connection_opened_for_another_name() {
    const OTHER: &str = "other.zufar.io";
    let mut world = World::new(KeyKind::P256);
    // The gateway serves both hosts with one certificate, as a shared gateway may.
    world.server = world.root.issue(&Leaf {
        sans: vec![DOMAIN.to_owned(), OTHER.to_owned()],
        ..Leaf::server(DOMAIN, KeyKind::P256)
    });
    let config = PluginConfig {
        protected_server_names: Some(vec![DOMAIN.to_owned()]),
        ..world.policy(&[CLIENT_ID])
    };
    let gateway = start_gateway(&world, &[listener("shared", &config, Xfcc::SanitizeSet)]);
    let addr = gateway.envoy.listener("shared");
    let stranger = world.client_for(&world.stranger);
    for authority in [
        DOMAIN.to_owned(),
        DOMAIN.to_ascii_uppercase(),
        format!("{DOMAIN}."),
        format!("{DOMAIN}:443"),
    ] {
        let before = counters(&gateway.envoy);
        stranger
            .try_get(addr, OTHER, &authority, "/hello", &authority)
            .assert_denied(403, "san_not_allowed", &authority);
        let want = expect_counters(&[
            ("peergate.denied", 1),
            ("peergate.denied.san_not_allowed", 1),
        ]);
        gateway
            .envoy
            .settle(&authority, &want, |envoy| delta(&before, &counters(envoy)));
    }
    // Another team's request on its own connection: untouched, counted as unprotected.
    let before = counters(&gateway.envoy);
    let reached = gateway.backend.count();
    let response = stranger
        .try_get(addr, OTHER, OTHER, "/hello", "another host")
        .response("another host");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(gateway.backend.count(), reached + 1);
    let want = expect_counters(&[("peergate.unprotected", 1)]);
    gateway.envoy.settle("another host", &want, |envoy| {
        delta(&before, &counters(envoy))
    });
    // The allowed peer still passes on our host under either server name.
    for sni in [DOMAIN, OTHER] {
        let response = world
            .client_for(&world.client)
            .try_get(addr, sni, DOMAIN, "/hello", sni)
            .response(sni);
        assert_eq!(response.status, 200, "{sni}: {}", response.text());
    }
}
