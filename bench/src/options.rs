//! The bench runner's command line.

use anyhow::{bail, Context};
use std::path::PathBuf;

use peergate_e2e::envoy::workspace_root;

pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) seconds: u64,
    pub(crate) connections: u32,
    pub(crate) out: PathBuf,
    /// Only time decisions in V8 and print them (for quick comparisons of build settings).
    pub(crate) v8_only: bool,
    /// Only measure the latencies and print them.
    pub(crate) latency_only: bool,
    /// Only profile the cold path and the host calls inside Envoy, and print them.
    pub(crate) profile_only: bool,
    /// Only count instructions under callgrind (two runs), and print them.
    pub(crate) instructions_only: bool,
}

pub(crate) fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        rounds: 5,
        seconds: 5,
        connections: 16,
        out: workspace_root().join("BENCHMARKS.md"),
        v8_only: false,
        latency_only: false,
        profile_only: false,
        instructions_only: false,
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
            "--instructions-only" => options.instructions_only = true,
            other => bail!("unknown argument {other} (--rounds N, --seconds S, --connections C, --out FILE, --v8-only, --latency-only, --profile-only, --instructions-only)"),
        }
    }
    if options.rounds < 3 {
        bail!("--rounds: at least 3, to report medians");
    }
    Ok(options)
}
