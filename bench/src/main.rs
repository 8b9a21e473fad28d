//! `cargo make bench`: measures, in one run on this machine, and writes BENCHMARKS.md.
//!
//! 1. The policy core natively (criterion, run by the make task before this program; medians
//!    read from `target/criterion`).
//! 2. The same decisions inside the wasm VM of a real Envoy (V8), timed by a benchmark module.
//! 3. Gateway throughput: wrk → client Envoy (keep-alive mutual TLS) → gateway Envoy
//!    (`--concurrency 1`) → direct response, for each gateway variant, in interleaved rounds;
//!    and new connections with a new certificate each (the decision cache cannot help).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cpu_split;
mod latency;

use anyhow::{bail, Context};
use cpu_split::CpuSplit;
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{envoy_binary, filter_wasm, target_dir, workspace_root, Envoy};
use peergate_e2e::gateway::{
    admin, downstream_mtls, named_wasm_filter, network_wasm_filter, router_filter, static_cluster,
    upstream_mtls,
};
use peergate_e2e::pki::{key, Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::{CLIENT_ID, DOMAIN};
use peergate_filter::{Layer, Mode, PluginConfig};
use serde_json::{json, Value};

struct Options {
    rounds: usize,
    seconds: u64,
    connections: u32,
    out: PathBuf,
    /// Only time decisions in V8 and print them (for quick comparisons of build settings).
    v8_only: bool,
    /// Only measure the latencies and print them.
    latency_only: bool,
    /// Only profile the cold path and the host calls inside Envoy, and print them.
    profile_only: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        rounds: 5,
        seconds: 5,
        connections: 16,
        out: workspace_root().join("BENCHMARKS.md"),
        v8_only: false,
        latency_only: false,
        profile_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--connections" => options.connections = value()?.parse().context("--connections")?,
            "--out" => options.out = PathBuf::from(value()?),
            "--v8-only" => options.v8_only = true,
            "--latency-only" => options.latency_only = true,
            "--profile-only" => options.profile_only = true,
            other => bail!("unknown argument {other} (--rounds N, --seconds S, --connections C, --out FILE, --v8-only, --latency-only, --profile-only)"),
        }
    }
    if options.rounds < 3 {
        bail!("--rounds: at least 3, to report medians");
    }
    Ok(options)
}

fn bench_wasm() -> PathBuf {
    target_dir().join("wasm32-wasip1/release/peergate_bench_wasm.wasm")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let at = |i: usize| values.get(i).copied().unwrap_or(f64::NAN);
    if n % 2 == 1 {
        at(n / 2)
    } else {
        (at((n / 2).wrapping_sub(1)) + at(n / 2)) / 2.0
    }
}

/// The certificates of the benchmark: an RSA-2048 root (as the generator's default), the
/// gateway's server certificate, the allowed client.
struct Pki {
    root: Ca,
    server: Issued,
    client: Issued,
}

fn pki() -> Pki {
    let root = Ca::new("a-b-root-ca", KeyKind::Rsa2048);
    Pki {
        server: root.issue(&Leaf::server(DOMAIN, KeyKind::P256)),
        client: root.issue(&Leaf::client(
            "cluster-a-client",
            &[&format!("URI:{CLIENT_ID}")],
            KeyKind::Rsa2048,
        )),
        root,
    }
}

fn policy(pki: &Pki, mode: Mode) -> PluginConfig {
    PluginConfig {
        mode,
        trusted_issuers: vec![pki.root.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![CLIENT_ID.into()]),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Native (criterion)

/// Median of a criterion benchmark, in nanoseconds.
fn criterion_median(id: &str) -> anyhow::Result<f64> {
    // Criterion names the folder after the id with `/` replaced.
    let path = target_dir()
        .join("criterion")
        .join(id.replace('/', "_"))
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: run `cargo bench -p peergate-filter --bench policy` first",
            path.display()
        )
    })?;
    let doc: Value = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    doc.pointer("/median/point_estimate")
        .and_then(Value::as_f64)
        .with_context(|| format!("{}: no median", path.display()))
}

// ---------------------------------------------------------------------------------------------
// 2. In V8

/// ns per decision inside V8, one sample per round.
#[derive(Debug, Default, Clone)]
struct V8Samples {
    uncached: Vec<f64>,
    cached: Vec<f64>,
}

impl V8Samples {
    fn medians(&self) -> (f64, f64) {
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
fn v8_decisions(pki: &Pki, module: &Path) -> anyhow::Result<BTreeMap<String, V8Samples>> {
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
    let bench = |name: &str, config: &PluginConfig, leaf: &Issued| {
        json!({
            "name": name, "pluginConfig": config, "leafPem": leaf.cert_pem, "authority": DOMAIN,
            "uncachedIterations": 200, "cachedIterations": 20000, "rounds": 5
        })
    };
    let configuration = json!({ "microbench": [
        bench("rsa2048", &policy(pki, Mode::Enforce), &pki.client),
        bench("p256", &p256_policy, &p256_client),
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
    if samples.len() != 2 {
        bail!(
            "expected results for rsa2048 and p256 in Envoy's log:\n{}",
            envoy.log()
        );
    }
    Ok(samples)
}

/// The module's build with and without the per-package opt-level 3 of the crypto crates.
struct OptLevels {
    /// The packages `[profile.release.package.*]` in Cargo.toml names.
    crates: Vec<String>,
    /// V8 samples with the crypto crates at opt-level 3 (the shipped build).
    fast: BTreeMap<String, V8Samples>,
    /// V8 samples with opt-level "z" everywhere.
    small: BTreeMap<String, V8Samples>,
    fast_size: u64,
    small_size: u64,
}

/// The packages the workspace optimises for speed in the release profile.
fn speed_optimised_crates() -> anyhow::Result<Vec<String>> {
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
fn build_size_optimised(crates: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
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
const OPT_LEVEL_ALTERNATIONS: usize = 6;

/// Both builds in V8, interleaved (fast, small, fast, small, …), so drift hits both alike.
fn compare_opt_levels(pki: &Pki) -> anyhow::Result<OptLevels> {
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

// ---------------------------------------------------------------------------------------------
// 3. Throughput

fn hcm(stat_prefix: &str, http_filters: Vec<Value>) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "route_config": { "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{ "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": { "inline_string": "ok\n" } } }]
            }]},
            "http_filters": http_filters
        }
    })
}

/// Envoy's native RBAC, allowing the client's principal (its URI SAN) exactly: what it can do
/// without a filter (match a name; it cannot prove who issued the certificate).
fn rbac_filter() -> Value {
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": { "action": "ALLOW", "policies": { "client": {
                "permissions": [{ "any": true }],
                "principals": [{ "authenticated": { "principal_name": { "exact": CLIENT_ID } } }]
            }}}
        }
    })
}

struct Variant {
    name: &'static str,
    what: &'static str,
    /// Network filters ahead of the connection manager.
    network_filters: Vec<Value>,
    /// HTTP filters (the router last).
    filters: Vec<Value>,
    /// Whether the keep-alive table has it (the profiling listener is measured on its own).
    keepalive: bool,
}

fn variants(pki: &Pki) -> Vec<Variant> {
    let peergate =
        |mode| named_wasm_filter("peergate", &filter_wasm(), &policy(pki, mode).to_json());
    let connection_policy = PluginConfig {
        layer: Layer::Connection,
        ..policy(pki, Mode::Enforce)
    };
    vec![
        Variant {
            name: "none",
            network_filters: Vec::new(),
            what: "no filter (baseline)",
            filters: vec![router_filter()],
            keepalive: true,
        },
        Variant {
            name: "noop",
            network_filters: Vec::new(),
            what: "a proxy-wasm filter doing nothing",
            filters: vec![
                named_wasm_filter("noop", &bench_wasm(), ""),
                router_filter(),
            ],
            keepalive: true,
        },
        Variant {
            name: "onecall",
            network_filters: Vec::new(),
            what:
                "a proxy-wasm filter making peergate's one host call (the digest) and nothing else",
            filters: vec![
                named_wasm_filter("onecall", &bench_wasm(), r#"{"oneHostCall": true}"#),
                router_filter(),
            ],
            keepalive: true,
        },
        Variant {
            name: "rbac",
            network_filters: Vec::new(),
            what: "native RBAC, principal exact",
            filters: vec![rbac_filter(), router_filter()],
            keepalive: true,
        },
        Variant {
            name: "enforce",
            network_filters: Vec::new(),
            what: "peergate enforce (cache warm)",
            filters: vec![peergate(Mode::Enforce), router_filter()],
            keepalive: true,
        },
        Variant {
            name: "audit",
            network_filters: Vec::new(),
            what: "peergate audit (cache warm)",
            filters: vec![peergate(Mode::Audit), router_filter()],
            keepalive: true,
        },
        Variant {
            name: "connection",
            what: "peergate enforce, layer connection (network filter)",
            network_filters: vec![network_wasm_filter(
                "peergate",
                &filter_wasm(),
                &connection_policy.to_json(),
            )],
            filters: vec![router_filter()],
            keepalive: true,
        },
        Variant {
            name: "profile",
            what: "the benchmark module profiling the filter's cold path on each request",
            network_filters: Vec::new(),
            filters: vec![
                named_wasm_filter(
                    "profile",
                    &bench_wasm(),
                    &json!({ "profile": {
                        "pluginConfig": policy(pki, Mode::Enforce),
                        "authority": DOMAIN,
                    }})
                    .to_string(),
                ),
                router_filter(),
            ],
            keepalive: false,
        },
    ]
}

/// One request straight to the gateway's profiling listener with `x-peergate-bench: what`,
/// and the JSON it answers.
fn ask_profiler(gateway: &Envoy, client: &TlsClient, what: &str) -> anyhow::Result<Value> {
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
fn hostcall_costs(
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

fn gateway_bootstrap(pki: &Pki, variants: &[Variant]) -> Value {
    let listeners: Vec<Value> = variants.iter().map(|v| json!({
        "name": v.name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{
            "transport_socket": downstream_mtls(&pki.server.cert_pem, &pki.server.key_pem, &pki.root.cert.cert_pem, &[]),
            "filters": v.network_filters.iter().cloned()
                .chain(std::iter::once(hcm(v.name, v.filters.clone())))
                .collect::<Vec<_>>()
        }]
    })).collect();
    json!({ "admin": admin(), "static_resources": { "listeners": listeners } })
}

/// The client side: one plain-HTTP listener per gateway listener, each forwarding over a
/// pool of keep-alive mutual-TLS connections (as a sidecar does).
fn client_bootstrap(pki: &Pki, gateway: &Envoy, variants: &[Variant]) -> Value {
    let upstream_tls = upstream_mtls(
        &pki.client.cert_pem,
        &pki.client.key_pem,
        &pki.root.cert.cert_pem,
        DOMAIN,
        &[DOMAIN.to_owned()],
    );
    let listeners: Vec<Value> = variants.iter().map(|v| json!({
        "name": v.name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": v.name,
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"],
                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": v.name } }] }]},
                "http_filters": [router_filter()]
            }
        }]}]
    })).collect();
    let clusters: Vec<Value> = variants
        .iter()
        .map(|v| static_cluster(v.name, gateway.listener(v.name), Some(upstream_tls.clone())))
        .collect();
    json!({ "admin": admin(), "static_resources": { "listeners": listeners, "clusters": clusters } })
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("/proc/<gateway>/stat")?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Clone, Copy, Default)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    /// Where that CPU went, sampled with perf during the round.
    split: Option<CpuSplit>,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))?;
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

/// Where perf writes a round's samples (read and removed after the round).
fn perf_data_path() -> PathBuf {
    std::env::temp_dir().join(format!("peergate-bench-{}.perf", std::process::id()))
}

fn wrk(
    addr: SocketAddr,
    seconds: u64,
    connections: u32,
    gateway_pid: u32,
) -> anyhow::Result<Sample> {
    let recording = cpu_split::record(gateway_pid, seconds, &perf_data_path())?;
    let cpu_before = cpu_seconds(gateway_pid)?;
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            &format!("http://{addr}/"),
        ])
        .output()
        .context("running wrk (Debian package wrk; cargo make bench installs it)")?;
    let cpu = cpu_seconds(gateway_pid)? - cpu_before;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!(
            "wrk failed or saw errors:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .map(str::trim)
                .map(str::to_owned)
        })
    };
    let rps: f64 = field("Requests/sec:")
        .context("wrk: Requests/sec")?
        .parse()?;
    let requests: f64 = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .and_then(|(n, _)| n.parse().ok())
        })
        .context("wrk: requests")?;
    let cpu_us_per_request = cpu / requests * 1e6;
    Ok(Sample {
        rps,
        p50_ms: field("50%")
            .and_then(|v| parse_duration_ms(&v))
            .context("wrk: 50%")?,
        p99_ms: field("99%")
            .and_then(|v| parse_duration_ms(&v))
            .context("wrk: 99%")?,
        cpu_us_per_request,
        split: Some(recording.finish(cpu_us_per_request)?),
    })
}

/// New connections as fast as `threads` loops can open them, each with the next certificate
/// of `clients` (round robin), one request per connection.
fn new_connections(
    addr: SocketAddr,
    clients: &Arc<Vec<TlsClient>>,
    seconds: u64,
    threads: usize,
    gateway_pid: u32,
) -> anyhow::Result<Sample> {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let recording = cpu_split::record(gateway_pid, seconds, &perf_data_path())?;
    let cpu_before = cpu_seconds(gateway_pid)?;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (clients, next, done) = (Arc::clone(clients), Arc::clone(&next), Arc::clone(&done));
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut latencies = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(0)
                        % clients.len();
                    let t = Instant::now();
                    let response = clients
                        .get(i)
                        .context("client index")?
                        .get(addr, DOMAIN, DOMAIN, "/", &[])
                        .context("new-connection request")?;
                    if response.status != 200 {
                        bail!("status {} ({})", response.status, response.text());
                    }
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(latencies)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    done.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(gateway_pid)? - cpu_before;
    let cpu_us_per_request = cpu / latencies.len() as f64 * 1e6;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Sample {
        rps: latencies.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        cpu_us_per_request,
        split: Some(recording.finish(cpu_us_per_request)?),
    })
}

/// What a section measured, on standard error as soon as it is done.
fn summarize(section: &str, samples: &BTreeMap<&str, Vec<Sample>>) {
    let base = samples.get("none").map(|s| medians(s)).unwrap_or_default();
    for (name, s) in samples {
        let m = medians(s);
        eprintln!(
            "peergate-bench: {section}: {name}: {:.0}/s ({:.3}× no filter), {:.1} µs gateway CPU each",
            m.rps,
            m.rps / base.rps,
            m.cpu_us_per_request
        );
    }
}

/// New-connection runs on each variant: a 1 s warm-up each, then interleaved rounds, two
/// client threads.
fn connection_rounds<'a>(
    options: &Options,
    gateway: &Envoy,
    variants: &[(&'a str, &str)],
    clients: &Arc<Vec<TlsClient>>,
    what: &str,
) -> anyhow::Result<BTreeMap<&'a str, Vec<Sample>>> {
    for (name, _) in variants {
        new_connections(gateway.listener(name), clients, 1, 2, gateway.pid())?;
    }
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for round in 0..options.rounds {
        for (name, _) in variants {
            eprintln!(
                "peergate-bench: round {} of {}: {what}, {name}",
                round + 1,
                options.rounds
            );
            samples.entry(name).or_default().push(new_connections(
                gateway.listener(name),
                clients,
                options.seconds,
                2,
                gateway.pid(),
            )?);
        }
    }
    Ok(samples)
}

fn medians(samples: &[Sample]) -> Sample {
    let pick = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
    Sample {
        rps: pick(|s| s.rps),
        p50_ms: pick(|s| s.p50_ms),
        p99_ms: pick(|s| s.p99_ms),
        cpu_us_per_request: pick(|s| s.cpu_us_per_request),
        split: median_split(samples),
    }
}

/// Each part's median over the rounds (so the parts need not add up to the median total).
fn median_split(samples: &[Sample]) -> Option<CpuSplit> {
    let splits: Vec<[f64; 5]> = samples
        .iter()
        .map(|s| s.split.map(|x| x.values()))
        .collect::<Option<_>>()?;
    if splits.is_empty() {
        return None;
    }
    let mut values = [0.0; 5];
    for (i, value) in values.iter_mut().enumerate() {
        *value = median(
            &mut splits
                .iter()
                .filter_map(|v| v.get(i).copied())
                .collect::<Vec<_>>(),
        );
    }
    Some(CpuSplit::from_values(values))
}

// ---------------------------------------------------------------------------------------------

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(0);
    format!(
        "{cores} cores ({model}), {}",
        command_output("uname", &["-sr"])
    )
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
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
    let started = time::OffsetDateTime::now_utc();
    eprintln!("peergate-bench: certificates");
    let pki = pki();

    if options.v8_only {
        let opt = compare_opt_levels(&pki)?;
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
        return Ok(());
    }
    if options.latency_only {
        for (what, mut rounds) in [
            ("policy update", latency::policy_update(options.rounds)?),
            (
                "refused connection close",
                latency::refused_connection_close(options.rounds)?,
            ),
        ] {
            println!(
                "{what}: median {:.1} ms, rounds {rounds:.1?}",
                median(&mut rounds)
            );
        }
        return Ok(());
    }
    eprintln!("peergate-bench: gateway and client Envoys");
    let variants = variants(&pki);
    let gateway = Envoy::start_with_args(
        &envoy_binary(),
        &gateway_bootstrap(&pki, &variants),
        &["--concurrency", "1"],
    )
    .map_err(|f| anyhow::anyhow!("gateway Envoy did not start:\n{}", f.log))?;
    // New connections, each with the next of more certificates than the cache holds (one key,
    // so issuing them is quick): every decision is a cold one.
    eprintln!(
        "peergate-bench: {} client certificates for the cold runs",
        2 * peergate_filter::cache::DEFAULT_CAPACITY
    );
    let shared_key = key(KeyKind::Rsa2048);
    let key_pem = shared_key.serialize_pem();
    let san = format!("URI:{CLIENT_ID}");
    let clients: Arc<Vec<TlsClient>> = Arc::new(
        (0..2 * peergate_filter::cache::DEFAULT_CAPACITY)
            .map(|i| {
                let leaf = pki.root.issue_for(
                    &Leaf::client(&format!("cold-{i}"), &[&san], KeyKind::Rsa2048),
                    &shared_key,
                );
                TlsClient::new(&pki.root.cert.cert_pem, Some((&leaf.cert_pem, &key_pem)))
                    .without_resumption()
            })
            .collect(),
    );
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
    let client = Envoy::start_with_args(
        &envoy_binary(),
        &client_bootstrap(&pki, &gateway, &variants),
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
    drop(client);
    summarize("keep-alive", &keepalive);

    let cold_variants = [
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
    let cold = connection_rounds(
        &options,
        &gateway,
        &cold_variants,
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
    let churn_variants = [
        ("none", "no filter"),
        ("noop", "a proxy-wasm filter doing nothing"),
        ("rbac", "native RBAC"),
        ("enforce", "peergate enforce, layer request"),
        ("connection", "peergate enforce, layer connection"),
    ];
    let churn = connection_rounds(
        &options,
        &gateway,
        &churn_variants,
        &same,
        "churn, same certificate",
    )?;
    summarize("churn, the same certificate", &churn);
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

    eprintln!("peergate-bench: latencies the tests only bound");
    let latencies = [
        (
            "a policy update reaching the slowest of 4 open keep-alive connections (request layer, ECDS from a watched file)",
            latency::policy_update(options.rounds)?,
        ),
        (
            "a refused peer's connection closed after its first request (connection layer)",
            latency::refused_connection_close(options.rounds)?,
        ),
    ];

    let report = render(
        &options,
        started,
        &native,
        &v8,
        &opt,
        &variants,
        &keepalive,
        &cold_variants,
        &cold,
        &Measured {
            hostcalls: &hostcalls,
            profile: &profile,
            churn_variants: &churn_variants,
            churn: &churn,
        },
        &latencies,
        misses,
    );
    std::fs::write(&options.out, &report).with_context(|| options.out.display().to_string())?;
    print!("{report}");
    Ok(())
}

/// What the runs inside Envoy measured besides throughput.
struct Measured<'a> {
    /// ns per host call, per round.
    hostcalls: &'a BTreeMap<String, Vec<f64>>,
    /// The profiler's report: step → {median_ns, n}.
    profile: &'a Value,
    churn_variants: &'a [(&'a str, &'a str)],
    churn: &'a BTreeMap<&'a str, Vec<Sample>>,
}

/// The profiler's steps in their order, as (label, median µs, mean µs, p99 µs, connections).
fn profile_steps(profile: &Value) -> Vec<(String, f64, f64, f64, u64)> {
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
fn step_us(steps: &[(String, f64, f64, f64, u64)], prefix: &str) -> f64 {
    steps
        .iter()
        .find(|(name, ..)| name.starts_with(prefix))
        .map_or(f64::NAN, |(_, _, mean, _, _)| *mean)
}

/// The section on host calls, the cold path and churn, and the targets against them.
fn render_inside(
    out: &mut String,
    options: &Options,
    keepalive: &BTreeMap<&str, Vec<Sample>>,
    cold: &BTreeMap<&str, Vec<Sample>>,
    measured: &Measured<'_>,
) {
    let m = |map: &BTreeMap<&str, Vec<Sample>>, name: &str| {
        map.get(name).map(|s| medians(s)).unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "\n## New connections, all with the same certificate (churn)\n"
    );
    let _ = writeln!(out, "The same two rustls threads, one new mutual-TLS connection per request, every one with cluster A's one client certificate (clients without keep-alive, pool churn, many sidecars sharing one certificate as the generated cluster A does), resuming TLS sessions as sidecars do. The decision cache is warm: what is left is each connection's own cost.\n");
    let _ = writeln!(out, "| gateway variant | connections/s | vs no filter | p50 ms | p99 ms | gateway CPU µs/connection | over no filter | per round connections/s |\n|---|---|---|---|---|---|---|---|");
    let base = m(measured.churn, "none");
    for (name, what) in measured.churn_variants {
        let x = m(measured.churn, name);
        let rounds: Vec<String> = measured
            .churn
            .get(name)
            .map(|s| s.iter().map(|r| format!("{:.0}", r.rps)).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {what} | {:.0} | {:.3} | {:.2} | {:.2} | {:.0} | {:+.0} µs | {} |",
            x.rps,
            x.rps / base.rps,
            x.p50_ms,
            x.p99_ms,
            x.cpu_us_per_request,
            x.cpu_us_per_request - base.cpu_us_per_request,
            rounds.join(", ")
        );
    }

    let rows: Vec<(&str, Sample)> = measured
        .churn_variants
        .iter()
        .map(|(name, what)| (*what, m(measured.churn, name)))
        .collect();
    split_table(out, "connection", &rows);

    let _ = writeln!(out, "\n## Host calls and the cold path, inside Envoy\n");
    let _ = writeln!(out, "The benchmark module, on a listener of its own on the same gateway, measures from inside a request, so with a real connection's TLS state: each host call in a loop of 2000 (one request per round, {} rounds); and, on every new connection of a {} s run cycling through the {} certificates, the filter's cold path step by step, each step timed with the proxy's clock (1 µs resolution; medians over the connections).\n",
        options.rounds, options.seconds, 2 * peergate_filter::cache::DEFAULT_CAPACITY);
    let _ = writeln!(
        out,
        "| host call, from a request | ns per call (median) | per round |\n|---|---|---|"
    );
    for (call, rounds) in measured.hostcalls {
        let mut sorted = rounds.clone();
        let per_round: Vec<String> = rounds.iter().map(|v| format!("{v:.0}")).collect();
        let _ = writeln!(
            out,
            "| {call} | {:.0} | {} |",
            median(&mut sorted),
            per_round.join(", ")
        );
    }
    let steps = profile_steps(measured.profile);
    let _ = writeln!(out, "\n| cold path step, on a connection's first request | median µs | mean µs | p99 µs | connections |\n|---|---|---|---|---|");
    for (name, median, mean, p99, n) in &steps {
        let _ = writeln!(out, "| {name} | {median:.0} | {mean:.1} | {p99:.0} | {n} |");
    }

    // The targets, against this run.
    let none = m(keepalive, "none");
    let noop = m(keepalive, "noop");
    let enforce = m(keepalive, "enforce");
    let connection = m(keepalive, "connection");
    let hostcall = |name: &str| {
        measured
            .hostcalls
            .get(name)
            .map_or(f64::NAN, |v| median(&mut v.clone()))
    };
    let digest_ns = hostcall("get_property connection.sha256_peer_certificate_digest");
    let allow_path_ns =
        hostcall("the filter's allow path, cache warm (digest property, parse, lookup, judge)");
    let verdict = |met: bool| if met { "met" } else { "not met" };
    let request_ratio = enforce.rps / none.rps;
    let overhead = (enforce.cpu_us_per_request - none.cpu_us_per_request)
        / (noop.cpu_us_per_request - none.cpu_us_per_request);
    let _ = writeln!(out, "\n## The targets, against this run\n");
    let one_call = m(keepalive, "onecall");
    let call_on_path = one_call.cpu_us_per_request - noop.cpu_us_per_request;
    let rest = enforce.cpu_us_per_request - one_call.cpu_us_per_request;
    // What perf says the differences are made of: (Envoy's code, the module's code, the rest).
    let parts = |a: &Sample, b: &Sample| match (a.split, b.split) {
        (Some(a), Some(b)) => (
            a.envoy - b.envoy,
            a.module - b.module,
            (a.kernel + a.libc + a.other) - (b.kernel + b.libc + b.other),
        ),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    };
    let (call_envoy, call_module, call_elsewhere) = parts(&one_call, &noop);
    let (rest_envoy, rest_module, rest_elsewhere) = parts(&enforce, &one_call);
    let (noop_envoy, noop_module, noop_elsewhere) = parts(&noop, &none);
    let budget = 0.2 * (noop.cpu_us_per_request - none.cpu_us_per_request);
    let _ = writeln!(out, "- Request layer, cache warm: rps ≥ 0.95× no filter: **{}** ({request_ratio:.3}×); CPU overhead ≤ 1.2× the do-nothing module's: **{}** ({overhead:.2}×: {:+.1} µs against {:+.1} µs). \
        Where it goes, by perf's split of each variant's CPU (the table under the keep-alive runs): \
        the do-nothing module itself costs {:+.1} µs over no filter ({noop_envoy:+.1} in Envoy's code, {noop_module:+.1} in the module's, {noop_elsewhere:+.1} in the kernel and C library): Envoy enters the VM for every stream's callbacks whatever the module does; it runs at {:.3}× no filter's rps here. \
        peergate's one host call, made alone by the one-call module, adds {call_on_path:+.1} µs over the do-nothing module: {call_envoy:+.1} in Envoy's code, {call_module:+.1} in the module's, {call_elsewhere:+.1} elsewhere (timed in a loop from a request the call takes {:.2} µs: on the real path it is the stream's first property read). \
        peergate over the one-call module: {rest:+.1} µs, {rest_module:+.1} of it in the module's code (its allow path, timed in a loop: {:.2} µs with the call), {rest_envoy:+.1} in Envoy's and {rest_elsewhere:+.1} elsewhere. \
        So the target allows {budget:.1} µs over the do-nothing module, and the one host call this issue keeps on the allow path costs {call_on_path:.1} µs by itself, almost all of it in Envoy: no request-layer filter that reads the connection's digest per request can meet it on this Envoy. \
        What would remove the per-request cost: the connection layer, which decides once per connection.",
        verdict(request_ratio >= 0.95), verdict(overhead <= 1.2),
        enforce.cpu_us_per_request - none.cpu_us_per_request, noop.cpu_us_per_request - none.cpu_us_per_request,
        noop.cpu_us_per_request - none.cpu_us_per_request, noop.rps / none.rps, digest_ns / 1000.0, allow_path_ns / 1000.0);
    let connection_ratio = connection.rps / none.rps;
    let _ = writeln!(out, "- Connection layer, keep-alive: rps ≥ 0.97× no filter: **{}** ({connection_ratio:.3}×, {:+.1} µs of gateway CPU per request over no filter). The decision is once per connection; what remains is the proxy-wasm network-filter ABI, which calls into the VM on every read and every write of the connection (`on_downstream_data`, `on_upstream_data`) and gives a plugin no way to leave the chain once it has decided; perf puts {:+.1} µs of the difference in Envoy's code and {:+.1} µs in the module's.",
        verdict(connection_ratio >= 0.97), connection.cpu_us_per_request - none.cpu_us_per_request,
        parts(&connection, &none).0, parts(&connection, &none).1);
    let cold_none = m(cold, "none");
    let cold_noop = m(cold, "noop");
    let cold_enforce = m(cold, "enforce");
    let cold_ratio = cold_enforce.rps / cold_none.rps;
    let signature = step_us(&steps, "7 ");
    let whole = step_us(&steps, "13 ");
    let over_noop = cold_enforce.cpu_us_per_request - cold_noop.cpu_us_per_request;
    let ceiling = cold_none.cpu_us_per_request / (cold_noop.cpu_us_per_request + signature);
    let _ = writeln!(out, "- A new certificate per connection: ≥ 0.75× no filter's connections/s: **{}** ({cold_ratio:.3}×). Gateway CPU per connection: {:.0} µs with no filter, {:.0} µs with the do-nothing module, {:.0} µs with peergate ({over_noop:+.0} µs over the do-nothing module). The filter's whole cold path, timed inside Envoy as it runs, takes {whole:.0} µs on average ({:.0}% of that difference); {signature:.0} µs of it is the issuer's RSA-2048 signature in V8, which alone caps a cold decision per connection at about {ceiling:.2}× no filter's CPU per connection, below the target. The other steps are in the table; what was not the signature was cut or sped up (Envoy's digest as the key, the parsing crates at opt-level 3). What would remove the rest: a faster RSA in wasm (V8 has no 64×64→128-bit multiply; 32-bit limbs need four times the products of the native build), or a host function for signature checks, which proxy-wasm does not have.",
        verdict(cold_ratio >= 0.75), cold_none.cpu_us_per_request, cold_noop.cpu_us_per_request, cold_enforce.cpu_us_per_request, 100.0 * whole / over_noop);
    let churn_none = m(measured.churn, "none");
    let churn_noop = m(measured.churn, "noop");
    let churn_request = m(measured.churn, "enforce");
    let churn_connection = m(measured.churn, "connection");
    let churn_over_noop = churn_request.cpu_us_per_request - churn_noop.cpu_us_per_request;
    let _ = writeln!(out, "- Churn, the same certificate: ≥ 0.95× no filter: request layer **{}** ({:.3}×), connection layer **{}** ({:.3}×); the do-nothing module alone: {:.3}×, native RBAC {:.3}×. Over the do-nothing module peergate adds {churn_over_noop:+.0} µs per connection at the request layer; what it does per new connection with the cache warm is the first read of the connection's digest ({:.0} µs on average: Envoy hashes the certificate on first use; later reads are the {:.2} µs above) and the allow path. {}",
        verdict(churn_request.rps / churn_none.rps >= 0.95), churn_request.rps / churn_none.rps,
        verdict(churn_connection.rps / churn_none.rps >= 0.95), churn_connection.rps / churn_none.rps,
        churn_noop.rps / churn_none.rps, m(measured.churn, "rbac").rps / churn_none.rps,
        step_us(&steps, "1 "), digest_ns / 1000.0,
        if churn_noop.rps / churn_none.rps < 0.95 {
            "A proxy-wasm module that does nothing is already below 0.95× here (Envoy's per-stream VM entry); peergate is within the run's noise of it and of native RBAC."
        } else {
            ""
        });
}

/// Where each variant's gateway CPU went, from perf's samples (medians of the rounds' parts).
fn split_table(out: &mut String, unit: &str, rows: &[(&str, Sample)]) {
    let _ = writeln!(out, "\nWhere the gateway's CPU per {unit} went: `perf record` sampled the gateway at 999 Hz in every round, \
        `perf report --sort dso` split the samples by where the code lives, and the shares split that round's CPU per {unit} \
        (µs; medians of the rounds, so a row need not add up to its total). Envoy's code includes BoringSSL and V8's runtime and \
        builtins (linked into the binary); the module's compiled code is what V8 generated from the wasm module.\n");
    let _ = writeln!(
        out,
        "| gateway variant | total | {} |\n|---|---|{}",
        CpuSplit::COLUMNS.join(" | "),
        "---|".repeat(CpuSplit::COLUMNS.len())
    );
    for (what, sample) in rows {
        let parts = sample.split.map_or_else(
            || vec!["n/a".to_owned(); CpuSplit::COLUMNS.len()],
            |split| split.values().iter().map(|v| format!("{v:.1}")).collect(),
        );
        let _ = writeln!(
            out,
            "| {what} | {:.1} | {} |",
            sample.cpu_us_per_request,
            parts.join(" | ")
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    options: &Options,
    started: time::OffsetDateTime,
    native: &BTreeMap<&str, f64>,
    v8: &BTreeMap<String, (f64, f64)>,
    opt: &OptLevels,
    variants: &[Variant],
    keepalive: &BTreeMap<&str, Vec<Sample>>,
    cold_variants: &[(&str, &str)],
    cold: &BTreeMap<&str, Vec<Sample>>,
    measured: &Measured<'_>,
    latencies: &[(&str, Vec<f64>)],
    allowed_total: u64,
) -> String {
    let module_size = opt.fast_size;
    let mut out = String::new();
    let date = started
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let _ = writeln!(out, "# peergate benchmarks\n");
    let _ = writeln!(out, "Written by `cargo make bench` on {date}: {}; Envoy `{}` (V8); {}. \
        Every number below comes from this one run; ratios compare variants measured in the same run. \
        The machine is shared and noisy: medians of {} interleaved rounds (A B C … A B C …) of {} s each.\n",
        machine(), command_output(&envoy_binary().display().to_string(), &["--version"]).lines().last().unwrap_or("?").trim(),
        command_output("rustc", &["--version"]), options.rounds, options.seconds);

    let _ = writeln!(out, "## Gateway throughput, keep-alive mutual TLS\n");
    let _ = writeln!(out, "`wrk -t1 -c{} -d{}s --latency` → client Envoy (plain HTTP in, a pool of keep-alive mutual-TLS \
        connections out, RSA-2048 client certificate) → gateway Envoy (`--concurrency 1`, client certificate required) → \
        direct 200 response. Gateway CPU per request is user+system time of the gateway process (`/proc/<pid>/stat`) over \
        the requests wrk completed.\n", options.connections, options.seconds);
    let _ = writeln!(
        out,
        "| gateway variant | rps | rps vs no filter | rps vs do-nothing wasm | p50 ms | p99 ms | gateway CPU µs/request | CPU over no filter | overhead vs do-nothing wasm's |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let base = keepalive
        .get("none")
        .map(|s| medians(s))
        .unwrap_or_default();
    let noop = keepalive
        .get("noop")
        .map(|s| medians(s))
        .unwrap_or_default();
    let noop_overhead = noop.cpu_us_per_request - base.cpu_us_per_request;
    for v in variants.iter().filter(|v| v.keepalive) {
        let m = keepalive
            .get(v.name)
            .map(|s| medians(s))
            .unwrap_or_default();
        let overhead = m.cpu_us_per_request - base.cpu_us_per_request;
        // A ratio of two differences is meaningless when the denominator is within the noise.
        let vs_noop = match v.name {
            "none" | "noop" | "onecall" | "rbac" => String::new(),
            _ if noop_overhead >= 2.0 => format!("{:.2}×", overhead / noop_overhead),
            _ => "n/a (do-nothing overhead within noise)".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} | {:+.1} µs | {} |",
            v.what,
            m.rps,
            m.rps / base.rps,
            m.rps / noop.rps,
            m.p50_ms,
            m.p99_ms,
            m.cpu_us_per_request,
            overhead,
            vs_noop
        );
    }
    let _ = writeln!(out, "\nPer-round rps (for judging the noise):\n");
    for v in variants.iter().filter(|v| v.keepalive) {
        let rounds = keepalive.get(v.name).map(Vec::as_slice).unwrap_or_default();
        let rps: Vec<String> = rounds.iter().map(|x| format!("{:.0}", x.rps)).collect();
        let cpu: Vec<String> = rounds
            .iter()
            .map(|x| format!("{:.1}", x.cpu_us_per_request))
            .collect();
        let _ = writeln!(
            out,
            "- {}: {} rps; {} µs CPU per request",
            v.name,
            rps.join(", "),
            cpu.join(", ")
        );
    }
    let rows: Vec<(&str, Sample)> = variants
        .iter()
        .filter(|v| v.keepalive)
        .filter_map(|v| keepalive.get(v.name).map(|s| (v.what, medians(s))))
        .collect();
    split_table(&mut out, "request", &rows);

    let _ = writeln!(
        out,
        "\n## New connections, a new client certificate each (decision cache cold)\n"
    );
    let _ = writeln!(out, "Two threads of a Rust client (rustls) open one mutual-TLS connection per request straight to the gateway, \
        cycling through {} RSA-2048 client certificates (twice the decision cache's capacity, so every decision misses), \
        resuming no TLS session (so every connection is a full handshake in every variant; with resumption, a slower variant \
        would get a larger share of full handshakes). \
        TLS handshakes dominate; the difference between the rows is the cold decision plus the filter's own cost.\n",
        2 * peergate_filter::cache::DEFAULT_CAPACITY);
    let _ = writeln!(out, "| gateway variant | connections/s | vs no filter | p50 ms | p99 ms | gateway CPU µs/connection |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let cold_base = cold.get("none").map(|s| medians(s)).unwrap_or_default();
    for (name, what) in cold_variants {
        let m = cold.get(name).map(|s| medians(s)).unwrap_or_default();
        let _ = writeln!(
            out,
            "| {what} | {:.0} | {:.3} | {:.2} | {:.2} | {:.0} |",
            m.rps,
            m.rps / cold_base.rps,
            m.p50_ms,
            m.p99_ms,
            m.cpu_us_per_request
        );
    }
    let rows: Vec<(&str, Sample)> = cold_variants
        .iter()
        .map(|(name, what)| {
            (
                *what,
                cold.get(name).map(|s| medians(s)).unwrap_or_default(),
            )
        })
        .collect();
    split_table(&mut out, "connection", &rows);
    let _ = writeln!(out, "\n(The filter counted {allowed_total} allowed requests on the gateway over the whole run.)");
    render_inside(&mut out, options, keepalive, cold, measured);

    let _ = writeln!(out, "\n## One decision, inside V8 and natively\n");
    let _ = writeln!(out, "Inside V8: the benchmark module (`bench/wasm`, built like the filter: `--release` for wasm32-wasip1) runs the \
        policy core's `decide()` on an allowed peer (uncached: parse, issuer signature, SAN match) and the per-request path \
        of a warm cache (lookup by digest, then validity and SANs) when Envoy configures it, timed with the proxy's clock; \
        median of 5 rounds (200 uncached, 20 000 cached each). Natively: criterion medians (`cargo bench -p peergate-filter \
        --bench policy`, opt-level 3).\n");
    let _ = writeln!(out, "| decision | inside V8 | natively | V8 / native |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, label) in [("rsa2048", "RSA-2048"), ("p256", "ECDSA P-256")] {
        if let Some((uncached, cached)) = v8.get(name) {
            let n_uncached = native
                .get(format!("decide_uncached/{name}").as_str())
                .copied()
                .unwrap_or(f64::NAN);
            let n_cached = native
                .get(format!("decide_cached/{name}").as_str())
                .copied()
                .unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "| uncached, {label} | {:.1} µs | {:.1} µs | {:.1}× |",
                uncached / 1000.0,
                n_uncached / 1000.0,
                uncached / n_uncached
            );
            let _ = writeln!(
                out,
                "| cached, {label} | {:.2} µs | {:.2} µs | {:.1}× |",
                cached / 1000.0,
                n_cached / 1000.0,
                cached / n_cached
            );
        }
    }
    let _ = writeln!(
        out,
        "\nNatively, where an uncached RSA-2048 decision goes, and the rest of the core:\n"
    );
    let _ = writeln!(out, "| benchmark | median |\n|---|---|");
    for (id, what) in [
        (
            "part/signature",
            "RSA-2048 PKCS#1 v1.5 signature check (SHA-256 of the TBS + s^65537 mod n)",
        ),
        (
            "part/signature_rsa_crate",
            "the same check with the `rsa` crate 0.10 (baseline)",
        ),
        ("part/parse", "X.509 parse of the leaf (x509-parser)"),
        (
            "part/summary",
            "the peer summary (subject, issuer, SANs, serial as text)",
        ),
        ("part/sha256_der", "SHA-256 of the DER (the cache key)"),
        (
            "xfcc_cert_matching",
            "XFCC header: find the Cert= matching the connection's digest",
        ),
        ("pem_to_der", "PEM → DER of a leaf"),
        (
            "compile/rsa2048",
            "compile a pluginConfig (one RSA-2048 root: Montgomery constants)",
        ),
        ("compile/p256", "compile a pluginConfig (one P-256 root)"),
    ] {
        let value = native.get(id).copied().unwrap_or(f64::NAN);
        let _ = writeln!(out, "| {what} | {:.2} µs |", value / 1000.0);
    }
    if let (Some(ours), Some(reference)) = (
        native.get("part/signature"),
        native.get("part/signature_rsa_crate"),
    ) {
        let _ = writeln!(
            out,
            "\nThe filter's RSA verification takes {:.2}× the time of the `rsa` crate's, same run, same certificate.",
            ours / reference
        );
    }
    let _ = writeln!(
        out,
        "\n### Opt-level \"z\" everywhere, and the crypto and parsing crates at opt-level 3\n\n\
        The release profile builds the module for size (opt-level \"z\") but the crypto and parsing crates for speed (`[profile.release.package.*]` in Cargo.toml: {}). \
        The benchmark also builds both modules without those lines (every crate at \"z\", `--config` overrides, target directory `opt-level-z`) \
        and times both in V8 in this run, alternating {OPT_LEVEL_ALTERNATIONS} times (shipped, z, shipped, z, …), each time in a fresh Envoy whose VMs each time 5 rounds: {} samples per build. \
        The machine drifts more between Envoys than within one, hence the alternation; medians over all samples.\n",
        opt.crates.join(", "),
        opt.fast.get("rsa2048").map_or(0, |s| s.uncached.len())
    );
    let _ = writeln!(
        out,
        "| uncached decision in V8 | opt-level z everywhere | crypto and parsing crates at 3 | z / shipped | per round, z (µs) | per round, shipped (µs) |\n|---|---|---|---|---|---|"
    );
    for (name, label) in [("rsa2048", "RSA-2048"), ("p256", "ECDSA P-256")] {
        if let (Some(small), Some(fast)) = (opt.small.get(name), opt.fast.get(name)) {
            let (z, _) = small.medians();
            let (three, _) = fast.medians();
            let rounds = |s: &V8Samples| {
                s.uncached
                    .iter()
                    .map(|v| format!("{:.0}", v / 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "| {label} | {:.1} µs | {:.1} µs | {:.2}× | {} | {} |",
                z / 1000.0,
                three / 1000.0,
                z / three,
                rounds(small),
                rounds(fast)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nThe price: {} bytes of module with the crypto and parsing crates at 3, {} bytes with \"z\" everywhere ({:+} bytes, {:+.1} KiB).",
        opt.fast_size,
        opt.small_size,
        i128::from(opt.fast_size) - i128::from(opt.small_size),
        (opt.fast_size as f64 - opt.small_size as f64) / 1024.0
    );
    let _ = writeln!(out, "\n## Latencies the end-to-end tests only bound\n");
    let _ = writeln!(out, "The tests wait for these events with generous limits and assert no time; here they are measured, one fresh measurement per round.\n");
    let _ = writeln!(out, "| what | median ms | per round ms |");
    let _ = writeln!(out, "|---|---|---|");
    for (what, rounds) in latencies {
        let per_round: Vec<String> = rounds.iter().map(|ms| format!("{ms:.1}")).collect();
        let mut sorted = rounds.clone();
        let _ = writeln!(
            out,
            "| {what} | {:.1} | {} |",
            median(&mut sorted),
            per_round.join(", ")
        );
    }
    let _ = writeln!(out, "\n## Module size\n\n`target/wasm32-wasip1/release/peergate_filter.wasm`: {module_size} bytes ({:.0} KiB; opt-level z with the crypto and parsing crates at 3, LTO, one codegen unit, panic=abort, stripped); {} bytes ({:.0} KiB) with opt-level z everywhere.\n", module_size as f64 / 1024.0, opt.small_size, opt.small_size as f64 / 1024.0);
    let _ = writeln!(out, "## Reproduce\n\n```sh\ncargo make bench   # installs wrk (Debian) if absent, builds the modules, runs criterion and this program\n# or, with everything built: cargo run --profile bench -p peergate-bench -- --rounds {} --seconds {} --connections {}\n```", options.rounds, options.seconds, options.connections);
    out
}
