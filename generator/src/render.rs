//! Reports for people: aligned tables, colour only when asked for (on a terminal). The JSON
//! forms are the serde forms of the same data.

use std::fmt::Write as _;

use peergate_filter::audit::Outcome;
use peergate_filter::decision_log::Verdict;
use peergate_filter::inspect::CertificateInfo;
use peergate_filter::peer::San;
use peergate_filter::Mode;

use crate::audit::{AuditRun, AuditedCertificate};
use crate::logs::{reasons_text, LogSummary};

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours.
    pub color: bool,
}

const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";
const DIM: &str = "2";
const BOLD: &str = "1";

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Rows of cells, padded to the widest cell of each column. A row's last cell is not padded
/// and does not widen its column, so a one-cell row can run across the table.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter(|r| c + 1 < r.len())
                .filter_map(|r| r.get(c))
                .map(|cell| visible_width(cell))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        out.push_str(indent);
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < row.len() {
                let width = widths.get(c).copied().unwrap_or(0);
                let pad = width.saturating_sub(visible_width(cell)) + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

/// Display width without ANSI escapes.
fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

/// `URI:…, DNS:…`, or `(none)`.
fn sans_text(sans: &[San]) -> String {
    if sans.is_empty() {
        return "(none)".to_owned();
    }
    sans.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `peergate audit`'s report.
pub fn audit_text(run: &AuditRun, style: Style) -> String {
    let mut out = String::new();
    let p = &run.policy;
    let authority = run
        .certificates
        .first()
        .map(|c| c.report.authority.as_str())
        .unwrap_or_default();
    let at = run
        .certificates
        .first()
        .map(|c| c.report.at.as_str())
        .unwrap_or_default();
    out.push_str(&table(
        &[
            vec![
                "policy".into(),
                format!(
                    "{}: {} ({}, {}{}{}, deny status {}{})",
                    p.file,
                    p.origin,
                    p.mode.as_str(),
                    plural(p.trusted_issuers, "trusted issuer"),
                    if p.trust_anchors > 0 {
                        format!(", {}", plural(p.trust_anchors, "trust anchor"))
                    } else {
                        String::new()
                    },
                    if p.crls > 0 {
                        format!(", {}", plural(p.crls, "CRL"))
                    } else {
                        String::new()
                    },
                    p.deny_status,
                    p.protected_server_names
                        .as_ref()
                        .map(|names| format!(
                            ", only for hosts {} (SNI or authority)",
                            names.join(", ")
                        ))
                        .unwrap_or_default()
                ),
            ],
            vec![
                "host".into(),
                if authority.is_empty() {
                    "(none: only a top-level allowedSans can apply)".into()
                } else {
                    authority.to_owned()
                },
            ],
            vec!["at".into(), at.to_owned()],
        ]
        .into_iter()
        .chain(request_rows(run))
        .collect::<Vec<_>>(),
        "",
    ));
    for certificate in &run.certificates {
        out.push('\n');
        out.push_str(&certificate_audit_text(certificate, p.deny_status, style));
    }
    if run.certificates.len() > 1 {
        let allowed = run
            .certificates
            .iter()
            .filter(|c| c.report.verdict == Verdict::Allow)
            .count();
        let _ = writeln!(
            out,
            "\n{}: {allowed} allowed, {} denied",
            plural(run.certificates.len(), "certificate"),
            run.certificates.len() - allowed
        );
    }
    out
}

/// "12 days left", marked when inside `expiryWarningDays`.
fn days_left_text(days_left: i64, expiring: bool, style: Style) -> String {
    let text = if days_left < 0 {
        format!("expired {} days ago", -days_left)
    } else {
        format!("{days_left} days left")
    };
    if expiring {
        style.paint(YELLOW, &format!("{text}, expiring"))
    } else {
        text
    }
}

/// The request and the route that decided, when a path was given.
fn request_rows(run: &AuditRun) -> Vec<Vec<String>> {
    let Some(report) = run.certificates.first().map(|c| &c.report) else {
        return Vec::new();
    };
    let Some(request) = &report.request else {
        return Vec::new();
    };
    vec![
        vec!["request".into(), request.clone()],
        vec![
            "route".into(),
            report
                .route
                .as_ref()
                .map_or("(none applied)".into(), |r| format!("{r:?}")),
        ],
    ]
}

fn certificate_audit_text(audited: &AuditedCertificate, deny_status: u16, style: Style) -> String {
    let report = &audited.report;
    let mut out = format!("{}\n", style.paint(BOLD, &audited.source));
    if let Some(peer) = &report.peer {
        out.push_str(&table(
            &[
                vec!["subject".into(), peer.subject_rfc4514.clone()],
                vec!["issuer".into(), peer.issuer.clone()],
                vec!["SANs".into(), sans_text(&peer.sans)],
                vec!["serial".into(), peer.serial.clone()],
                vec!["fingerprint".into(), peer.fingerprint.clone()],
                vec![
                    "validity".into(),
                    format!(
                        "{} .. {} ({})",
                        peer.not_before,
                        peer.not_after,
                        days_left_text(peer.days_left, peer.expiring, style)
                    ),
                ],
            ],
            "  ",
        ));
        out.push('\n');
    }
    let mut rows = vec![vec![
        style.paint(BOLD, "CHECK"),
        style.paint(BOLD, "RESULT"),
        style.paint(BOLD, "DETAIL"),
    ]];
    for check in &report.checks {
        let outcome = match check.outcome {
            Outcome::Pass => style.paint(GREEN, "pass"),
            Outcome::Fail => style.paint(RED, "FAIL"),
            Outcome::Skip => style.paint(DIM, "skip"),
        };
        rows.push(vec![
            check.check.as_str().to_owned(),
            outcome,
            check.detail.clone(),
        ]);
    }
    out.push_str(&table(&rows, "  "));
    let verdict = match (report.verdict, report.mode) {
        (Verdict::Allow, _) => format!(
            "{}  {}",
            style.paint(&format!("{BOLD};{GREEN}"), "ALLOW"),
            report.explanation
        ),
        (Verdict::Deny, Mode::Enforce) => format!(
            "{}  {}: {}; the gateway answers {deny_status}",
            style.paint(&format!("{BOLD};{RED}"), "DENY"),
            report.reason.code(),
            report.explanation
        ),
        (Verdict::Deny, Mode::Audit) => format!(
            "{}  {}: {}; audit mode: the gateway logs and counts it and lets the request through",
            style.paint(&format!("{BOLD};{YELLOW}"), "DENY"),
            report.reason.code(),
            report.explanation
        ),
    };
    let _ = writeln!(out, "\n  verdict  {verdict}");
    out
}

/// `peergate inspect`'s report.
pub fn inspect_text(certificates: &[(String, CertificateInfo)], style: Style) -> String {
    let mut out = String::new();
    for (i, (source, info)) in certificates.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{}", style.paint(BOLD, source));
        let left = if info.expired {
            let ago = match -info.days_left {
                0 => "expired less than a day ago".to_owned(),
                1 => "expired 1 day ago".to_owned(),
                n => format!("expired {n} days ago"),
            };
            style.paint(RED, &ago)
        } else if info.days_left < 30 {
            style.paint(YELLOW, &format!("{} days left", info.days_left))
        } else {
            format!("{} days left", info.days_left)
        };
        let key = match (&info.key.curve, info.key.bits) {
            (Some(curve), _) => format!("{} {curve}", info.key.algorithm),
            (None, Some(bits)) => format!("{} {bits} bits", info.key.algorithm),
            (None, None) => info.key.algorithm.clone(),
        };
        out.push_str(&table(
            &[
                vec!["subject".into(), info.subject.clone()],
                vec!["issuer".into(), info.issuer.clone()],
                vec!["serial".into(), info.serial.clone()],
                vec!["not before".into(), info.not_before.clone()],
                vec!["not after".into(), format!("{} ({left})", info.not_after)],
                vec!["SANs".into(), sans_text(&info.sans)],
                vec!["key".into(), key],
                vec!["signature".into(), info.signature_algorithm.clone()],
                vec!["CA".into(), if info.is_ca { "yes" } else { "no" }.into()],
                vec![
                    "SHA-256 fingerprint".into(),
                    info.fingerprint_openssl.clone(),
                ],
                vec!["SPKI SHA-256 (base64)".into(), info.spki_sha256.clone()],
            ],
            "  ",
        ));
    }
    out
}

/// `peergate audit --logs`'s report.
pub fn logs_text(label: &str, summary: &LogSummary, style: Style) -> String {
    let mut out = format!(
        "{label}: {} lines, {} ({} allowed, {} denied), {} unreadable\n",
        summary.lines,
        plural(
            usize::try_from(summary.decisions).unwrap_or(usize::MAX),
            "decision"
        ),
        summary.allowed,
        summary.denied,
        summary.unreadable
    );
    for rejection in &summary.rejected_configurations {
        let _ = writeln!(
            out,
            "{} {}: {}",
            style.paint(RED, "configuration rejected"),
            rejection.time.as_deref().unwrap_or("(time unknown)"),
            rejection.message
        );
    }
    if summary.peers.is_empty() {
        out.push_str("no decision lines (denials are always logged; allowed requests only with logAllowed)\n");
        return out;
    }
    out.push('\n');
    let mut rows = vec![[
        "PEER",
        "ALLOWED",
        "DENIED",
        "ENFORCED",
        "REASONS",
        "FIRST SEEN",
        "LAST SEEN",
    ]
    .iter()
    .map(|h| style.paint(BOLD, h))
    .collect::<Vec<_>>()];
    for peer in &summary.peers {
        let name = peer
            .subject
            .clone()
            .unwrap_or_else(|| "(no certificate)".into());
        let denied = if peer.denied > 0 {
            style.paint(RED, &peer.denied.to_string())
        } else {
            peer.denied.to_string()
        };
        rows.push(vec![
            name,
            peer.allowed.to_string(),
            denied,
            peer.enforced.to_string(),
            reasons_text(&peer.reasons),
            peer.first_seen.clone().unwrap_or_else(|| "-".into()),
            peer.last_seen.clone().unwrap_or_else(|| "-".into()),
        ]);
        if !peer.sans.is_empty() {
            rows.push(vec![format!("  {}", sans_text(&peer.sans))]);
        }
        if let Some(days) = peer.days_left {
            rows.push(vec![style.paint(
                YELLOW,
                &format!("  expires in {days} days: renew its certificate"),
            )]);
        }
        if let Some(fingerprint) = &peer.fingerprint {
            rows.push(vec![style.paint(DIM, &format!("  sha256 {fingerprint}"))]);
        }
    }
    out.push_str(&table(&rows, ""));
    out
}

/// `peergate probe`'s text: each step, the TLS details, the answer, the cause.
pub fn probe_text(report: &crate::probe::ProbeReport, style: Style) -> String {
    use crate::probe::{Outcome as StepOutcome, Verdict as ProbeVerdict};
    let mut out = format!("{}\n", style.paint(BOLD, &format!("probe {}", report.url)));
    let rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|s| {
            let outcome = match s.outcome {
                StepOutcome::Pass => style.paint(GREEN, "ok"),
                StepOutcome::Fail => style.paint(RED, "FAIL"),
                StepOutcome::Skip => style.paint(DIM, "skip"),
            };
            vec![s.step.to_owned(), outcome, s.detail.clone()]
        })
        .collect();
    out.push_str(&table(&rows, "  "));
    if let Some(answer) = &report.http {
        if !answer.body.is_empty() && answer.status >= 400 {
            let body: String = answer.body.chars().take(200).collect();
            let _ = writeln!(out, "\n  body: {}", body.trim_end());
        }
    }
    let verdict = match (report.verdict, &report.cause) {
        (ProbeVerdict::Ok, _) => style.paint(&format!("{BOLD};{GREEN}"), "OK"),
        (ProbeVerdict::Refused, Some(cause)) => format!(
            "{}  {cause}",
            style.paint(&format!("{BOLD};{RED}"), "REFUSED")
        ),
        (ProbeVerdict::Refused, None) => style.paint(&format!("{BOLD};{RED}"), "REFUSED"),
    };
    let _ = writeln!(out, "\n{verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_visible_width() {
        let style = Style { color: true };
        let rows = vec![
            vec![style.paint(RED, "a"), "x".into()],
            vec!["long".into(), "y".into()],
            vec!["a row of one cell, wider than the table".into()],
        ];
        let text = table(&rows, "");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "long  y");
        assert_eq!(visible_width(lines[0]), "a     x".len());
    }
}
