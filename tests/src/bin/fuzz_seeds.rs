//! `cargo make fuzz-seeds`: writes the fuzzers' seed corpora and fixed roots under `fuzz/` from
//! real material: certificates made by `peergate gen` for every key type, the pluginConfig as
//! Istio delivers it to the gateway, and `x-forwarded-client-cert` values captured from a real
//! Envoy gateway running the filter: Istio's own gateway configuration (the Istio oracle's
//! export), and a gateway in append mode for a forged header kept.

use std::path::Path;
use std::process::Command;

use peergate_e2e::backend::Backend;
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{filter_wasm, peergate_binary, workspace_root, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::http::url_encode;
use peergate_e2e::istio_xds::{self, Placement};

const KEY_TYPES: [&str; 4] = ["rsa2048", "ecdsa-p256", "ecdsa-p384", "ed25519"];

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn der_of(pem: &str) -> Vec<u8> {
    peergate_filter::xfcc::certificate_der_from_pem(pem.as_bytes()).expect("generated PEM")
}

fn main() {
    let fuzz = workspace_root().join("fuzz");
    let corpus = fuzz.join("corpus");
    let work = tempfile::tempdir().unwrap();
    for kind in KEY_TYPES {
        let out = work.path().join(kind);
        let status = Command::new(peergate_binary())
            .args(["gen", "--key-type", kind, "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run peergate (cargo make build-cli): {e}"));
        assert!(status.success(), "peergate gen --key-type {kind} failed");
        let certs = out.join("certs");
        for name in ["root", "cluster-a-client", "cluster-b-server"] {
            let pem = std::fs::read_to_string(certs.join(format!("{name}-cert.pem"))).unwrap();
            write(
                &corpus.join(format!("decide_pem/{kind}-{name}.pem")),
                pem.as_bytes(),
            );
            write(
                &corpus.join(format!("decide_der/{kind}-{name}.der")),
                &der_of(&pem),
            );
        }
        let root = std::fs::read(certs.join("root-cert.pem")).unwrap();
        write(&fuzz.join(format!("roots/{kind}-root-cert.pem")), &root);
        if kind == "rsa2048" {
            let client = std::fs::read(certs.join("cluster-a-client-cert.pem")).unwrap();
            write(&fuzz.join("roots/rsa2048-client-cert.pem"), &client);
        }

        let export = work.path().join(format!("{kind}-xds"));
        std::fs::create_dir(&export).unwrap();
        let backend = Backend::start();
        let placement = istio_xds::export(&out, &export, backend.addr);
        write(
            &corpus.join(format!("compile_config/{kind}.json")),
            placement.plugin_config.as_bytes(),
        );
        let mut every_field: serde_json::Value =
            serde_json::from_str(&placement.plugin_config).unwrap();
        // hosts with rules of their own and denyStatus are the request layer's alone.
        every_field["layer"] = "request".into();
        every_field["mode"] = "audit".into();
        every_field["hosts"] = serde_json::json!({
            "helloworld.zufar.io": { "allowedSans": ["spiffe://cluster-a/ns/*"] },
            "*.example": { "allowedSans": ["*.example.com"] }
        });
        every_field["deniedSerials"] = serde_json::json!(["01:ab", "7f"]);
        every_field["deniedFingerprints"] = serde_json::json!(["00".repeat(32)]);
        every_field["denyStatus"] = 401.into();
        every_field["logAllowed"] = true.into();
        write(
            &corpus.join(format!("compile_config/{kind}-every-field.json")),
            every_field.to_string().as_bytes(),
        );

        // Envoy offers no Ed25519 signature algorithm for client certificates by default (the
        // generator warns about it), so there is no Ed25519 connection to capture.
        if kind != "ed25519" {
            capture_xfcc(&out, &placement, &backend, kind, &corpus.join("xfcc"));
        }
    }
    println!("seeds written under {}", fuzz.display());
}

/// Requests through a real gateway admitting the generated client; the backend's view is the
/// seed. Istio's gateway (its XFCC mode) with and without a forged client header, and a gateway
/// in append mode, which keeps the forged header.
fn capture_xfcc(out: &Path, placement: &Placement, backend: &Backend, kind: &str, dir: &Path) {
    let certs = out.join("certs");
    let read = |name: &str| std::fs::read_to_string(certs.join(name)).unwrap();
    let istio_gateway = istio_xds::start(&placement.gateway.bootstrap)
        .unwrap_or_else(|f| panic!("Istio's gateway did not start ({kind}):\n{}", f.log));
    let listeners = [MtlsListener {
        name: "append".into(),
        plugin_config: placement.plugin_config.clone(),
        xfcc: Xfcc::AppendForward,
    }];
    let tls = GatewayTls {
        cert: &read("cluster-b-server-cert.pem"),
        key: &read("cluster-b-server-key.pem"),
        client_ca_bundle: &read("root-cert.pem"),
    };
    let append_gateway = Envoy::start(&bootstrap(&listeners, &tls, &filter_wasm(), backend.addr))
        .unwrap_or_else(|f| panic!("Envoy did not start ({kind}):\n{}", f.log));
    let tls_client = TlsClient::new(
        &read("root-cert.pem"),
        Some((
            &read("cluster-a-client-cert.pem"),
            &read("cluster-a-client-key.pem"),
        )),
    );
    let forged = format!(
        "By=spiffe://cluster-b/ns/istio-system/sa/gw;Hash={};Cert=\"{}\";Subject=\"CN=cluster-a-client\";URI=spiffe://cluster-a/ns/client/sa/sleep",
        "ab".repeat(32),
        url_encode(&read("cluster-a-client-cert.pem")),
    );
    let at_istio = placement.gateway_https();
    let at_append = append_gateway.listener("append");
    for (address, name, headers) in [
        (at_istio, "set", vec![]),
        (
            at_istio,
            "set-forged",
            vec![("x-forwarded-client-cert", forged.as_str())],
        ),
        (
            at_append,
            "append-forged",
            vec![("x-forwarded-client-cert", forged.as_str())],
        ),
    ] {
        let before = backend.count();
        let response = tls_client
            .get(
                address,
                &placement.domain,
                &placement.domain,
                "/hello",
                &headers,
            )
            .unwrap();
        assert_eq!(
            response.status, 200,
            "{kind} {name}: the generated client must pass"
        );
        let seen = backend.seen();
        let value = seen[before]
            .header("x-forwarded-client-cert")
            .expect("the gateway sets XFCC");
        write(&dir.join(format!("{kind}-{name}.txt")), value.as_bytes());
    }
    drop(istio_gateway);
}
