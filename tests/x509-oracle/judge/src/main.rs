//! The judge the x509 oracle asks: peergate's policy core, through the entry points the filter
//! uses (`compile_json` once per configuration, `Policy::decide` per request), and the audit the
//! CLI prints, which must agree with the decision.
//!
//! Reads JSON lines on stdin, `{"id", "config", "leaf", "authority", "now"}` (`config` the
//! pluginConfig object, `leaf` base64 DER, `now` Unix seconds), and answers each on stdout with
//! `{"id", "reason"}`, or `{"id", "error"}` when the configuration does not compile. A decision
//! and an audit that disagree end the run with exit 1: that is a bug of the engine, not a verdict.

use std::collections::HashMap;
use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use peergate_filter::{compile_json, Policy};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Case {
    id: u64,
    config: serde_json::Value,
    leaf: String,
    #[serde(default)]
    authority: String,
    now: i64,
}

#[derive(Serialize)]
struct Answer {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Compiled policies by their JSON text: the filter compiles a configuration once and decides
/// every request with it, and the oracle asks many leaves of one PKI under one policy.
const POLICY_CACHE: usize = 256;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("peergate-x509-judge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut policies: HashMap<String, Rc<Result<Policy, String>>> = HashMap::new();
    for (number, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(&line)
            .map_err(|e| format!("line {}: not a case: {e}", number + 1))?;
        let answer = judge(&case, &mut policies)?;
        serde_json::to_writer(&mut out, &answer).map_err(|e| format!("writing: {e}"))?;
        out.write_all(b"\n").map_err(|e| format!("writing: {e}"))?;
        // Each answer goes out at once: the oracle may wait for it before writing more.
        out.flush().map_err(|e| format!("writing: {e}"))?;
    }
    Ok(())
}

fn judge(
    case: &Case,
    policies: &mut HashMap<String, Rc<Result<Policy, String>>>,
) -> Result<Answer, String> {
    let key = case.config.to_string();
    if policies.len() >= POLICY_CACHE && !policies.contains_key(&key) {
        policies.clear();
    }
    let policy = Rc::clone(policies.entry(key).or_insert_with_key(|json| {
        Rc::new(compile_json(json.as_bytes()).map_err(|e| e.to_string()))
    }));
    let policy = match policy.as_ref() {
        Ok(policy) => policy,
        Err(error) => {
            return Ok(Answer {
                id: case.id,
                reason: None,
                error: Some(error.clone()),
            })
        }
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(&case.leaf)
        .map_err(|e| format!("case {}: leaf is not base64: {e}", case.id))?;
    let now = time_of(case.now);
    let decision = policy.decide(Some(&der), &case.authority, now);
    let report = policy.audit(&der, &case.authority, None, now);
    if report.reason != decision.reason {
        return Err(format!(
            "case {}: the audit says {} where the decision says {}",
            case.id,
            report.reason.code(),
            decision.reason.code()
        ));
    }
    Ok(Answer {
        id: case.id,
        reason: Some(decision.reason.code()),
        error: None,
    })
}

fn time_of(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}
