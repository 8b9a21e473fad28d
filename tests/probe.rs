//! `peergate probe` against real Envoy gateways: the working path, and each failure an
//! operator meets between two meshes, each named for what it is (issue 31): the gateway
//! credential's CA is not the agreed root, a client certificate from another root, an
//! expired client, a revoked client (the credential's CRL), peergate's denial, a wrong SNI,
//! plain HTTP to the TLS port; and the connection layer's silent close.

use std::process::Command;

use peergate_e2e::backend::Backend;
use peergate_e2e::envoy::{filter_wasm, peergate_binary, Envoy};
use peergate_e2e::gateway::{bootstrap, inline, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::pki::{Ca, Issued, KeyKind};
use peergate_e2e::scenario::{Scenario, DOMAIN};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

struct World {
    scenario: Scenario,
    other_root: Ca,
    foreign: Issued,
    expired: Issued,
    revoked: Issued,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let kind = KeyKind::P256;
        let scenario = Scenario::new(kind);
        let other_root = Ca::new("some-other-root", kind);
        let mut expired = Scenario::client_leaf(kind);
        expired.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        expired.not_after = OffsetDateTime::now_utc() - Duration::days(1);
        World {
            foreign: other_root.issue(&Scenario::client_leaf(kind)),
            expired: scenario.root.issue(&expired),
            revoked: scenario.root.issue(&Scenario::client_leaf(kind)),
            other_root,
            scenario,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    }

    /// `--cert`, `--key` for `leaf`, `--ca` the agreed root.
    fn identity(&self, name: &str, leaf: &Issued) -> Vec<String> {
        vec![
            "--cert".into(),
            self.file(&format!("{name}-cert.pem"), &leaf.cert_pem),
            "--key".into(),
            self.file(&format!("{name}-key.pem"), &leaf.key_pem),
            "--ca".into(),
            self.file("root.pem", &self.scenario.root.cert.cert_pem),
        ]
    }
}

/// The gateway: `good` (the agreed root, its CRL revoking `revoked`, peergate at the request
/// layer), `wrong_ca` (the credential holds another root), `connection` (peergate at the
/// connection layer); each serves only `DOMAIN` by SNI, as Istio's gateway listeners do.
fn gateway(w: &World, backend: &Backend) -> Envoy {
    let s = &w.scenario;
    let listener = |name: &str, extra: Value| MtlsListener {
        name: name.into(),
        plugin_config: s.policy(extra),
        xfcc: Xfcc::Sanitize,
    };
    let tls = GatewayTls {
        cert: &s.server.cert_pem,
        key: &s.server.key_pem,
        client_ca_bundle: &s.root.cert.cert_pem,
    };
    let mut config = bootstrap(
        &[
            listener("good", json!({ "layer": "request" })),
            listener("wrong_ca", json!({ "layer": "request" })),
            listener("connection", json!({ "layer": "connection" })),
        ],
        &tls,
        &filter_wasm(),
        backend.addr,
    );
    let crl = s
        .root
        .crl(&[&w.revoked], OffsetDateTime::now_utc() + Duration::days(1));
    for (i, listener) in config["static_resources"]["listeners"]
        .as_array_mut()
        .expect("listeners")
        .iter_mut()
        .enumerate()
    {
        let chain = &mut listener["filter_chains"][0];
        chain["filter_chain_match"] = json!({ "server_names": [DOMAIN] });
        let validation = &mut chain["transport_socket"]["typed_config"]["common_tls_context"]
            ["validation_context"];
        validation["crl"] = inline(&crl);
        if i == 1 {
            validation["trusted_ca"] = inline(&w.other_root.cert.cert_pem);
            validation
                .as_object_mut()
                .expect("validation")
                .remove("crl");
        }
    }
    Envoy::start(&config).expect("gateway starts")
}

/// Runs `peergate probe --json URL ARGS`: exit code, report, text output of the same probe.
fn probe(url: &str, args: &[String]) -> (i32, Value, String) {
    let run = |json: bool| {
        let mut command = Command::new(peergate_binary());
        command
            .arg("probe")
            .arg(url)
            .args(args)
            .env("NO_COLOR", "1");
        if json {
            command.arg("--json");
        }
        command.output().expect("peergate runs")
    };
    let out = run(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let text = String::from_utf8_lossy(&run(false).stdout).into_owned();
    (out.status.code().expect("exit code"), report, text)
}

fn url(envoy: &Envoy, listener: &str, scheme: &str) -> (String, Vec<String>) {
    let addr = envoy.listener(listener);
    (
        format!("{scheme}://{DOMAIN}:{}/hello", addr.port()),
        vec!["--connect".into(), addr.to_string()],
    )
}

fn cause(report: &Value) -> &str {
    report["cause"].as_str().unwrap_or_default()
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name}: {report:#}"))
}

#[test]
fn probe_names_each_failure_between_two_meshes() {
    let w = World::new();
    let backend = Backend::start();
    let envoy = gateway(&w, &backend);
    let s = &w.scenario;
    let (good, connect) = url(&envoy, "good", "https");
    let with = |name: &str, leaf: &Issued| [w.identity(name, leaf), connect.clone()].concat();

    // The working path: 200, every step passes, the server's chain verified, the client
    // certificate asked for with the agreed root named.
    let (code, report, text) = probe(&good, &with("client", &s.client));
    assert_eq!(code, 0, "{report:#}\n{text}");
    assert_eq!(report["verdict"], "ok");
    assert_eq!(report["http"]["status"], 200);
    assert_eq!(report["tls"]["server_verified"], true, "{report:#}");
    assert_eq!(report["tls"]["client_certificate_requested"], true);
    assert!(report["tls"]["version"]
        .as_str()
        .unwrap_or_default()
        .starts_with("TLSv1_"));
    for s in report["steps"].as_array().expect("steps") {
        assert_eq!(s["outcome"], "pass", "{s}");
    }
    println!("working path:\n{text}");

    // 1. The gateway credential's CA is not the agreed root.
    let (wrong_ca, wrong_ca_connect) = url(&envoy, "wrong_ca", "https");
    let args = [w.identity("client", &s.client), wrong_ca_connect].concat();
    let (code, report, text) = probe(&wrong_ca, &args);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        cause(&report).contains("gateway credential's CA"),
        "{report:#}\n{text}"
    );
    assert!(!cause(&report).contains("does not chain"), "{text}");
    println!("wrong CA in the gateway credential:\n{text}");

    // 2. A client certificate from another root.
    let (code, report, text) = probe(&good, &with("foreign", &w.foreign));
    assert_eq!(code, 1);
    assert_eq!(
        report["tls"]["client_chains_to_agreed_root"], false,
        "{report:#}"
    );
    assert!(
        cause(&report).contains("does not chain to the agreed root"),
        "{text}"
    );
    println!("client from another root:\n{text}");

    // 3. An expired client.
    let (code, report, text) = probe(&good, &with("expired", &w.expired));
    assert_eq!(code, 1);
    assert!(cause(&report).contains("certificate_expired"), "{text}");
    assert!(cause(&report).contains("expired"), "{text}");

    // 4. A revoked client (the credential's CRL).
    let (code, report, text) = probe(&good, &with("revoked", &w.revoked));
    assert_eq!(code, 1);
    assert!(cause(&report).contains("certificate_revoked"), "{text}");
    assert!(cause(&report).contains("CRL"), "{text}");
    println!("revoked client:\n{text}");

    // 5. peergate's own denial: the stranger, same root, a name the policy does not allow.
    let (code, report, text) = probe(&good, &with("stranger", &s.stranger));
    assert_eq!(code, 1);
    assert_eq!(report["http"]["status"], 403);
    assert!(
        cause(&report).contains("peergate refused the request: san_not_allowed"),
        "{text}"
    );
    assert!(
        cause(&report).contains(peergate_filter_explanation("san_not_allowed")),
        "{text}"
    );
    assert_eq!(step(&report, "client_certificate")["outcome"], "pass");
    println!("filter denial:\n{text}");

    // 6. A wrong SNI: no filter chain for it, Envoy closes the connection.
    let args = [
        with("client", &s.client),
        vec!["--sni".into(), "other.zufar.io".into()],
    ]
    .concat();
    let (code, report, text) = probe(&good, &args);
    assert_eq!(code, 1);
    assert!(
        cause(&report).contains("server name \"other.zufar.io\""),
        "{text}"
    );
    assert!(cause(&report).contains("wrong --sni"), "{text}");

    // 7. Plain HTTP to the TLS port.
    let (plain, plain_connect) = url(&envoy, "good", "http");
    let (code, report, text) = probe(&plain, &plain_connect);
    assert_eq!(code, 1);
    assert!(cause(&report).contains("speaks TLS"), "{report:#}\n{text}");
    assert!(cause(&report).contains("https://"), "{text}");

    // No client certificate at all.
    let args = [
        vec!["--ca".into(), w.file("root.pem", &s.root.cert.cert_pem)],
        connect.clone(),
    ]
    .concat();
    let (code, report, text) = probe(&good, &args);
    assert_eq!(code, 1);
    assert!(cause(&report).contains("certificate_required"), "{text}");
    assert!(cause(&report).contains("none was sent"), "{text}");

    // The connection layer refuses by closing the connection after the handshake.
    let (conn_url, conn_connect) = url(&envoy, "connection", "https");
    let args = [w.identity("stranger", &s.stranger), conn_connect].concat();
    let (code, report, text) = probe(&conn_url, &args);
    assert_eq!(code, 1);
    assert!(
        cause(&report).contains("connection layer"),
        "{report:#}\n{text}"
    );

    // Nothing listens: the connect step says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let args = [
        w.identity("client", &s.client),
        vec!["--connect".into(), format!("127.0.0.1:{port}")],
    ]
    .concat();
    let (code, report, _) = probe(&good, &args);
    assert_eq!(code, 1);
    assert_eq!(step(&report, "connect")["outcome"], "fail");
}

fn peergate_filter_explanation(code: &str) -> &'static str {
    peergate_filter::Reason::ALL
        .iter()
        .find(|r| r.code() == code)
        .map(|r| r.explain())
        .expect("a reason")
}

#[test]
fn bad_input_exits_2_naming_the_input() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let cases: [(&[&str], &str); 5] = [
        (&["ftp://x/"], "ftp://x/"),
        (
            &["https://x/", "--ca", missing.to_str().unwrap_or_default()],
            "missing.pem",
        ),
        (
            &["https://x/", "--ca", not_pem.to_str().unwrap_or_default()],
            "not.pem",
        ),
        (
            &[
                "https://x/",
                "--ca",
                not_pem.to_str().unwrap_or_default(),
                "--connect",
                "x",
            ],
            "--connect",
        ),
        (
            &["--from", dir.path().to_str().unwrap_or_default()],
            "cluster-a",
        ),
    ];
    for (args, named) in cases {
        let out = Command::new(peergate_binary())
            .arg("probe")
            .args(args)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{args:?} should name {named}: {stderr}"
        );
    }
}

#[test]
fn from_a_generated_folder_the_probe_plays_cluster_a_s_sidecar() {
    let out = tempfile::tempdir().expect("dir");
    peergate_e2e::envoy::gen_with("", out.path());
    // Nothing listens on the dialled port: the report still shows what the sidecar would
    // send, read from the DestinationRule and the Secret it mounts.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let run = Command::new(peergate_binary())
        .arg("probe")
        .arg("--from")
        .arg(out.path())
        .args(["--connect", &format!("127.0.0.1:{port}"), "--json"])
        .output()
        .expect("probe runs");
    let report: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&run.stderr));
    });
    assert_eq!(run.status.code(), Some(1), "{report:#}");
    assert_eq!(report["url"], format!("https://{DOMAIN}:443/hello"));
    assert_eq!(step(&report, "connect")["outcome"], "fail");
}
