//! The Envoy configuration of a gateway set up like Istio's ingress gateway for a Gateway
//! server with `tls.mode: MUTUAL`: client certificate required, the credential's cert/key and
//! CA bundle, XFCC as Istio sets it, the peergate filter (V8), then the router.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};

/// What the connection manager does with `x-forwarded-client-cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xfcc {
    /// Istio's gateway default: drop the client's header, set our own.
    SanitizeSet,
    /// Keep the client's header and append ours.
    AppendForward,
    /// Drop the client's header and set none.
    Sanitize,
}

impl Xfcc {
    fn envoy_name(self) -> &'static str {
        match self {
            Xfcc::SanitizeSet => "SANITIZE_SET",
            Xfcc::AppendForward => "APPEND_FORWARD",
            Xfcc::Sanitize => "SANITIZE",
        }
    }
}

/// One mutual-TLS listener with its own plugin configuration.
#[derive(Debug, Clone)]
pub struct MtlsListener {
    /// Listener name (also the stat prefix).
    pub name: String,
    /// The WasmPlugin `pluginConfig`, as JSON text.
    pub plugin_config: String,
    /// XFCC handling.
    pub xfcc: Xfcc,
}

/// The gateway's TLS material, PEM.
pub struct GatewayTls<'a> {
    /// Server certificate chain.
    pub cert: &'a str,
    /// Server private key.
    pub key: &'a str,
    /// CAs trusted for client certificates (the credential's `cacert`).
    pub client_ca_bundle: &'a str,
}

/// An inline DataSource.
pub fn inline(text: &str) -> Value {
    json!({ "inline_string": text })
}

/// SAN matchers as Istio writes them: URI for `scheme://…`, DNS otherwise.
pub fn san_matchers(sans: &[String]) -> Vec<Value> {
    sans.iter()
        .map(|s| {
            let san_type = if s.contains("://") { "URI" } else { "DNS" };
            json!({ "san_type": san_type, "matcher": { "exact": s } })
        })
        .collect()
}

/// The router, last HTTP filter.
pub fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    })
}

/// Istio's MUTUAL termination: client certificate required, verified against `ca`, and
/// (when any) one of `client_sans` required.
pub fn downstream_mtls(cert: &str, key: &str, ca: &str, client_sans: &[String]) -> Value {
    let mut validation = json!({ "trusted_ca": inline(ca) });
    if !client_sans.is_empty() {
        validation["match_typed_subject_alt_names"] = san_matchers(client_sans).into();
    }
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": inline(cert),
                    "private_key": inline(key)
                }],
                "validation_context": validation
            }
        }
    })
}

/// A sidecar's mutual-TLS origination (DestinationRule `tls.mode: MUTUAL`): the client
/// certificate, `sni`, the server verified against `ca` and (when any) `server_sans`.
pub fn upstream_mtls(cert: &str, key: &str, ca: &str, sni: &str, server_sans: &[String]) -> Value {
    let mut validation = json!({ "trusted_ca": inline(ca) });
    if !server_sans.is_empty() {
        validation["match_typed_subject_alt_names"] = san_matchers(server_sans).into();
    }
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": inline(cert),
                    "private_key": inline(key)
                }],
                "validation_context": validation
            }
        }
    })
}

/// The HTTP filter that runs the peergate module.
pub fn wasm_filter(wasm: &Path, plugin_config: &str) -> Value {
    named_wasm_filter("peergate", wasm, plugin_config)
}

/// An HTTP filter running `wasm` (V8) as plugin, root id and VM id `name`, failing closed.
pub fn named_wasm_filter(name: &str, wasm: &Path, plugin_config: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config
                },
                "fail_open": false,
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm.display().to_string() } }
                }
            }
        }
    })
}

/// The network filter that runs the peergate module at layer `connection` (WasmPlugin
/// `type: NETWORK`): before the connection manager, V8, failing closed.
pub fn network_wasm_filter(name: &str, wasm: &Path, plugin_config: &str) -> Value {
    let mut filter = named_wasm_filter(name, wasm, plugin_config);
    filter["name"] = "envoy.filters.network.wasm".into();
    filter["typed_config"]["@type"] =
        "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm".into();
    filter
}

/// Whether a plugin configuration asks for the connection layer, as the generator pairs it
/// with the WasmPlugin's `type: NETWORK`.
pub fn is_connection_layer(plugin_config: &str) -> bool {
    serde_json::from_str::<Value>(plugin_config).is_ok_and(|config| config["layer"] == "connection")
}

fn mtls_listener(l: &MtlsListener, tls: &GatewayTls<'_>, wasm: &Path) -> Value {
    // At layer `connection` the module is a network filter ahead of the connection manager;
    // otherwise an HTTP filter ahead of the router.
    let connection_layer = is_connection_layer(&l.plugin_config);
    let mut http_filters = Vec::new();
    let mut network_filters = Vec::new();
    if connection_layer {
        network_filters.push(network_wasm_filter("peergate", wasm, &l.plugin_config));
    } else {
        http_filters.push(wasm_filter(wasm, &l.plugin_config));
    }
    http_filters.push(router_filter());
    let mut listener = json!({
        "name": l.name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        // Istio's gateways match Gateway servers by SNI, so their TLS listeners carry the TLS
        // inspector; it is also what records the server name the connection layer keys on.
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" }
        }],
        "filter_chains": [{
            "transport_socket": downstream_mtls(tls.cert, tls.key, tls.client_ca_bundle, &[]),
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": l.name,
                    "forward_client_cert_details": l.xfcc.envoy_name(),
                    "set_current_client_cert_details": {
                        "subject": true, "cert": true, "dns": true, "uri": true
                    },
                    "route_config": {
                        "virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "backend" } }]
                        }]
                    },
                    "http_filters": http_filters
                }
            }]
        }]
    });
    if let Some(filters) = listener["filter_chains"][0]["filters"].as_array_mut() {
        for (i, filter) in network_filters.into_iter().enumerate() {
            filters.insert(i, filter);
        }
    }
    listener
}

/// A cluster of one loopback endpoint (what DNS would resolve to in a cluster).
pub fn static_cluster(name: &str, addr: SocketAddr, transport_socket: Option<Value>) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": addr.ip().to_string(), "port_value": addr.port()
            }}}}]}]
        }
    });
    if let Some(ts) = transport_socket {
        cluster["transport_socket"] = ts;
    }
    cluster
}

/// The admin interface on a free loopback port.
pub fn admin() -> Value {
    json!({ "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } })
}

/// A whole bootstrap: admin on a free port, the listeners, and the backend cluster.
pub fn bootstrap(
    listeners: &[MtlsListener],
    tls: &GatewayTls<'_>,
    wasm: &Path,
    backend: SocketAddr,
) -> Value {
    json!({
        "admin": admin(),
        "static_resources": {
            "listeners": listeners.iter().map(|l| mtls_listener(l, tls, wasm)).collect::<Vec<_>>(),
            "clusters": [static_cluster("backend", backend, None)]
        }
    })
}
