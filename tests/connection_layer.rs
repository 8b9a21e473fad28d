//! The module as a network filter (`"layer": "connection"`, WasmPlugin `type: NETWORK`) in a
//! real Envoy: one decision per TLS connection on its first bytes, a denied peer's connection
//! closed before anything reaches the connection manager or the backend, the same counters and
//! decision lines as the HTTP layer, host rules keyed on SNI, bad configurations failing
//! closed.

use std::time::Duration;

use peergate_e2e::backend::Backend;
use peergate_e2e::client::{Outcome, TlsClient};
use peergate_e2e::envoy::{filter_wasm, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::{assert_fails_closed, Scenario, CLIENT_ID, DOMAIN};
use serde_json::{json, Value};

const OTHER_NAME: &str = "other.zufar.io";

/// The common cast, a server certificate for two names (for the SNI rule), and two impostors
/// from a CA whose subject DN is byte-identical to the root's.
struct World {
    cast: Scenario,
    look_alike: Ca,
    /// Its own key id.
    impostor: Issued,
    /// Without an authority key identifier: only the signature tells.
    impostor_without_aki: Issued,
}

impl World {
    fn new() -> Self {
        let kind = KeyKind::P256;
        let mut server = Leaf::server(DOMAIN, kind);
        server.sans.push(OTHER_NAME.into());
        let cast = Scenario::with_server(kind, server);
        let look_alike = cast.root.same_name(kind);
        let mut without_aki = Scenario::client_leaf(kind);
        without_aki.authority_key_id = false;
        World {
            impostor: look_alike.issue(&Scenario::client_leaf(kind)),
            impostor_without_aki: look_alike.issue(&without_aki),
            look_alike,
            cast,
        }
    }

    fn config(&self, extra: Value) -> String {
        // The layer goes in unless the case sets its own; `extra` reaches the policy whole,
        // so a `null` in it still removes a field.
        let mut fields = extra;
        if fields.get("layer").is_none() {
            fields["layer"] = "connection".into();
        }
        self.cast.policy(fields)
    }

    /// TLS admits both CAs (a shared trust bundle); only the filter tells them apart. (The
    /// look-alike first: BoringSSL then picks it for a leaf without a key id.)
    fn bundle(&self) -> String {
        format!(
            "{}{}",
            self.look_alike.cert.cert_pem, self.cast.root.cert.cert_pem
        )
    }
}

impl std::ops::Deref for World {
    type Target = Scenario;
    fn deref(&self) -> &Scenario {
        &self.cast
    }
}

struct Gateway {
    envoy: Envoy,
    backend: Backend,
}

fn start(world: &World) -> Gateway {
    let backend = Backend::start();
    let listener = |name: &str, extra: Value| MtlsListener {
        name: name.into(),
        plugin_config: world.config(extra),
        xfcc: Xfcc::SanitizeSet,
    };
    let listeners = [
        listener("enforce", json!({ "logAllowed": true })),
        listener("audit", json!({ "mode": "audit" })),
        listener(
            "sni",
            json!({ "allowedSans": null, "hosts": { DOMAIN: { "allowedSans": [CLIENT_ID] } } }),
        ),
    ];
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.bundle(),
    };
    let envoy = Envoy::start(&bootstrap(&listeners, &tls, &filter_wasm(), backend.addr))
        .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    Gateway { envoy, backend }
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&format!("wasmcustom.peergate.{name}"))
}

/// Sends one request on a new connection and expects the connection to be closed without an
/// HTTP response, promptly.
fn expect_closed(gateway: &Gateway, client: &TlsClient, listener: &str, sni: &str, what: &str) {
    let before = gateway.backend.count();
    // Closed, not hung: `Outcome` fails on a read that timed out (how fast the close comes is
    // measured by `cargo make bench`).
    client
        .try_get(
            gateway.envoy.listener(listener),
            sni,
            DOMAIN,
            "/hello",
            what,
        )
        .assert_closed(what);
    assert_eq!(
        gateway.backend.count(),
        before,
        "{what}: a byte reached the backend"
    );
}

#[test]
fn one_decision_per_connection_and_denied_connections_are_closed() {
    let world = World::new();
    let gateway = start(&world);
    let envoy = &gateway.envoy;

    // The allowed client: twenty requests on one connection, one decision.
    let allowed = counter(envoy, "allowed");
    let mut connection = world
        .client_for(&world.client)
        .connect(envoy.listener("enforce"), DOMAIN)
        .unwrap();
    for _ in 0..20 {
        assert_eq!(connection.get(DOMAIN, "/hello", &[]).unwrap().status, 200);
    }
    envoy.settle("one decision for the connection", &1, |envoy| {
        counter(envoy, "allowed") - allowed
    });
    assert_eq!(gateway.backend.count(), 20);
    let line = envoy
        .wait_for_log_line(
            &[r#""decision":"allow""#, r#""layer":"connection""#],
            Duration::from_secs(3),
        )
        .expect("an allow line with the layer");
    assert!(
        line.contains(&format!(r#""authority":"{DOMAIN}""#)),
        "SNI as authority: {line}"
    );

    // Denials: closed, counted and logged per reason, nothing reaches the backend.
    for (leaf, reason, what) in [
        (&world.stranger, "san_not_allowed", "a SAN not allowed"),
        (
            &world.impostor,
            "issuer_key_id_mismatch",
            "a same-named CA with its own key id",
        ),
        (
            &world.impostor_without_aki,
            "bad_signature",
            "a same-named CA, no key id on the leaf",
        ),
    ] {
        let denied = counter(envoy, &format!("denied.{reason}"));
        expect_closed(&gateway, &world.client_for(leaf), "enforce", DOMAIN, what);
        envoy.settle(what, &1, |envoy| {
            counter(envoy, &format!("denied.{reason}")) - denied
        });
        assert!(
            envoy
                .wait_for_log_line(
                    &[
                        &format!(r#""reason":"{reason}""#),
                        r#""layer":"connection""#,
                        r#""enforced":true"#
                    ],
                    Duration::from_secs(3)
                )
                .is_some(),
            "{what}: decision line"
        );
    }

    // Audit mode: the stranger gets through, the would-be denial is counted.
    let would = counter(envoy, "audit_would_deny.san_not_allowed");
    let response = world
        .client_for(&world.stranger)
        .get(envoy.listener("audit"), DOMAIN, DOMAIN, "/hello", &[])
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        counter(envoy, "audit_would_deny.san_not_allowed") - would,
        1
    );

    // Host rules key on SNI: the named server passes, another name has no rule.
    let client = world.client_for(&world.client);
    let response = client
        .get(envoy.listener("sni"), DOMAIN, DOMAIN, "/hello", &[])
        .unwrap();
    assert_eq!(response.status, 200);
    let no_rule = counter(envoy, "denied.no_rule_for_host");
    expect_closed(
        &gateway,
        &client,
        "sni",
        OTHER_NAME,
        "an SNI without a rule",
    );
    assert_eq!(counter(envoy, "denied.no_rule_for_host") - no_rule, 1);
    // At this layer `:authority` plays no part: SNI decides even when the Host header differs.
    let mut connection = client.connect(envoy.listener("sni"), DOMAIN).unwrap();
    assert_eq!(
        connection.get(OTHER_NAME, "/hello", &[]).unwrap().status,
        200
    );
}

/// A configuration the connection layer cannot honour makes Envoy refuse the plugin, with
/// the reason in its log; nothing reaches the backend.
#[test]
fn bad_connection_layer_configurations_fail_closed() {
    let world = World::new();
    for (extra, expected) in [
        (
            json!({ "denyStatus": 403 }),
            "denyStatus: with layer connection a refused peer's connection is closed",
        ),
        (
            json!({ "allowedSans": null, "hosts": { "10.0.0.1": { "allowedSans": [CLIENT_ID] } } }),
            "hosts.10.0.0.1: with layer connection host rules key on the TLS server name (SNI)",
        ),
        // The rule is picked by SNI, but requests on the admitted connection are routed by
        // their own Host: a peer allowed for one host could reach the other's.
        (
            json!({ "allowedSans": null, "hosts": {
                DOMAIN: { "allowedSans": [CLIENT_ID] },
                "admin.zufar.io": { "allowedSans": ["spiffe://cluster-a/ns/admin/*"] },
            } }),
            "hosts: with layer connection several host rules would let a connection admitted for one server name send requests for another's host",
        ),
        (
            json!({ "hosts": { "admin.zufar.io": { "allowedSans": ["spiffe://cluster-a/ns/admin/*"] } } }),
            "hosts: with layer connection a host rule beside the top-level allowedSans",
        ),
        (
            json!({ "layer": "transport" }),
            "unknown variant `transport`",
        ),
    ] {
        let backend = Backend::start();
        let listeners = [MtlsListener {
            name: "bad".into(),
            plugin_config: world.config(extra.clone()),
            xfcc: Xfcc::SanitizeSet,
        }];
        let tls = GatewayTls {
            cert: &world.server.cert_pem,
            key: &world.server.key_pem,
            client_ca_bundle: &world.root.cert.cert_pem,
        };
        let config = bootstrap(&listeners, &tls, &filter_wasm(), backend.addr);
        let client = world.client_for(&world.client);
        assert_fails_closed(&config, "bad", &client, &backend, expected);
    }
}

/// `"layer": "connection"` in a plugin that Envoy runs as an HTTP filter (a WasmPlugin
/// without `type: NETWORK`), and the reverse: the mismatch fails closed.
#[test]
fn a_layer_that_does_not_match_the_filter_type_fails_closed() {
    use peergate_e2e::gateway::{
        admin, downstream_mtls, named_wasm_filter, network_wasm_filter, router_filter,
        static_cluster,
    };
    let world = World::new();
    let connection_config = world.config(json!({}));
    let request_config = {
        let mut v: Value = serde_json::from_str(&connection_config).unwrap();
        v["layer"] = "request".into();
        v.to_string()
    };
    for (what, network_filters, http_filters) in [
        (
            "layer connection in an HTTP filter",
            vec![],
            vec![named_wasm_filter(
                "peergate",
                &filter_wasm(),
                &connection_config,
            )],
        ),
        (
            "layer request in a network filter",
            vec![network_wasm_filter(
                "peergate",
                &filter_wasm(),
                &request_config,
            )],
            vec![],
        ),
    ] {
        let backend = Backend::start();
        let mut http_filters = http_filters;
        http_filters.push(router_filter());
        let mut filters = network_filters;
        filters.push(json!({
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "gw",
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"],
                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "backend" } }] }] },
                "http_filters": http_filters
            }
        }));
        let config = json!({
            "admin": admin(),
            "static_resources": {
                "listeners": [{
                    "name": "gw",
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "filter_chains": [{
                        "transport_socket": downstream_mtls(&world.server.cert_pem, &world.server.key_pem, &world.root.cert.cert_pem, &[]),
                        "filters": filters
                    }]
                }],
                "clusters": [static_cluster("backend", backend.addr, None)]
            }
        });
        let envoy = Envoy::start(&config).unwrap_or_else(|f| panic!("{what}: {}", f.log));
        for _ in 0..3 {
            // Refused (closed, or an error reply), but never a hang passing for one.
            let outcome = world.client_for(&world.client).try_get(
                envoy.listener("gw"),
                DOMAIN,
                DOMAIN,
                "/hello",
                what,
            );
            if let Outcome::Response(r) = outcome {
                assert_ne!(r.status, 200, "{what}: a request got through");
            }
        }
        assert_eq!(backend.count(), 0, "{what}");
        // The SDK cannot serve a callback of the other filter type: the VM traps, which is
        // fail closed, and Envoy logs which callback failed.
        assert!(
            envoy
                .wait_for_log_line(&["failed: Uncaught RuntimeError"], Duration::from_secs(3))
                .is_some(),
            "{what}:\n{}",
            envoy.log()
        );
    }
}
