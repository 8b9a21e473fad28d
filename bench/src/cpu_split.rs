//! Where the gateway's CPU goes during a run: `perf record` samples the gateway process while
//! wrk drives it, and `perf report --sort dso` splits the samples between Envoy's own code
//! (with V8's runtime and builtins, which are linked into it), the code V8 compiled from the
//! wasm module (anonymous executable memory, which perf reports as `[JIT] tid …`), the kernel
//! and the C library. Multiplied by the run's CPU per request, that says in microseconds
//! whether a variant's extra cost is in the module or in the host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// Gateway CPU per request by where it was spent, in µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSplit {
    /// Envoy's binary: its C++ code, BoringSSL, and V8's runtime and builtins.
    pub envoy: f64,
    /// The wasm module as V8 compiled it.
    pub module: f64,
    /// The kernel (sockets, scheduling).
    pub kernel: f64,
    /// libc, libm, libstdc++ (malloc, memcpy).
    pub libc: f64,
    /// Anything else (the vDSO's clock, …).
    pub other: f64,
}

impl CpuSplit {
    /// The fields in table order, with their column names.
    pub const COLUMNS: [&'static str; 5] = [
        "Envoy's code (with V8's runtime)",
        "the module's compiled code (V8 JIT)",
        "kernel",
        "C library",
        "other",
    ];

    pub fn values(&self) -> [f64; 5] {
        [self.envoy, self.module, self.kernel, self.libc, self.other]
    }

    pub fn from_values(v: [f64; 5]) -> Self {
        let [envoy, module, kernel, libc, other] = v;
        Self {
            envoy,
            module,
            kernel,
            libc,
            other,
        }
    }

    /// From `perf report --sort dso` shares (percent) and the CPU per request they split.
    fn from_shares(shares: &[(String, f64)], cpu_us_per_request: f64) -> Self {
        let mut split = CpuSplit::default();
        for (dso, percent) in shares {
            let us = percent / 100.0 * cpu_us_per_request;
            let slot = match dso.as_str() {
                "envoy" => &mut split.envoy,
                d if d.starts_with("[JIT]") || d.starts_with("//anon") => &mut split.module,
                d if d.starts_with("[kernel") => &mut split.kernel,
                d if d.starts_with("libc.")
                    || d.starts_with("libm.")
                    || d.starts_with("libstdc++") =>
                {
                    &mut split.libc
                }
                _ => &mut split.other,
            };
            *slot += us;
        }
        split
    }
}

/// A `perf record` of a process running for a fixed time.
pub struct Recording {
    child: Child,
    data: PathBuf,
}

/// Starts sampling `pid` for `seconds` (at 999 Hz, no call chains: cheap enough to leave on in
/// every round of every variant alike).
pub fn record(pid: u32, seconds: u64, data: &Path) -> anyhow::Result<Recording> {
    let child = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-p", &pid.to_string(), "-o"])
        .arg(data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running perf (Debian package linux-perf; cargo make bench installs it)")?;
    Ok(Recording {
        child,
        data: data.to_owned(),
    })
}

impl Recording {
    /// Waits for the recording and splits `cpu_us_per_request` by where the samples fell.
    pub fn finish(self, cpu_us_per_request: f64) -> anyhow::Result<CpuSplit> {
        let out = self.child.wait_with_output().context("waiting for perf")?;
        if !out.status.success() {
            bail!(
                "perf record failed (kernel.perf_event_paranoid may forbid it): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report = Command::new("perf")
            .args(["report", "-q", "--stdio", "--no-children", "-g", "none"])
            .args(["--sort", "dso", "-i"])
            .arg(&self.data)
            .output()
            .context("running perf report")?;
        let text = String::from_utf8_lossy(&report.stdout);
        let shares = parse_dso_shares(&text);
        if !report.status.success() || shares.is_empty() {
            bail!(
                "perf report gave no samples for {}: {}",
                self.data.display(),
                String::from_utf8_lossy(&report.stderr)
            );
        }
        let _ = std::fs::remove_file(&self.data);
        Ok(CpuSplit::from_shares(&shares, cpu_us_per_request))
    }
}

/// `   72.62%  envoy` lines → (dso, percent).
fn parse_dso_shares(report: &str) -> Vec<(String, f64)> {
    report
        .lines()
        .filter_map(|line| {
            let (percent, dso) = line.trim().split_once('%')?;
            Some((dso.trim().to_owned(), percent.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_cpu_by_where_it_was_spent() {
        let report = "    72.62%  envoy            \n    20.00%  [kernel.kallsyms]\n     4.38%  libc.so.6        \n     2.00%  [JIT] tid 10652  \n     1.00%  [vdso]           \n";
        let split = CpuSplit::from_shares(&parse_dso_shares(report), 50.0);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(split.envoy, 36.31), "{split:?}");
        assert!(close(split.module, 1.0), "{split:?}");
        assert!(close(split.kernel, 10.0), "{split:?}");
        assert!(close(split.libc, 2.19), "{split:?}");
        assert!(close(split.other, 0.5), "{split:?}");
    }
}
