//! Inside Envoy: each host call timed from a request, and the filter's cold path step by step
//! (the benchmark module's profiler).

use anyhow::{bail, Context};
use std::collections::BTreeMap;

use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::Envoy;
use peergate_e2e::scenario::DOMAIN;
use serde_json::Value;

/// One request straight to the gateway's profiling listener with `x-peergate-bench: what`,
/// and the JSON it answers.
pub(crate) fn ask_profiler(
    gateway: &Envoy,
    client: &TlsClient,
    what: &str,
) -> anyhow::Result<Value> {
    let response = client
        .get(
            gateway.listener("profile"),
            DOMAIN,
            DOMAIN,
            "/",
            &[("x-peergate-bench", what)],
        )
        .context("profiling request")?;
    if response.status != 200 {
        bail!("profiler: {} {}", response.status, response.text());
    }
    serde_json::from_str(&response.text()).context("profiler's JSON")
}

/// Host calls inside a request, each timed in a loop (ns per call): medians of `rounds`
/// requests.
pub(crate) fn hostcall_costs(
    gateway: &Envoy,
    client: &TlsClient,
    rounds: usize,
) -> anyhow::Result<BTreeMap<String, Vec<f64>>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..rounds {
        let answer = ask_profiler(gateway, client, "hostcalls")?;
        for (call, ns) in answer.as_object().context("hostcalls JSON")? {
            out.entry(call.clone())
                .or_default()
                .push(ns.as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(out)
}

/// The profiler's steps in their order, as (label, median µs, mean µs, p99 µs, connections).
pub(crate) fn profile_steps(profile: &Value) -> Vec<(String, f64, f64, f64, u64)> {
    let mut steps: Vec<(u32, String, f64, f64, f64, u64)> = profile
        .as_object()
        .map(|steps| {
            steps
                .iter()
                .map(|(name, value)| {
                    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
                    let us = |key: &str| value[key].as_f64().unwrap_or(f64::NAN) / 1000.0;
                    (
                        digits.parse().unwrap_or(0),
                        name.clone(),
                        us("median_ns"),
                        us("mean_ns"),
                        us("p99_ns"),
                        value["n"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    steps.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    steps
        .into_iter()
        .map(|(_, name, median, mean, p99, n)| (name, median, mean, p99, n))
        .collect()
}

/// The mean µs of the profiled step whose label starts with `prefix`.
pub(crate) fn step_us(steps: &[(String, f64, f64, f64, u64)], prefix: &str) -> f64 {
    steps
        .iter()
        .find(|(name, ..)| name.starts_with(prefix))
        .map_or(f64::NAN, |(_, _, mean, _, _)| *mean)
}
