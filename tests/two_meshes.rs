//! The whole two-mesh path on real Envoys, from `peergate gen` output: cluster A's sidecar
//! (plain HTTP in, mutual TLS out) and cluster B's ingress gateway (MUTUAL termination, the
//! peergate filter, helloworld behind it), both derived from the generated files.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use peergate::mesh::{ClientCertMode, KeyType, Mesh};
use peergate_e2e::backend::{helloworld, Backend};
use peergate_e2e::envoy::{filter_wasm, Envoy};
use peergate_e2e::http::{read_response, write_get, Response};
use peergate_e2e::translate::{
    client_bootstrap, client_side, gateway_bootstrap, gateway_side, ClientSide,
};

const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";

fn generate(dir: &Path, mesh: &Mesh) -> PathBuf {
    mesh.validate("test").unwrap();
    let out = dir.join("out");
    peergate::generate(
        mesh,
        &peergate::GenOptions {
            out: out.clone(),
            force: false,
            now: SystemTime::now(),
        },
    )
    .unwrap();
    out
}

struct Topology {
    backend: Backend,
    gateway: Envoy,
    client: Envoy,
    host: String,
}

fn start(out: &Path, client: Option<ClientSide>) -> Topology {
    let backend = Backend::start_with(helloworld, 0);
    let gw = gateway_side(out);
    let gateway = Envoy::start(&gateway_bootstrap(
        &gw,
        &filter_wasm(),
        backend.addr,
        &BTreeMap::new(),
    ))
    .unwrap_or_else(|f| panic!("gateway Envoy did not start:\n{}", f.log));
    let client_side = client.unwrap_or_else(|| client_side(out));
    let client = Envoy::start(&client_bootstrap(
        &client_side,
        gateway.listener("gateway_443"),
        0,
    ))
    .unwrap_or_else(|f| panic!("client Envoy did not start:\n{}", f.log));
    Topology {
        backend,
        gateway,
        client,
        host: client_side.host,
    }
}

fn plain_get(addr: SocketAddr, host: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write_get(&mut stream, host, path, &[("connection", "close")]).unwrap();
    read_response(&mut BufReader::new(stream)).unwrap()
}

impl Topology {
    /// What the application in cluster A does: plain HTTP to the external name.
    fn hello(&self) -> Response {
        plain_get(self.client.listener("outbound_80"), &self.host, "/hello")
    }

    /// `hello()`, which must be answered 200 (else the gateway's log tells why).
    fn hello_ok(&self) -> Response {
        let response = self.hello();
        assert_eq!(
            response.status,
            200,
            "{}\n{}",
            response.text(),
            self.gateway.log()
        );
        response
    }

    fn gateway_counter(&self, suffix: &str) -> u64 {
        self.gateway
            .stats(suffix)
            .iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| *v)
            .sum()
    }

    fn wait_counter(&self, suffix: &str, at_least: u64) -> u64 {
        for _ in 0..50 {
            let v = self.gateway_counter(suffix);
            if v >= at_least {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.gateway_counter(suffix)
    }
}

fn reaches_helloworld(mesh: &Mesh) {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), mesh);
    let topo = start(&out, None);

    let response = topo.hello_ok();
    assert!(
        response.text().starts_with("Hello version: v1"),
        "{}",
        response.text()
    );

    // The hop between the Envoys was mutual TLS with the client certificate: the gateway's
    // listener completed a handshake, the filter allowed the peer, and the backend received the
    // certificate Envoy forwards (SANITIZE_SET: only the gateway's own XFCC).
    assert!(
        topo.wait_counter(".ssl.handshake", 1) >= 1,
        "gateway TLS handshakes"
    );
    assert_eq!(topo.wait_counter("wasmcustom.peergate.allowed", 1), 1);
    assert_eq!(topo.gateway_counter("wasmcustom.peergate.denied"), 0);
    let seen = topo.backend.seen();
    assert_eq!(seen.len(), 1);
    let xfcc = seen[0]
        .header("x-forwarded-client-cert")
        .expect("XFCC at the backend");
    assert!(xfcc.contains(&format!("URI={CLIENT_ID}")), "{xfcc}");
    assert!(xfcc.contains("Hash=") && xfcc.contains("Cert=\""), "{xfcc}");
    assert!(xfcc.contains("CN=cluster-a-client"), "{xfcc}");
    let client_handshakes: u64 = topo
        .client
        .stats("tls-origination")
        .iter()
        .filter(|(k, _)| k.ends_with(".ssl.handshake"))
        .map(|(_, v)| *v)
        .sum();
    assert!(client_handshakes >= 1, "the sidecar originated TLS");
}

#[test]
fn reference_scenario_rsa_mounted_certificate() {
    reaches_helloworld(&Mesh::default());
}

#[test]
fn rsa_credential_name_mode() {
    let mut mesh = Mesh::default();
    mesh.cluster_a.client_cert_mode = ClientCertMode::CredentialName;
    reaches_helloworld(&mesh);
}

#[test]
fn ecdsa_mounted_and_credential_name() {
    let mut mesh = Mesh {
        key_type: KeyType::EcdsaP256,
        ..Mesh::default()
    };
    reaches_helloworld(&mesh);
    mesh.cluster_a.client_cert_mode = ClientCertMode::CredentialName;
    reaches_helloworld(&mesh);
}

#[test]
fn port_80_redirects_only_when_the_plugin_is_scoped_to_the_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &Mesh::default());
    let topo = start(&out, None);
    // Unscoped, the plugin also runs on port 80: no client certificate there, so it refuses.
    let r = plain_get(topo.gateway.listener("gateway_80"), &topo.host, "/hello");
    assert_eq!((r.status, r.text().trim()), (403, "no_peer_certificate"));

    let dir = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::default();
    mesh.cluster_b.plugin_listener_port = Some(8443);
    let out = generate(dir.path(), &mesh);
    let topo = start(&out, None);
    let r = plain_get(topo.gateway.listener("gateway_80"), &topo.host, "/hello");
    assert_eq!(r.status, 301, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://{}/hello", topo.host).as_str())
    );
    assert_eq!(
        topo.hello().status,
        200,
        "the TLS listener still carries the filter"
    );
    assert_eq!(topo.wait_counter("wasmcustom.peergate.allowed", 1), 1);
}

#[test]
fn a_client_certificate_from_another_root_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &Mesh::default());
    let other_dir = tempfile::tempdir().unwrap();
    let other = generate(other_dir.path(), &Mesh::default());
    // Cluster A of another mesh (same names, its own root), trusting our gateway's server
    // certificate so that only the gateway's check of the client remains.
    let mut impostor = client_side(&other);
    impostor.tls.ca = client_side(&out).tls.ca;
    let topo = start(&out, Some(impostor));
    let response = topo.hello();
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(
        topo.wait_counter(".ssl.fail_verify_error", 1) >= 1,
        "{:?}",
        topo.gateway.stats("ssl")
    );
    assert_eq!(topo.backend.count(), 0);
    assert_eq!(topo.gateway_counter("wasmcustom.peergate.allowed"), 0);
    assert_eq!(topo.gateway_counter("wasmcustom.peergate.denied"), 0);
}

#[test]
fn the_client_removed_from_the_allowed_list_gets_403_from_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::default();
    mesh.cluster_b.allowed_sans = Some(vec!["spiffe://cluster-a/ns/other/*".into()]);
    let out = generate(dir.path(), &mesh);
    let topo = start(&out, None);
    let response = topo.hello();
    assert_eq!(
        (response.status, response.text().trim()),
        (403, "san_not_allowed")
    );
    assert_eq!(
        topo.wait_counter("wasmcustom.peergate.denied.san_not_allowed", 1),
        1
    );
    assert_eq!(topo.backend.count(), 0);
    let line = topo
        .gateway
        .wait_for_log_line(
            &["\"decision\":\"deny\"", CLIENT_ID],
            Duration::from_secs(5),
        )
        .expect("a decision-log line");
    assert!(line.contains("\"source\":\"connection\""), "{line}");

    // An exact allow-list also goes into the Gateway's subjectAltNames: Istio's own check then
    // refuses the handshake before the filter runs.
    let dir = tempfile::tempdir().unwrap();
    mesh.cluster_b.allowed_sans = Some(vec!["spiffe://cluster-a/ns/other/sa/x".into()]);
    let out = generate(dir.path(), &mesh);
    let topo = start(&out, None);
    assert_eq!(topo.hello().status, 503);
    assert!(
        topo.wait_counter(".ssl.fail_verify_san", 1) >= 1,
        "{:?}",
        topo.gateway.stats("ssl")
    );
    assert_eq!(topo.gateway_counter("wasmcustom.peergate.denied"), 0);
}

/// `layer = "connection"` in mesh.toml: the WasmPlugin is `type: NETWORK`, the translated
/// gateway runs the module as a network filter, and the whole path still works; with the client
/// removed from the allowed SANs the sidecar's connection to the gateway is closed (the
/// application sees the sidecar's 503) and nothing reaches helloworld.
#[test]
fn the_connection_layer_end_to_end() {
    let mut mesh = Mesh {
        key_type: KeyType::EcdsaP256,
        ..Mesh::default()
    };
    mesh.plugin.layer = peergate_filter::Layer::Connection;
    mesh.cluster_b.plugin_listener_port = Some(8443);
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &mesh);
    let plugin = std::fs::read_to_string(out.join("cluster-b/wasmplugin.yaml")).unwrap();
    assert!(plugin.contains("type: NETWORK"), "{plugin}");
    assert!(plugin.contains("layer: connection"), "{plugin}");
    let topo = start(&out, None);
    for _ in 0..3 {
        topo.hello_ok();
    }
    // The sidecar pools its connections to the gateway (one pool per worker, two workers
    // here): more requests than decisions.
    std::thread::sleep(Duration::from_millis(600));
    let decisions = topo.wait_counter("wasmcustom.peergate.allowed", 1);
    assert!(
        (1..=2).contains(&decisions),
        "{decisions} decisions for 3 requests"
    );
    assert_eq!(topo.backend.count(), 3);

    mesh.cluster_b.allowed_sans = Some(vec!["spiffe://cluster-a/ns/other/*".into()]);
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &mesh);
    let topo = start(&out, None);
    let response = topo.hello();
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(topo.wait_counter("wasmcustom.peergate.denied.san_not_allowed", 1) >= 1);
    assert_eq!(topo.backend.count(), 0);
}

/// The same path with the filter installed by a TrafficExtension (Istio >= 1.30) instead of
/// a WasmPlugin.
#[test]
fn installed_by_a_traffic_extension() {
    let mut mesh = Mesh {
        key_type: KeyType::EcdsaP256,
        ..Mesh::default()
    };
    mesh.plugin.api = peergate::mesh::PluginApi::TrafficExtension;
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &mesh);
    assert!(out.join("cluster-b/trafficextension.yaml").exists());
    assert!(!out.join("cluster-b/wasmplugin.yaml").exists());
    let topo = start(&out, None);
    topo.hello_ok();
    assert_eq!(topo.wait_counter("wasmcustom.peergate.allowed", 1), 1);
}

#[test]
fn the_translator_refuses_fields_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &Mesh::default());
    let path = out.join("cluster-b/gateway.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("  selector:", "  unknownField: true\n  selector:"),
    )
    .unwrap();
    let result = std::panic::catch_unwind(|| gateway_side(&out));
    let message = result
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .expect("the translator must panic");
    assert!(
        message.contains("unknown field `unknownField`"),
        "{message}"
    );
}
