//! A module for `cargo make bench`, never shipped:
//! - with an empty configuration it is an HTTP filter that does nothing, the cost floor of any
//!   proxy-wasm filter on the gateway;
//! - with `{"microbench": …}` it times the policy core's uncached and cached decisions inside
//!   the proxy's VM (V8 in Envoy) when configured, and logs the results.
#![forbid(unsafe_code)]

#[cfg(target_arch = "wasm32")]
mod vm {
    use std::hint::black_box;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use peergate_filter::cache::AssessmentCache;
    use peergate_filter::policy::unix_seconds;
    use peergate_filter::xfcc::certificate_der_from_pem;
    use peergate_filter::{compile, PluginConfig};
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{BufferType, ContextType, LogLevel};
    use serde::Deserialize;

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
    }

    #[derive(Deserialize, Default)]
    struct Config {
        #[serde(default)]
        microbench: Vec<Microbench>,
    }

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;

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
        let policy = compile(&bench.plugin_config).map_err(|e| e.to_string())?;
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
                if let Some(assessment) = cache.get(black_box(&digest), unix_seconds(at)) {
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
            true
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Nothing))
        }
    }

    /// Every callback keeps its default: continue.
    struct Nothing;

    impl Context for Nothing {}

    impl HttpContext for Nothing {}
}
