//! One decision inside V8: the benchmark module times the policy core in a real Envoy's VM,
//! with the crypto crates at opt-level 3 and with opt-level z everywhere, alternating.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::setup::{bench_wasm, hcm, policy, Pki};
use crate::stats::median;
use peergate_e2e::envoy::{envoy_binary, filter_wasm, target_dir, workspace_root, Envoy};
use peergate_e2e::gateway::{admin, named_wasm_filter, router_filter};
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::{CLIENT_ID, DOMAIN};
use peergate_filter::{Mode, PluginConfig};
use serde_json::json;

/// ns per decision inside V8, one sample per round.
#[derive(Debug, Default, Clone)]
pub(crate) struct V8Samples {
    pub(crate) uncached: Vec<f64>,
    pub(crate) cached: Vec<f64>,
}

impl V8Samples {
    pub(crate) fn medians(&self) -> (f64, f64) {
        (
            median(&mut self.uncached.clone()),
            median(&mut self.cached.clone()),
        )
    }

    fn extend(&mut self, other: V8Samples) {
        self.uncached.extend(other.uncached);
        self.cached.extend(other.cached);
    }
}

/// ns per decision (uncached, cached), per round, for each named peer, timed inside V8 by the
/// benchmark module at `module`.
pub(crate) fn v8_decisions(
    pki: &Pki,
    module: &Path,
) -> anyhow::Result<BTreeMap<String, V8Samples>> {
    let p256_root = Ca::new("p256-root", KeyKind::P256);
    let p256_client = p256_root.issue(&Leaf::client(
        "c",
        &[&format!("URI:{CLIENT_ID}")],
        KeyKind::P256,
    ));
    let p256_policy = PluginConfig {
        trusted_issuers: vec![p256_root.cert.cert_pem.clone().into()],
        ..policy(pki, Mode::Enforce)
    };
    const ROUNDS: u32 = 5;
    let bench = |name: &str, config: &PluginConfig, leaf: &Issued, verifier: &str| {
        json!({
            "name": name, "pluginConfig": config, "leafPem": leaf.cert_pem, "authority": DOMAIN,
            "uncachedIterations": 200, "cachedIterations": 20000, "rounds": ROUNDS,
            "verifier": verifier
        })
    };
    // p256 last: the wait below is for its last round.
    let configuration = json!({ "microbench": [
        bench("rsa2048-envoy", &policy(pki, Mode::Enforce), &pki.client, "envoy"),
        bench("p256-envoy", &p256_policy, &p256_client, "envoy"),
        bench("rsa2048", &policy(pki, Mode::Enforce), &pki.client, "module"),
        bench("p256", &p256_policy, &p256_client, "module"),
    ]});
    let listener = json!({
        "name": "microbench",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{ "filters": [hcm("microbench", vec![
            named_wasm_filter("bench", module, &configuration.to_string()),
            router_filter(),
        ])]}]
    });
    let bootstrap = json!({ "admin": admin(), "static_resources": { "listeners": [listener] } });
    let envoy = Envoy::start_with_args(&envoy_binary(), &bootstrap, &["--concurrency", "1"])
        .map_err(|f| anyhow::anyhow!("the microbenchmark Envoy did not start:\n{}", f.log))?;
    // The module measures while it is configured, but Envoy writes its log file every 100 ms:
    // wait for the last round's line before reading (a failed run is reported from the log
    // below, after the wait).
    let last_round = format!("round={}", ROUNDS - 1);
    let _ = envoy.wait_for_log_line(&["name=p256", &last_round], Duration::from_secs(60));
    let mut samples: BTreeMap<String, V8Samples> = BTreeMap::new();
    for line in envoy.log().lines() {
        let Some(rest) = line.split("peergate-bench: ").nth(1) else {
            continue;
        };
        if rest.contains("failed") {
            bail!("in-VM benchmark failed: {rest}");
        }
        let fields: BTreeMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        let (Some(name), Some(u), Some(c)) = (
            fields.get("name"),
            fields.get("uncached_ns"),
            fields.get("cached_ns"),
        ) else {
            continue;
        };
        let entry = samples.entry((*name).to_owned()).or_default();
        entry.uncached.push(u.parse()?);
        entry.cached.push(c.parse()?);
    }
    if samples.len() != 4 {
        bail!(
            "expected results for rsa2048 and p256, each with both verifiers, in Envoy's log:\n{}",
            envoy.log()
        );
    }
    Ok(samples)
}

/// The module's build with and without the per-package opt-level 3 of the crypto crates.
pub(crate) struct OptLevels {
    /// The packages `[profile.release.package.*]` in Cargo.toml names.
    pub(crate) crates: Vec<String>,
    /// V8 samples with the crypto crates at opt-level 3 (the shipped build).
    pub(crate) fast: BTreeMap<String, V8Samples>,
    /// V8 samples with opt-level "z" everywhere.
    pub(crate) small: BTreeMap<String, V8Samples>,
    pub(crate) fast_size: u64,
    pub(crate) small_size: u64,
}

/// The packages the workspace optimises for speed in the release profile.
pub(crate) fn speed_optimised_crates() -> anyhow::Result<Vec<String>> {
    let path = workspace_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let crates: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[profile.release.package."))
        .filter_map(|l| l.strip_suffix(']'))
        .map(|l| l.trim_matches('"').to_owned())
        .collect();
    if crates.is_empty() {
        bail!(
            "{}: no [profile.release.package.*] sections",
            path.display()
        );
    }
    Ok(crates)
}

/// Builds the filter and the benchmark module as they would be without the per-package
/// opt-levels (every crate at "z"), in a target directory of their own; returns (filter,
/// bench module).
pub(crate) fn build_size_optimised(crates: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = target_dir().join("opt-level-z");
    for package in ["peergate-filter", "peergate-bench-wasm"] {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &dir)
            .args([
                "build",
                "--locked",
                "--release",
                "--target",
                "wasm32-wasip1",
                "-p",
                package,
            ]);
        for name in crates {
            cargo.args([
                "--config",
                &format!("profile.release.package.{name}.opt-level=\"z\""),
            ]);
        }
        let status = cargo
            .status()
            .context("cargo build of the opt-level z variant")?;
        if !status.success() {
            bail!("building {package} with opt-level z everywhere failed ({status})");
        }
    }
    Ok((
        dir.join("wasm32-wasip1/release/peergate_filter.wasm"),
        dir.join("wasm32-wasip1/release/peergate_bench_wasm.wasm"),
    ))
}

/// How many times each build is timed in a fresh Envoy, alternating (fast, small, fast, …):
/// the machine drifts between Envoys more than within one, so the alternation matters more
/// than the rounds inside each.
pub(crate) const OPT_LEVEL_ALTERNATIONS: usize = 6;

/// Both builds in V8, interleaved (fast, small, fast, small, …), so drift hits both alike.
pub(crate) fn compare_opt_levels(pki: &Pki) -> anyhow::Result<OptLevels> {
    let crates = speed_optimised_crates()?;
    let (small_filter, small_bench) = build_size_optimised(&crates)?;
    let mut fast: BTreeMap<String, V8Samples> = BTreeMap::new();
    let mut small: BTreeMap<String, V8Samples> = BTreeMap::new();
    for _ in 0..OPT_LEVEL_ALTERNATIONS {
        for (module, into) in [(bench_wasm(), &mut fast), (small_bench.clone(), &mut small)] {
            for (name, samples) in v8_decisions(pki, &module)? {
                into.entry(name).or_default().extend(samples);
            }
        }
    }
    Ok(OptLevels {
        crates,
        fast,
        small,
        fast_size: std::fs::metadata(filter_wasm())?.len(),
        small_size: std::fs::metadata(&small_filter)?.len(),
    })
}

/// `--v8-only`: one decision in V8 under both optimisation settings, printed.
pub(crate) fn print_v8_only(pki: &Pki) -> anyhow::Result<()> {
    let opt = compare_opt_levels(pki)?;
    for (label, samples, size) in [
        ("crypto crates at opt-level 3", &opt.fast, opt.fast_size),
        ("opt-level z everywhere", &opt.small, opt.small_size),
    ] {
        println!("{label} (filter module {size} bytes):");
        for (name, s) in samples {
            let (uncached, cached) = s.medians();
            println!(
                "  {name}: uncached {:.1} µs {:.1?}, cached {:.2} µs in V8",
                uncached / 1000.0,
                s.uncached.iter().map(|v| v / 1000.0).collect::<Vec<_>>(),
                cached / 1000.0
            );
        }
    }
    Ok(())
}
