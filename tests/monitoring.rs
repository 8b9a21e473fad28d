//! Operating the filter (issue 31): the alert rules `gen` writes with `[monitoring]` pass
//! promtool's unit tests (tests/monitoring/peergate-rules.test.yaml: a firing and a quiet case
//! per alert), and real Envoy exports every filter metric they name, in Prometheus' text
//! format, with the cold and cached decisions counted as they happen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use peergate_e2e::backend::Backend;
use peergate_e2e::envoy::{admin_get, filter_wasm, gen_with, workspace_root, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::pki::KeyKind;
use peergate_e2e::scenario::{Scenario, DOMAIN};
use serde_json::{json, Value};

/// promtool, built from github.com/prometheus/prometheus by `cargo make install-promtool`.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| peergate_e2e::envoy::target_dir().join("tools/promtool"));
    assert!(
        path.is_file(),
        "promtool not found at {}: run `cargo make install-promtool` (cargo make e2e does), or set PROMTOOL",
        path.display()
    );
    path
}

/// `gen` with the repository's mesh.toml and `[monitoring]` on, into `out/out`.
fn generate_with_monitoring(out: &Path) {
    gen_with("[monitoring]\n", &out.join("out"));
}

fn yaml(path: &Path) -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(path).expect("read")).expect("YAML")
}

fn run(command: &mut Command) -> String {
    let out = command.output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?}:\n{text}");
    text
}

#[test]
fn the_generated_alert_rules_pass_promtool_tests() {
    let dir = tempfile::tempdir().expect("dir");
    generate_with_monitoring(dir.path());
    let rule = yaml(&dir.path().join("out/cluster-b/prometheusrule.yaml"));
    assert_eq!(rule["kind"], "PrometheusRule");
    let rules_file = dir.path().join("peergate-rules.yaml");
    std::fs::write(
        &rules_file,
        yaml_serde::to_string(&rule["spec"]).expect("YAML"),
    )
    .expect("write");
    let tests_file = workspace_root().join("tests/monitoring/peergate-rules.test.yaml");
    std::fs::copy(&tests_file, dir.path().join("peergate-rules.test.yaml")).expect("copy");

    let promtool = promtool();
    println!(
        "{}",
        run(Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&rules_file))
    );
    println!(
        "{}",
        run(Command::new(&promtool).current_dir(dir.path()).args([
            "test",
            "rules",
            "peergate-rules.test.yaml"
        ]))
    );

    // Every generated alert has a case that fires and one that does not.
    let alerts: BTreeSet<String> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    let tests = yaml(&tests_file);
    let cases: Vec<(String, bool)> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let fires = c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            (
                c["alertname"].as_str().unwrap_or_default().to_owned(),
                fires,
            )
        })
        .collect();
    for alert in &alerts {
        for fires in [true, false] {
            assert!(
                cases.contains(&(alert.clone(), fires)),
                "{alert} has no case where it {}",
                if fires { "fires" } else { "stays quiet" }
            );
        }
    }
}

/// The dashboard's queries are PromQL Prometheus parses: each becomes a recording rule of a
/// group `promtool check rules` reads (Grafana's `$__rate_interval` as 5m).
#[test]
fn the_dashboard_queries_parse() {
    let dir = tempfile::tempdir().expect("dir");
    generate_with_monitoring(dir.path());
    let map = yaml(
        &dir.path()
            .join("out/cluster-b/configmap-peergate-dashboard.yaml"),
    );
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let model: Value = serde_json::from_str(
        map["data"]["peergate.json"]
            .as_str()
            .expect("peergate.json"),
    )
    .expect("the dashboard is JSON");
    let rules: Vec<Value> = model["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .enumerate()
        .map(|(i, target)| {
            let expr = target["expr"].as_str().expect("expr");
            json!({ "record": format!("peergate:dashboard_query_{i}"), "expr": expr.replace("$__rate_interval", "5m") })
        })
        .collect();
    assert!(rules.len() >= 10, "{rules:?}");
    let file = dir.path().join("dashboard-queries.yaml");
    let groups = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, yaml_serde::to_string(&groups).expect("YAML")).expect("write");
    println!(
        "{}",
        run(Command::new(promtool())
            .arg("check")
            .arg("rules")
            .arg(&file))
    );
}

#[test]
fn envoy_exports_every_metric_the_rules_name_and_counts_cold_and_cached_decisions() {
    let s = Scenario::new(KeyKind::P256);
    let backend = Backend::start();
    let tls = GatewayTls {
        cert: &s.server.cert_pem,
        key: &s.server.key_pem,
        client_ca_bundle: &s.root.cert.cert_pem,
    };
    let listener = MtlsListener {
        name: "gateway".into(),
        plugin_config: s.policy(json!({ "layer": "request" })),
        xfcc: Xfcc::Sanitize,
    };
    let envoy = Envoy::start(&bootstrap(&[listener], &tls, &filter_wasm(), backend.addr))
        .expect("gateway starts");

    // One keep-alive connection (one worker, one VM): the first request reads and assesses
    // the certificate, the next three find it in the cache.
    let mut connection = s
        .client_for(&s.client)
        .connect(envoy.listener("gateway"), DOMAIN)
        .expect("connects");
    for _ in 0..4 {
        let response = connection.get(DOMAIN, "/hello", &[]).expect("request");
        assert_eq!(response.status, 200);
    }
    envoy.settle("cold and cached decisions", &(1, 3), |e| {
        (
            e.counter("wasmcustom.peergate.cold_decisions"),
            e.counter("wasmcustom.peergate.cached_decisions"),
        )
    });

    // Prometheus' text format: a wasmcustom counter loses its namespace and its dots.
    let (status, text) = admin_get(envoy.admin, "/stats/prometheus").expect("admin");
    assert_eq!(status, 200);
    for name in peergate::monitoring::FILTER_METRICS {
        assert!(
            text.contains(&format!("# TYPE {name} counter\n")),
            "Envoy exports no counter {name}"
        );
    }
    assert!(
        text.contains("\npeergate_cold_decisions{} 1\n"),
        "{}",
        grep(&text, "peergate_cold")
    );
    assert!(
        text.contains("\npeergate_cached_decisions{} 3\n"),
        "{}",
        grep(&text, "peergate_cached")
    );
    // The per-reason families the dashboard matches by name.
    assert!(text.contains("# TYPE peergate_denied_san_not_allowed counter\n"));
    assert!(text.contains("# TYPE peergate_audit_would_deny_san_not_allowed counter\n"));
}

fn grep(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}
