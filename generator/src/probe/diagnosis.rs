//! From what a probe recorded to the steps and the most likely cause, in words an operator
//! can act on.

use peergate_filter::Reason;

use super::http::{ExchangeFailure, HttpAnswer};
use super::tls::TlsRecord;
use super::{Outcome, ProbeReport, ProbeRequest, Record, Scheme, Step, Verdict};

/// The report of one probe.
pub fn report(request: &ProbeRequest, record: Record) -> ProbeReport {
    let steps = steps(request, &record);
    let answer = record.http.as_ref().and_then(|a| a.as_ref().ok());
    let verdict = match answer {
        Some(a) if a.status < 400 => Verdict::Ok,
        _ => Verdict::Refused,
    };
    let cause = match verdict {
        Verdict::Ok => None,
        Verdict::Refused => Some(cause(request, &record)),
    };
    ProbeReport {
        verdict,
        url: request.target.url(),
        address: record
            .connected
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .map(ToString::to_string),
        steps,
        http: answer.cloned(),
        tls: record.tls,
        cause,
    }
}

fn step(step: &'static str, outcome: Outcome, detail: impl Into<String>) -> Step {
    Step {
        step,
        outcome,
        detail: detail.into(),
    }
}

fn steps(request: &ProbeRequest, record: &Record) -> Vec<Step> {
    let mut steps = Vec::new();
    match &record.resolved {
        Ok(addresses) => steps.push(step(
            "resolve",
            Outcome::Pass,
            addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        )),
        Err(why) => {
            steps.push(step("resolve", Outcome::Fail, why.clone()));
            return steps;
        }
    }
    match &record.connected {
        Some(Ok(address)) => {
            steps.push(step("connect", Outcome::Pass, format!("TCP to {address}")))
        }
        Some(Err(why)) => {
            steps.push(step("connect", Outcome::Fail, why.clone()));
            return steps;
        }
        None => return steps,
    }
    if let (Scheme::Https, Some(tls)) = (request.target.scheme, &record.tls) {
        steps.extend(tls_steps(tls, request));
    }
    steps.push(http_step(record));
    steps
}

fn tls_steps(tls: &TlsRecord, request: &ProbeRequest) -> Vec<Step> {
    let handshake = match (&tls.failure, &tls.version) {
        (Some(failure), _) => step("tls_handshake", Outcome::Fail, failure_text(failure)),
        (None, version) => step(
            "tls_handshake",
            Outcome::Pass,
            format!(
                "{}, {}, server name {}",
                version.as_deref().unwrap_or("?"),
                tls.cipher.as_deref().unwrap_or("?"),
                tls.sni
            ),
        ),
    };
    let server = match (tls.server_chain.first(), tls.server_verified) {
        (None, _) => step(
            "server_certificate",
            Outcome::Skip,
            "the server sent no certificate",
        ),
        (Some(leaf), verified) => step(
            "server_certificate",
            if verified == Some(true) {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            format!(
                "{} [{}] issued by {}, {} certificate(s) sent: {}",
                leaf.subject,
                leaf.sans.join(", "),
                leaf.issuer,
                tls.server_chain.len(),
                match &tls.server_verification_error {
                    None => format!(
                        "verifies to the agreed root ({}) for {}",
                        request.roots_source, tls.sni
                    ),
                    Some(e) => format!(
                        "does not verify to the agreed root ({}) for {}: {e}",
                        request.roots_source, tls.sni
                    ),
                }
            ),
        ),
    };
    vec![
        handshake,
        server,
        client_step(tls, request.client.is_some()),
    ]
}

fn client_step(tls: &TlsRecord, has_client: bool) -> Step {
    if !tls.client_certificate_requested {
        if tls.server_chain.is_empty() {
            return step("client_certificate", Outcome::Skip, "not reached");
        }
        return step(
            "client_certificate",
            Outcome::Fail,
            "the server did not ask for a client certificate (not mutual TLS: is the gateway's tls.mode MUTUAL?)",
        );
    }
    let names = if tls.acceptable_ca_names.is_empty() {
        "no CA names listed".to_owned()
    } else {
        format!(
            "CA names listed: {}{}",
            tls.acceptable_ca_names.join("; "),
            if tls.agreed_root_listed {
                " (the agreed root among them)"
            } else {
                " (the agreed root NOT among them)"
            }
        )
    };
    let presented = match (&tls.client_certificate, tls.client_chains_to_agreed_root) {
        (None, _) if !has_client => "none presented".to_owned(),
        (None, _) => "presented (unparsable)".to_owned(),
        (Some(subject), Some(true)) => {
            format!("presented {subject}, which chains to the agreed root")
        }
        (Some(subject), _) => format!(
            "presented {subject}, which does NOT chain to the agreed root: {}",
            tls.client_chain_error.as_deref().unwrap_or("?")
        ),
    };
    let good = has_client
        && tls.client_chains_to_agreed_root == Some(true)
        && (tls.agreed_root_listed || tls.acceptable_ca_names.is_empty());
    step(
        "client_certificate",
        if good { Outcome::Pass } else { Outcome::Fail },
        format!("the server asked for one; {names}; {presented}"),
    )
}

fn http_step(record: &Record) -> Step {
    match &record.http {
        None => step("http", Outcome::Skip, "no request sent"),
        Some(Ok(answer)) => step(
            "http",
            if answer.status < 400 {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            answer_text(answer),
        ),
        Some(Err(failure)) => step("http", Outcome::Fail, failure_text(failure)),
    }
}

fn answer_text(answer: &HttpAnswer) -> String {
    let mut text = format!("status {}", answer.status);
    if let Some(reason) = answer.header("x-peergate-reason") {
        text.push_str(&format!(", x-peergate-reason: {reason}"));
    }
    if let Some(server) = answer.header("server") {
        text.push_str(&format!(", server: {server}"));
    }
    text
}

fn failure_text(failure: &ExchangeFailure) -> String {
    match failure {
        ExchangeFailure::Closed => "the server closed (or reset) the connection".into(),
        ExchangeFailure::Broken {
            error,
            alert: Some(alert),
        } => format!("TLS alert {alert} from the server ({error})"),
        ExchangeFailure::Broken { error, alert: None } => error.clone(),
        ExchangeFailure::NotHttp { first_bytes } => {
            format!("not an HTTP answer (first bytes {first_bytes})")
        }
    }
}

/// The most likely cause of a refused probe.
fn cause(request: &ProbeRequest, record: &Record) -> String {
    if let Err(why) = &record.resolved {
        return format!("the name does not resolve ({why}): use --connect ADDR:PORT to dial the gateway's address");
    }
    if let Some(Err(why)) = &record.connected {
        return format!("nothing accepts TCP there ({why}): a wrong port, or the gateway's Service is not reachable from here");
    }
    if let Some(tls) = &record.tls {
        if let Some(failure) = &tls.failure {
            return handshake_cause(request, tls, failure);
        }
        if tls.server_verified != Some(true) {
            return server_cause(tls);
        }
    }
    match &record.http {
        Some(Ok(answer)) => http_cause(request, answer),
        Some(Err(failure)) => exchange_cause(request, record, failure),
        None => "no request was sent".into(),
    }
}

fn handshake_cause(request: &ProbeRequest, tls: &TlsRecord, failure: &ExchangeFailure) -> String {
    match failure {
        ExchangeFailure::Closed if tls.server_chain.is_empty() => format!(
            "the server closed the connection during the handshake, before sending a certificate and without an alert: nothing on this port serves TLS for server name {:?}. A wrong --sni, or the Gateway's hosts (the listener's hostname) do not list it: Envoy closes a connection whose server name matches no filter chain",
            tls.sni
        ),
        ExchangeFailure::Broken { alert: Some(alert), .. } => alert_cause(request, tls, alert, false),
        ExchangeFailure::Broken { error, alert: None } if error.contains("InvalidContentType") || error.contains("corrupt message") => {
            "the server did not answer in TLS: a plain-text port (try http://), or another protocol".into()
        }
        other => format!("the TLS handshake failed: {}", failure_text(other)),
    }
}

/// A TLS alert from the server, read with what the probe knows about both sides.
fn alert_cause(
    request: &ProbeRequest,
    tls: &TlsRecord,
    alert: &str,
    after_handshake: bool,
) -> String {
    let when = if after_handshake {
        "after the handshake (a TLS 1.3 server checks the client's certificate after the client has finished), "
    } else {
        ""
    };
    let issuer_problem = matches!(
        alert,
        "unknown_ca"
            | "bad_certificate"
            | "certificate_unknown"
            | "decrypt_error"
            | "access_denied"
            | "handshake_failure"
    );
    let meaning = if issuer_problem {
        client_trust_cause(request, tls, alert)
    } else {
        alert_meaning(alert, tls)
    };
    format!("the gateway refused the connection {when}with TLS alert {alert}: {meaning}")
}

fn client_trust_cause(request: &ProbeRequest, tls: &TlsRecord, alert: &str) -> String {
    if request.client.is_none() {
        return "no client certificate was presented, and the gateway requires one (--cert and --key, or --from)".into();
    }
    if tls.client_chains_to_agreed_root == Some(false) {
        return format!(
            "your client certificate ({}) does not chain to the agreed root: it comes from another CA ({}). The gateway trusts the agreed root; get a certificate issued under it",
            tls.client_certificate.as_deref().unwrap_or("?"),
            tls.client_chain_error.as_deref().unwrap_or("?")
        );
    }
    if !tls.acceptable_ca_names.is_empty() && !tls.agreed_root_listed {
        return format!(
            "your certificate chains to the agreed root, but the gateway asked for certificates from {} only: the gateway credential's CA (ca.crt in the credential Secret or the CA ConfigMap) is not the agreed root",
            tls.acceptable_ca_names.join("; ")
        );
    }
    if alert == "unknown_ca" {
        return "your certificate chains to the agreed root, yet the gateway does not know its CA: the gateway credential's CA (ca.crt) is not the agreed root".into();
    }
    format!("{} (your certificate chains to the agreed root: compare it with the gateway's subjectAltNames and key-usage expectations)", alert_meaning(alert, tls))
}

fn alert_meaning(alert: &str, tls: &TlsRecord) -> String {
    match alert {
        "certificate_expired" => "the gateway finds your client certificate expired (or not yet valid) by its clock: renew it".into(),
        "certificate_revoked" => "your client certificate is revoked by the CRL the gateway holds (ca.crl in its credential): it needs a new certificate".into(),
        "certificate_required" => "the gateway requires a client certificate and none was sent (--cert and --key, or --from)".into(),
        "unrecognized_name" => format!("the server has nothing for server name {:?}: a wrong --sni?", tls.sni),
        "protocol_version" | "insufficient_security" => "no TLS version or cipher suite in common".into(),
        "bad_certificate" => "the gateway refused your certificate (malformed, or a name the credential's subjectAltNames do not allow)".into(),
        "unsupported_certificate" => "the gateway does not accept your certificate's type or key usages (clientAuth?)".into(),
        "handshake_failure" => "the handshake could not complete (TLS 1.2 servers also say this for a missing or refused client certificate)".into(),
        "internal_error" => "the server failed internally (its credential may be missing: check the gateway's Secret and istiod's logs)".into(),
        other => format!("the server sent {other}"),
    }
}

fn server_cause(tls: &TlsRecord) -> String {
    let error = tls.server_verification_error.as_deref().unwrap_or("?");
    let names = tls
        .server_chain
        .first()
        .map(|c| c.sans.join(", "))
        .unwrap_or_default();
    if error.contains("NotValidForName") || error.contains("not valid for name") {
        return format!(
            "the server's certificate is not valid for {:?} (it names {names}): a wrong --sni, or the gateway served its default certificate for an unknown name; the sidecar would refuse it too",
            tls.sni
        );
    }
    format!(
        "the server's certificate does not verify to the agreed root ({error}): the gateway serves a certificate from another CA, or --ca is not the agreed root; the sidecar would refuse it too. Nothing was sent"
    )
}

fn exchange_cause(request: &ProbeRequest, record: &Record, failure: &ExchangeFailure) -> String {
    match (record.tls.as_ref(), failure) {
        (Some(tls), ExchangeFailure::Broken { alert: Some(alert), .. }) => alert_cause(request, tls, alert, true),
        (Some(tls), ExchangeFailure::Closed) if tls.client_certificate_requested => "the gateway closed the connection after the handshake without answering: peergate's connection layer refusing this peer (its decision line in `kubectl logs` names the reason; `peergate audit --policy DIR --cert CERT` shows which check)".into(),
        (None, _) if record.port_speaks_tls == Some(true) => "this port speaks TLS and the request was plain HTTP: use https:// (with the client certificate)".into(),
        (_, other) => format!("no HTTP answer: {}", failure_text(other)),
    }
}

fn http_cause(request: &ProbeRequest, answer: &HttpAnswer) -> String {
    if let Some(code) = answer.header("x-peergate-reason") {
        let explanation = Reason::ALL
            .iter()
            .find(|r| r.code() == code)
            .map_or("a reason this peergate does not know", |r| r.explain());
        return format!(
            "peergate refused the request: {code}: {explanation} (`peergate audit --policy DIR --cert CERT --host {}` shows every check)",
            request.host
        );
    }
    match answer.status {
        404 => format!("the gateway has no route for Host {} {}: check the VirtualService or HTTPRoute and the Gateway's hosts", request.host, request.target.path),
        503 => "the gateway could not reach the backend (no healthy upstream): check the backend's Service and endpoints".into(),
        500 => "the gateway failed the request: a Wasm plugin that did not start answers 500 (peergate's log line `peergate: rejecting configuration` says why; `peergate audit --policy` reads the same configuration)".into(),
        status => format!("the server answered {status}"),
    }
}
