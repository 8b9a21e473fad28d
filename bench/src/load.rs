//! Load: keep-alive requests through wrk, new connections (a new certificate each, or churn
//! with one), the gateway's CPU per request or connection and perf's split of it.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpu_split::{self, CpuSplit};
use crate::options::Options;
use crate::stats::median;
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::Envoy;
use peergate_e2e::scenario::DOMAIN;

/// CPU seconds (user + system) the process has used.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
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

pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) cpu_us_per_request: f64,
    /// Where that CPU went, sampled with perf during the round.
    pub(crate) split: Option<CpuSplit>,
}

pub(crate) fn parse_duration_ms(text: &str) -> Option<f64> {
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
pub(crate) fn perf_data_path() -> PathBuf {
    std::env::temp_dir().join(format!("peergate-bench-{}.perf", std::process::id()))
}

pub(crate) fn wrk(
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
pub(crate) fn new_connections(
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
pub(crate) fn summarize(section: &str, samples: &BTreeMap<&str, Vec<Sample>>) {
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
pub(crate) fn connection_rounds<'a>(
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

pub(crate) fn medians(samples: &[Sample]) -> Sample {
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
pub(crate) fn median_split(samples: &[Sample]) -> Option<CpuSplit> {
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
