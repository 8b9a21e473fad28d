//! The reference scenario on Istio's own configuration: `peergate gen` output, turned by the
//! Istio oracle (istiod's config generation and istio-agent's steps, `TestExportXDS`) into what
//! cluster A's sidecar and cluster B's gateway are served, run by real Envoys here; the same
//! path `cargo make demo` takes. In both client modes and for an existing gateway.

use std::io::BufReader;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use peergate::mesh::{ClientCertMode, Mesh};
use peergate_e2e::backend::{helloworld, Backend};
use peergate_e2e::http::{read_response, write_get};
use peergate_e2e::istio_xds::start_two_proxies;
use peergate_e2e::scenario::CLIENT_ID;

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

/// Istio's sidecar and gateway carry a plain-HTTP request to helloworld over the generated
/// mutual TLS, through the filter.
fn reaches_helloworld(mesh: &Mesh) {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), mesh);
    let backend = Backend::start_with(helloworld, 0);
    let proxies = start_two_proxies(&out, backend.addr).unwrap_or_else(|e| panic!("{e}"));
    let mut stream = TcpStream::connect(proxies.placement.sidecar_outbound()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let host = &proxies.placement.domain;
    write_get(&mut stream, host, "/hello", &[("connection", "close")]).unwrap();
    let response = read_response(&mut BufReader::new(stream)).unwrap();
    assert_eq!(
        response.status,
        200,
        "{}\n{}\n{}",
        response.text(),
        proxies.gateway.log(),
        proxies.sidecar.log()
    );
    assert!(response.text().starts_with("Hello version: v1"));
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    let xfcc = seen[0].header("x-forwarded-client-cert").unwrap();
    assert!(xfcc.contains(&format!("URI={CLIENT_ID}")), "{xfcc}");
    let denied = proxies.gateway.stats("peergate.denied");
    assert!(
        !denied.is_empty() && denied.values().all(|n| *n == 0),
        "{denied:?}"
    );
}

#[test]
fn the_reference_scenario_on_istios_configuration_reaches_helloworld() {
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
