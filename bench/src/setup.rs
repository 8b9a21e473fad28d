//! What every measurement shares: the certificates, the policy, and the gateway's variants
//! (no filter, a do-nothing module, native RBAC, peergate at each layer) with the Envoy
//! bootstraps that serve them.

use std::path::PathBuf;

use peergate_e2e::envoy::{filter_wasm, target_dir, Envoy};
use peergate_e2e::gateway::{
    admin, downstream_mtls, named_wasm_filter, network_wasm_filter, router_filter, static_cluster,
    upstream_mtls,
};
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::{CLIENT_ID, DOMAIN};
use peergate_filter::{Layer, Mode, PluginConfig};
use serde_json::{json, Value};

pub(crate) fn bench_wasm() -> PathBuf {
    target_dir().join("wasm32-wasip1/release/peergate_bench_wasm.wasm")
}

/// The certificates of the benchmark: an RSA-2048 root (as the generator's default), the
/// gateway's server certificate, the allowed client.
pub(crate) struct Pki {
    pub(crate) root: Ca,
    pub(crate) server: Issued,
    pub(crate) client: Issued,
}

pub(crate) fn pki() -> Pki {
    let root = Ca::new("a-b-root-ca", KeyKind::Rsa2048);
    Pki {
        server: root.issue(&Leaf::server(DOMAIN, KeyKind::P256)),
        client: root.issue(&Leaf::client(
            "cluster-a-client",
            &[&format!("URI:{CLIENT_ID}")],
            KeyKind::Rsa2048,
        )),
        root,
    }
}

pub(crate) fn policy(pki: &Pki, mode: Mode) -> PluginConfig {
    PluginConfig {
        mode,
        trusted_issuers: vec![pki.root.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![CLIENT_ID.into()]),
        ..Default::default()
    }
}

pub(crate) fn hcm(stat_prefix: &str, http_filters: Vec<Value>) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "route_config": { "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{ "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": { "inline_string": "ok\n" } } }]
            }]},
            "http_filters": http_filters
        }
    })
}

/// Envoy's native RBAC, allowing the client's principal (its URI SAN) exactly: what it can do
/// without a filter (match a name; it cannot prove who issued the certificate).
pub(crate) fn rbac_filter() -> Value {
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": { "action": "ALLOW", "policies": { "client": {
                "permissions": [{ "any": true }],
                "principals": [{ "authenticated": { "principal_name": { "exact": CLIENT_ID } } }]
            }}}
        }
    })
}

pub(crate) struct Variant {
    pub(crate) name: &'static str,
    pub(crate) what: &'static str,
    /// Network filters ahead of the connection manager.
    pub(crate) network_filters: Vec<Value>,
    /// HTTP filters (the router last).
    pub(crate) filters: Vec<Value>,
    /// Whether the keep-alive table has it (the profiling listener is measured on its own).
    pub(crate) keepalive: bool,
}

pub(crate) fn variants(pki: &Pki) -> Vec<Variant> {
    let peergate =
        |mode| named_wasm_filter("peergate", &filter_wasm(), &policy(pki, mode).to_json());
    let connection_policy = PluginConfig {
        layer: Layer::Connection,
        ..policy(pki, Mode::Enforce)
    };
    vec![
        Variant {
            name: "none",
            network_filters: Vec::new(),
            what: "no filter (baseline)",
            filters: vec![router_filter()],
            keepalive: true,
        },
        Variant {
            name: "noop",
            network_filters: Vec::new(),
            what: "a proxy-wasm filter doing nothing",
            filters: vec![
                named_wasm_filter("noop", &bench_wasm(), ""),
                router_filter(),
            ],
            keepalive: true,
        },
        Variant {
            name: "onecall",
            network_filters: Vec::new(),
            what:
                "a proxy-wasm filter making peergate's one host call (the digest) and nothing else",
            filters: vec![
                named_wasm_filter("onecall", &bench_wasm(), r#"{"oneHostCall": true}"#),
                router_filter(),
            ],
            keepalive: true,
        },
        Variant {
            name: "rbac",
            network_filters: Vec::new(),
            what: "native RBAC, principal exact",
            filters: vec![rbac_filter(), router_filter()],
            keepalive: true,
        },
        Variant {
            name: "enforce",
            network_filters: Vec::new(),
            what: "peergate enforce (cache warm)",
            filters: vec![peergate(Mode::Enforce), router_filter()],
            keepalive: true,
        },
        Variant {
            name: "audit",
            network_filters: Vec::new(),
            what: "peergate audit (cache warm)",
            filters: vec![peergate(Mode::Audit), router_filter()],
            keepalive: true,
        },
        Variant {
            name: "connection",
            what: "peergate enforce, layer connection (network filter)",
            network_filters: vec![network_wasm_filter(
                "peergate",
                &filter_wasm(),
                &connection_policy.to_json(),
            )],
            filters: vec![router_filter()],
            keepalive: true,
        },
        Variant {
            name: "profile",
            what: "the benchmark module profiling the filter's cold path on each request",
            network_filters: Vec::new(),
            filters: vec![
                named_wasm_filter(
                    "profile",
                    &bench_wasm(),
                    &json!({ "profile": {
                        "pluginConfig": policy(pki, Mode::Enforce),
                        "authority": DOMAIN,
                    }})
                    .to_string(),
                ),
                router_filter(),
            ],
            keepalive: false,
        },
    ]
}

pub(crate) fn gateway_bootstrap(pki: &Pki, variants: &[Variant]) -> Value {
    let listeners: Vec<Value> = variants.iter().map(|v| json!({
        "name": v.name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{
            "transport_socket": downstream_mtls(&pki.server.cert_pem, &pki.server.key_pem, &pki.root.cert.cert_pem, &[]),
            "filters": v.network_filters.iter().cloned()
                .chain(std::iter::once(hcm(v.name, v.filters.clone())))
                .collect::<Vec<_>>()
        }]
    })).collect();
    json!({ "admin": admin(), "static_resources": { "listeners": listeners } })
}

/// The client side: one plain-HTTP listener per gateway listener, each forwarding over a
/// pool of keep-alive mutual-TLS connections (as a sidecar does).
pub(crate) fn client_bootstrap(pki: &Pki, gateway: &Envoy, variants: &[Variant]) -> Value {
    let upstream_tls = upstream_mtls(
        &pki.client.cert_pem,
        &pki.client.key_pem,
        &pki.root.cert.cert_pem,
        DOMAIN,
        &[DOMAIN.to_owned()],
    );
    let listeners: Vec<Value> = variants.iter().map(|v| json!({
        "name": v.name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": v.name,
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"],
                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": v.name } }] }]},
                "http_filters": [router_filter()]
            }
        }]}]
    })).collect();
    let clusters: Vec<Value> = variants
        .iter()
        .map(|v| static_cluster(v.name, gateway.listener(v.name), Some(upstream_tls.clone())))
        .collect();
    json!({ "admin": admin(), "static_resources": { "listeners": listeners, "clusters": clusters } })
}
