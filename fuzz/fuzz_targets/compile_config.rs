//! `compile()` on arbitrary configuration JSON. A configuration that parses must serialize
//! back to one that parses to the same value (the generator writes what the filter reads), and
//! a policy that compiles must decide on the generator's client without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peergate_filter::{compile_json, PluginConfig};

fuzz_target!(|json: &[u8]| {
    if let Ok(config) = PluginConfig::from_json(json) {
        let again = PluginConfig::from_json(config.to_json().as_bytes());
        assert_eq!(
            again.as_ref().ok(),
            Some(&config),
            "the JSON form does not round-trip"
        );
    }
    match compile_json(json) {
        Ok(policy) => {
            // No skipping: without the certificate this would check nothing.
            let der =
                peergate_filter::xfcc::certificate_der_from_pem(peergate_fuzz::CLIENT.as_bytes())
                    .expect("roots/rsa2048-client-cert.pem is a PEM certificate");
            for authority in [peergate_fuzz::DOMAIN, "x", ""] {
                let _ = policy.decide(Some(&der), authority, peergate_fuzz::now());
                let _ = policy.decide(None, authority, peergate_fuzz::now());
            }
        }
        Err(error) => {
            // The line the filter logs before refusing to start must be one line.
            let line = peergate_filter::policy::rejection_log_line(&error);
            assert!(
                !line.contains('\n'),
                "a rejection log line spans lines: {line}"
            );
        }
    }
});
