//! `[monitoring]`: a PrometheusRule with the alerts an operator needs on the filter's counters
//! and Istio's Wasm metrics, and a Grafana dashboard in a ConfigMap. Metric names are what
//! Prometheus scrapes from the gateway: Envoy exports a `wasmcustom.` counter without its
//! namespace and with dots as underscores (`wasmcustom.peergate.denied` → `peergate_denied`;
//! the Istio oracle checks each name below on real Envoy with Istio's stats settings).

use serde_json::{json, Value};

use crate::mesh::MonitoringSection;

/// Every filter metric the rules and the dashboard read.
pub const FILTER_METRICS: [&str; 9] = [
    "peergate_allowed",
    "peergate_denied",
    "peergate_audit_would_deny",
    "peergate_crl_stale",
    "peergate_expiring",
    "peergate_unprotected",
    "peergate_config_rejected",
    "peergate_cold_decisions",
    "peergate_cached_decisions",
];

/// Istio agent metrics the rules read (pkg/wasm/monitoring.go, `istio_agent_` prefix).
pub const ISTIO_AGENT_METRICS: [&str; 2] = [
    "istio_agent_wasm_remote_fetch_count",
    "istio_agent_wasm_config_conversion_count",
];

/// Name of both objects.
pub const NAME: &str = "peergate";

fn alert(
    name: &str,
    expr: String,
    for_: &str,
    severity: &str,
    summary: &str,
    description: &str,
) -> Value {
    json!({
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": { "severity": severity },
        "annotations": { "summary": summary, "description": description },
    })
}

/// The alert rules, as a Prometheus rule group (`promtool` reads the same).
pub fn rule_groups(section: &MonitoringSection, shared_gateway: bool) -> Value {
    let by = "sum by (namespace, pod)";
    let mut rules = vec![
        alert(
            "PeergateDenialsHigh",
            format!("{by} (rate(peergate_denied[5m])) * 60 > {}", section.denied_per_minute),
            "10m",
            "warning",
            "peergate refuses more than monitoring.deniedPerMinute requests or connections per minute on {{ $labels.pod }}",
            "Denials above monitoring.deniedPerMinute for 10 minutes. `peergate audit --logs` over the gateway's `kubectl logs` groups them by peer and reason; `peergate probe` reproduces one.",
        ),
        alert(
            "PeergateCrlStale",
            format!("{by} (increase(peergate_crl_stale[15m])) > 0"),
            "0m",
            "warning",
            "peergate decided with a CRL past its nextUpdate on {{ $labels.pod }}",
            "A CRL in the plugin configuration is stale (still enforced). Publish a new one: `peergate revoke` regenerates it.",
        ),
        alert(
            "PeergatePeerExpiring",
            format!("{by} (increase(peergate_expiring[1h])) > 0"),
            "0m",
            "warning",
            "a peer inside expiryWarningDays called {{ $labels.pod }}",
            "An allowed peer's certificate expires within the plugin's expiryWarningDays; its decision line (daysLeft) names it. `peergate audit --cert … --fail-expiring` checks certificates ahead of time.",
        ),
        alert(
            "PeergateConfigRejected",
            format!("{by} (increase(peergate_config_rejected[10m])) > 0"),
            "0m",
            "critical",
            "peergate refused a new configuration on {{ $labels.pod }}",
            "The gateway keeps the previous policy; the log line `peergate: rejecting configuration` says why. `peergate audit --policy` reads the same configuration offline.",
        ),
        alert(
            "PeergateWasmFetchFailing",
            format!("{by} (increase(istio_agent_wasm_remote_fetch_count{{result!=\"success\"}}[10m])) > 0"),
            "0m",
            "critical",
            "the gateway's istio-agent fails to fetch the peergate module on {{ $labels.pod }}",
            "Istio's agent could not download or check the module (result label: download_failure, manifest_failure, checksum_mismatched, fetch_failure). With FAIL_CLOSE the listener refuses traffic.",
        ),
        alert(
            "PeergateWasmConversionFailing",
            format!("{by} (increase(istio_agent_wasm_config_conversion_count{{result!~\"success|no_remote_load\"}}[10m])) > 0"),
            "0m",
            "critical",
            "istio-agent could not install a Wasm plugin configuration on {{ $labels.pod }}",
            "Istio's agent replaced the plugin with a deny-all filter (or allow-all with FAIL_OPEN): check the WasmPlugin's url and sha256 and the agent's log.",
        ),
        alert(
            "PeergateNotRunning",
            "absent(peergate_denied)".into(),
            "15m",
            "critical",
            "no gateway exports peergate's counters",
            "The filter defines its counters once it is configured: none means the plugin is not installed, not scraped, or never started (a configuration refused at start; the gateway answers 500 on the host).",
        ),
    ];
    if !shared_gateway {
        rules.push(alert(
            "PeergateUnprotectedTraffic",
            format!("{by} (increase(peergate_unprotected[10m])) > 0"),
            "0m",
            "warning",
            "traffic passed {{ $labels.pod }} for server names peergate does not protect",
            "This gateway is peergate's own: every connection should be for the protected domain. Check protectedServerNames and the Gateway's hosts.",
        ));
    }
    json!([{ "name": "peergate", "rules": rules }])
}

/// The PrometheusRule in `namespace`.
pub fn prometheus_rule(
    section: &MonitoringSection,
    namespace: &str,
    shared_gateway: bool,
) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": { "name": NAME, "namespace": namespace, "labels": section.rule_labels },
        "spec": { "groups": rule_groups(section, shared_gateway) },
    })
}

fn panel(id: u32, title: &str, y: u32, x: u32, targets: &[(&str, &str)]) -> Value {
    json!({
        "id": id,
        "type": "timeseries",
        "title": title,
        "datasource": { "type": "prometheus", "uid": "${datasource}" },
        "gridPos": { "h": 8, "w": 12, "x": x, "y": y },
        "targets": targets.iter().enumerate().map(|(i, (expr, legend))| json!({
            "refId": char::from(b'A' + u8::try_from(i).unwrap_or(0)).to_string(),
            "expr": expr,
            "legendFormat": legend,
        })).collect::<Vec<_>>(),
    })
}

/// The per-reason counters (`peergate_denied_<reason>`) as one series per reason.
fn by_reason(prefix: &str) -> String {
    format!(
        "sum by (reason) (label_replace(rate({{__name__=~\"{prefix}_.+\"}}[$__rate_interval]), \"reason\", \"$1\", \"__name__\", \"{prefix}_(.+)\"))"
    )
}

/// The dashboard's JSON model.
pub fn dashboard() -> Value {
    let panels = vec![
        panel(1, "Decisions by reason (per second)", 0, 0, &[
            ("sum(rate(peergate_allowed[$__rate_interval]))", "allowed"),
            (&by_reason("peergate_denied"), "denied: {{reason}}"),
        ]),
        panel(2, "Audit mode: would deny, by reason (per second)", 0, 12, &[
            ("sum(rate(peergate_audit_would_deny[$__rate_interval]))", "all"),
            (&by_reason("peergate_audit_would_deny"), "{{reason}}"),
        ]),
        panel(3, "Cold vs cached decisions (per second)", 8, 0, &[
            ("sum(rate(peergate_cold_decisions[$__rate_interval]))", "cold (certificate read and assessed)"),
            ("sum(rate(peergate_cached_decisions[$__rate_interval]))", "cached"),
        ]),
        panel(4, "Expiring peers (allowed decisions inside expiryWarningDays, per hour)", 8, 12, &[
            ("sum by (pod) (increase(peergate_expiring[1h]))", "{{pod}}"),
        ]),
        panel(5, "Stale CRLs, refused configurations, unprotected traffic", 16, 0, &[
            ("sum(increase(peergate_crl_stale[$__rate_interval]))", "decisions with a stale CRL"),
            ("sum(increase(peergate_config_rejected[$__rate_interval]))", "configurations refused"),
            ("sum(increase(peergate_unprotected[$__rate_interval]))", "unprotected"),
        ]),
        panel(6, "Module fetch and install (istio-agent)", 16, 12, &[
            ("sum by (result) (increase(istio_agent_wasm_remote_fetch_count[$__rate_interval]))", "fetch: {{result}}"),
            ("sum by (result) (increase(istio_agent_wasm_config_conversion_count[$__rate_interval]))", "install: {{result}}"),
        ]),
    ];
    json!({
        "title": "peergate",
        "uid": "peergate",
        "schemaVersion": 39,
        "tags": ["peergate", "istio"],
        "time": { "from": "now-6h", "to": "now" },
        "refresh": "1m",
        "templating": { "list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Prometheus",
        }]},
        "panels": panels,
    })
}

/// The ConfigMap the Grafana sidecar loads the dashboard from.
pub fn dashboard_config_map(section: &MonitoringSection, namespace: &str) -> Value {
    let model = serde_json::to_string_pretty(&dashboard()).unwrap_or_default();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("{NAME}-dashboard"),
            "namespace": namespace,
            "labels": { section.dashboard_label.clone(): "1" },
        },
        "data": { "peergate.json": model },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every metric the rules and the dashboard name is in the lists the oracle checks.
    #[test]
    fn rules_and_dashboard_name_only_listed_metrics() {
        let text = format!(
            "{}{}",
            rule_groups(&MonitoringSection::default(), false),
            dashboard()
        );
        let mut named = std::collections::BTreeSet::new();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("peergate_") || word.starts_with("istio_agent_") {
                named.insert(word.to_owned());
            }
        }
        for name in &named {
            let listed = FILTER_METRICS.contains(&name.as_str())
                || ISTIO_AGENT_METRICS.contains(&name.as_str())
                // The per-reason families, matched by a regex on the name.
                || name == "peergate_denied_"
                || name == "peergate_audit_would_deny_";
            assert!(listed, "{name} is not listed");
        }
        for name in FILTER_METRICS.iter().chain(&ISTIO_AGENT_METRICS) {
            assert!(named.contains(*name), "{name} is listed but unused");
        }
    }
}
