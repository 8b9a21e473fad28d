//! The audit page in a real browser: Debian's chromium, driven by Playwright
//! (`tests/browser/audit_page.mjs`), loads the page `cargo make web` built from a loopback
//! server, and gets a policy and an allowed, a wrong-SAN and a rogue-issuer certificate pasted
//! in. The verdicts and every check must be those of `peergate audit --json` on the same input,
//! nothing may be fetched from anywhere but the page's own server, and a screenshot is saved
//! for review (`audit-page.png` in the target directory).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::Command;

use peergate_e2e::envoy::{built_in_target, peergate_binary, target_dir, workspace_root};
use peergate_e2e::pki::KeyKind;
use peergate_e2e::scenario::{Scenario, CLIENT_ID, DOMAIN};
use serde_json::{json, Value};

fn web_dir() -> PathBuf {
    let dir = built_in_target(
        "PEERGATE_WEB",
        "web",
        "The audit page: run `cargo make web`",
    );
    assert!(
        dir.join("peergate_web_bg.wasm").exists(),
        "{} has no built page: run `cargo make web`",
        dir.display()
    );
    dir
}

/// The checks of a report as (check, outcome) pairs, and its verdict and reason.
fn summary(report: &Value) -> (String, String, Vec<(String, String)>) {
    let checks = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (
        report["verdict"].as_str().unwrap().to_owned(),
        report["reason"].as_str().unwrap().to_owned(),
        checks,
    )
}

#[test]
fn the_page_gives_the_clis_verdicts_without_leaving_the_browser() {
    let web = web_dir();
    let cast = Scenario::new(KeyKind::P256);
    // A CA with the agreed root's exact name but its own key: the rogue issuer.
    let rogue_ca = cast.root.same_name(KeyKind::P256);
    let rogue = rogue_ca.issue(&Scenario::client_leaf(KeyKind::P256));
    // A route, so the page's method and path fields are judged as the CLI's flags are.
    let plugin: Value = serde_json::from_str(&cast.policy(json!({
        "routes": [{"pathPrefix": "/payments/", "methods": ["POST"]}]
    })))
    .unwrap();
    // Pasted as `kubectl kustomize` prints a Gateway API cluster B: the Gateway, then the
    // WasmPlugin attached to it by targetRefs.
    let gateway = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": { "name": "peergate-ingressgateway", "namespace": "peergate-ingress" },
        "spec": { "gatewayClassName": "istio", "listeners": [
            { "name": "https", "hostname": DOMAIN, "port": 443, "protocol": "HTTPS" }
        ] }
    });
    let wasmplugin = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": { "name": "peergate", "namespace": "peergate-ingress" },
        "spec": {
            "targetRefs": [{ "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "peergate-ingressgateway" }],
            "url": "oci://registry.example.com/peergate/peergate-filter:0.1.0",
            "phase": "AUTHN",
            "pluginConfig": plugin
        }
    });
    let policy_yaml = format!(
        "{}---\n{}",
        yaml_serde::to_string(&gateway).unwrap(),
        yaml_serde::to_string(&wasmplugin).unwrap()
    );

    let work = tempfile::tempdir().unwrap();
    let policy_path = work.path().join("wasmplugin.yaml");
    std::fs::write(&policy_path, &policy_yaml).unwrap();
    // (name, certificate, verdict, reason, method and path: empty when not judged)
    let cases = [
        (
            "allowed",
            &cast.client.cert_pem,
            "allow",
            "allowed",
            ("", ""),
        ),
        (
            "wrong SAN",
            &cast.stranger.cert_pem,
            "deny",
            "san_not_allowed",
            ("", ""),
        ),
        (
            "rogue issuer",
            &rogue.cert_pem,
            "deny",
            "issuer_key_id_mismatch",
            ("", ""),
        ),
        (
            "a route refusing the method",
            &cast.client.cert_pem,
            "deny",
            "route_not_allowed",
            ("DELETE", "/payments/charge"),
        ),
    ];
    let mut page_cases: Vec<Value> = cases
        .iter()
        .map(|(name, pem, _, _, (method, path))| {
            json!({ "name": name, "certificate": pem, "method": method, "path": path,
                    "screenshot": *name == "rogue issuer" })
        })
        .collect();
    page_cases.push(json!({ "name": "not a certificate", "certificate": "hello" }));
    let input = work.path().join("cases.json");
    std::fs::write(
        &input,
        json!({ "policy": policy_yaml, "host": DOMAIN, "cases": page_cases }).to_string(),
    )
    .unwrap();
    let screenshot = target_dir().join("audit-page.png");
    let _ = std::fs::remove_file(&screenshot);

    let script = workspace_root().join("tests/browser/audit_page.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(&web)
        .arg(&input)
        .arg(&screenshot)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}): install Node.js, then `cargo make install-browser`")
        });
    assert!(
        output.status.success(),
        "the browser run failed (`cargo make install-browser` installs chromium and playwright-core):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let page: Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = page["results"].as_array().unwrap();

    for (i, (name, pem, verdict, reason, (method, path))) in cases.iter().enumerate() {
        let shown = &results[i];
        assert_eq!(shown["error"], Value::Null, "{name}: {shown}");
        assert_eq!(shown["verdict"], *verdict, "{name}: {shown}");
        assert_eq!(shown["reason"], *reason, "{name}: {shown}");
        assert!(
            shown["checks"].as_array().unwrap().len() >= 10,
            "{name}: every check is shown"
        );

        // The same input through the CLI: the same verdict, reason and checks.
        let cert_path = work.path().join(format!("{i}.pem"));
        std::fs::write(&cert_path, pem).unwrap();
        let mut audit = Command::new(peergate_binary());
        audit
            .args(["audit", "--json", "--host", DOMAIN, "--policy"])
            .arg(&policy_path)
            .arg("--cert")
            .arg(&cert_path);
        if !path.is_empty() {
            audit.args(["--path", path, "--method", method]);
        }
        let output = audit.output().unwrap();
        // The CLI's documented exit status: 0 allowed, 1 denied.
        assert_eq!(
            output.status.code(),
            Some(if *verdict == "allow" { 0 } else { 1 }),
            "{name}: peergate audit's exit status\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cli: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            summary(&shown["json"]["certificates"][0]),
            summary(&cli["certificates"][0]),
            "{name}: the page and peergate audit --json disagree"
        );
        assert_eq!(shown["json"]["verdict"], cli["verdict"]);
        assert_eq!(shown["json"]["policy"]["origin"], cli["policy"]["origin"]);
    }
    assert_eq!(
        results[0]["json"]["certificates"][0]["peer"]["sans"][0],
        format!("URI:{CLIENT_ID}")
    );
    let error = results[cases.len()]["error"].as_str().unwrap_or_default();
    assert!(error.contains("certificate"), "bad input is named: {error}");

    // Nothing leaves the page: every request went to the page's own loopback server.
    let requests = page["requests"].as_array().unwrap();
    assert!(requests.len() >= 4, "{requests:?}");
    for url in requests {
        assert!(
            url.as_str().unwrap().starts_with("http://127.0.0.1:"),
            "the page fetched {url}"
        );
    }
    // And it cannot: the page's own attempt to send elsewhere is stopped by its
    // Content-Security-Policy, before any request is made.
    assert_eq!(
        page["outside_fetch"],
        json!({ "fetched": false, "violation": "connect-src" }),
        "the page could send data elsewhere"
    );
    assert!(
        !requests
            .iter()
            .any(|url| url.as_str().unwrap().contains("198.51.100.7")),
        "{requests:?}"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
}
