//! A gateway whose filter configuration comes the way Istio delivers a WasmPlugin's
//! `pluginConfig`: Envoy's extension config discovery (ECDS), here from a file Envoy watches.
//! Publishing a new policy replaces the file atomically.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::envoy::{filter_wasm, Envoy};
use crate::gateway::{
    admin, downstream_mtls, is_connection_layer, named_wasm_filter, network_wasm_filter,
    router_filter, static_cluster,
};
use crate::scenario::Scenario;

/// The filter's name, and so its ECDS resource's and statistics'.
pub const FILTER: &str = "peergate";
/// The watched file, in the gateway's folder.
pub const CONFIG_FILE: &str = "peergate-ecds.json";

/// The ECDS resource for one `pluginConfig`, as a DiscoveryResponse file.
pub fn discovery_response(version: usize, plugin_config: &str) -> Value {
    // At layer `connection` the resource is the network filter's configuration.
    let filter = if is_connection_layer(plugin_config) {
        network_wasm_filter(FILTER, &filter_wasm(), plugin_config)
    } else {
        named_wasm_filter(FILTER, &filter_wasm(), plugin_config)
    };
    json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": FILTER,
            "typed_config": filter["typed_config"]
        }]
    })
}

/// Replaces the watched file in `dir` atomically (Envoy reloads on the rename).
pub fn publish(dir: &Path, version: usize, plugin_config: &str) {
    let tmp = dir.join(format!(".{CONFIG_FILE}.{version}"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&discovery_response(version, plugin_config)).expect("json"),
    )
    .expect("write the ECDS file");
    std::fs::rename(&tmp, dir.join(CONFIG_FILE)).expect("rename the ECDS file");
}

/// The ECDS subscription for the filter from the watched file, for `type_url`.
pub fn discovered(config_path: &Path, type_url: &str) -> Value {
    json!({
        "name": FILTER,
        "config_discovery": {
            "config_source": {
                "path_config_source": { "path": config_path.display().to_string() },
                "resource_api_version": "V3"
            },
            "type_urls": [type_url]
        }
    })
}

/// A mutual-TLS gateway listener `gateway` whose HTTP filter is the plugin through ECDS from
/// `config_path`, routing to `backend`.
pub fn http_layer_bootstrap(world: &Scenario, config_path: &Path, backend: SocketAddr) -> Value {
    json!({
        // Like istio-proxy, which names its node: xDS subscriptions require it.
        "node": { "id": "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local", "cluster": "istio-ingressgateway.istio-system" },
        "admin": admin(),
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{
                    "transport_socket": downstream_mtls(
                        &world.server.cert_pem, &world.server.key_pem, &world.root.cert.cert_pem, &[]),
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "gateway",
                            "route_config": { "virtual_hosts": [{
                                "name": "all", "domains": ["*"],
                                "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "backend" } }]
                            }]},
                            "http_filters": [
                                discovered(config_path, "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"),
                                router_filter()
                            ]
                        }
                    }]
                }]
            }],
            "clusters": [static_cluster("backend", backend, None)]
        }
    })
}

/// An Envoy gateway serving `plugin_config` (request layer) through ECDS, and its folder.
pub struct EcdsGateway {
    /// The running Envoy.
    pub envoy: Envoy,
    /// The folder of the watched file.
    pub dir: tempfile::TempDir,
}

impl EcdsGateway {
    /// Starts it with the first policy as version 1.
    pub fn start(world: &Scenario, backend: SocketAddr, plugin_config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        publish(dir.path(), 1, plugin_config);
        let envoy = Envoy::start(&http_layer_bootstrap(
            world,
            &dir.path().join(CONFIG_FILE),
            backend,
        ))
        .unwrap_or_else(|f| panic!("the ECDS gateway did not start:\n{}", f.log));
        Self { envoy, dir }
    }

    /// The watched file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    /// An ECDS counter of the filter (`update_success`, `update_rejected`, …). Panics when
    /// Envoy lists none: a missing counter is not 0.
    pub fn counter(&self, name: &str) -> u64 {
        ecds_counter(&self.envoy, name)
    }
}

/// An ECDS counter of the filter on `envoy`; panics when Envoy lists none.
pub fn ecds_counter(envoy: &Envoy, name: &str) -> u64 {
    let suffix = format!(".{FILTER}.{name}");
    envoy
        .stats("extension_config_discovery")
        .into_iter()
        .find(|(k, _)| k.ends_with(&suffix))
        .map(|(_, v)| v)
        .unwrap_or_else(|| {
            panic!("Envoy lists no ECDS stat ending in {suffix}: a missing counter is not 0")
        })
}
