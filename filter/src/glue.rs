//! The proxy-wasm glue: reads what the proxy knows about the connection, asks the policy core,
//! and acts. Every host call's `Status` is handled here; the SDK's trait helpers are not used
//! because they `unwrap()` and a host error there aborts the VM.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::cache::AssessmentCache;
use crate::config::{Layer, Mode};
use crate::decision_log::{decision_log_line, CertSource};
use crate::identity;
use crate::policy::{compile_json, rejection_log_line, unix_seconds, Decision, Policy, Reason};
use crate::routes::RequestLine;
use crate::xfcc::{certificate_der_from_pem, parse_digest, xfcc_cert_matching};

const XFCC: &str = "x-forwarded-client-cert";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// A request header as text. Read as bytes: the SDK's `get_map_value` unwraps a UTF-8
/// conversion, so a header carrying other bytes would trap the VM (the end-to-end hostile test
/// caught exactly that on the XFCC path). Such bytes become U+FFFD, which no certificate
/// encoding or host rule contains.
fn request_header(name: &str) -> Result<Option<String>, proxy_wasm::types::Status> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .map(|value| value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

fn log(level: LogLevel, message: &str) {
    // Nothing sensible can be done if logging itself fails.
    let _ = hostcalls::log(level, message);
}

/// How often allowed requests counted in the VM are added to Envoy's counter.
const FLUSH_PERIOD: Duration = Duration::from_millis(250);

/// Envoy counters, defined once per VM (counters are summed across worker VMs).
struct Metrics {
    allowed: Option<u32>,
    /// Allowed requests not yet added to `allowed`: the allow path is every request, and one
    /// host call fewer per request is measurable; denials are counted at once.
    allowed_pending: Cell<u64>,
    /// Connections or requests on server names outside `protectedServerNames`, passed
    /// untouched; counted in the VM like allowed ones.
    unprotected: Option<u32>,
    unprotected_pending: Cell<u64>,
    denied_total: Option<u32>,
    audit_total: Option<u32>,
    denied: Vec<(Reason, Option<u32>)>,
    audit_would_deny: Vec<(Reason, Option<u32>)>,
    config_rejected: Option<u32>,
    /// Decisions that consulted a CRL past its nextUpdate (still enforced).
    crl_stale: Option<u32>,
    /// Whether this configuration's stale-CRL warning was logged (once per configuration).
    crl_stale_warned: Cell<bool>,
    /// Allowed decisions on peers inside `expiryWarningDays`.
    expiring: Option<u32>,
    /// Decisions made from the decision cache (counted in the VM like allowed ones: nearly
    /// every request is one) and decisions that read and assessed a certificate.
    cached_decisions: Option<u32>,
    cached_pending: Cell<u64>,
    cold_decisions: Option<u32>,
    /// The certificates whose expiry line this VM has logged (per configuration, bounded):
    /// the line is written once per certificate even with `logAllowed` off.
    expiry_logged: RefCell<HashSet<[u8; 32]>>,
}

/// How many certificates' expiry lines a VM remembers before it starts over.
const EXPIRY_LOGGED_CAPACITY: usize = 4096;

fn counter(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log(
                LogLevel::Warn,
                &format!("peergate: cannot define counter {name}: {status:?}"),
            );
            None
        }
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    fn define() -> Self {
        let per_reason = |prefix: &str| {
            Reason::ALL
                .iter()
                .filter(|r| **r != Reason::Allowed)
                .map(|r| (*r, counter(&format!("{prefix}.{}", r.code()))))
                .collect()
        };
        Self {
            allowed: counter("peergate.allowed"),
            allowed_pending: Cell::new(0),
            unprotected: counter("peergate.unprotected"),
            unprotected_pending: Cell::new(0),
            denied_total: counter("peergate.denied"),
            audit_total: counter("peergate.audit_would_deny"),
            denied: per_reason("peergate.denied"),
            audit_would_deny: per_reason("peergate.audit_would_deny"),
            config_rejected: counter("peergate.config_rejected"),
            crl_stale: counter("peergate.crl_stale"),
            crl_stale_warned: Cell::new(false),
            expiring: counter("peergate.expiring"),
            cached_decisions: counter("peergate.cached_decisions"),
            cached_pending: Cell::new(0),
            cold_decisions: counter("peergate.cold_decisions"),
            expiry_logged: RefCell::new(HashSet::new()),
        }
    }

    /// Adds what was counted in the VM since the last flush to Envoy's counters.
    fn flush(&self) {
        for (id, pending) in [
            (self.allowed, &self.allowed_pending),
            (self.unprotected, &self.unprotected_pending),
            (self.cached_decisions, &self.cached_pending),
        ] {
            let count = pending.replace(0);
            if let (Some(id), true) = (id, count > 0) {
                if hostcalls::increment_metric(id, i64::try_from(count).unwrap_or(i64::MAX))
                    .is_err()
                {
                    // Keep them for the next tick rather than lose them.
                    pending.set(pending.get() + count);
                }
            }
        }
    }

    fn record_unprotected(&self) {
        self.unprotected_pending
            .set(self.unprotected_pending.get() + 1);
    }

    /// Logs, once per configuration, which CRLs are past their nextUpdate.
    fn warn_stale_crls(&self, policy: &Policy, now: SystemTime) {
        if self.crl_stale_warned.get() {
            return;
        }
        let stale = policy.stale_crls(now);
        if !stale.is_empty() {
            self.crl_stale_warned.set(true);
            log(
                LogLevel::Warn,
                &format!(
                    "peergate: stale CRL, still enforced: {} (publish a new one)",
                    stale.join("; ")
                ),
            );
        }
    }

    /// Whether this is the first allowed decision on an expiring certificate since the
    /// configuration: then its line is logged whatever `logAllowed` says.
    fn first_expiry_line(&self, decision: &Decision) -> bool {
        let (Some(_), Some(assessment)) = (decision.days_left, &decision.assessment) else {
            return false;
        };
        let mut logged = self.expiry_logged.borrow_mut();
        if logged.len() >= EXPIRY_LOGGED_CAPACITY {
            logged.clear();
        }
        logged.insert(assessment.fingerprint)
    }

    fn record(&self, decision: &Decision, source: CertSource, policy: &Policy, now: SystemTime) {
        match source {
            CertSource::Cache => self.cached_pending.set(self.cached_pending.get() + 1),
            CertSource::Connection | CertSource::Xfcc => bump(self.cold_decisions),
            CertSource::None => {}
        }
        if decision.days_left.is_some() {
            bump(self.expiring);
        }
        if decision.crl_stale {
            bump(self.crl_stale);
            self.warn_stale_crls(policy, now);
        }
        let mode = policy.mode();
        if decision.is_allowed() {
            self.allowed_pending.set(self.allowed_pending.get() + 1);
            return;
        }
        let (total, by_reason) = match mode {
            Mode::Enforce => (self.denied_total, &self.denied),
            Mode::Audit => (self.audit_total, &self.audit_would_deny),
        };
        bump(total);
        if let Some((_, id)) = by_reason.iter().find(|(r, _)| *r == decision.reason) {
            bump(*id);
        }
    }
}

#[derive(Default)]
struct Root {
    policy: Option<Rc<Policy>>,
    cache: Rc<RefCell<AssessmentCache>>,
    metrics: Option<Rc<Metrics>>,
    clock: Rc<TickClock>,
}

/// The proxy's time as of the root context's last tick (every `FLUSH_PERIOD`), so a decision
/// needs no clock host call: the allow path is then one host call (the connection's digest).
/// A decision's time is at most one tick behind (plus however late the worker runs its
/// timer); Envoy itself checks validity only at the handshake, so this is finer than what a
/// long-lived connection gets anyway. Unset until the timer is armed and the time read: then
/// each decision reads the clock itself.
#[derive(Default)]
struct TickClock(Cell<Option<SystemTime>>);

impl TickClock {
    fn refresh(&self) {
        self.0.set(hostcalls::get_current_time().ok());
    }

    fn now(&self) -> Option<SystemTime> {
        self.0.get().or_else(|| hostcalls::get_current_time().ok())
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        if let Some(metrics) = &self.metrics {
            metrics.flush();
        }
        true
    }
}

impl RootContext for Root {
    fn on_tick(&mut self) {
        self.clock.refresh();
        if let Some(metrics) = &self.metrics {
            metrics.flush();
        }
    }

    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log(
            LogLevel::Info,
            concat!("peergate filter ", env!("CARGO_PKG_VERSION"), " starting"),
        );
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let metrics = Rc::clone(
            self.metrics
                .get_or_insert_with(|| Rc::new(Metrics::define())),
        );
        if hostcalls::set_tick_period(FLUSH_PERIOD).is_err() {
            log(
                LogLevel::Warn,
                "peergate: no timer: the allowed counter is updated only when the plugin stops, and every decision reads the clock",
            );
            self.clock.0.set(None);
        } else {
            self.clock.refresh();
        }
        let bytes = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("peergate: rejecting configuration: cannot read it ({status:?})"),
                );
                bump(metrics.config_rejected);
                return false;
            }
        };
        match compile_json(&bytes) {
            Ok(policy) => {
                let policy = policy.with_verifier(crate::envoy::verifier());
                let denial = match policy.layer() {
                    Layer::Request => format!("deny_status={}", policy.deny_status()),
                    // A reminder of the pairing the SDK needs (a mismatch traps the VM).
                    Layer::Connection => "denial=close (needs WasmPlugin type: NETWORK)".into(),
                };
                let scope = policy
                    .protected_server_names()
                    .map(|names| format!(" protected_server_names={}", names.join(",")))
                    .unwrap_or_default();
                log(
                    LogLevel::Info,
                    &format!(
                        "peergate: configured: mode={} layer={} trusted_issuers={} trust_anchors={} crls={} signatures={} {denial}{scope}",
                        policy.mode().as_str(),
                        policy.layer().as_str(),
                        policy.issuer_count(),
                        policy.anchor_count(),
                        policy.crl_count(),
                        policy.verifier().name(),
                    ),
                );
                metrics.crl_stale_warned.set(false);
                metrics.expiry_logged.borrow_mut().clear();
                if let Ok(now) = hostcalls::get_current_time() {
                    metrics.warn_stale_crls(&policy, now);
                    for expiring in policy.expiring_cas(now) {
                        log(
                            LogLevel::Warn,
                            &format!("peergate: {expiring}: within expiryWarningDays ({}); renew or rotate it", policy.expiry_warning_days()),
                        );
                    }
                }
                self.policy = Some(Rc::new(policy));
                self.cache.borrow_mut().clear();
                true
            }
            Err(error) => {
                // Returning false makes the proxy refuse the plugin: fail closed.
                log(LogLevel::Error, &rejection_log_line(&error));
                bump(metrics.config_rejected);
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        // The SDK asks this for every new context. The layer must agree with the filter type
        // that hosts the plugin (WasmPlugin `type: NETWORK` for `connection`).
        match self.policy.as_deref().map(Policy::layer) {
            Some(Layer::Connection) => Some(ContextType::StreamContext),
            _ => Some(ContextType::HttpContext),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request(self.peer_check())))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(TlsConnection {
            peer: self.peer_check(),
            decided: false,
        }))
    }
}

impl Root {
    fn peer_check(&self) -> PeerCheck {
        PeerCheck {
            policy: self.policy.clone(),
            cache: Rc::clone(&self.cache),
            metrics: self.metrics.clone(),
            clock: Rc::clone(&self.clock),
        }
    }
}

/// What a request or a connection needs to decide on its peer.
struct PeerCheck {
    policy: Option<Rc<Policy>>,
    cache: Rc<RefCell<AssessmentCache>>,
    metrics: Option<Rc<Metrics>>,
    clock: Rc<TickClock>,
}

/// An HTTP stream (layer `request`).
struct Request(PeerCheck);

impl Context for Request {}

/// A downstream TLS connection (layer `connection`): decided once, on its first bytes.
struct TlsConnection {
    peer: PeerCheck,
    decided: bool,
}

impl Context for TlsConnection {}

fn property(path: &[&str]) -> Result<Option<Vec<u8>>, proxy_wasm::types::Status> {
    hostcalls::get_property(path.to_vec()).map(|v| v.filter(|b| !b.is_empty()))
}

/// How the certificate may be found when the connection property is missing (Envoy < 1.38).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// From `x-forwarded-client-cert`, checked against the connection's digest.
    Xfcc,
    /// None: a network filter sees no headers.
    None,
}

impl PeerCheck {
    /// Finds the peer certificate and judges it. Any failure to learn about the connection
    /// is a denial.
    fn decide(
        &self,
        policy: &Policy,
        authority: &str,
        request: Option<RequestLine<'_>>,
        now: SystemTime,
        fallback: Fallback,
    ) -> (Decision, CertSource) {
        let fail = |reason| (Decision::without_certificate(reason), CertSource::None);
        let now_secs = unix_seconds(now);
        let digest = match property(&["connection", "sha256_peer_certificate_digest"]) {
            Ok(Some(text)) => match parse_digest(&text) {
                Some(digest) => digest,
                None => return fail(Reason::ProxyError),
            },
            Ok(None) => return fail(Reason::NoPeerCertificate),
            Err(_) => return fail(Reason::ProxyError),
        };
        if let Some(assessment) = self.cache.borrow_mut().get(&digest, now_secs, policy) {
            return (
                policy.judge_request(&assessment, authority, request, now),
                CertSource::Cache,
            );
        }
        let (der, source) = match property(&["connection", "peer_certificate"]) {
            // Envoy gives both the certificate and its digest from the same connection's TLS
            // state, so the digest is taken as the certificate's own (hashing it again in V8
            // costs ~5 µs per cold decision); the XFCC fallback below is where the digest
            // must be checked.
            Ok(Some(pem)) => match certificate_der_from_pem(&pem) {
                Some(der) => (der, CertSource::Connection),
                None => return fail(Reason::UnparsableCertificate),
            },
            // A network filter on a proxy without the property has nothing else to read.
            Ok(None) if fallback == Fallback::None => return fail(Reason::ProxyError),
            // Proxies before Envoy 1.38 lack the property: fall back to the header the gateway
            // sets, trusting it only where it carries the connection's own certificate.
            Ok(None) => match request_header(XFCC) {
                Ok(Some(value)) => match xfcc_cert_matching(&value, &digest) {
                    Some(der) => (der, CertSource::Xfcc),
                    None => return fail(Reason::XfccMismatch),
                },
                Ok(None) => return fail(Reason::XfccMismatch),
                Err(_) => return fail(Reason::ProxyError),
            },
            Err(_) => return fail(Reason::ProxyError),
        };
        // `der` is the certificate of `digest`: Envoy's own for the connection property,
        // checked by `xfcc_cert_matching` for the header.
        let assessment = Arc::new(policy.assess_digested(&der, digest));
        self.cache
            .borrow_mut()
            .insert(Arc::clone(&assessment), now_secs);
        (
            policy.judge_request(&assessment, authority, request, now),
            source,
        )
    }

    /// Whether the request or connection is outside `protectedServerNames` (another team's host
    /// on a shared gateway): then it passes untouched and is only counted. `protected` is asked
    /// only when the policy is limited to some names.
    fn passes_unprotected(&self, policy: &Policy, protected: impl FnOnce() -> bool) -> bool {
        if !policy.limits_server_names() || protected() {
            return false;
        }
        if let Some(metrics) = &self.metrics {
            metrics.record_unprotected();
        }
        true
    }

    /// Counts and logs a decision as both layers do. `authority` is asked for only when a
    /// line is logged: reading it is a host call the allow path can skip.
    fn record(
        &self,
        policy: &Policy,
        decision: &Decision,
        source: CertSource,
        now: SystemTime,
        authority: impl FnOnce() -> String,
    ) {
        let mut first_expiry_line = false;
        if let Some(metrics) = &self.metrics {
            metrics.record(decision, source, policy, now);
            first_expiry_line = metrics.first_expiry_line(decision);
        }
        if !decision.is_allowed() || policy.log_allowed() || first_expiry_line {
            // The line's time stamp is the proxy's clock now, not the tick's: a line is a
            // host call anyway.
            let stamp = hostcalls::get_current_time().unwrap_or(now);
            let line = decision_log_line(
                decision,
                policy.mode(),
                policy.layer(),
                &authority(),
                source,
                stamp,
            );
            log(LogLevel::Info, &line);
        }
    }

    /// Decides at the proxy's time (as of the last tick, see `TickClock`); without a clock no
    /// validity check is possible, so that is a denial (fail closed).
    fn decide_now(
        &self,
        policy: &Policy,
        authority: &str,
        request: Option<RequestLine<'_>>,
        fallback: Fallback,
    ) -> (Decision, CertSource, SystemTime) {
        match self.clock.now() {
            Some(now) => {
                let (decision, source) = self.decide(policy, authority, request, now, fallback);
                (decision, source, now)
            }
            None => (
                Decision::without_certificate(Reason::ProxyError),
                CertSource::None,
                SystemTime::UNIX_EPOCH,
            ),
        }
    }
}

impl Request {
    fn refuse(&self, status: u16, reason: Reason) {
        let body = format!("{}\n", reason.code());
        let sent = hostcalls::send_http_response(
            u32::from(status),
            vec![
                ("content-type", "text/plain"),
                ("x-peergate-reason", reason.code()),
            ],
            Some(body.as_bytes()),
        );
        if let Err(status) = sent {
            log(
                LogLevel::Error,
                &format!("peergate: local reply failed ({status:?}); resetting the stream"),
            );
            let _ = hostcalls::reset_http_request();
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.0.policy.clone() else {
            // Only reachable if the proxy runs a plugin whose configuration was refused.
            self.refuse(503, Reason::ProxyError);
            return Action::Pause;
        };
        // Nothing a client sends under our prefix reaches the backend, whatever follows.
        strip_client_headers(&policy.forward_identity().header_prefix);
        let read_authority = || {
            request_header(":authority")
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        // On a shared gateway a request passes untouched only when neither its connection's
        // server name nor its own authority is protected: a client may send our host's requests
        // on a connection it opened for another (HTTP/2 coalescing does).
        let mut seen_authority = None;
        if self.0.passes_unprotected(&policy, || {
            policy.protects_request(&server_name(), || {
                seen_authority.insert(read_authority()).clone()
            })
        }) {
            return Action::Continue;
        }
        // Only per-host rules need the authority to decide; otherwise it is read only for a
        // decision-log line, so an allowed request costs one host call less.
        let authority = seen_authority.or_else(|| policy.has_host_rules().then(read_authority));
        // Routes need the path and method; without routes they are not read.
        let line = policy.has_routes().then(|| {
            let read = |name| request_header(name).ok().flatten().unwrap_or_default();
            (read(":path"), read(":method"))
        });
        let request = line
            .as_ref()
            .map(|(path, method)| RequestLine { path, method });
        let (decision, source, now) = self.0.decide_now(
            &policy,
            authority.as_deref().unwrap_or_default(),
            request,
            Fallback::Xfcc,
        );
        self.0.record(&policy, &decision, source, now, || {
            authority.unwrap_or_else(read_authority)
        });
        if policy.refuses(&decision) {
            self.refuse(policy.deny_status(), decision.reason);
            return Action::Pause;
        }
        add_identity_headers(&policy, &decision);
        Action::Continue
    }
}

/// Removes every request header whose name starts with `prefix` (the client's own: the
/// filter adds its headers only after this).
fn strip_client_headers(prefix: &str) {
    // The bytes form: a value need not be UTF-8 (names are HTTP tokens: Envoy's codecs
    // refuse any other, see tests/robustness.rs).
    let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
        return;
    };
    for (name, _) in headers {
        if identity::is_ours(&name, prefix) {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, None);
        }
    }
}

/// The verified identity of an allowed peer, or in audit mode what enforcement would do.
fn add_identity_headers(policy: &Policy, decision: &Decision) {
    let forward = policy.forward_identity();
    let mut headers = Vec::new();
    if decision.is_allowed() && forward.enabled {
        headers = identity::identity_headers(decision, &forward.header_prefix);
    }
    headers.extend(identity::audit_header(decision, &forward.header_prefix));
    for (name, value) in headers {
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, &name, &value);
    }
}

/// The TLS server name the client sent (SNI): the connection layer's "authority".
fn server_name() -> String {
    property(&["connection", "requested_server_name"])
        .ok()
        .flatten()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

impl StreamContext for TlsConnection {
    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        // The handshake is complete before the first decrypted bytes arrive; after the first
        // decision the connection is left alone for the rest of its life.
        if self.decided {
            return Action::Continue;
        }
        self.decided = true;
        let Some(policy) = self.peer.policy.clone() else {
            close_connection();
            return Action::Pause;
        };
        // `protectedServerNames` is refused at this layer (a connection for another name could
        // carry our host's requests), so every connection is decided.
        let sni = policy.has_host_rules().then(server_name);
        let (decision, source, now) = self.peer.decide_now(
            &policy,
            sni.as_deref().unwrap_or_default(),
            None,
            Fallback::None,
        );
        self.peer.record(&policy, &decision, source, now, || {
            sni.unwrap_or_else(server_name)
        });
        if policy.refuses(&decision) {
            // The bytes are held back (Pause), so nothing reaches the next filter.
            close_connection();
            return Action::Pause;
        }
        Action::Continue
    }
}

fn close_connection() {
    if let Err(status) = hostcalls::close_downstream() {
        log(
            LogLevel::Error,
            &format!("peergate: closing the connection failed ({status:?})"),
        );
    }
}
