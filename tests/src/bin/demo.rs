//! `cargo make demo`: the whole two-mesh topology from `manifests/` on this machine, in the
//! foreground. Cluster A's sidecar and cluster B's ingress gateway are real Envoys configured
//! from the generated files (as the end-to-end tests do); helloworld is a local stand-in.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peergate_e2e::backend::{helloworld, Backend};
use peergate_e2e::envoy::{filter_wasm, workspace_root, Envoy};
use peergate_e2e::pki::{Ca, KeyKind, Leaf};
use peergate_e2e::translate::{client_bootstrap, client_side, gateway_bootstrap, gateway_side};

const CLIENT_PORT: u16 = 10080;
const GATEWAY_HTTP_PORT: u16 = 18080;
const GATEWAY_HTTPS_PORT: u16 = 18443;

fn main() {
    let root = workspace_root();
    let out = root.join("manifests");
    if !out.join("certs/root-key.pem").exists() {
        eprintln!("manifests/ has no keys yet: run `cargo make gen` first");
        std::process::exit(2);
    }
    let client = client_side(&out);
    let mut gateway = gateway_side(&out);
    // The demo shows allowed decisions too.
    let mut config: serde_json::Value = serde_json::from_str(&gateway.plugin_config).unwrap();
    config["logAllowed"] = true.into();
    gateway.plugin_config = config.to_string();

    let backend = Backend::start_with(helloworld, 0);
    let ports = BTreeMap::from([(80, GATEWAY_HTTP_PORT), (443, GATEWAY_HTTPS_PORT)]);
    let gw = Envoy::start(&gateway_bootstrap(&gateway, &filter_wasm(), backend.addr, &ports))
        .unwrap_or_else(|f| {
            eprintln!("the gateway Envoy did not start (ports {GATEWAY_HTTP_PORT}/{GATEWAY_HTTPS_PORT} in use?):\n{}", f.log);
            std::process::exit(1);
        });
    let sidecar = Envoy::start(&client_bootstrap(
        &client,
        gw.listener("gateway_443"),
        CLIENT_PORT,
    ))
    .unwrap_or_else(|f| {
        eprintln!(
            "the sidecar Envoy did not start (port {CLIENT_PORT} in use?):\n{}",
            f.log
        );
        std::process::exit(1);
    });

    // A client of another mesh: same names, its own root.
    let stranger_dir = tempfile::tempdir().unwrap();
    let other_root = Ca::new("a-b-root-ca", KeyKind::P256);
    let stranger = other_root.issue(&Leaf::client(
        "cluster-a-client",
        &["URI:spiffe://cluster-a/ns/client/sa/sleep"],
        KeyKind::P256,
    ));
    let stranger_cert = stranger_dir.path().join("stranger-cert.pem");
    let stranger_key = stranger_dir.path().join("stranger-key.pem");
    std::fs::write(&stranger_cert, &stranger.cert_pem).unwrap();
    std::fs::write(&stranger_key, &stranger.key_pem).unwrap();

    let host = &client.host;
    let certs = out.join("certs");
    let c = |f: &str| certs.join(f).display().to_string();
    println!("peergate demo: cluster A's sidecar and cluster B's gateway run on this machine.\n");
    println!(
        "Allowed, as cluster A's application calls it (plain HTTP; the sidecar adds mutual TLS):"
    );
    println!("  curl -s -H 'Host: {host}' http://127.0.0.1:{CLIENT_PORT}/hello\n");
    println!("Allowed, straight to the gateway with the client certificate:");
    println!(
        "  curl -s --resolve {host}:{GATEWAY_HTTPS_PORT}:127.0.0.1 --cacert {} --cert {} --key {} https://{host}:{GATEWAY_HTTPS_PORT}/hello\n",
        c("root-cert.pem"),
        c("cluster-a-client-cert.pem"),
        c("cluster-a-client-key.pem")
    );
    println!(
        "Redirected to HTTPS (the plugin is scoped to the HTTPS listener; port 80 stays a redirect):"
    );
    println!("  curl -si -H 'Host: {host}' http://127.0.0.1:{GATEWAY_HTTP_PORT}/hello\n");
    println!("Refused during the handshake (a client of another root, same names):");
    println!(
        "  curl -s --resolve {host}:{GATEWAY_HTTPS_PORT}:127.0.0.1 --cacert {} --cert {} --key {} https://{host}:{GATEWAY_HTTPS_PORT}/hello\n",
        c("root-cert.pem"),
        stranger_cert.display(),
        stranger_key.display()
    );
    println!(
        "Gateway stats: curl -s http://{}/stats?filter=peergate",
        gw.admin
    );
    println!("\nThe filter's decision log follows. Ctrl-C stops everything.\n");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).expect("Ctrl-C handler");
    let mut printed = 0;
    while !stop.load(Ordering::SeqCst) {
        let log = gw.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("{\"decision\""))
            .collect();
        for line in &lines[printed.min(lines.len())..] {
            println!("{}", &line[line.find('{').unwrap_or(0)..]);
        }
        printed = lines.len();
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "\nstopping ({} requests reached helloworld)",
        backend.count()
    );
    drop(sidecar);
    drop(gw);
}
