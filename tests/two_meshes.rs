//! The test translator (`tests/src/translate.rs`) still follows what `peergate gen` writes.
//!
//! The proof that the generated manifests work is the Istio oracle (tests/istio): istiod's own
//! config generation served to real Envoy. The translator remains for what needs no Go build
//! (`cargo make demo`, the benchmarks, the fuzzers' seed capture); these tests keep it honest:
//! the reference scenario goes through it end to end, in both client modes and for an existing
//! gateway, and a field it does not know stops it.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use peergate::mesh::{ClientCertMode, Mesh};
use peergate_e2e::backend::{helloworld, Backend};
use peergate_e2e::envoy::{filter_wasm, Envoy};
use peergate_e2e::http::{read_response, write_get};
use peergate_e2e::scenario::CLIENT_ID;
use peergate_e2e::translate::{client_bootstrap, client_side, gateway_bootstrap, gateway_side};

fn generate(dir: &Path, mesh: &Mesh) -> PathBuf {
    mesh.validate("test").unwrap();
    let out = dir.join("out");
    peergate::generate(
        mesh,
        &peergate::GenOptions::new(out.clone(), false, SystemTime::now()),
    )
    .unwrap();
    out
}

/// The translated sidecar and gateway carry a plain-HTTP request to helloworld over the
/// generated mutual TLS, through the filter.
fn reaches_helloworld(mesh: &Mesh) {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), mesh);
    let backend = Backend::start_with(helloworld, 0);
    let gw = gateway_side(&out);
    let gateway = Envoy::start(&gateway_bootstrap(
        &gw,
        &filter_wasm(),
        backend.addr,
        &BTreeMap::new(),
    ))
    .unwrap_or_else(|f| panic!("gateway Envoy did not start:\n{}", f.log));
    let client = client_side(&out);
    let sidecar = Envoy::start(&client_bootstrap(
        &client,
        gateway.listener("gateway_443"),
        0,
    ))
    .unwrap_or_else(|f| panic!("client Envoy did not start:\n{}", f.log));
    let mut stream = TcpStream::connect(sidecar.listener("outbound_80")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write_get(
        &mut stream,
        &client.host,
        "/hello",
        &[("connection", "close")],
    )
    .unwrap();
    let response = read_response(&mut BufReader::new(stream)).unwrap();
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        gateway.log()
    );
    assert!(response.text().starts_with("Hello version: v1"));
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    let xfcc = seen[0].header("x-forwarded-client-cert").unwrap();
    assert!(xfcc.contains(&format!("URI={CLIENT_ID}")), "{xfcc}");
}

#[test]
fn the_translated_reference_scenario_reaches_helloworld() {
    reaches_helloworld(&Mesh::default());
    let mut mesh = Mesh::default();
    mesh.cluster_a.client_cert_mode = ClientCertMode::CredentialName;
    reaches_helloworld(&mesh);
    let mut existing = Mesh::default();
    existing.cluster_b.gateway = Some(
        Mesh::parse(
            "[clusterB.gateway]\nexisting = true\nnamespace = \"istio-system\"\nlabels = { istio = \"ingressgateway\" }\nlistenerPort = 8443\n",
            Path::new("mesh.toml"),
        )
        .unwrap()
        .cluster_b
        .gateway
        .unwrap(),
    );
    reaches_helloworld(&existing);
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
