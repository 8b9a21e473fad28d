//! `cargo make bench`: measures, in one run on this machine, and writes BENCHMARKS.md.
//!
//! 1. The policy core natively (criterion, run by the make task before this program; medians
//!    read from `target/criterion`).
//! 2. The same decisions inside the wasm VM of a real Envoy (V8), timed by a benchmark module.
//! 3. Gateway throughput: wrk → client Envoy (keep-alive mutual TLS) → gateway Envoy
//!    (`--concurrency 1`) → direct response, for each gateway variant, in interleaved rounds;
//!    and new connections with a new certificate each (the decision cache cannot help).

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{envoy_binary, filter_wasm, Envoy};
use peergate_e2e::pki::{key, KeyKind, Leaf};
use peergate_e2e::scenario::CLIENT_ID;

mod cpu_split;
mod inside;
mod instructions;
mod latency;
mod load;
mod native;
mod one_decision;
mod options;
mod report;
mod setup;
mod stats;

use crate::inside::{ask_profiler, hostcall_costs};
use crate::load::{connection_rounds, new_connections, summarize, wrk, Sample};
use crate::native::criterion_median;
use crate::one_decision::compare_opt_levels;
use crate::options::{options, Options};
use crate::report::{render, Measured};
use crate::setup::{bench_wasm, client_bootstrap, gateway_bootstrap, pki, variants, Pki, Variant};
use crate::stats::median;

fn main() -> anyhow::Result<()> {
    let options = options()?;
    check_tools()?;
    let started = time::OffsetDateTime::now_utc();
    eprintln!("peergate-bench: certificates");
    let pki = pki();
    if options.v8_only {
        return one_decision::print_v8_only(&pki);
    }
    if options.latency_only {
        return latency::print_latency_only(options.rounds);
    }
    let variants = variants(&pki);
    let clients = cold_clients(&pki);
    let same = TlsClient::new(
        &pki.root.cert.cert_pem,
        Some((&pki.client.cert_pem, &pki.client.key_pem)),
    );
    let connection_variants: Vec<&str> = COLD_VARIANTS.iter().map(|(name, _)| *name).collect();
    let counted =
        [1, 2].map(|_| instructions::run(&pki, &variants, &connection_variants, &clients, &same));
    let [first, second] = counted;
    let counted = [first?, second?];
    if options.instructions_only {
        println!("{counted:#?}");
        return Ok(());
    }
    eprintln!("peergate-bench: gateway and client Envoys");
    let gateway = Envoy::start_with_args(
        &envoy_binary(),
        &gateway_bootstrap(&pki, &variants),
        &["--concurrency", "1"],
    )
    .map_err(|f| anyhow::anyhow!("gateway Envoy did not start:\n{}", f.log))?;
    let profiling_client = TlsClient::new(
        &pki.root.cert.cert_pem,
        Some((&pki.client.cert_pem, &pki.client.key_pem)),
    );
    eprintln!("peergate-bench: host calls inside a request, and the cold path step by step");
    let hostcalls = hostcall_costs(&gateway, &profiling_client, options.rounds)?;
    new_connections(
        gateway.listener("profile"),
        &clients,
        options.seconds,
        2,
        gateway.pid(),
    )?;
    let profile = ask_profiler(&gateway, &profiling_client, "report")?;
    if options.profile_only {
        for (call, mut ns) in hostcalls {
            println!("{call}: {:.0} ns {ns:.0?}", median(&mut ns));
        }
        println!("{}", serde_json::to_string_pretty(&profile)?);
        return Ok(());
    }
    let keepalive = keepalive_rounds(&options, &pki, &gateway, &variants)?;
    summarize("keep-alive", &keepalive);
    let cold = connection_rounds(
        &options,
        &gateway,
        &COLD_VARIANTS,
        &clients,
        "new connections",
    )?;
    summarize("new connections, a new certificate each", &cold);
    // Churn: new connections that all present the same certificate (clients without
    // keep-alive, pool churn, sidecars sharing cluster A's one client certificate).
    let same = Arc::new(vec![TlsClient::new(
        &pki.root.cert.cert_pem,
        Some((&pki.client.cert_pem, &pki.client.key_pem)),
    )]);
    let churn = connection_rounds(
        &options,
        &gateway,
        &CHURN_VARIANTS,
        &same,
        "churn, same certificate",
    )?;
    summarize("churn, the same certificate", &churn);
    let native = native_medians()?;
    eprintln!(
        "peergate-bench: decisions inside V8, with and without opt-level 3 for the crypto crates"
    );
    let opt = compare_opt_levels(&pki)?;
    let v8: BTreeMap<String, (f64, f64)> = opt
        .fast
        .iter()
        .map(|(k, s)| (k.clone(), s.medians()))
        .collect();
    let misses = gateway
        .stats("peergate")
        .into_iter()
        .filter(|(k, _)| k.ends_with("peergate.allowed"))
        .map(|(_, v)| v)
        .sum::<u64>();
    drop(gateway);
    let latencies = latency::latencies(options.rounds)?;
    let report = render(
        &options,
        started,
        &native,
        &v8,
        &opt,
        &variants,
        &keepalive,
        &COLD_VARIANTS,
        &cold,
        &Measured {
            hostcalls: &hostcalls,
            profile: &profile,
            churn_variants: &CHURN_VARIANTS,
            churn: &churn,
            instructions: &counted,
        },
        &latencies,
        misses,
    );
    std::fs::write(&options.out, &report).with_context(|| options.out.display().to_string())?;
    print!("{report}");
    Ok(())
}

/// The new-connection runs' variants: a new certificate per connection.
const COLD_VARIANTS: [(&str, &str); 5] = [
    ("none", "no filter"),
    ("noop", "a proxy-wasm filter doing nothing"),
    ("rbac", "native RBAC"),
    (
        "enforce",
        "peergate enforce, layer request, a new certificate per connection (cache cold)",
    ),
    (
        "connection",
        "peergate enforce, layer connection, a new certificate per connection (cache cold)",
    ),
];

/// The churn runs' variants: new connections, one certificate.
const CHURN_VARIANTS: [(&str, &str); 5] = [
    ("none", "no filter"),
    ("noop", "a proxy-wasm filter doing nothing"),
    ("rbac", "native RBAC"),
    ("enforce", "peergate enforce, layer request"),
    ("connection", "peergate enforce, layer connection"),
];

/// The modules and wrk must be there before anything starts.
fn check_tools() -> anyhow::Result<()> {
    for (path, how) in [
        (filter_wasm(), "cargo make build-filter"),
        (bench_wasm(), "cargo make build-bench-wasm"),
    ] {
        if !path.exists() {
            bail!("{} is missing: run `{how}`", path.display());
        }
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed (Debian package wrk): cargo make bench installs it");
    }
    Ok(())
}

/// Clients for the cold runs: more certificates than the decision cache holds (one key, so
/// issuing them is quick), so every decision is a cold one.
fn cold_clients(pki: &Pki) -> Arc<Vec<TlsClient>> {
    let count = 2 * peergate_filter::cache::DEFAULT_CAPACITY;
    eprintln!("peergate-bench: {count} client certificates for the cold runs");
    let shared_key = key(KeyKind::Rsa2048);
    let key_pem = shared_key.serialize_pem();
    let san = format!("URI:{CLIENT_ID}");
    Arc::new(
        (0..count)
            .map(|i| {
                let leaf = pki.root.issue_for(
                    &Leaf::client(&format!("cold-{i}"), &[&san], KeyKind::Rsa2048),
                    &shared_key,
                );
                TlsClient::new(&pki.root.cert.cert_pem, Some((&leaf.cert_pem, &key_pem)))
                    .without_resumption()
            })
            .collect(),
    )
}

/// Keep-alive load through a client Envoy: a warm-up per variant, then interleaved rounds.
fn keepalive_rounds<'v>(
    options: &Options,
    pki: &Pki,
    gateway: &Envoy,
    variants: &'v [Variant],
) -> anyhow::Result<BTreeMap<&'v str, Vec<Sample>>> {
    let client = Envoy::start_with_args(
        &envoy_binary(),
        &client_bootstrap(pki, gateway, variants),
        &["--concurrency", "1"],
    )
    .map_err(|f| anyhow::anyhow!("client Envoy did not start:\n{}", f.log))?;
    for v in variants.iter().filter(|v| v.keepalive) {
        // Warm up: connections, VMs and the decision cache.
        wrk(
            client.listener(v.name),
            1,
            options.connections,
            gateway.pid(),
        )?;
    }
    let mut keepalive: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for round in 0..options.rounds {
        for v in variants.iter().filter(|v| v.keepalive) {
            eprintln!(
                "peergate-bench: round {} of {}: {}",
                round + 1,
                options.rounds,
                v.name
            );
            keepalive.entry(v.name).or_default().push(wrk(
                client.listener(v.name),
                options.seconds,
                options.connections,
                gateway.pid(),
            )?);
        }
    }
    Ok(keepalive)
}

/// criterion's medians of the native benchmarks.
fn native_medians() -> anyhow::Result<BTreeMap<&'static str, f64>> {
    eprintln!("peergate-bench: native medians from target/criterion");
    let native_ids = [
        "decide_uncached/rsa2048",
        "decide_uncached/p256",
        "decide_cached/rsa2048",
        "decide_cached/p256",
        "xfcc_cert_matching",
        "pem_to_der",
        "compile/rsa2048",
        "compile/p256",
        "part/parse",
        "part/summary",
        "part/signature",
        "part/signature_rsa_crate",
        "part/sha256_der",
    ];
    let mut native = BTreeMap::new();
    for id in native_ids {
        native.insert(id, criterion_median(id)?);
    }
    Ok(native)
}
