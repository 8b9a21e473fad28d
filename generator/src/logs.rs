//! `peergate audit --logs`: who has been knocking on the gateway. Reads gateway logs as
//! `kubectl logs` prints them, keeps the filter's decision lines (read back with the filter's
//! own [`DecisionRecord`] type) and summarises them per peer.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use peergate_filter::decision_log::{DecisionRecord, Verdict};
use peergate_filter::peer::San;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const REJECTION_MARK: &str = "peergate: rejecting configuration: ";

/// One peer, as the decision lines describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerActivity {
    /// SHA-256 of the certificate; absent for requests that had none (or whose certificate
    /// could not be read).
    pub fingerprint: Option<String>,
    /// Subject DN.
    pub subject: Option<String>,
    /// Issuer DN.
    pub issuer: Option<String>,
    /// SANs.
    pub sans: Vec<San>,
    /// Allowed requests (logged only with `logAllowed`).
    pub allowed: u64,
    /// Denied requests, enforced or not.
    pub denied: u64,
    /// Denials the gateway acted on (enforce mode).
    pub enforced: u64,
    /// Denials by reason code.
    pub reasons: BTreeMap<String, u64>,
    /// The authorities asked for.
    pub authorities: Vec<String>,
    /// The first decision's time, RFC 3339, when the lines carry one.
    pub first_seen: Option<String>,
    /// The last decision's time.
    pub last_seen: Option<String>,
    /// Days to its notAfter, from its latest line inside `expiryWarningDays` (the filter
    /// logs such a peer once per certificate even with `logAllowed` off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
}

/// A configuration the filter refused, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// When, from the log line's prefix.
    pub time: Option<String>,
    /// The filter's message after `rejecting configuration: `.
    pub message: String,
}

/// What `peergate audit --logs --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSummary {
    /// Lines read.
    pub lines: u64,
    /// Decision lines found.
    pub decisions: u64,
    /// Allowed decisions.
    pub allowed: u64,
    /// Denied decisions (enforced or not).
    pub denied: u64,
    /// Lines that look like decision lines but do not read as one (another filter version,
    /// a line cut by the log pipeline).
    pub unreadable: u64,
    /// Configurations the filter refused.
    pub rejected_configurations: Vec<Rejection>,
    /// Peers: expiring ones first (fewest days left first), then the most denied.
    pub peers: Vec<PeerActivity>,
}

#[derive(Default)]
struct Tally {
    activity: Option<PeerActivity>,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
}

/// Reads a log and summarises the filter's decisions in it.
pub fn summarize(input: impl BufRead) -> std::io::Result<LogSummary> {
    let mut summary = LogSummary {
        lines: 0,
        decisions: 0,
        allowed: 0,
        denied: 0,
        unreadable: 0,
        rejected_configurations: Vec::new(),
        peers: Vec::new(),
    };
    let mut tallies: HashMap<Option<String>, Tally> = HashMap::new();
    for line in input.split(b'\n') {
        let line = line?;
        summary.lines += 1;
        // Logs are text, but a cut or corrupted line must not stop the summary.
        let raw = String::from_utf8_lossy(&line);
        let (line, envelope_time) = unwrap_json_envelope(&raw);
        let line_time = || envelope_time.or_else(|| prefix_time(&raw));
        if let Some(message) = rejection_in(&line) {
            summary.rejected_configurations.push(Rejection {
                time: line_time().and_then(|t| t.format(&Rfc3339).ok()),
                message,
            });
            continue;
        }
        if !(line.contains("\"decision\":") && line.contains("\"reason\":")) {
            continue;
        }
        let Some(record) = decision_in(&line) else {
            summary.unreadable += 1;
            continue;
        };
        summary.decisions += 1;
        match record.decision {
            Verdict::Allow => summary.allowed += 1,
            Verdict::Deny => summary.denied += 1,
        }
        let time = record
            .time
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .or_else(line_time);
        let key = record.fingerprint.as_deref().map(str::to_owned);
        tallies
            .entry(key.clone())
            .or_default()
            .count(key, record, time);
    }
    summary.peers = peers_of(tallies);
    Ok(summary)
}

/// The message of a line that says the filter refused a configuration.
fn rejection_in(line: &str) -> Option<String> {
    let at = line.find(REJECTION_MARK)?;
    let message = line
        .get(at + REJECTION_MARK.len()..)
        .unwrap_or_default()
        .split('\t')
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned();
    Some(message)
}

impl Tally {
    /// Counts one decision about the peer `key` names.
    fn count(
        &mut self,
        key: Option<String>,
        record: DecisionRecord<'_>,
        time: Option<OffsetDateTime>,
    ) {
        let activity = self
            .activity
            .get_or_insert_with(|| PeerActivity::first_seen_in(key, &record));
        if let Some(days) = record.days_left {
            // The latest line says the least time left.
            activity.days_left = Some(activity.days_left.map_or(days, |d| d.min(days)));
        }
        match record.decision {
            Verdict::Allow => activity.allowed += 1,
            Verdict::Deny => {
                activity.denied += 1;
                activity.enforced += u64::from(record.enforced);
                *activity
                    .reasons
                    .entry(record.reason.code().to_owned())
                    .or_default() += 1;
            }
        }
        if !activity.authorities.iter().any(|a| *a == record.authority) {
            activity.authorities.push(record.authority.into_owned());
        }
        if let Some(t) = time {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
    }
}

impl PeerActivity {
    /// A peer as its first decision line names it, nothing counted yet.
    fn first_seen_in(fingerprint: Option<String>, record: &DecisionRecord<'_>) -> Self {
        PeerActivity {
            fingerprint,
            subject: record.subject.as_deref().map(str::to_owned),
            issuer: record.issuer.as_deref().map(str::to_owned),
            sans: record
                .sans
                .as_deref()
                .map(<[San]>::to_vec)
                .unwrap_or_default(),
            allowed: 0,
            denied: 0,
            enforced: 0,
            reasons: BTreeMap::new(),
            authorities: Vec::new(),
            first_seen: None,
            last_seen: None,
            days_left: None,
        }
    }
}

/// Every peer seen: expiring first (soonest first), then the most denied, the most allowed.
fn peers_of(tallies: HashMap<Option<String>, Tally>) -> Vec<PeerActivity> {
    let mut peers: Vec<PeerActivity> = tallies
        .into_values()
        .filter_map(|tally| {
            let mut activity = tally.activity?;
            activity.first_seen = tally.first.and_then(|t| t.format(&Rfc3339).ok());
            activity.last_seen = tally.last.and_then(|t| t.format(&Rfc3339).ok());
            activity.authorities.sort();
            Some(activity)
        })
        .collect();
    peers.sort_by(|a, b| {
        // `None` (not expiring) sorts after every `Some`.
        let expiry = |p: &PeerActivity| p.days_left.map_or((1, 0), |d| (0, d));
        expiry(a)
            .cmp(&expiry(b))
            .then(b.denied.cmp(&a.denied))
            .then(b.allowed.cmp(&a.allowed))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    peers
}

/// Istio's proxy with JSON logging (`--log_as_json`) writes each line as
/// `{"level":…,"time":…,"msg":"<escaped message>",…}`: the message and its time, else the line
/// as it is.
fn unwrap_json_envelope(line: &str) -> (Cow<'_, str>, Option<OffsetDateTime>) {
    if line.trim_start().starts_with('{') {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(line.trim()) {
            if let Some(serde_json::Value::String(message)) = fields.get("msg") {
                let time = fields
                    .get("time")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
                return (Cow::Owned(message.clone()), time);
            }
        }
    }
    (Cow::Borrowed(line), None)
}

/// The decision record in a log line: the first JSON object in it that reads as one (the line
/// may carry a prefix and, in Istio's format, a `thread=` suffix).
fn decision_in(line: &str) -> Option<DecisionRecord<'static>> {
    line.match_indices('{').find_map(|(start, _)| {
        let rest = line.get(start..)?;
        let mut stream =
            serde_json::Deserializer::from_str(rest).into_iter::<DecisionRecord<'static>>();
        stream.next()?.ok()
    })
}

/// The time stamp a log line starts with: Envoy's default `[2026-11-27 19:56:05.123]`
/// (taken as UTC), or RFC 3339 as Istio's proxy and `kubectl logs --timestamps` write it.
fn prefix_time(line: &str) -> Option<OffsetDateTime> {
    if let Some(rest) = line.strip_prefix('[') {
        let inside = rest.split(']').next()?;
        let format =
            format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
        return PrimitiveDateTime::parse(inside, format)
            .ok()
            .map(PrimitiveDateTime::assume_utc);
    }
    let token = line.split(|c: char| c.is_whitespace()).next()?;
    OffsetDateTime::parse(token, &Rfc3339).ok()
}

/// The reasons for people: `san_not_allowed ×3, expired ×1`.
pub fn reasons_text(reasons: &BTreeMap<String, u64>) -> String {
    let mut sorted: Vec<(&String, &u64)> = reasons.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    sorted
        .iter()
        .map(|(code, n)| format!("{code} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_times_in_envoy_istio_and_kubectl_forms() {
        let envoy = prefix_time("[2026-11-27 19:56:05.123][12][info][wasm] x").unwrap();
        let istio = prefix_time("2026-11-27T19:56:05.123456Z\tinfo\tenvoy wasm x").unwrap();
        let kubectl = prefix_time("2026-11-27T19:56:05.123456789Z [2026-11-27 ...").unwrap();
        assert_eq!(envoy.unix_timestamp(), 1_795_809_365);
        assert_eq!(istio.unix_timestamp(), 1_795_809_365);
        assert_eq!(kubectl.unix_timestamp(), 1_795_809_365);
        assert_eq!(prefix_time("no time here"), None);
        assert_eq!(prefix_time("[not a time]"), None);
    }

    #[test]
    fn lines_that_only_look_like_decisions_are_counted_as_unreadable() {
        let log = "x \"decision\":1 \"reason\":2\nplain line\n";
        let summary = summarize(log.as_bytes()).unwrap();
        assert_eq!(
            (summary.lines, summary.decisions, summary.unreadable),
            (2, 0, 1)
        );
    }
}
