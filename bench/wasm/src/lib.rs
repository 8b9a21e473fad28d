//! A module for `cargo make bench`, never shipped:
//! - with an empty configuration it is an HTTP filter that does nothing, the cost floor of any
//!   proxy-wasm filter on the gateway;
//! - with `{"microbench": …}` it times the policy core's uncached and cached decisions inside
//!   the proxy's VM (V8 in Envoy) when configured, and logs the results;
//! - with `{"profile": …}` it is an HTTP filter that, on each request, runs the filter's cold
//!   path step by step on the connection's own certificate (property reads, PEM decoding,
//!   hashing, parsing, the signature, the summary, the cache insert, the decision-log line),
//!   timing each with the proxy's clock; a request with `x-peergate-bench: report` gets the
//!   medians as JSON, one with `x-peergate-bench: hostcalls` gets the cost of single host
//!   calls measured in a loop.
#![forbid(unsafe_code)]

#[cfg(target_arch = "wasm32")]
mod vm {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::hint::black_box;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use peergate_filter::cache::AssessmentCache;
    use peergate_filter::decision_log::{decision_log_line, CertSource};
    use peergate_filter::peer::{fingerprint, PeerSummary};
    use peergate_filter::policy::unix_seconds;
    use peergate_filter::signature::IssuerKey;
    use peergate_filter::verifier::Verifier;
    use peergate_filter::xfcc::{certificate_der_from_pem, parse_digest};
    use peergate_filter::{compile, Layer, Mode, PluginConfig, Policy};
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
    use serde::Deserialize;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Microbench {
        name: String,
        plugin_config: PluginConfig,
        leaf_pem: String,
        authority: String,
        uncached_iterations: u32,
        cached_iterations: u32,
        rounds: u32,
        /// `"envoy"`: the issuer's signature checked by Envoy's verifier, as the filter does;
        /// otherwise by the module's own.
        #[serde(default)]
        verifier: Option<String>,
    }

    #[derive(Deserialize, Default)]
    struct Config {
        #[serde(default)]
        microbench: Vec<Microbench>,
        #[serde(default)]
        profile: Option<Profile>,
        /// An HTTP filter that makes peergate's one host call per request (the digest
        /// property) and nothing else: what the host call costs on the real path.
        #[serde(default, rename = "oneHostCall")]
        one_host_call: bool,
    }

    /// The policy the profiled cold path decides with.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Profile {
        plugin_config: PluginConfig,
        authority: String,
    }

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}

    /// What the profiling contexts share (one VM, one thread).
    struct Profiler {
        policy: Policy,
        issuer_key: IssuerKey,
        authority: String,
        cache: RefCell<AssessmentCache>,
        steps: RefCell<BTreeMap<&'static str, Vec<u64>>>,
    }

    #[derive(Default)]
    struct Root {
        profiler: Option<Rc<Profiler>>,
        one_host_call: bool,
    }

    impl Context for Root {}

    fn log(message: &str) {
        let _ = hostcalls::log(LogLevel::Info, message);
    }

    fn now() -> SystemTime {
        hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn per_op(start: SystemTime, iterations: u32) -> f64 {
        let spent = now().duration_since(start).unwrap_or(Duration::ZERO);
        spent.as_nanos() as f64 / f64::from(iterations.max(1))
    }

    fn run(bench: &Microbench) -> Result<(), String> {
        let mut policy = compile(&bench.plugin_config).map_err(|e| e.to_string())?;
        if bench.verifier.as_deref() == Some("envoy") {
            policy = policy.with_verifier(peergate_filter::envoy::verifier());
            if matches!(policy.verifier(), Verifier::InProcess) {
                return Err("this Envoy has no verify_signature".into());
            }
        }
        let der = certificate_der_from_pem(bench.leaf_pem.as_bytes()).ok_or("leafPem")?;
        let at = now();
        if !policy.decide(Some(&der), &bench.authority, at).is_allowed() {
            return Err("the benchmark peer is not allowed".into());
        }
        for round in 0..bench.rounds {
            let start = now();
            for _ in 0..bench.uncached_iterations {
                black_box(policy.decide(Some(black_box(&der)), &bench.authority, at));
            }
            let uncached = per_op(start, bench.uncached_iterations);
            // What the filter does per request once it knows the connection's digest.
            let mut cache = AssessmentCache::default();
            let digest = peergate_filter::peer::fingerprint(&der);
            cache.insert(Arc::new(policy.assess(&der)), unix_seconds(at));
            let start = now();
            for _ in 0..bench.cached_iterations {
                if let Some(assessment) = cache.get(black_box(&digest), unix_seconds(at), &policy) {
                    black_box(policy.judge(&assessment, black_box(&bench.authority), at));
                }
            }
            let cached = per_op(start, bench.cached_iterations);
            log(&format!(
                "peergate-bench: name={} round={round} uncached_ns={uncached:.0} cached_ns={cached:.0}",
                bench.name
            ));
        }
        Ok(())
    }

    impl RootContext for Root {
        fn on_configure(&mut self, size: usize) -> bool {
            let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let config: Config = if bytes.is_empty() {
                Config::default()
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(config) => config,
                    Err(e) => {
                        log(&format!("peergate-bench: bad configuration: {e}"));
                        return false;
                    }
                }
            };
            for bench in &config.microbench {
                if let Err(e) = run(bench) {
                    log(&format!("peergate-bench: name={} failed: {e}", bench.name));
                    return false;
                }
            }
            self.one_host_call = config.one_host_call;
            if let Some(profile) = config.profile {
                match Profiler::new(profile) {
                    Ok(profiler) => self.profiler = Some(Rc::new(profiler)),
                    Err(e) => {
                        log(&format!("peergate-bench: profile: {e}"));
                        return false;
                    }
                }
            }
            true
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            match &self.profiler {
                Some(profiler) => Some(Box::new(Profiled(Rc::clone(profiler)))),
                None if self.one_host_call => Some(Box::new(OneHostCall)),
                None => Some(Box::new(Nothing)),
            }
        }
    }

    fn nanos_since(start: SystemTime) -> u64 {
        u64::try_from(
            now()
                .duration_since(start)
                .unwrap_or(Duration::ZERO)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    fn property(path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    impl Profiler {
        fn new(profile: Profile) -> Result<Self, String> {
            // The verifier the filter takes (Envoy's, where Envoy has it).
            let policy = compile(&profile.plugin_config)
                .map_err(|e| e.to_string())?
                .with_verifier(peergate_filter::envoy::verifier());
            let issuer = profile
                .plugin_config
                .trusted_issuers
                .first()
                .ok_or("no trusted issuer")?;
            let der = certificate_der_from_pem(issuer.pem().as_bytes()).ok_or("issuer PEM")?;
            let (_, cert) = X509Certificate::from_der(&der).map_err(|e| e.to_string())?;
            let issuer_key =
                IssuerKey::from_spki(cert.public_key()).map_err(|e| format!("{e:?}"))?;
            Ok(Self {
                policy,
                issuer_key,
                authority: profile.authority,
                cache: RefCell::new(AssessmentCache::default()),
                steps: RefCell::new(BTreeMap::new()),
            })
        }

        fn record(&self, step: &'static str, nanos: u64) {
            self.steps.borrow_mut().entry(step).or_default().push(nanos);
        }

        /// The filter's cold path on this connection's certificate, one step at a time.
        fn cold_path(&self) -> Result<(), &'static str> {
            let time = |step, f: &mut dyn FnMut() -> Option<()>| {
                let start = now();
                let out = f();
                self.record(step, nanos_since(start));
                out.ok_or(step)
            };
            let start = now();
            self.record(
                "0 two clock reads back to back (the timer's own cost)",
                nanos_since(start),
            );
            let mut digest_text = None;
            time(
                "1 property connection.sha256_peer_certificate_digest",
                &mut || {
                    digest_text = property(&["connection", "sha256_peer_certificate_digest"]);
                    digest_text.as_ref().map(|_| ())
                },
            )?;
            let mut digest = None;
            time("2 parse the digest (hex)", &mut || {
                digest = digest_text.as_deref().and_then(parse_digest);
                digest.map(|_| ())
            })?;
            let mut pem = None;
            time("3 property connection.peer_certificate (PEM)", &mut || {
                pem = property(&["connection", "peer_certificate"]);
                pem.as_ref().map(|_| ())
            })?;
            let mut der = None;
            time("4 PEM to DER (x509-parser's PEM reader)", &mut || {
                der = pem.as_deref().and_then(certificate_der_from_pem);
                der.as_ref().map(|_| ())
            })?;
            let der = der.ok_or("der")?;
            let digest = digest.ok_or("digest")?;
            time(
                "5 SHA-256 of the DER (the filter's before; now Envoy's digest is the key)",
                &mut || (black_box(fingerprint(&der)) == digest).then_some(()),
            )?;
            let parsed = {
                let start = now();
                let parsed = X509Certificate::from_der(&der).map(|(_, cert)| cert);
                self.record("6 X.509 parse (x509-parser)", nanos_since(start));
                parsed.map_err(|_| "parse")?
            };
            time(
                "7 the issuer's signature, the module's verifier",
                &mut || {
                    Verifier::InProcess
                        .verify_leaf(&parsed, &self.issuer_key)
                        .ok()
                },
            )?;
            time(
                "7b the issuer's signature, Envoy's verifier (the filter's choice)",
                &mut || {
                    self.policy
                        .verifier()
                        .verify_leaf(&parsed, &self.issuer_key)
                        .ok()
                },
            )?;
            time(
                "8 the peer summary (subject, issuer, SANs, serial as text)",
                &mut || {
                    black_box(PeerSummary::of(&parsed, &digest))
                        .ok()
                        .map(|_| ())
                },
            )?;
            let mut assessment = None;
            time(
                "9 the whole assessment (5 to 8 and the profile checks, as the filter runs it)",
                &mut || {
                    assessment = Some(Arc::new(self.policy.assess_digested(&der, digest)));
                    Some(())
                },
            )?;
            let assessment = assessment.ok_or("assessment")?;
            let at = now();
            time(
                "10 cache insert (evicting the oldest once full)",
                &mut || {
                    self.cache
                        .borrow_mut()
                        .insert(Arc::clone(&assessment), unix_seconds(at));
                    Some(())
                },
            )?;
            let mut decision = None;
            time("11 judge (validity, names) on the assessment", &mut || {
                decision = Some(self.policy.judge(&assessment, &self.authority, at));
                Some(())
            })?;
            let decision = decision.ok_or("decision")?;
            if !decision.is_allowed() {
                return Err("the profiled peer is not allowed");
            }
            // What the filter runs on a cold connection, as it runs it, timed as one.
            let start = now();
            let whole = (|| {
                let digest = property(&["connection", "sha256_peer_certificate_digest"])
                    .as_deref()
                    .and_then(parse_digest)?;
                let pem = property(&["connection", "peer_certificate"])?;
                let der = certificate_der_from_pem(&pem)?;
                let assessment = Arc::new(self.policy.assess_digested(&der, digest));
                self.cache
                    .borrow_mut()
                    .insert(Arc::clone(&assessment), unix_seconds(at));
                Some(
                    self.policy
                        .judge(&assessment, &self.authority, at)
                        .is_allowed(),
                )
            })();
            self.record(
                "13 the filter's whole cold path (1, 2, 3, 4, 9, 10, 11) as one",
                nanos_since(start),
            );
            if whole != Some(true) {
                return Err("the whole cold path");
            }
            time(
                "12 a decision-log line (written only for denials and with logAllowed)",
                &mut || {
                    black_box(decision_log_line(
                        &decision,
                        Mode::Enforce,
                        Layer::Request,
                        &self.authority,
                        CertSource::Connection,
                        at,
                    ));
                    Some(())
                },
            )?;
            Ok(())
        }

        fn report(&self) -> String {
            let steps = self.steps.borrow();
            let medians: BTreeMap<&str, serde_json::Value> = steps
                .iter()
                .map(|(step, values)| {
                    let mut sorted = values.clone();
                    sorted.sort_unstable();
                    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
                    let mean = sorted.iter().sum::<u64>() as f64 / sorted.len().max(1) as f64;
                    let p99 = sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(0);
                    (
                        *step,
                        serde_json::json!({ "median_ns": median, "mean_ns": mean, "p99_ns": p99, "n": sorted.len() }),
                    )
                })
                .collect();
            serde_json::to_string(&medians).unwrap_or_default()
        }
    }

    /// The cost of single host calls, each in a loop of `n`, from inside a request; and the
    /// filter's whole allow path with the cache warm.
    fn hostcall_costs(profiler: &Profiler, n: u32) -> String {
        let mut out = BTreeMap::new();
        // Warm the cache with this connection's certificate, then what the filter does per
        // request: the digest property, its parse, the lookup, the judgement.
        let digest = property(&["connection", "sha256_peer_certificate_digest"])
            .as_deref()
            .and_then(parse_digest);
        let der = property(&["connection", "peer_certificate"])
            .as_deref()
            .and_then(certificate_der_from_pem);
        if let (Some(digest), Some(der)) = (digest, der) {
            let at = now();
            profiler.cache.borrow_mut().insert(
                Arc::new(profiler.policy.assess_digested(&der, digest)),
                unix_seconds(at),
            );
            let start = now();
            for _ in 0..n {
                let decided = property(&["connection", "sha256_peer_certificate_digest"])
                    .as_deref()
                    .and_then(parse_digest)
                    .and_then(|digest| {
                        profiler
                            .cache
                            .borrow_mut()
                            .get(&digest, unix_seconds(at), &profiler.policy)
                    })
                    .map(|assessment| profiler.policy.judge(&assessment, &profiler.authority, at));
                black_box(decided);
            }
            out.insert(
                "the filter's allow path, cache warm (digest property, parse, lookup, judge)",
                per_op(start, n),
            );
        }
        // Each host call alone, `n` times in a row (generic, so the loop inlines the call).
        fn per_call(n: u32, call: impl Fn()) -> f64 {
            let start = now();
            for _ in 0..n {
                call();
            }
            per_op(start, n)
        }
        out.insert(
            "get_current_time",
            per_call(n, || {
                black_box(now());
            }),
        );
        for (key, name) in [
            (
                "sha256_peer_certificate_digest",
                "get_property connection.sha256_peer_certificate_digest",
            ),
            (
                "peer_certificate",
                "get_property connection.peer_certificate",
            ),
            ("id", "get_property connection.id"),
            (
                "requested_server_name",
                "get_property connection.requested_server_name",
            ),
        ] {
            out.insert(
                name,
                per_call(n, || {
                    black_box(property(&["connection", key]));
                }),
            );
        }
        out.insert(
            "get_map_value :authority",
            per_call(n, || {
                black_box(
                    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":authority").ok(),
                );
            }),
        );
        out.insert(
            "increment_metric (an undefined id: the call alone)",
            per_call(n, || {
                black_box(hostcalls::increment_metric(0, 0).ok());
            }),
        );
        serde_json::to_string(&out).unwrap_or_default()
    }

    /// A request on the profiling listener.
    struct Profiled(Rc<Profiler>);

    impl Context for Profiled {}

    impl HttpContext for Profiled {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            let mode =
                hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-peergate-bench")
                    .ok()
                    .flatten();
            let body = match mode.as_deref() {
                Some(b"report") => self.0.report(),
                Some(b"hostcalls") => hostcall_costs(&self.0, 2000),
                _ => {
                    if let Err(step) = self.0.cold_path() {
                        log(&format!("peergate-bench: profile failed at {step}"));
                        let _ = hostcalls::send_http_response(500, vec![], Some(step.as_bytes()));
                        return Action::Pause;
                    }
                    return Action::Continue;
                }
            };
            let _ = hostcalls::send_http_response(
                200,
                vec![("content-type", "application/json")],
                Some(body.as_bytes()),
            );
            Action::Pause
        }
    }

    /// Reads the connection's digest on every request, then continues.
    struct OneHostCall;

    impl Context for OneHostCall {}

    impl HttpContext for OneHostCall {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            black_box(property(&["connection", "sha256_peer_certificate_digest"]));
            Action::Continue
        }
    }

    /// Every callback keeps its default: continue.
    struct Nothing;

    impl Context for Nothing {}

    impl HttpContext for Nothing {}
}
