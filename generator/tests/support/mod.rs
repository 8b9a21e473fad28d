//! What the CLI tests share: running `peergate` in a folder and reading what it wrote.
// Each test crate uses a part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use peergate_filter::PluginConfig;
use serde_json::Value;

/// `peergate ARGS` run in `dir`.
pub fn peergate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peergate"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Its standard output; the test fails unless it succeeded.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = peergate(dir, args);
    assert!(
        out.status.success(),
        "peergate {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Its standard error; the test fails unless it exited 2 (refused).
pub fn refused(dir: &Path, args: &[&str]) -> String {
    let out = peergate(dir, args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "peergate {args:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn yaml(path: &Path) -> Value {
    yaml_serde::from_str(&read(path)).unwrap()
}

/// The pluginConfig of the output's WasmPlugin.
pub fn plugin_config(out: &Path) -> PluginConfig {
    let object = yaml(&out.join("cluster-b/wasmplugin.yaml"));
    PluginConfig::from_json(object["spec"]["pluginConfig"].to_string().as_bytes()).unwrap()
}

/// A Secret file's value for `key`, decoded.
pub fn secret_value(path: &Path, key: &str) -> Option<String> {
    use base64::Engine;
    let object = yaml(path);
    let data = object["data"][key].as_str()?;
    Some(
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap(),
    )
}

/// Every file under `dir` with its bytes, sorted: to show a run changed nothing.
pub fn snapshot_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}
