//! The executable policy: `compile()` turns a [`PluginConfig`] into a [`Policy`], and
//! [`Policy::decide`] judges a peer certificate for one request.
//!
//! Deciding is split in two so the proxy can cache the expensive half:
//! [`Policy::assess`] depends only on the certificate (parsing, issuer signature, deny lists) and
//! [`Policy::judge`] adds the request's authority and the current time (validity, SANs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

pub use crate::clock::unix_seconds;
use crate::clock::{is_after_second, is_before_second};
use crate::config::{ForwardIdentity, Layer, Mode, ParseError, PluginConfig, RouteConfig};
use crate::der::{check_certificate_framing, with_signature_value};
use crate::pattern::{PatternError, SanAllowList};
use crate::peer::{fingerprint, normalize_serial, parse_hex, PeerSummary};
use crate::profile::{
    check_basic_constraints, check_critical_extensions, check_key_size, check_key_usage,
    ProfileViolation,
};
pub use crate::reason::Reason;
use crate::request_path::{canonical, path_part};
use crate::routes::{self, RequestLine, Route, RouteError, RouteTable};
use crate::signature::{ecdsa_twin, SignatureFailure};
use crate::subject::{SubjectAllowList, SubjectPatternError};
pub(crate) use crate::trust::TrustedIssuer;
use crate::trust::{compile_trust, Trust, TrustError};
use crate::verifier::Verifier;

/// The line the filter logs when it refuses a configuration; `peergate audit` prints the same.
/// The message quotes parts of the configuration (an unknown field's name, say), so control
/// characters are escaped and the length is capped: whoever can write the pluginConfig must not
/// be able to forge further log lines, decision lines included, or flood the log.
pub fn rejection_log_line(error: &CompileError) -> String {
    let mut line = String::from("peergate: rejecting configuration: ");
    let message = error.to_string();
    for (shown, c) in message.chars().enumerate() {
        if shown == MAX_REJECTION_MESSAGE_CHARS {
            line.push_str("… (truncated)");
            break;
        }
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// How much of a rejection message is logged.
const MAX_REJECTION_MESSAGE_CHARS: usize = 1024;

/// Status of the local reply when `denyStatus` is absent.
pub const DEFAULT_DENY_STATUS: u16 = 403;

/// Why the configuration cannot become a policy. Every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// Not JSON, or not of the expected shape (unknown field, wrong type).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// `trustedIssuers` is empty.
    #[error("trustedIssuers: at least one CA certificate is required")]
    NoTrustedIssuers,
    /// `trustedIssuers`, `trustAnchors` or `crls` cannot be used.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// Neither `allowedSans`, `allowedSubjects` nor `hosts` says who may pass.
    #[error("allowedSans: required (or allowedSubjects) unless hosts gives every authority its own rule")]
    NoAllowList,
    /// A `hosts` entry with neither list.
    #[error("hosts.{host}: give allowedSans or allowedSubjects (or both)")]
    EmptyHostRule {
        /// The key as written.
        host: String,
    },
    /// A subject pattern is malformed.
    #[error("{field}: {source}")]
    BadSubjectPattern {
        /// The field and index, e.g. `allowedSubjects[0]`.
        field: String,
        /// What is wrong with it.
        source: SubjectPatternError,
    },
    /// An allow-list is present but empty, which would deny everyone.
    #[error("{field}: the list is empty; list at least one pattern")]
    EmptyAllowList {
        /// `allowedSans` or `hosts.<host>.allowedSans`.
        field: String,
    },
    /// A SAN pattern is malformed.
    #[error("{field}: {source}")]
    BadPattern {
        /// The field and index, e.g. `allowedSans[2]`.
        field: String,
        /// What is wrong with it.
        source: PatternError,
    },
    /// A key of `hosts` is not a bare host name.
    #[error("hosts.{host}: {why}")]
    BadHost {
        /// The key as written.
        host: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A serial number is not hex.
    #[error("deniedSerials[{index}]: {value:?} is not a hex serial number")]
    BadSerial {
        /// Position in `deniedSerials`.
        index: usize,
        /// The entry as written.
        value: String,
    },
    /// A fingerprint is not 32 bytes of hex.
    #[error("deniedFingerprints[{index}]: {value:?} is not a SHA-256 fingerprint (64 hex digits)")]
    BadFingerprint {
        /// Position in `deniedFingerprints`.
        index: usize,
        /// The entry as written.
        value: String,
    },
    /// `expiryWarningDays` is beyond ten years.
    #[error("expiryWarningDays: {0} days is more than ten years (0 turns the warning off)")]
    BadExpiryWarningDays(u32),
    /// `denyStatus` is not an HTTP error status.
    #[error("denyStatus: {0} is not an HTTP error status (400-599)")]
    BadDenyStatus(u16),
    /// `protectedServerNames` is present but empty.
    #[error("protectedServerNames: the list is empty; leave it out to decide every connection")]
    NoProtectedServerNames,
    /// An entry of `protectedServerNames` is not a host name.
    #[error("protectedServerNames[{index}]: {value:?} {why}")]
    BadProtectedServerName {
        /// Position in the list.
        index: usize,
        /// The entry as written.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `hosts` at `layer: connection` in a form where one admitted connection could carry
    /// requests for another host's rule (the rule is picked by SNI, requests are routed by
    /// their own `Host`).
    #[error("hosts: with layer connection {why}")]
    HostRulesAtConnectionLayer {
        /// What the configuration does.
        why: &'static str,
    },
    /// `protectedServerNames` with `layer: connection`: a connection for an unprotected name
    /// passes untouched and may then carry requests for a protected host, which a network
    /// filter never sees.
    #[error("protectedServerNames: with layer connection a connection opened for another server name would pass untouched and could then carry requests for a protected host (HTTP/2 connection coalescing sends exactly that), which a network filter never sees; use layer request on a shared gateway, or a gateway of its own (no protectedServerNames)")]
    ProtectedServerNamesAtConnectionLayer,
    /// A `routes` entry, or `routesOnly`, is wrong (the message names the field).
    #[error("{0}")]
    BadRoute(String),
    /// `forwardIdentity.headerPrefix` is not a lower-case header-name prefix ending in `-`.
    #[error("forwardIdentity.headerPrefix: {0:?} must be lower-case letters, digits and '-', end with '-', and not be a prefix of headers Envoy or Istio set (x-envoy-, x-forwarded-, x-b3-, x-request-id)")]
    BadHeaderPrefix(String),
    /// `routes` at `layer: connection`, which never sees a path.
    #[error("routes: need layer request (a network filter never sees a request's path or method)")]
    RoutesAtConnectionLayer,
    /// `denyStatus` with `layer: connection`, where a denial closes the connection.
    #[error("denyStatus: with layer connection a refused peer's connection is closed; there is no HTTP reply to give a status (remove denyStatus or use layer request)")]
    DenyStatusAtConnectionLayer,
}

/// The compiled, executable form of a [`PluginConfig`].
#[derive(Debug, Clone)]
pub struct Policy {
    /// This compilation's own number: an assessment is judged by the policy that made it.
    id: u64,
    mode: Mode,
    layer: Layer,
    pub(crate) trust: Trust,
    default_rule: Option<NameRule>,
    hosts: HashMap<String, NameRule>,
    /// The top-level `routes` (empty: none).
    default_routes: RouteTable<NameRule>,
    /// `forwardIdentity`.
    forward_identity: ForwardIdentity,
    /// `hosts.<host>.routes`, for the hosts that have them.
    host_routes: HashMap<String, RouteTable<NameRule>>,
    pub(crate) denied_serials: HashSet<Vec<u8>>,
    pub(crate) denied_fingerprints: HashSet<[u8; 32]>,
    deny_status: u16,
    log_allowed: bool,
    protected_server_names: Option<HashSet<String>>,
    client_profile: bool,
    /// `expiryWarningDays` in seconds (0: off).
    expiry_window: i64,
    /// Who checks the leaf's signature (the chains, CRLs and anchors are checked in process
    /// when the policy is compiled).
    verifier: Verifier,
}

/// The next [`Policy`]'s number.
static NEXT_POLICY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Who may pass on an authority: SAN patterns, subject patterns, or both.
#[derive(Debug, Clone)]
pub(crate) struct NameRule {
    pub(crate) sans: Option<SanAllowList>,
    pub(crate) subjects: Option<SubjectAllowList>,
}

/// The route a request falls under.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RouteChoice<'p> {
    /// The rule has no routes, no route matches (and it is not `routesOnly`), or there is no
    /// request: the rule's names decide.
    NoRoutes,
    /// The path is not canonical.
    Unnormalized,
    /// No route matches under `routesOnly`.
    UnmatchedOnly,
    /// This route matches and admits the method.
    Route(&'p Route<NameRule>),
    /// This route matches and refuses the method.
    MethodRefused(&'p Route<NameRule>),
}

/// The rule that applies to an authority, and where it comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule<'p> {
    /// `hosts.<host>`.
    Host(&'p str, &'p NameRule),
    /// The top-level `allowedSans` / `allowedSubjects`.
    Default(&'p NameRule),
    /// Nothing covers the authority.
    Missing,
}

/// What an allowed peer passed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerIdentity {
    /// The SAN at this position of the peer's SANs matched the allow-list.
    San(usize),
    /// Its subject matched `allowedSubjects`.
    Subject,
}

/// How a peer's names fared against a rule and its issuer's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameOutcome {
    /// A SAN the rule admits (pattern index, the SAN's position among the peer's) is inside
    /// the issuer's scope (or there is no scope).
    San(usize, usize),
    /// No SAN is admitted, the subject is, and the issuer has no scope.
    Subject(usize),
    /// A SAN of the peer (its position in the peer's SANs) is outside the issuer's scope: a
    /// scope bounds the whole certificate, whatever else it names.
    SanOutsideScope(usize),
    /// Only the subject is admitted, and the issuer is scoped (a subject never escapes a scope).
    SubjectUnderScope,
    /// Nothing is admitted.
    NotAllowed,
}

impl NameOutcome {
    /// Who the peer passed as: the SAN that matched, or its subject.
    pub(crate) fn identity(self) -> Option<PeerIdentity> {
        match self {
            NameOutcome::San(_, position) => Some(PeerIdentity::San(position)),
            NameOutcome::Subject(_) => Some(PeerIdentity::Subject),
            _ => None,
        }
    }

    /// The reason a decision gives for it.
    pub(crate) fn reason(self) -> Reason {
        match self {
            NameOutcome::San(..) | NameOutcome::Subject(_) => Reason::Allowed,
            NameOutcome::SanOutsideScope(_) | NameOutcome::SubjectUnderScope => {
                Reason::OutsideIssuerScope
            }
            NameOutcome::NotAllowed => Reason::SanNotAllowed,
        }
    }
}

impl NameRule {
    /// Judges the peer's SANs and subject; `scope` is the signing issuer's. Under a scope every
    /// SAN, of every form, must be inside it: a leaf that names another partner's identity
    /// beside its own would otherwise carry both to the backend.
    pub(crate) fn judge(&self, peer: &PeerSummary, scope: Option<&SanAllowList>) -> NameOutcome {
        if let Some(scope) = scope {
            if let Some(outside) = peer
                .sans
                .iter()
                .position(|san| !scope.admits(std::slice::from_ref(san)))
            {
                return NameOutcome::SanOutsideScope(outside);
            }
        }
        if let Some((index, _, san)) = self
            .sans
            .as_ref()
            .and_then(|sans| sans.first_match(&peer.sans))
        {
            let position = peer
                .sans
                .iter()
                .position(|s| std::ptr::eq(s, san))
                .unwrap_or_default();
            return NameOutcome::San(index, position);
        }
        match self
            .subjects
            .as_ref()
            .and_then(|subjects| subjects.first_match(&peer.subject_rdns))
        {
            Some(_) if scope.is_some() => NameOutcome::SubjectUnderScope,
            Some((index, _)) => NameOutcome::Subject(index),
            None => NameOutcome::NotAllowed,
        }
    }
}

/// How the leaf's authority key identifier compares with a trusted issuer's key identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyIdComparison {
    /// Both present and equal.
    Match,
    /// Both present and different: this issuer did not sign the leaf.
    Mismatch,
    /// One side has none: only the signature can tell.
    Absent,
}

/// One same-named trusted issuer tried against a leaf.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IssuerAttempt<'p> {
    pub(crate) issuer: &'p TrustedIssuer,
    pub(crate) key_id: KeyIdComparison,
    /// `None` when the key identifiers already rule this issuer out.
    pub(crate) signature: Option<Result<(), SignatureFailure>>,
}

impl IssuerAttempt<'_> {
    /// What this attempt alone concludes.
    pub(crate) fn outcome(&self) -> Result<(), Reason> {
        match self.signature {
            None => Err(Reason::IssuerKeyIdMismatch),
            Some(Ok(())) => Ok(()),
            Some(Err(SignatureFailure::UnsupportedAlgorithm)) => {
                Err(Reason::UnsupportedSignatureAlgorithm)
            }
            Some(Err(SignatureFailure::AlgorithmMismatch | SignatureFailure::Invalid)) => {
                Err(Reason::BadSignature)
            }
        }
    }
}

/// Parses the JSON `pluginConfig` and compiles it.
pub fn compile_json(bytes: &[u8]) -> Result<Policy, CompileError> {
    compile(&PluginConfig::from_json(bytes)?)
}

/// Turns the configuration into an executable policy, or says which field is wrong.
pub fn compile(config: &PluginConfig) -> Result<Policy, CompileError> {
    if config.trusted_issuers.is_empty() {
        return Err(CompileError::NoTrustedIssuers);
    }
    let trust = compile_trust(
        &config.trusted_issuers,
        &config.trust_anchors,
        &config.crls,
        |field, patterns| {
            compile_allow_list(field, patterns).map_err(|e| match e {
                CompileError::BadPattern { field, source } => (field, source.to_string()),
                other => (
                    field.to_owned(),
                    other
                        .to_string()
                        .split_once(": ")
                        .map_or(String::new(), |(_, why)| why.to_owned()),
                ),
            })
        },
    )?;
    let default_rule = match (&config.allowed_sans, &config.allowed_subjects) {
        (None, None) if config.hosts.is_empty() => return Err(CompileError::NoAllowList),
        (None, None) => None,
        (sans, subjects) => Some(NameRule {
            sans: sans
                .as_deref()
                .map(|list| compile_allow_list("allowedSans", list))
                .transpose()?,
            subjects: subjects
                .as_deref()
                .map(|list| compile_subject_list("allowedSubjects", list))
                .transpose()?,
        }),
    };
    let hosts = compile_hosts(config)?;
    let (default_routes, host_routes) = compile_all_routes(config)?;
    let (denied_serials, denied_fingerprints) = compile_deny_lists(config)?;
    let deny_status = compile_deny_status(config)?;
    if config.layer == Layer::Connection && config.protected_server_names.is_some() {
        return Err(CompileError::ProtectedServerNamesAtConnectionLayer);
    }
    let protected_server_names = config
        .protected_server_names
        .as_deref()
        .map(compile_server_names)
        .transpose()?;
    if config.expiry_warning_days > 3650 {
        return Err(CompileError::BadExpiryWarningDays(
            config.expiry_warning_days,
        ));
    }
    Ok(Policy {
        id: NEXT_POLICY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        mode: config.mode,
        layer: config.layer,
        trust,
        default_rule,
        hosts,
        default_routes,
        host_routes,
        forward_identity: compile_forward_identity(&config.forward_identity)?,
        denied_serials,
        denied_fingerprints,
        deny_status,
        log_allowed: config.log_allowed,
        protected_server_names,
        client_profile: config.client_profile,
        expiry_window: i64::from(config.expiry_warning_days) * 86_400,
        verifier: Verifier::InProcess,
    })
}

/// `forwardIdentity`: a prefix no header Envoy or Istio sets starts with.
fn compile_forward_identity(config: &ForwardIdentity) -> Result<ForwardIdentity, CompileError> {
    let prefix = &config.header_prefix;
    let shape = prefix.len() >= 2
        && prefix.ends_with('-')
        && !prefix.starts_with('-')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    // Removing a prefix's headers must not strip what the proxy itself relies on.
    let theirs = ["x-envoy-", "x-forwarded-", "x-b3-", "x-request-id"]
        .iter()
        .any(|taken| taken.starts_with(prefix.as_str()) || prefix.starts_with(taken));
    if !shape || theirs {
        return Err(CompileError::BadHeaderPrefix(prefix.clone()));
    }
    Ok(config.clone())
}

/// The top-level `routes` and each host's, keyed as `hosts` is; only at the request layer.
type AllRoutes = (RouteTable<NameRule>, HashMap<String, RouteTable<NameRule>>);

fn compile_all_routes(config: &PluginConfig) -> Result<AllRoutes, CompileError> {
    if config.layer == Layer::Connection
        && (!config.routes.is_empty() || config.hosts.values().any(|h| !h.routes.is_empty()))
    {
        return Err(CompileError::RoutesAtConnectionLayer);
    }
    let default_routes = compile_routes("", &config.routes, config.routes_only)?;
    let mut host_routes = HashMap::new();
    for (host, rule) in &config.hosts {
        if !rule.routes.is_empty() || rule.routes_only {
            let table = compile_routes(&format!("hosts.{host}."), &rule.routes, rule.routes_only)?;
            host_routes.insert(normalize_authority(host), table);
        }
    }
    Ok((default_routes, host_routes))
}

/// One `routes` list (`field` prefixes its messages: `""` or `hosts.<host>.`).
fn compile_routes(
    field: &str,
    routes: &[RouteConfig],
    only: bool,
) -> Result<RouteTable<NameRule>, CompileError> {
    let names = |index: usize, route: &RouteConfig| -> Result<Option<NameRule>, CompileError> {
        if route.allowed_sans.is_none() && route.allowed_subjects.is_none() {
            return Ok(None);
        }
        let at = |list: &str| format!("{field}routes[{index}].{list}");
        Ok(Some(NameRule {
            sans: route
                .allowed_sans
                .as_deref()
                .map(|list| compile_allow_list(&at("allowedSans"), list))
                .transpose()?,
            subjects: route
                .allowed_subjects
                .as_deref()
                .map(|list| compile_subject_list(&at("allowedSubjects"), list))
                .transpose()?,
        }))
    };
    routes::compile(routes, only, names).map_err(|e| match e {
        RouteError::Names(inner) => inner,
        other => CompileError::BadRoute(format!("{field}{other}")),
    })
}

/// `hosts`, keyed by the normalised host name.
fn compile_hosts(config: &PluginConfig) -> Result<HashMap<String, NameRule>, CompileError> {
    if config.layer == Layer::Connection {
        check_connection_host_rules(config)?;
    }
    let mut hosts = HashMap::new();
    for (host, rule) in &config.hosts {
        let key = check_host_key(host, config.layer)?;
        if rule.allowed_sans.is_empty() && rule.allowed_subjects.is_empty() {
            return Err(CompileError::EmptyHostRule { host: host.clone() });
        }
        let list = NameRule {
            sans: (!rule.allowed_sans.is_empty())
                .then(|| {
                    compile_allow_list(&format!("hosts.{host}.allowedSans"), &rule.allowed_sans)
                })
                .transpose()?,
            subjects: (!rule.allowed_subjects.is_empty())
                .then(|| {
                    compile_subject_list(
                        &format!("hosts.{host}.allowedSubjects"),
                        &rule.allowed_subjects,
                    )
                })
                .transpose()?,
        };
        if hosts.insert(key, list).is_some() {
            return Err(CompileError::BadHost {
                host: host.clone(),
                why: "listed twice (host names are case-insensitive)",
            });
        }
    }
    Ok(hosts)
}

/// `deniedSerials` (normalised) and `deniedFingerprints`.
type DenyLists = (HashSet<Vec<u8>>, HashSet<[u8; 32]>);

fn compile_deny_lists(config: &PluginConfig) -> Result<DenyLists, CompileError> {
    let mut denied_serials = HashSet::new();
    for (index, value) in config.denied_serials.iter().enumerate() {
        let bytes = parse_hex(value.trim()).ok_or_else(|| CompileError::BadSerial {
            index,
            value: value.clone(),
        })?;
        denied_serials.insert(normalize_serial(&bytes));
    }
    let mut denied_fingerprints = HashSet::new();
    for (index, value) in config.denied_fingerprints.iter().enumerate() {
        let digest = parse_hex(value.trim())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| CompileError::BadFingerprint {
                index,
                value: value.clone(),
            })?;
        denied_fingerprints.insert(digest);
    }
    Ok((denied_serials, denied_fingerprints))
}

fn compile_deny_status(config: &PluginConfig) -> Result<u16, CompileError> {
    if config.layer == Layer::Connection && config.deny_status.is_some() {
        return Err(CompileError::DenyStatusAtConnectionLayer);
    }
    let deny_status = config.deny_status.unwrap_or(DEFAULT_DENY_STATUS);
    if !(400..=599).contains(&deny_status) {
        return Err(CompileError::BadDenyStatus(deny_status));
    }
    Ok(deny_status)
}

/// At the connection layer the rule is picked once, by the TLS server name, but every request
/// on the admitted connection is routed by its own `Host`: a peer admitted for host `a` can send
/// `Host: b` wherever one Gateway server (one Envoy filter chain) serves both. The filter cannot
/// see those requests, so it accepts only what holds whatever they carry: one rule for every
/// admitted connection. That is a top-level `allowedSans`, or a single `hosts` entry (then a
/// connection for any other server name has no rule and is refused, and every admitted
/// connection passed the only rule there is). Different rules per host need `layer: request`,
/// or a gateway (and WasmPlugin) per host.
fn check_connection_host_rules(config: &PluginConfig) -> Result<(), CompileError> {
    let top_level = config.allowed_sans.is_some() || config.allowed_subjects.is_some();
    let why = match (config.hosts.len(), top_level) {
        (0, _) | (1, false) => return Ok(()),
        (1, true) => {
            "a host rule beside the top-level allowedSans (or allowedSubjects) would let a connection admitted by one of them send requests for the other's host; the filter decides per connection and cannot see a request's Host (use layer request, or only one of them)"
        }
        _ => {
            "several host rules would let a connection admitted for one server name send requests for another's host; the filter decides per connection and cannot see a request's Host (use layer request, or one rule)"
        }
    };
    Err(CompileError::HostRulesAtConnectionLayer { why })
}

fn compile_server_names(names: &[String]) -> Result<HashSet<String>, CompileError> {
    if names.is_empty() {
        return Err(CompileError::NoProtectedServerNames);
    }
    let mut set = HashSet::new();
    for (index, value) in names.iter().enumerate() {
        let bad = |why| CompileError::BadProtectedServerName {
            index,
            value: value.clone(),
            why,
        };
        let name = value.trim_end_matches('.').to_ascii_lowercase();
        let is_host = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !is_host {
            return Err(bad(
                "is not a host name (letters, digits, '-' and dots; no wildcard, no port)",
            ));
        }
        if name.parse::<std::net::IpAddr>().is_ok() {
            return Err(bad("is an IP address, which SNI never carries"));
        }
        if !set.insert(name) {
            return Err(bad("is listed twice (server names are case-insensitive)"));
        }
    }
    Ok(set)
}

fn compile_subject_list(
    field: &str,
    patterns: &[String],
) -> Result<SubjectAllowList, CompileError> {
    if patterns.is_empty() {
        return Err(CompileError::EmptyAllowList {
            field: field.to_owned(),
        });
    }
    SubjectAllowList::parse(patterns).map_err(|(i, source)| CompileError::BadSubjectPattern {
        field: format!("{field}[{i}]"),
        source,
    })
}

fn compile_allow_list(field: &str, patterns: &[String]) -> Result<SanAllowList, CompileError> {
    if patterns.is_empty() {
        return Err(CompileError::EmptyAllowList {
            field: field.to_owned(),
        });
    }
    SanAllowList::parse(patterns).map_err(|(i, source)| CompileError::BadPattern {
        field: format!("{field}[{i}]"),
        source,
    })
}

fn check_host_key(host: &str, layer: Layer) -> Result<String, CompileError> {
    let bad = |why| CompileError::BadHost {
        host: host.to_owned(),
        why,
    };
    if host.is_empty() {
        return Err(bad("empty host name"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '*')
    {
        return Err(bad("not a host name (no spaces, slashes or wildcards)"));
    }
    let normalized = normalize_authority(host);
    if normalized != host.to_ascii_lowercase().trim_end_matches('.') {
        return Err(bad("write the host without a port: the port is ignored"));
    }
    if layer == Layer::Connection && normalized.parse::<std::net::IpAddr>().is_ok() {
        // RFC 6066: server_name carries DNS host names only, so such a rule could never apply.
        return Err(bad(
            "with layer connection host rules key on the TLS server name (SNI), which is never an IP address",
        ));
    }
    Ok(normalized)
}

/// The host part of an `:authority`, lower-cased, without port or trailing dot.
pub fn normalize_authority(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => authority,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port))
                if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => authority,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// What a certificate alone says about the peer: the costly part of a decision, cacheable by
/// the certificate's digest.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The number of the policy that made it ([`Assessment::is_from`]).
    policy: u64,
    /// The certificate's digest (SHA-256 of the DER).
    pub fingerprint: [u8; 32],
    /// The parsed summary; `None` when the certificate does not parse.
    pub peer: Option<PeerSummary>,
    issuer_failure: Option<Reason>,
    /// The first client-profile or name-constraint failure.
    profile_failure: Option<Reason>,
    /// The window in which the issuer that signed the leaf and every CA above it are valid.
    issuer_window: Option<(i64, i64)>,
    /// The signing issuer's position in the policy's issuers.
    signer: Option<usize>,
    /// On its issuer's CRL, or under a revoked CA.
    revoked: bool,
    /// The earliest nextUpdate of the CRLs consulted for it: past it, a CRL is stale.
    crl_next_update: Option<i64>,
    denial: Option<Reason>,
    /// The names' verdict under the default rule (and the signer's scope), judged once with the
    /// certificate: a request without a host rule of its own only reads it.
    default_names: Option<(Reason, Option<PeerIdentity>)>,
}

impl Assessment {
    /// Whether `policy` made it. Trust, revocation, deny lists and the default rule's verdict
    /// are the making policy's: a cached assessment from an earlier policy (a stream that
    /// began before an update inserts one after it) must be made anew, or a CA, a CRL or an
    /// allow-list change would not reach that certificate.
    pub fn is_from(&self, policy: &Policy) -> bool {
        self.policy == policy.id
    }

    /// notAfter, when known: a cached assessment must not outlive it.
    pub fn not_after(&self) -> Option<i64> {
        self.peer.as_ref().map(|p| p.not_after)
    }
}

/// The verdict on one request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Why; [`Reason::Allowed`] when the peer passes.
    pub reason: Reason,
    /// What the certificate said, when there was one.
    pub assessment: Option<Arc<Assessment>>,
    /// A CRL consulted for it is past its nextUpdate (still enforced; counted as
    /// `peergate.crl_stale`).
    pub crl_stale: bool,
    /// Whole days to the peer's notAfter, when it is allowed and that is inside
    /// `expiryWarningDays`.
    pub days_left: Option<i64>,
    /// The `pathPrefix` of the route that decided, when one did.
    pub route: Option<String>,
    /// What an allowed peer passed as (the SAN that matched, or its subject).
    pub identity: Option<PeerIdentity>,
}

impl Decision {
    /// A decision made before any certificate was read (none, or a header that did not match).
    pub fn without_certificate(reason: Reason) -> Self {
        Self {
            reason,
            assessment: None,
            crl_stale: false,
            days_left: None,
            route: None,
            identity: None,
        }
    }

    /// Whether the policy admits the peer.
    pub fn is_allowed(&self) -> bool {
        self.reason == Reason::Allowed
    }

    /// Whether the request is refused under `mode`: a denial in enforce mode.
    pub fn is_refused_in(&self, mode: Mode) -> bool {
        !self.is_allowed() && mode == Mode::Enforce
    }

    /// The peer's summary, when the certificate parsed.
    pub fn peer(&self) -> Option<&PeerSummary> {
        self.assessment.as_deref().and_then(|a| a.peer.as_ref())
    }
}

impl Policy {
    /// The policy with leaf signatures checked by `verifier` (the filter hands it Envoy's
    /// where Envoy has one); decisions are the same whichever checks them.
    pub fn with_verifier(self, verifier: Verifier) -> Self {
        Policy { verifier, ..self }
    }

    /// Who checks leaf signatures.
    pub fn verifier(&self) -> Verifier {
        self.verifier
    }

    /// `enforce` or `audit`.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where decisions are taken: per request or per connection.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// Status of the local reply on a denial.
    pub fn deny_status(&self) -> u16 {
        self.deny_status
    }

    /// `forwardIdentity`: whether to set the identity headers, and their prefix.
    pub fn forward_identity(&self) -> &ForwardIdentity {
        &self.forward_identity
    }

    /// Whether some rule has routes (requests must then be judged with their path).
    pub fn has_routes(&self) -> bool {
        !self.default_routes.is_empty() || !self.host_routes.is_empty()
    }

    /// Whether allowed requests get a decision-log line too.
    pub fn log_allowed(&self) -> bool {
        self.log_allowed
    }

    /// Whether the policy is limited to some TLS server names (`protectedServerNames`).
    pub fn limits_server_names(&self) -> bool {
        self.protected_server_names.is_some()
    }

    /// Whether a connection with this TLS server name (empty: none was sent) is decided. With
    /// `protectedServerNames`, only those names and connections without a name are.
    pub fn protects(&self, server_name: &str) -> bool {
        match &self.protected_server_names {
            None => true,
            Some(_) if server_name.is_empty() => true,
            Some(names) => {
                let name = server_name.trim_end_matches('.');
                names.contains(&name.to_ascii_lowercase())
            }
        }
    }

    /// Whether a request is decided: its connection's server name is protected (see
    /// [`Policy::protects`]), or its `:authority` is (case, trailing dot and port aside). A
    /// client may send a protected host's requests on a connection it opened for another name
    /// (HTTP/2 connection coalescing does exactly that), so the server name alone is no
    /// boundary; `authority` is read only when the server name is not protected.
    pub fn protects_request(&self, server_name: &str, authority: impl FnOnce() -> String) -> bool {
        match &self.protected_server_names {
            None => true,
            Some(names) => {
                self.protects(server_name) || names.contains(&normalize_authority(&authority()))
            }
        }
    }

    /// The protected server names, sorted, when the policy is limited to some.
    pub fn protected_server_names(&self) -> Option<Vec<String>> {
        self.protected_server_names.as_ref().map(|names| {
            let mut list: Vec<String> = names.iter().cloned().collect();
            list.sort();
            list
        })
    }

    /// Whether decisions depend on the request's authority (`hosts` rules exist).
    pub fn has_host_rules(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Whole days from `now` to `not_after` when that is inside `expiryWarningDays`.
    pub fn days_left(&self, not_after: i64, now: SystemTime) -> Option<i64> {
        let left = not_after - unix_seconds(now);
        (self.expiry_window > 0 && left <= self.expiry_window).then(|| left.max(0) / 86_400)
    }

    /// The trusted issuers and anchors that expire inside `expiryWarningDays` (or have), for
    /// the warnings the filter logs at configure time.
    pub fn expiring_cas(&self, now: SystemTime) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for link in self.trust.issuers.iter().flat_map(|issuer| &issuer.chain) {
            if !seen.insert((link.label.clone(), link.subject.clone())) {
                continue;
            }
            if let Some(days) = self.days_left(link.not_after, now) {
                out.push(format!(
                    "{} {:?} expires in {days} days ({})",
                    link.label,
                    link.subject,
                    crate::clock::rfc3339_seconds(link.not_after)
                ));
            }
        }
        out
    }

    /// `expiryWarningDays`.
    pub fn expiry_warning_days(&self) -> i64 {
        self.expiry_window / 86_400
    }

    /// Number of trusted issuer certificates.
    pub fn issuer_count(&self) -> usize {
        self.trust.issuers.len()
    }

    /// Number of trust anchor certificates.
    pub fn anchor_count(&self) -> usize {
        self.trust.anchor_count
    }

    /// Number of CRLs.
    pub fn crl_count(&self) -> usize {
        self.trust.crls.len()
    }

    /// The CRLs past their nextUpdate at `now`, for the warning the filter logs once per
    /// configuration: `crls[i]` (signer) and its nextUpdate.
    pub fn stale_crls(&self, now: SystemTime) -> Vec<String> {
        self.trust
            .crls
            .iter()
            .filter(|crl| crl.next_update.is_some_and(|t| is_after_second(now, t)))
            .map(|crl| {
                format!(
                    "crls[{}] of {} (nextUpdate {})",
                    crl.index,
                    crl.signer,
                    crate::clock::rfc3339_seconds(crl.next_update.unwrap_or_default())
                )
            })
            .collect()
    }

    /// Whether the request must be refused: a denial in enforce mode.
    pub fn refuses(&self, decision: &Decision) -> bool {
        decision.is_refused_in(self.mode)
    }

    /// Judges a leaf certificate (DER) for a request to `authority` at `now`.
    pub fn decide(&self, leaf_der: Option<&[u8]>, authority: &str, now: SystemTime) -> Decision {
        match leaf_der {
            None => Decision::without_certificate(Reason::NoPeerCertificate),
            Some(der) => self.judge(&Arc::new(self.assess(der)), authority, now),
        }
    }

    /// The certificate-only half of a decision.
    pub fn assess(&self, der: &[u8]) -> Assessment {
        self.assess_digested(der, fingerprint(der))
    }

    /// [`Policy::assess`] for a certificate whose SHA-256 the caller already computed and
    /// checked against the connection, so it is not hashed twice.
    pub fn assess_digested(&self, der: &[u8], fingerprint: [u8; 32]) -> Assessment {
        let unparsable = Assessment {
            policy: self.id,
            fingerprint,
            peer: None,
            issuer_failure: Some(Reason::UnparsableCertificate),
            profile_failure: None,
            issuer_window: None,
            signer: None,
            revoked: false,
            crl_next_update: None,
            denial: None,
            default_names: None,
        };
        let cert = match X509Certificate::from_der(der) {
            Ok(([], cert)) => cert,
            _ => return unparsable,
        };
        if check_certificate_framing(der).is_err() {
            return unparsable;
        }
        let Ok(peer) = PeerSummary::of(&cert, &fingerprint) else {
            return unparsable;
        };
        let issuer = self.check_issuer(&cert);
        let issuer = match issuer {
            Ok(issuer) => issuer,
            Err(reason) => {
                return Assessment {
                    issuer_failure: Some(reason),
                    peer: Some(peer),
                    ..unparsable
                }
            }
        };
        let default_names = self.default_rule.as_ref().map(|rule| {
            let outcome = rule.judge(&peer, issuer.scope.as_ref());
            (outcome.reason(), outcome.identity())
        });
        Assessment {
            policy: self.id,
            fingerprint,
            issuer_failure: None,
            profile_failure: self.profile_failure(&cert, issuer),
            issuer_window: Some(issuer.window()),
            signer: self
                .trust
                .issuers
                .iter()
                .position(|i| std::ptr::eq(i, issuer)),
            revoked: self.is_revoked(&cert, issuer),
            crl_next_update: self.crl_next_update(issuer),
            denial: self.denial(der, &cert, &fingerprint, issuer),
            default_names,
            peer: Some(peer),
        }
    }

    /// The first client-profile violation, or a name outside a chain CA's nameConstraints.
    fn profile_failure(
        &self,
        cert: &X509Certificate<'_>,
        issuer: &TrustedIssuer,
    ) -> Option<Reason> {
        self.profile_checks(cert)
            .find_map(Result::err)
            .map(|violation| violation.reason())
            .or_else(|| {
                issuer
                    .chain
                    .iter()
                    .filter_map(|link| link.name_constraints.as_ref())
                    .any(|constraints| constraints.check(cert).is_err())
                    .then_some(Reason::OutsideNameConstraints)
            })
    }

    /// Whether a CA on the issuer's chain is revoked, or the certificate is on the issuer's
    /// own CRLs.
    fn is_revoked(&self, cert: &X509Certificate<'_>, issuer: &TrustedIssuer) -> bool {
        issuer.revoked_link.is_some()
            || issuer
                .own_crls
                .iter()
                .filter_map(|&i| self.trust.crls.get(i))
                .any(|crl| crl.lists(cert.raw_serial()))
    }

    /// The earliest nextUpdate of the CRLs the decision consulted.
    fn crl_next_update(&self, issuer: &TrustedIssuer) -> Option<i64> {
        issuer
            .consulted_crls
            .iter()
            .filter_map(|&i| self.trust.crls.get(i).and_then(|crl| crl.next_update))
            .min()
    }

    /// The deny lists' verdict: the serial, then the certificate in any encoding.
    fn denial(
        &self,
        der: &[u8],
        cert: &X509Certificate<'_>,
        fingerprint: &[u8; 32],
        issuer: &TrustedIssuer,
    ) -> Option<Reason> {
        if self.serial_is_denied(cert.raw_serial()) {
            Some(Reason::DeniedSerial)
        } else if self
            .denied_encoding(der, cert, fingerprint, issuer)
            .is_some()
        {
            Some(Reason::DeniedFingerprint)
        } else {
            None
        }
    }

    /// The client-profile checks, in order (none when `clientProfile` is off, except the key
    /// size, which is not a matter of profile).
    pub(crate) fn profile_checks<'c>(
        &self,
        cert: &'c X509Certificate<'c>,
    ) -> impl Iterator<Item = Result<(), ProfileViolation>> + 'c {
        let profile = self.client_profile;
        [
            check_basic_constraints as fn(&X509Certificate<'_>) -> _,
            check_key_usage,
            check_critical_extensions,
        ]
        .into_iter()
        .filter(move |_| profile)
        .chain([check_key_size as fn(&X509Certificate<'_>) -> _])
        .map(move |check| check(cert))
    }

    /// Whether the client profile is on (`clientProfile`, default true).
    pub fn client_profile(&self) -> bool {
        self.client_profile
    }

    /// Proves the leaf was issued by a trusted issuer: same name *and* a signature that
    /// verifies under its key (two CAs can share a subject name). Returns the issuer.
    fn check_issuer(&self, cert: &X509Certificate<'_>) -> Result<&TrustedIssuer, Reason> {
        let attempt =
            best_issuer_attempt(self.issuer_attempts(cert)).ok_or(Reason::UntrustedIssuer)?;
        attempt.outcome().map(|()| attempt.issuer)
    }

    /// Which encoding of the certificate is on `deniedFingerprints`, if one is: the one
    /// presented, or its ECDSA twin (the same certificate with the other valid signature
    /// value, (r, n − s)). Nothing else outside the signed part can vary without being
    /// refused first: the outer framing and signatureAlgorithm are checked byte for byte
    /// (`der::check_certificate_framing`), ECDSA signatures must be strict DER, an RSA
    /// signature must be exactly the modulus' length and below it, and Ed25519 is verified
    /// strictly (canonical S).
    pub(crate) fn denied_encoding(
        &self,
        der: &[u8],
        cert: &X509Certificate<'_>,
        fingerprint: &[u8; 32],
        issuer: &TrustedIssuer,
    ) -> Option<DeniedEncoding> {
        if self.denied_fingerprints.is_empty() {
            return None;
        }
        if self.fingerprint_is_denied(fingerprint) {
            return Some(DeniedEncoding::Presented);
        }
        let twin_signature = ecdsa_twin(&issuer.key, cert.signature_value.data.as_ref())?;
        let twin = with_signature_value(der, &twin_signature)?;
        let twin_fingerprint = crate::peer::fingerprint(&twin);
        self.fingerprint_is_denied(&twin_fingerprint)
            .then_some(DeniedEncoding::EcdsaTwin(twin_fingerprint))
    }

    /// Whether the serial (DER content bytes) is on `deniedSerials`.
    pub(crate) fn serial_is_denied(&self, raw_serial: &[u8]) -> bool {
        self.denied_serials.contains(&normalize_serial(raw_serial))
    }

    /// Whether the SHA-256 fingerprint is on `deniedFingerprints`.
    pub(crate) fn fingerprint_is_denied(&self, fingerprint: &[u8; 32]) -> bool {
        self.denied_fingerprints.contains(fingerprint)
    }

    /// Tries, lazily and in order, every trusted issuer whose subject is the leaf's issuer
    /// name.
    pub(crate) fn issuer_attempts<'p: 'c, 'c>(
        &'p self,
        cert: &'c X509Certificate<'_>,
    ) -> impl Iterator<Item = IssuerAttempt<'p>> + 'c {
        let issuer_name = cert.issuer().as_raw();
        let leaf_aki = authority_key_id(cert);
        self.trust
            .issuers
            .iter()
            .filter(move |i| i.subject_der == issuer_name)
            .map(move |issuer| {
                let key_id = match (leaf_aki, issuer.key_id.as_deref()) {
                    (Some(aki), Some(ski)) if aki == ski => KeyIdComparison::Match,
                    (Some(_), Some(_)) => KeyIdComparison::Mismatch,
                    _ => KeyIdComparison::Absent,
                };
                let signature = (key_id != KeyIdComparison::Mismatch)
                    .then(|| self.verifier.verify_leaf(cert, &issuer.key));
                IssuerAttempt {
                    issuer,
                    key_id,
                    signature,
                }
            })
    }

    /// The allow-list for an authority: its `hosts` entry, else the top-level list.
    pub(crate) fn rule_for(&self, authority: &str) -> Rule<'_> {
        let host = if self.hosts.is_empty() {
            None
        } else {
            self.hosts.get_key_value(&normalize_authority(authority))
        };
        match (host, &self.default_rule) {
            (Some((host, rule)), _) => Rule::Host(host, rule),
            (None, Some(rule)) => Rule::Default(rule),
            (None, None) => Rule::Missing,
        }
    }

    /// The request-dependent half: validity at `now` and SANs for `authority`.
    pub fn judge(
        &self,
        assessment: &Arc<Assessment>,
        authority: &str,
        now: SystemTime,
    ) -> Decision {
        self.judge_request(assessment, authority, None, now)
    }

    /// [`Policy::judge`] for a request whose path and method routes decide on (`None`: no
    /// request, as at the connection layer, where routes are refused at compile time; an
    /// audit without a path judges the host's names).
    pub fn judge_request(
        &self,
        assessment: &Arc<Assessment>,
        authority: &str,
        request: Option<RequestLine<'_>>,
        now: SystemTime,
    ) -> Decision {
        let crl_stale = assessment
            .crl_next_update
            .is_some_and(|t| is_after_second(now, t));
        let decision = |reason| Decision {
            reason,
            assessment: Some(Arc::clone(assessment)),
            crl_stale,
            days_left: None,
            route: None,
            identity: None,
        };
        if let Some(reason) = assessment.issuer_failure {
            return decision(reason);
        }
        let Some(peer) = &assessment.peer else {
            return decision(Reason::UnparsableCertificate);
        };
        if let Some(reason) = assessment.profile_failure {
            return decision(reason);
        }
        if is_not_yet_valid(peer, now) {
            return decision(Reason::NotYetValid);
        }
        if is_expired(peer, now) {
            return decision(Reason::Expired);
        }
        match assessment.issuer_window {
            Some(window) if !within_window(window, now) => return decision(Reason::IssuerExpired),
            Some(_) => {}
            None => return decision(Reason::UntrustedIssuer),
        }
        if assessment.revoked {
            return decision(Reason::Revoked);
        }
        if let Some(reason) = assessment.denial {
            return decision(reason);
        }
        let rule = self.rule_for(authority);
        let rule_names = || match rule {
            Rule::Missing => (Reason::NoRuleForHost, None),
            Rule::Default(rule) => match assessment.default_names {
                Some(names) if assessment.is_from(self) => names,
                _ => self.name_verdict(rule, assessment, peer),
            },
            Rule::Host(_, rule) => self.name_verdict(rule, assessment, peer),
        };
        let (names, route) = self.routed_names(rule, request, assessment, peer, rule_names);
        let route = route.map(str::to_owned);
        match names {
            (Reason::Allowed, identity) => Decision {
                days_left: self.days_left(peer.not_after, now),
                route,
                identity,
                ..decision(Reason::Allowed)
            },
            (reason, _) => Decision {
                route,
                ..decision(reason)
            },
        }
    }

    /// The routes of the rule that applies, when it has any.
    pub(crate) fn routes_for(&self, rule: Rule<'_>) -> Option<&RouteTable<NameRule>> {
        let table = match rule {
            Rule::Host(host, _) => self.host_routes.get(host)?,
            Rule::Default(_) => &self.default_routes,
            Rule::Missing => return None,
        };
        (!table.is_empty()).then_some(table)
    }

    /// Which route a request falls under on the rule that applies.
    pub(crate) fn route_for<'p>(
        &'p self,
        rule: Rule<'p>,
        request: Option<RequestLine<'_>>,
    ) -> RouteChoice<'p> {
        let (Some(table), Some(request)) = (self.routes_for(rule), request) else {
            return RouteChoice::NoRoutes;
        };
        let Ok(path) = canonical(path_part(request.path)) else {
            return RouteChoice::Unnormalized;
        };
        match table.select(path) {
            None if table.only => RouteChoice::UnmatchedOnly,
            None => RouteChoice::NoRoutes,
            Some(route) if route.admits_method(request.method) => RouteChoice::Route(route),
            Some(route) => RouteChoice::MethodRefused(route),
        }
    }

    /// The names' verdict under routes, and the route that gave it: the path must be
    /// canonical; the longest matching route admits the method and its own names (or, without
    /// them, the rule's); no route falls back to the rule's names unless `routesOnly`.
    fn routed_names<'t>(
        &'t self,
        rule: Rule<'t>,
        request: Option<RequestLine<'_>>,
        assessment: &Assessment,
        peer: &PeerSummary,
        rule_names: impl FnOnce() -> (Reason, Option<PeerIdentity>),
    ) -> ((Reason, Option<PeerIdentity>), Option<&'t str>) {
        match self.route_for(rule, request) {
            RouteChoice::NoRoutes => (rule_names(), None),
            RouteChoice::Unnormalized => ((Reason::UnnormalizedPath, None), None),
            RouteChoice::UnmatchedOnly => ((Reason::RouteNotAllowed, None), None),
            RouteChoice::MethodRefused(route) => {
                ((Reason::RouteNotAllowed, None), Some(route.path.as_str()))
            }
            RouteChoice::Route(route) => {
                let names = match &route.names {
                    Some(names) => match self.name_verdict(names, assessment, peer) {
                        (Reason::SanNotAllowed, _) => (Reason::RouteNotAllowed, None),
                        other => other,
                    },
                    None => rule_names(),
                };
                (names, Some(route.path.as_str()))
            }
        }
    }

    /// The peer's names under `rule` and the signing issuer's scope.
    fn name_verdict(
        &self,
        rule: &NameRule,
        assessment: &Assessment,
        peer: &PeerSummary,
    ) -> (Reason, Option<PeerIdentity>) {
        let scope = assessment
            .signer
            .and_then(|i| self.trust.issuers.get(i))
            .and_then(|issuer| issuer.scope.as_ref());
        let outcome = rule.judge(peer, scope);
        (outcome.reason(), outcome.identity())
    }
}

// Both ends of the validity window are inside it; X.509 times are whole seconds, `now` is not,
// so 5 ms past notAfter is already expired.

/// Before notBefore.
pub(crate) fn is_not_yet_valid(peer: &PeerSummary, now: SystemTime) -> bool {
    is_before_second(now, peer.not_before)
}

/// After notAfter.
pub(crate) fn is_expired(peer: &PeerSummary, now: SystemTime) -> bool {
    is_after_second(now, peer.not_after)
}

/// Inside `(notBefore, notAfter)`, both ends included.
pub(crate) fn within_window((not_before, not_after): (i64, i64), now: SystemTime) -> bool {
    !is_before_second(now, not_before) && !is_after_second(now, not_after)
}

/// Which encoding of a certificate is on `deniedFingerprints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeniedEncoding {
    /// The certificate as presented.
    Presented,
    /// Its ECDSA twin, whose fingerprint this is.
    EcdsaTwin([u8; 32]),
}

/// The attempt that decides among same-named issuers: the first that succeeds, else the
/// most telling failure.
pub(crate) fn best_issuer_attempt<'p>(
    attempts: impl Iterator<Item = IssuerAttempt<'p>>,
) -> Option<IssuerAttempt<'p>> {
    let mut best: Option<(IssuerAttempt<'p>, u8)> = None;
    for attempt in attempts {
        let rank = match attempt.outcome() {
            Ok(()) => return Some(attempt),
            Err(reason) => rank(reason),
        };
        if best.as_ref().is_none_or(|(_, r)| rank > *r) {
            best = Some((attempt, rank));
        }
    }
    best.map(|(attempt, _)| attempt)
}

/// The leaf's authority key identifier, when it has one.
pub(crate) fn authority_key_id<'c>(cert: &'c X509Certificate<'_>) -> Option<&'c [u8]> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0)
            }
            _ => None,
        })
}

fn rank(reason: Reason) -> u8 {
    match reason {
        Reason::UntrustedIssuer => 0,
        Reason::IssuerKeyIdMismatch => 1,
        Reason::UnsupportedSignatureAlgorithm => 2,
        _ => 3,
    }
}
