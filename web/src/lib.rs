//! The audit page's engine: the policy core compiled for the browser with wasm-bindgen.
//! `audit()` returns exactly what `peergate audit --json` prints (the core's `AuditRun`), and
//! `inspect()` what `peergate inspect --json` prints; nothing here decides anything itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peergate_filter::document::find_plugin_configs;
use peergate_filter::inspect::{certificates_from_bytes, inspect as inspect_der, CertificateInfo};
use peergate_filter::policy::rejection_log_line;
use peergate_filter::routes::RequestLine;
use peergate_filter::{compile, Policy};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// What the policy text area is called in reports (the CLI names the file there).
const POLICY_SOURCE: &str = "policy";
/// What the certificate text area is called.
const CERTIFICATE_SOURCE: &str = "certificate";

fn instant(unix_ms: f64) -> Result<SystemTime, String> {
    if !unix_ms.is_finite() || unix_ms < 0.0 {
        return Err(format!("time {unix_ms}: not a time"));
    }
    // f64 milliseconds since the epoch, as JavaScript's Date.now() gives them.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = unix_ms as u64;
    Ok(UNIX_EPOCH + Duration::from_millis(ms))
}

/// The policy in `text`: a WasmPlugin or TrafficExtension (YAML or JSON, among other
/// documents) or a bare pluginConfig, exactly one, compiled by the core.
pub fn policy_from_text(text: &str) -> Result<(String, Policy), String> {
    let mut found = find_plugin_configs(text).map_err(|e| format!("policy: {e}"))?;
    if found.len() > 1 {
        let origins: Vec<String> = found.iter().map(|f| f.origin.clone()).collect();
        return Err(format!(
            "policy: more than one peergate configuration ({}); paste one",
            origins.join("; ")
        ));
    }
    let Some(found) = found.pop() else {
        return Err("policy: no peergate configuration".into());
    };
    let rejected = |line: String| {
        format!(
            "policy ({}): the filter would refuse this configuration and log: {line}",
            found.origin
        )
    };
    let config = found
        .config
        .clone()
        .map_err(|e| rejected(rejection_log_line(&e.into())))?;
    let policy = compile(&config).map_err(|e| rejected(rejection_log_line(&e)))?;
    Ok((found.origin, policy))
}

fn certificates(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let ders = certificates_from_bytes(text.as_bytes()).map_err(|e| format!("certificate: {e}"))?;
    let single = ders.len() == 1;
    Ok(ders
        .into_iter()
        .enumerate()
        .map(|(i, der)| {
            let source = if single {
                CERTIFICATE_SOURCE.to_owned()
            } else {
                format!("{CERTIFICATE_SOURCE}[{i}]")
            };
            (source, der)
        })
        .collect())
}

/// The audit as JSON (`peergate audit --json`'s format), or a message naming the bad input.
/// `method` and `path` (both empty: not judged) choose the route, as `peergate audit
/// --method --path` does.
pub fn audit_json(
    policy_text: &str,
    certificate_text: &str,
    host: &str,
    method: &str,
    path: &str,
    unix_ms: f64,
) -> Result<String, String> {
    let (origin, policy) = policy_from_text(policy_text)?;
    let subjects = certificates(certificate_text)?;
    let request = request_line(method, path)?;
    let run = policy.audit_run(
        POLICY_SOURCE,
        &origin,
        subjects.iter().map(|(s, d)| (s.as_str(), d.as_slice())),
        host.trim(),
        request,
        instant(unix_ms)?,
    );
    serde_json::to_string(&run).map_err(|e| e.to_string())
}

/// The request a route is chosen by: none when both are empty; a path needs a method
/// (`GET` when left empty, as a browser's request would be).
fn request_line<'a>(method: &'a str, path: &'a str) -> Result<Option<RequestLine<'a>>, String> {
    let (method, path) = (method.trim(), path.trim());
    match (method.is_empty(), path.is_empty()) {
        (true, true) => Ok(None),
        (_, true) => Err("path: give the request's path with its method".into()),
        (true, false) => Ok(Some(RequestLine {
            path,
            method: "GET",
        })),
        (false, false) => Ok(Some(RequestLine { path, method })),
    }
}

/// One inspected certificate, as `peergate inspect --json` prints it.
#[derive(Serialize)]
struct Inspected {
    source: String,
    #[serde(flatten)]
    info: CertificateInfo,
}

/// Every certificate's details as JSON (`peergate inspect --json`'s format).
pub fn inspect_json(certificate_text: &str, unix_ms: f64) -> Result<String, String> {
    let now = instant(unix_ms)?;
    let inspected = certificates(certificate_text)?
        .into_iter()
        .map(|(source, der)| {
            inspect_der(&der, now)
                .map(|info| Inspected {
                    source: source.clone(),
                    info,
                })
                .map_err(|e| format!("{source}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_string(&inspected).map_err(|e| e.to_string())
}

/// `audit(policy, certificate, host, method, path, unixMs)`: the JSON of `peergate audit
/// --json`; throws an Error naming the bad input.
#[wasm_bindgen]
pub fn audit(
    policy: &str,
    certificate: &str,
    host: &str,
    method: &str,
    path: &str,
    unix_ms: f64,
) -> Result<String, JsError> {
    audit_json(policy, certificate, host, method, path, unix_ms).map_err(|e| JsError::new(&e))
}

/// `inspect(certificate, unixMs)`: the JSON of `peergate inspect --json`.
#[wasm_bindgen]
pub fn inspect(certificate: &str, unix_ms: f64) -> Result<String, JsError> {
    inspect_json(certificate, unix_ms).map_err(|e| JsError::new(&e))
}
