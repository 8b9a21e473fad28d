//! `cargo make demo`: the whole two-mesh topology from `manifests/` on this machine, in the
//! foreground. Cluster A's sidecar and cluster B's ingress gateway are real Envoys running the
//! configuration Istio itself generates for them (the Istio oracle's export, see
//! `peergate_e2e::istio_xds`); helloworld is a local stand-in.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peergate_e2e::backend::{helloworld, Backend};
use peergate_e2e::envoy::workspace_root;
use peergate_e2e::istio_xds::start_two_proxies;
use peergate_e2e::pki::{Ca, KeyKind, Leaf};

fn main() {
    let root = workspace_root();
    let out = root.join("manifests");
    if !out.join("certs/root-key.pem").exists() {
        eprintln!("manifests/ has no keys yet: run `cargo make gen` first");
        std::process::exit(2);
    }
    // The demo shows allowed decisions too: what a user gets by adding `logAllowed: true` to
    // the WasmPlugin's pluginConfig, made on a copy of the output.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&out, copy.path());
    log_allowed(copy.path());

    let backend = Backend::start_with(helloworld, 0);
    let started = std::time::Instant::now();
    let proxies = start_two_proxies(copy.path(), backend.addr).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let placement = &proxies.placement;
    println!(
        "Istio {}'s configuration of both proxies, exported and started in {:.1} s.\n",
        placement.pin,
        started.elapsed().as_secs_f64()
    );

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

    let host = &placement.domain;
    let client_at = placement.sidecar_outbound();
    let gateway_at = placement.gateway_https();
    let (gateway_ip, gateway_port) = (gateway_at.ip(), gateway_at.port());
    let certs = out.join("certs");
    let c = |f: &str| certs.join(f).display().to_string();
    println!("peergate demo: cluster A's sidecar and cluster B's gateway run on this machine.\n");
    println!(
        "Allowed, as cluster A's application calls it (plain HTTP; the sidecar adds mutual TLS):"
    );
    println!("  curl -s -H 'Host: {host}' http://{client_at}/hello\n");
    println!("Allowed, straight to the gateway with the client certificate:");
    println!(
        "  curl -s --resolve {host}:{gateway_port}:{gateway_ip} --cacert {} --cert {} --key {} https://{host}:{gateway_port}/hello\n",
        c("root-cert.pem"),
        c("cluster-a-client-cert.pem"),
        c("cluster-a-client-key.pem")
    );
    if !placement.gateway.http.is_empty() {
        println!(
            "Redirected to HTTPS (the plugin is scoped to the HTTPS listener; port 80 stays a redirect):"
        );
        println!(
            "  curl -si -H 'Host: {host}' http://{}/hello\n",
            placement.gateway.http
        );
    }
    println!("Refused during the handshake (a client of another root, same names):");
    println!(
        "  curl -s --resolve {host}:{gateway_port}:{gateway_ip} --cacert {} --cert {} --key {} https://{host}:{gateway_port}/hello\n",
        c("root-cert.pem"),
        stranger_cert.display(),
        stranger_key.display()
    );
    println!(
        "Gateway stats: curl -s http://{}/stats?filter=peergate",
        proxies.gateway.admin
    );
    println!("\nThe filter's decision log follows. Ctrl-C stops everything.\n");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).expect("Ctrl-C handler");
    let mut printed = 0;
    while !stop.load(Ordering::SeqCst) {
        let log = proxies.gateway.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("wasm log") && l.contains("\"decision\":"))
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
    drop(proxies);
}

/// Copies a `peergate gen` output (files and folders; keys stay 0600 in a 0700 temporary
/// folder).
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Sets `logAllowed: true` in the plugin's pluginConfig (a WasmPlugin's, or a
/// TrafficExtension's `wasm`) in cluster-b/.
fn log_allowed(out: &Path) {
    for entry in std::fs::read_dir(out.join("cluster-b")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(mut object) = yaml_serde::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let config = match object["kind"].as_str() {
            Some("WasmPlugin") => &mut object["spec"]["pluginConfig"],
            Some("TrafficExtension") => &mut object["spec"]["wasm"]["pluginConfig"],
            _ => continue,
        };
        config["logAllowed"] = true.into();
        std::fs::write(&path, yaml_serde::to_string(&object).unwrap()).unwrap();
    }
}
