//! The policy core natively: criterion's medians, read from `target/criterion`.

use anyhow::Context;

use peergate_e2e::envoy::target_dir;
use serde_json::Value;

/// Median of a criterion benchmark, in nanoseconds.
pub(crate) fn criterion_median(id: &str) -> anyhow::Result<f64> {
    // Criterion names the folder after the id with `/` replaced.
    let path = target_dir()
        .join("criterion")
        .join(id.replace('/', "_"))
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: run `cargo bench -p peergate-filter --bench policy` first",
            path.display()
        )
    })?;
    let doc: Value = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    doc.pointer("/median/point_estimate")
        .and_then(Value::as_f64)
        .with_context(|| format!("{}: no median", path.display()))
}
