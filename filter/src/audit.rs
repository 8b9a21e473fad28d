//! Audits: the decision the filter would take on a certificate, with every check it makes
//! spelled out for people. The verdict is [`Policy::decide`]'s own; the checks are computed by
//! the same helpers the decision uses, and run to the end so a report shows every problem, not
//! only the first.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::clock::{rfc3339_millis, rfc3339_seconds};
use crate::config::Mode;
use crate::decision_log::Verdict;
use crate::der::check_certificate_framing;
use crate::inspect::signature_algorithm_name;
use crate::pattern::SanAllowList;
use crate::peer::{colon_hex, PeerSummary, San};
use crate::policy::{
    authority_key_id, best_issuer_attempt, is_expired, is_not_yet_valid, unix_seconds,
    within_window, DeniedEncoding, IssuerAttempt, KeyIdComparison, NameOutcome, NameRule, Policy,
    Reason, RouteChoice, Rule, TrustedIssuer,
};
use crate::profile::key_description;
use crate::request_path::{canonical, path_part};
use crate::routes::{RequestLine, Route};
use crate::signature::SignatureFailure;

/// The checks, in the order the filter makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The certificate is X.509 DER with a readable SAN extension.
    Parse,
    /// A trusted issuer's subject equals the leaf's issuer name.
    IssuerName,
    /// The leaf's authority key identifier equals that issuer's subject key identifier.
    IssuerKeyId,
    /// The leaf's signature verifies under that issuer's key.
    IssuerSignature,
    /// The issuer's chain to `trustAnchors` (verified when the configuration was compiled).
    IssuerChain,
    /// The leaf is not a CA certificate (client profile).
    BasicConstraints,
    /// The leaf's key usages allow TLS client authentication (client profile).
    KeyUsage,
    /// Every critical extension is one the filter reads (client profile).
    CriticalExtensions,
    /// An RSA key has at least 2048 bits.
    KeySize,
    /// The leaf's names are inside the issuer's nameConstraints.
    NameConstraints,
    /// notBefore is not in the future.
    NotBefore,
    /// notAfter is not in the past.
    NotAfter,
    /// The issuer that signed the leaf, and every CA above it, is inside its validity window.
    IssuerValidity,
    /// Neither the leaf nor a CA above it is on a CRL.
    Revocation,
    /// The serial number is not on `deniedSerials`.
    DeniedSerial,
    /// The fingerprint is not on `deniedFingerprints`.
    DeniedFingerprint,
    /// Some allow-list covers the authority.
    HostRule,
    /// A SAN matches that allow-list.
    San,
    /// The subject matches `allowedSubjects` (when no SAN did).
    Subject,
    /// Every SAN is inside the signing issuer's `scope`.
    IssuerScope,
    /// The request's path is canonical and its route admits the method (and the peer, by the
    /// route's own names).
    Route,
}

impl CheckName {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Parse => "parse",
            CheckName::IssuerName => "issuer_name",
            CheckName::IssuerKeyId => "issuer_key_id",
            CheckName::IssuerSignature => "issuer_signature",
            CheckName::IssuerChain => "issuer_chain",
            CheckName::BasicConstraints => "basic_constraints",
            CheckName::KeyUsage => "key_usage",
            CheckName::CriticalExtensions => "critical_extensions",
            CheckName::KeySize => "key_size",
            CheckName::NameConstraints => "name_constraints",
            CheckName::NotBefore => "not_before",
            CheckName::NotAfter => "not_after",
            CheckName::IssuerValidity => "issuer_validity",
            CheckName::Revocation => "revocation",
            CheckName::DeniedSerial => "denied_serial",
            CheckName::DeniedFingerprint => "denied_fingerprint",
            CheckName::HostRule => "host_rule",
            CheckName::San => "san",
            CheckName::Subject => "subject",
            CheckName::IssuerScope => "issuer_scope",
            CheckName::Route => "route",
        }
    }
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed; the filter denies for its `reason` if no earlier check failed.
    Fail,
    /// The check could not be made (an earlier one decides) or does not apply.
    Skip,
}

/// One check of an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which check.
    pub check: CheckName,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What was compared, for people.
    pub detail: String,
    /// The denial reason this check gives when it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// The peer as an audit report shows it: [`PeerSummary`] with readable times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerReport {
    /// Subject DN.
    pub subject: String,
    /// Subject DN in RFC 4514 form (most specific first), as `allowedSubjects` takes it.
    pub subject_rfc4514: String,
    /// Issuer DN.
    pub issuer: String,
    /// Every SAN.
    pub sans: Vec<San>,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Whole days from the instant audited to notAfter, rounded toward zero: negative once
    /// expired by a day or more.
    pub days_left: i64,
    /// notAfter is inside the policy's `expiryWarningDays` of the instant audited, or past:
    /// the peers the filter counts as `peergate.expiring` (never with `expiryWarningDays` 0).
    pub expiring: bool,
}

impl PeerReport {
    /// The report of `peer` audited at `now` under `policy`'s expiry window.
    fn of(peer: &PeerSummary, policy: &Policy, now: SystemTime) -> Self {
        PeerReport {
            subject: peer.subject.clone(),
            subject_rfc4514: peer.subject_rfc4514.clone(),
            issuer: peer.issuer.clone(),
            sans: peer.sans.clone(),
            serial: peer.serial.clone(),
            fingerprint: peer.fingerprint.clone(),
            not_before: rfc3339_seconds(peer.not_before),
            not_after: rfc3339_seconds(peer.not_after),
            days_left: (peer.not_after - unix_seconds(now)) / 86_400,
            expiring: policy.days_left(peer.not_after, now).is_some(),
        }
    }
}

/// The audit of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// `allow` or `deny`: what the policy concludes.
    pub verdict: Verdict,
    /// The reason code the filter would log and count.
    pub reason: Reason,
    /// The reason in words.
    pub explanation: &'static str,
    /// The policy's mode.
    pub mode: Mode,
    /// Whether the gateway would refuse the request (a denial in enforce mode).
    pub enforced: bool,
    /// The `:authority` audited.
    pub authority: String,
    /// The request's `:method` and `:path` audited, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The `pathPrefix` of the route that decided, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The instant audited, RFC 3339.
    pub at: String,
    /// The certificate, when it parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerReport>,
    /// Every check, in the filter's order.
    pub checks: Vec<Check>,
}

impl AuditReport {
    /// The first failed check: the one whose reason is the verdict's.
    pub fn deciding_check(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.outcome == Outcome::Fail)
    }
}

/// The authority key id against the chosen issuer's subject key id.
fn key_id_check(cert: &X509Certificate<'_>, chosen: &IssuerAttempt<'_>, which: &str) -> Check {
    let leaf_aki = authority_key_id(cert).map(colon_hex);
    let issuer_ski = chosen.issuer.key_id.as_deref().map(colon_hex);
    match (chosen.key_id, &leaf_aki, &issuer_ski) {
        (KeyIdComparison::Match, Some(aki), _) => pass(
            CheckName::IssuerKeyId,
            format!("authority key id {aki} is {which}'s subject key id"),
        ),
        (KeyIdComparison::Mismatch, Some(aki), Some(ski)) => fail(
            CheckName::IssuerKeyId,
            Reason::IssuerKeyIdMismatch,
            format!(
                "authority key id {aki} is not {which}'s subject key id {ski}: another key issued this certificate"
            ),
        ),
        (_, None, _) => skip(
            CheckName::IssuerKeyId,
            "the certificate has no authority key identifier: the signature decides",
        ),
        (_, Some(_), _) => skip(
            CheckName::IssuerKeyId,
            "the trusted issuer has no subject key identifier: the signature decides",
        ),
    }
}

/// The signature under the chosen issuer's key, as the policy verified it.
fn signature_check(cert: &X509Certificate<'_>, chosen: &IssuerAttempt<'_>, which: &str) -> Check {
    let algorithm = signature_algorithm_name(cert);
    match chosen.signature {
        None => skip(
            CheckName::IssuerSignature,
            "not verified: the key identifiers already differ",
        ),
        Some(Ok(())) => pass(
            CheckName::IssuerSignature,
            format!("{algorithm} signature verifies under {which}'s key"),
        ),
        Some(Err(SignatureFailure::UnsupportedAlgorithm)) => fail(
            CheckName::IssuerSignature,
            Reason::UnsupportedSignatureAlgorithm,
            format!(
                "{algorithm} with {which}'s key is not verifiable here (RSA PKCS#1 v1.5, ECDSA P-256/P-384, Ed25519)"
            ),
        ),
        Some(Err(SignatureFailure::AlgorithmMismatch)) => fail(
            CheckName::IssuerSignature,
            Reason::BadSignature,
            "the signature algorithm outside the signed part differs from the one inside".into(),
        ),
        Some(Err(SignatureFailure::Invalid)) => fail(
            CheckName::IssuerSignature,
            Reason::BadSignature,
            format!(
                "{algorithm} signature does not verify under {which}'s key: a different CA with the same name issued it"
            ),
        ),
    }
}

fn pass(check: CheckName, detail: String) -> Check {
    Check {
        check,
        outcome: Outcome::Pass,
        detail,
        reason: None,
    }
}

fn fail(check: CheckName, reason: Reason, detail: String) -> Check {
    Check {
        check,
        outcome: Outcome::Fail,
        detail,
        reason: Some(reason),
    }
}

fn skip(check: CheckName, detail: &str) -> Check {
    Check {
        check,
        outcome: Outcome::Skip,
        detail: detail.to_owned(),
        reason: None,
    }
}

/// "3 days", "1 day", "5 hours": a rough distance for people.
fn span(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The audit of one certificate, with where it came from (`client.pem[0]`, `xfcc[1]`).
#[derive(Debug, Clone, Serialize)]
pub struct AuditedCertificate {
    /// Where the certificate came from.
    pub source: String,
    /// The report.
    #[serde(flatten)]
    pub report: AuditReport,
}

/// The policy as a report names it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// The file (or, in the browser, the text area) it was read from.
    pub file: String,
    /// What held the configuration (`WasmPlugin istio-system/peergate`, `pluginConfig`).
    pub origin: String,
    /// `enforce` or `audit`.
    pub mode: Mode,
    /// Number of trusted issuer certificates.
    pub trusted_issuers: usize,
    /// Number of trust anchor certificates.
    pub trust_anchors: usize,
    /// Number of CRLs.
    pub crls: usize,
    /// Status of the local reply on a denial.
    pub deny_status: u16,
    /// `expiryWarningDays`: a peer this close to its notAfter is `expiring`.
    pub expiry_warning_days: i64,
    /// The TLS server names the policy is limited to (`protectedServerNames`); absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected_server_names: Option<Vec<String>>,
}

/// A whole audit run: what `peergate audit --json` prints and the browser page shows.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRun {
    /// `allow` when every certificate is allowed.
    pub verdict: Verdict,
    /// The policy.
    pub policy: PolicyInfo,
    /// Each certificate's audit, in input order.
    pub certificates: Vec<AuditedCertificate>,
}

impl Policy {
    /// Audits each `(source, DER)` certificate for a request to `authority` at `at`; the
    /// policy was read from `file`, held by `origin`.
    pub fn audit_run<'a>(
        &self,
        file: &str,
        origin: &str,
        certificates: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        authority: &str,
        request: Option<RequestLine<'_>>,
        at: SystemTime,
    ) -> AuditRun {
        let certificates: Vec<AuditedCertificate> = certificates
            .into_iter()
            .map(|(source, der)| AuditedCertificate {
                source: source.to_owned(),
                report: self.audit(der, authority, request, at),
            })
            .collect();
        let verdict = if certificates
            .iter()
            .all(|c| c.report.verdict == Verdict::Allow)
        {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        AuditRun {
            verdict,
            policy: PolicyInfo {
                file: file.to_owned(),
                origin: origin.to_owned(),
                mode: self.mode(),
                trusted_issuers: self.issuer_count(),
                trust_anchors: self.anchor_count(),
                crls: self.crl_count(),
                deny_status: self.deny_status(),
                expiry_warning_days: self.expiry_warning_days(),
                protected_server_names: self.protected_server_names(),
            },
            certificates,
        }
    }

    /// Audits a leaf certificate (DER) for a request to `authority` (with `request`'s path
    /// and method, when routes are to be judged) at `now`.
    pub fn audit(
        &self,
        der: &[u8],
        authority: &str,
        request: Option<RequestLine<'_>>,
        now: SystemTime,
    ) -> AuditReport {
        let assessment = Arc::new(self.assess(der));
        let decision = self.judge_request(&assessment, authority, request, now);
        let checks = match X509Certificate::from_der(der) {
            Ok(([], cert)) => match (check_certificate_framing(der), &assessment.peer) {
                (Err(detail), _) => unparsable(format!("not DER: {detail}")),
                (Ok(()), Some(peer)) => self.checks(
                    &cert,
                    peer,
                    &assessment.fingerprint,
                    (authority, request),
                    now,
                ),
                (Ok(()), None) => unparsable("the subjectAltName extension is malformed".into()),
            },
            Ok((rest, _)) => {
                unparsable(format!("{} bytes follow the certificate's DER", rest.len()))
            }
            Err(e) => unparsable(format!("not X.509 DER: {e}")),
        };
        AuditReport {
            verdict: Verdict::of(&decision),
            reason: decision.reason,
            explanation: decision.reason.explain(),
            mode: self.mode(),
            enforced: self.refuses(&decision),
            authority: authority.to_owned(),
            request: request.map(|r| format!("{} {}", r.method, r.path)),
            route: decision.route.clone(),
            at: rfc3339_millis(now),
            peer: assessment
                .peer
                .as_ref()
                .map(|peer| PeerReport::of(peer, self, now)),
            checks,
        }
    }

    fn checks(
        &self,
        cert: &X509Certificate<'_>,
        peer: &PeerSummary,
        fingerprint: &[u8; 32],
        (authority, request): (&str, Option<RequestLine<'_>>),
        now: SystemTime,
    ) -> Vec<Check> {
        let mut checks = vec![pass(
            CheckName::Parse,
            format!(
                "X.509 v{}, signed with {}",
                cert.version().0 + 1,
                signature_algorithm_name(cert)
            ),
        )];
        let attempts: Vec<IssuerAttempt<'_>> = self.issuer_attempts(cert).collect();
        let chosen = best_issuer_attempt(attempts.iter().copied());
        // The issuer whose signature verified: name constraints, its validity and the ECDSA
        // twin depend on it.
        let signer = chosen
            .filter(|attempt| attempt.outcome().is_ok())
            .map(|attempt| attempt.issuer);
        checks.extend(self.issuer_checks(cert, peer, &attempts, chosen));
        checks.push(issuer_chain_check(signer));
        checks.extend(self.profile_report(cert));
        checks.push(name_constraints_check(cert, signer));
        checks.extend(validity_checks(peer, now));
        checks.push(issuer_validity_check(signer, now));
        checks.push(self.revocation_check(cert, signer));
        checks.extend(self.deny_list_checks(der_of(cert), cert, peer, fingerprint, signer));
        checks.extend(self.name_checks(peer, authority, request, signer));
        checks
    }

    fn profile_report(&self, cert: &X509Certificate<'_>) -> Vec<Check> {
        let names = [
            CheckName::BasicConstraints,
            CheckName::KeyUsage,
            CheckName::CriticalExtensions,
        ];
        let passed = |check: CheckName| match check {
            CheckName::BasicConstraints => "not a CA certificate".to_owned(),
            CheckName::KeyUsage => "key usages allow TLS client authentication".to_owned(),
            CheckName::CriticalExtensions => {
                "no critical extension the filter does not read".to_owned()
            }
            _ => key_description(cert),
        };
        let mut results = self.profile_checks(cert);
        let mut checks = Vec::new();
        let all = names.iter().copied().chain([CheckName::KeySize]);
        for check in all {
            if check != CheckName::KeySize && !self.client_profile() {
                checks.push(skip(check, "clientProfile is off"));
                continue;
            }
            checks.push(match results.next() {
                Some(Ok(())) => pass(check, passed(check)),
                Some(Err(violation)) => fail(check, violation.reason(), violation.to_string()),
                None => skip(check, "not checked"),
            });
        }
        checks
    }

    fn issuer_checks(
        &self,
        cert: &X509Certificate<'_>,
        peer: &PeerSummary,
        same_named: &[IssuerAttempt<'_>],
        chosen: Option<IssuerAttempt<'_>>,
    ) -> [Check; 3] {
        let Some(chosen) = chosen else {
            return self.no_issuer_checks(peer);
        };
        let which = format!("trustedIssuers[{}]", chosen.issuer.index);
        let also = match same_named.len() {
            1 => String::new(),
            n => format!(" ({n} trusted certificates share this name; this one decides)"),
        };
        let name = pass(
            CheckName::IssuerName,
            format!("issuer {:?} is the subject of {which}{also}", peer.issuer),
        );
        [
            name,
            key_id_check(cert, &chosen, &which),
            signature_check(cert, &chosen, &which),
        ]
    }

    /// The issuer checks when no trusted issuer has the certificate's issuer name.
    fn no_issuer_checks(&self, peer: &PeerSummary) -> [Check; 3] {
        let trusted: Vec<&str> = self
            .trust
            .issuers
            .iter()
            .map(|i| i.subject.as_str())
            .collect();
        let why = "no trusted issuer has this name";
        [
            fail(
                CheckName::IssuerName,
                Reason::UntrustedIssuer,
                format!(
                    "issuer {:?} is not the subject of any trusted issuer (trusted: {})",
                    peer.issuer,
                    trusted.join("; ")
                ),
            ),
            skip(CheckName::IssuerKeyId, why),
            skip(CheckName::IssuerSignature, why),
        ]
    }

    fn deny_list_checks(
        &self,
        der: &[u8],
        cert: &X509Certificate<'_>,
        peer: &PeerSummary,
        fingerprint: &[u8; 32],
        signer: Option<&TrustedIssuer>,
    ) -> [Check; 2] {
        let serial = if self.serial_is_denied(cert.raw_serial()) {
            fail(
                CheckName::DeniedSerial,
                Reason::DeniedSerial,
                format!("serial {} is on deniedSerials", peer.serial),
            )
        } else {
            pass(
                CheckName::DeniedSerial,
                match self.denied_serials.len() {
                    0 => "deniedSerials is empty".to_owned(),
                    n => format!("serial {} is not among {n} denied serials", peer.serial),
                },
            )
        };
        let denied = match signer {
            Some(issuer) => self.denied_encoding(der, cert, fingerprint, issuer),
            None => self
                .fingerprint_is_denied(fingerprint)
                .then_some(DeniedEncoding::Presented),
        };
        let fingerprint = if let Some(denied) = denied {
            fail(
                CheckName::DeniedFingerprint,
                Reason::DeniedFingerprint,
                match denied {
                    DeniedEncoding::Presented => {
                        format!("fingerprint {} is on deniedFingerprints", peer.fingerprint)
                    }
                    DeniedEncoding::EcdsaTwin(twin) => format!(
                        "fingerprint {} is this certificate with its other ECDSA signature value (s replaced by n - s), and it is on deniedFingerprints",
                        crate::peer::hex(&twin)
                    ),
                },
            )
        } else {
            pass(
                CheckName::DeniedFingerprint,
                match self.denied_fingerprints.len() {
                    0 => "deniedFingerprints is empty".to_owned(),
                    n => format!("fingerprint is not among {n} denied fingerprints"),
                },
            )
        };
        [serial, fingerprint]
    }

    fn revocation_check(
        &self,
        cert: &X509Certificate<'_>,
        signer: Option<&TrustedIssuer>,
    ) -> Check {
        let Some(issuer) = signer else {
            return skip(
                CheckName::Revocation,
                "no trusted issuer's signature verified",
            );
        };
        if let Some(why) = &issuer.revoked_link {
            return fail(CheckName::Revocation, Reason::Revoked, why.clone());
        }
        let which = format!("trustedIssuers[{}]", issuer.index);
        let own: Vec<&crate::trust::Crl> = issuer
            .own_crls
            .iter()
            .filter_map(|&i| self.trust.crls.get(i))
            .collect();
        if let Some(crl) = own.iter().find(|crl| crl.lists(cert.raw_serial())) {
            return fail(
                CheckName::Revocation,
                Reason::Revoked,
                format!(
                    "serial {} is on crls[{}], signed by {which}",
                    crate::peer::hex(cert.raw_serial()),
                    crl.index
                ),
            );
        }
        let consulted: Vec<String> = issuer
            .consulted_crls
            .iter()
            .filter_map(|&i| self.trust.crls.get(i))
            .map(|crl| format!("crls[{}]", crl.index))
            .collect();
        pass(
            CheckName::Revocation,
            if consulted.is_empty() {
                format!("no CRL from {which} or the CAs above it")
            } else {
                format!(
                    "on none of {} ({} from {which})",
                    consulted.join(", "),
                    own.len()
                )
            },
        )
    }

    /// The rule for the authority, the route check, then the names that decide: the
    /// route's own, when it has them, else the host's or the top level's.
    fn name_checks(
        &self,
        peer: &PeerSummary,
        authority: &str,
        request: Option<RequestLine<'_>>,
        signer: Option<&TrustedIssuer>,
    ) -> Vec<Check> {
        let scope = signer.and_then(|issuer| issuer.scope.as_ref());
        let rule = self.rule_for(authority);
        let (field, names) = match rule {
            Rule::Host(host, names) => (format!("hosts.{host}"), names),
            Rule::Default(names) => (String::new(), names),
            Rule::Missing => {
                let why = "no rule applies";
                return vec![
                    fail(
                        CheckName::HostRule,
                        Reason::NoRuleForHost,
                        format!(
                            "authority {} has no hosts entry and there is no top-level allowedSans or allowedSubjects",
                            shown_authority(authority)
                        ),
                    ),
                    skip(CheckName::Route, why),
                    skip(CheckName::San, why),
                    skip(CheckName::Subject, why),
                    skip(CheckName::IssuerScope, why),
                ];
            }
        };
        let applies = if field.is_empty() {
            "the top-level rule".to_owned()
        } else {
            field.clone()
        };
        let mut checks = vec![pass(
            CheckName::HostRule,
            format!(
                "authority {}: {applies} applies",
                shown_authority(authority)
            ),
        )];
        let choice = self.route_for(rule, request);
        if let RouteChoice::Route(route) = choice {
            if let Some(own) = &route.names {
                let named = self.named_checks(
                    peer,
                    own,
                    format!("the route {:?}", route.path),
                    scope,
                    signer,
                );
                checks.push(route_names_check(route, &named, request));
                checks.extend(named);
                return checks;
            }
        }
        checks.push(route_check(
            choice,
            request,
            self.routes_for(rule).is_some(),
        ));
        checks.extend(self.named_checks(peer, names, field, scope, signer));
        checks
    }

    /// The san, subject and scope checks of one rule (`field` names it in the details).
    fn named_checks(
        &self,
        peer: &PeerSummary,
        rule: &NameRule,
        field: String,
        scope: Option<&SanAllowList>,
        signer: Option<&TrustedIssuer>,
    ) -> [Check; 3] {
        let outcome = rule.judge(peer, scope);
        let which = signer.map_or(String::new(), |i| format!("trustedIssuers[{}]", i.index));
        if let (Some(scope), NameOutcome::SanOutsideScope(position)) = (scope, outcome) {
            let why = "a SAN is outside the signing issuer's scope, which decides";
            return [
                skip(CheckName::San, why),
                skip(CheckName::Subject, why),
                san_outside_scope(peer, position, scope, &which),
            ];
        }
        let names = NameReport {
            peer,
            rule,
            field,
            admitted: rule
                .sans
                .as_ref()
                .and_then(|list| list.first_match(&peer.sans))
                .map(|(index, pattern, san)| (index, pattern.to_string(), san.to_string())),
            subject_match: rule
                .subjects
                .as_ref()
                .and_then(|list| list.first_match(&peer.subject_rdns))
                .map(|(index, pattern)| (index, pattern.to_string())),
        };
        [
            names.san_check(),
            names.subject_check(),
            issuer_scope_check(peer, scope, outcome, &which),
        ]
    }
}

/// An authority as the checks show it.
fn shown_authority(authority: &str) -> &str {
    if authority.is_empty() {
        "(none)"
    } else {
        authority
    }
}

/// The route check for a route with names of its own: they decide, and refusing the peer is
/// the route's.
fn route_names_check(
    route: &Route<NameRule>,
    named: &[Check],
    request: Option<RequestLine<'_>>,
) -> Check {
    let refused = named
        .iter()
        .any(|c| c.outcome == Outcome::Fail && c.reason == Some(Reason::SanNotAllowed));
    if refused {
        fail(
            CheckName::Route,
            Reason::RouteNotAllowed,
            format!(
                "route {:?}: no SAN or subject of the peer is among its names",
                route.path
            ),
        )
    } else {
        pass(
            CheckName::Route,
            format!(
                "{}: route {:?} admits the method; its own names decide",
                request.map(request_text).unwrap_or_default(),
                route.path
            ),
        )
    }
}

/// `GET /path`.
fn request_text(request: RequestLine<'_>) -> String {
    format!("{} {}", request.method, request.path)
}

/// The route check for a route without names of its own (or none); `has_routes`: the rule
/// has any.
fn route_check(
    choice: RouteChoice<'_>,
    request: Option<RequestLine<'_>>,
    has_routes: bool,
) -> Check {
    let shown = request.map(request_text).unwrap_or_default();
    match choice {
        RouteChoice::NoRoutes if !has_routes => {
            pass(CheckName::Route, "the rule has no routes".into())
        }
        RouteChoice::NoRoutes if request.is_none() => skip(
            CheckName::Route,
            "no request path given: routes are not judged",
        ),
        RouteChoice::NoRoutes => pass(
            CheckName::Route,
            format!("{shown}: no route applies; the rule's names decide"),
        ),
        RouteChoice::Unnormalized => {
            let problem = request
                .map(|r| canonical(path_part(r.path)).err())
                .unwrap_or_default();
            fail(
                CheckName::Route,
                Reason::UnnormalizedPath,
                format!("the path is not canonical ({problem:?}): it has other spellings, so no route is chosen"),
            )
        }
        RouteChoice::UnmatchedOnly => fail(
            CheckName::Route,
            Reason::RouteNotAllowed,
            format!("{shown}: no route matches and the rule takes routes only"),
        ),
        RouteChoice::MethodRefused(route) => fail(
            CheckName::Route,
            Reason::RouteNotAllowed,
            format!(
                "route {:?} admits {}, not {}",
                route.path,
                route.methods.as_deref().unwrap_or_default().join(", "),
                request.map(|r| r.method).unwrap_or_default()
            ),
        ),
        RouteChoice::Route(route) => pass(
            CheckName::Route,
            format!(
                "{shown}: route {:?} admits the method; the rule's names decide",
                route.path
            ),
        ),
    }
}

/// What a rule's lists matched, for the san and subject checks.
struct NameReport<'a> {
    peer: &'a PeerSummary,
    rule: &'a NameRule,
    /// `hosts.<host>` for a host's rule, empty for the top-level one.
    field: String,
    /// The first SAN `allowedSans` admits, whatever the scope: the pattern's index and text,
    /// the SAN.
    admitted: Option<(usize, String, String)>,
    /// The `allowedSubjects` pattern the subject matches: its index and text.
    subject_match: Option<(usize, String)>,
}

impl NameReport<'_> {
    /// A list's name as the configuration writes it (`hosts.h.allowedSans`).
    fn named(&self, list: &str) -> String {
        if self.field.is_empty() {
            list.to_owned()
        } else {
            format!("{}.{list}", self.field)
        }
    }

    fn san_check(&self) -> Check {
        let sans_field = self.named("allowedSans");
        let Some(list) = &self.rule.sans else {
            return skip(
                CheckName::San,
                &format!("{} has no allowedSans", self.field),
            );
        };
        if let Some((index, pattern, san)) = &self.admitted {
            return pass(
                CheckName::San,
                format!("{san} matches {sans_field}[{index}] {pattern:?}"),
            );
        }
        if self.subject_match.is_some() {
            return skip(
                CheckName::San,
                "no SAN matches allowedSans; the subject decides",
            );
        }
        let patterns: Vec<String> = list.patterns().iter().map(ToString::to_string).collect();
        let subjects = self.rule.subjects.as_ref().map_or(String::new(), |list| {
            let shown: Vec<String> = list.patterns().iter().map(ToString::to_string).collect();
            format!(
                "; nor is the subject {:?} among {} [{}]",
                self.peer.subject_rfc4514,
                self.named("allowedSubjects"),
                shown.join("; ")
            )
        });
        let sans = if self.peer.sans.is_empty() {
            "the certificate has no SAN".to_owned()
        } else {
            let sans: Vec<String> = self.peer.sans.iter().map(San::to_string).collect();
            format!("none of {}", sans.join(", "))
        };
        fail(
            CheckName::San,
            Reason::SanNotAllowed,
            format!(
                "{sans} matches {sans_field} [{}]{subjects}",
                patterns.join(", ")
            ),
        )
    }

    fn subject_check(&self) -> Check {
        let subjects_field = self.named("allowedSubjects");
        let Some(list) = &self.rule.subjects else {
            return skip(CheckName::Subject, "no allowedSubjects applies");
        };
        if self.admitted.is_some() {
            return skip(CheckName::Subject, "a SAN already matched");
        }
        match &self.subject_match {
            Some((index, pattern)) => pass(
                CheckName::Subject,
                format!(
                    "subject {:?} matches {subjects_field}[{index}] {pattern:?}",
                    self.peer.subject_rfc4514,
                ),
            ),
            None if self.rule.sans.is_none() => {
                let shown: Vec<String> = list.patterns().iter().map(ToString::to_string).collect();
                fail(
                    CheckName::Subject,
                    Reason::SanNotAllowed,
                    format!(
                        "subject {:?} matches none of {subjects_field} [{}]",
                        self.peer.subject_rfc4514,
                        shown.join("; ")
                    ),
                )
            }
            None => skip(CheckName::Subject, "the subject matches no allowedSubjects"),
        }
    }
}

/// The issuer_scope check failing on the SAN at `position`, outside the signer's scope.
fn san_outside_scope(
    peer: &PeerSummary,
    position: usize,
    scope: &SanAllowList,
    which: &str,
) -> Check {
    let outside = peer
        .sans
        .get(position)
        .map_or(String::new(), San::to_string);
    let shown: Vec<String> = scope.patterns().iter().map(ToString::to_string).collect();
    fail(
        CheckName::IssuerScope,
        Reason::OutsideIssuerScope,
        format!(
            "{outside} is outside {which}'s scope [{}]: a scoped issuer vouches only for certificates whose every SAN is inside its scope",
            shown.join(", ")
        ),
    )
}

/// The issuer_scope check once no SAN is outside the scope.
fn issuer_scope_check(
    peer: &PeerSummary,
    scope: Option<&SanAllowList>,
    outcome: NameOutcome,
    which: &str,
) -> Check {
    match (scope, outcome) {
        (_, NameOutcome::NotAllowed) => skip(CheckName::IssuerScope, "no name was admitted"),
        (None, _) => pass(CheckName::IssuerScope, format!("{which} has no scope")),
        (Some(scope), NameOutcome::SubjectUnderScope) => {
            let shown: Vec<String> = scope.patterns().iter().map(ToString::to_string).collect();
            fail(
                CheckName::IssuerScope,
                Reason::OutsideIssuerScope,
                format!(
                    "only the subject was admitted, and a subject match never passes a scoped issuer ({which}'s scope [{}])",
                    shown.join(", ")
                ),
            )
        }
        (Some(_), _) => {
            let sans: Vec<String> = peer.sans.iter().map(San::to_string).collect();
            pass(
                CheckName::IssuerScope,
                format!("every SAN ({}) is inside {which}'s scope", sans.join(", ")),
            )
        }
    }
}

fn issuer_chain_check(signer: Option<&TrustedIssuer>) -> Check {
    let Some(issuer) = signer else {
        return skip(
            CheckName::IssuerChain,
            "no trusted issuer's signature verified",
        );
    };
    if issuer.chain.len() <= 1 {
        return pass(
            CheckName::IssuerChain,
            format!(
                "trustedIssuers[{}] is trusted directly (no trustAnchors)",
                issuer.index
            ),
        );
    }
    let links: Vec<String> = issuer
        .chain
        .iter()
        .map(|link| format!("{} {:?}", link.label, link.subject))
        .collect();
    pass(
        CheckName::IssuerChain,
        format!(
            "{} (each link verified when the configuration was compiled)",
            links.join(" ← ")
        ),
    )
}

fn validity_checks(peer: &PeerSummary, now: SystemTime) -> [Check; 2] {
    let now_secs = unix_seconds(now);
    let at = rfc3339_millis(now);
    let not_before = rfc3339_seconds(peer.not_before);
    let not_after = rfc3339_seconds(peer.not_after);
    let before = if is_not_yet_valid(peer, now) {
        fail(
            CheckName::NotBefore,
            Reason::NotYetValid,
            format!(
                "notBefore {not_before} is {} after {at}",
                span(peer.not_before - now_secs)
            ),
        )
    } else {
        pass(
            CheckName::NotBefore,
            format!("notBefore {not_before} is not after {at}"),
        )
    };
    let after = if is_expired(peer, now) {
        fail(
            CheckName::NotAfter,
            Reason::Expired,
            format!(
                "notAfter {not_after} is {} before {at}",
                span(now_secs - peer.not_after)
            ),
        )
    } else {
        pass(
            CheckName::NotAfter,
            format!(
                "notAfter {not_after}: {} left",
                span(peer.not_after - now_secs)
            ),
        )
    };
    [before, after]
}

fn der_of<'c>(cert: &'c X509Certificate<'_>) -> &'c [u8] {
    cert.as_raw()
}

fn name_constraints_check(cert: &X509Certificate<'_>, signer: Option<&TrustedIssuer>) -> Check {
    let Some(issuer) = signer else {
        return skip(
            CheckName::NameConstraints,
            "no trusted issuer's signature verified",
        );
    };
    let constrained: Vec<_> = issuer
        .chain
        .iter()
        .filter_map(|link| link.name_constraints.as_ref().map(|c| (link, c)))
        .collect();
    if constrained.is_empty() {
        return pass(
            CheckName::NameConstraints,
            format!(
                "no CA of trustedIssuers[{}]'s chain has nameConstraints",
                issuer.index
            ),
        );
    }
    for (link, constraints) in &constrained {
        if let Err(violation) = constraints.check(cert) {
            return fail(
                CheckName::NameConstraints,
                Reason::OutsideNameConstraints,
                format!("{} ({}): {violation}", link.label, link.subject),
            );
        }
    }
    let shown: Vec<String> = constrained
        .iter()
        .map(|(link, c)| format!("{}: {}", link.label, c.describe()))
        .collect();
    pass(
        CheckName::NameConstraints,
        format!(
            "every name is inside the nameConstraints of {}",
            shown.join("; ")
        ),
    )
}

fn issuer_validity_check(signer: Option<&TrustedIssuer>, now: SystemTime) -> Check {
    let Some(issuer) = signer else {
        return skip(
            CheckName::IssuerValidity,
            "no trusted issuer's signature verified",
        );
    };
    let windows: Vec<String> = issuer
        .chain
        .iter()
        .map(|link| {
            format!(
                "{} is valid from {} to {}",
                link.label,
                rfc3339_seconds(link.not_before),
                rfc3339_seconds(link.not_after)
            )
        })
        .collect();
    match issuer
        .chain
        .iter()
        .find(|link| !within_window((link.not_before, link.not_after), now))
    {
        None => pass(CheckName::IssuerValidity, windows.join("; ")),
        Some(link) => fail(
            CheckName::IssuerValidity,
            Reason::IssuerExpired,
            format!(
                "{} ({}) is valid from {} to {}, not at {}",
                link.label,
                link.subject,
                rfc3339_seconds(link.not_before),
                rfc3339_seconds(link.not_after),
                rfc3339_millis(now)
            ),
        ),
    }
}

fn unparsable(detail: String) -> Vec<Check> {
    let why = "the certificate did not parse";
    vec![
        fail(CheckName::Parse, Reason::UnparsableCertificate, detail),
        skip(CheckName::IssuerName, why),
        skip(CheckName::IssuerKeyId, why),
        skip(CheckName::IssuerSignature, why),
        skip(CheckName::IssuerChain, why),
        skip(CheckName::BasicConstraints, why),
        skip(CheckName::KeyUsage, why),
        skip(CheckName::CriticalExtensions, why),
        skip(CheckName::KeySize, why),
        skip(CheckName::NameConstraints, why),
        skip(CheckName::NotBefore, why),
        skip(CheckName::NotAfter, why),
        skip(CheckName::IssuerValidity, why),
        skip(CheckName::Revocation, why),
        skip(CheckName::DeniedSerial, why),
        skip(CheckName::DeniedFingerprint, why),
        skip(CheckName::HostRule, why),
        skip(CheckName::San, why),
        skip(CheckName::Subject, why),
        skip(CheckName::IssuerScope, why),
    ]
}
