//! Arbitrary text through the PEM readers the filter (XFCC `Cert=`) and the CLI (`--cert`)
//! use, then `decide()` on every certificate found.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peergate_filter::{Mode, Policy};

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|text: &[u8]| {
    let policy = POLICY.get_or_init(|| peergate_fuzz::policy(Mode::Enforce));
    if let Some(der) = peergate_filter::xfcc::certificate_der_from_pem(text) {
        peergate_fuzz::decide_and_audit(policy, &der);
    }
    if let Ok(all) = peergate_filter::inspect::certificates_from_bytes(text) {
        for der in all {
            peergate_fuzz::decide_and_audit(policy, &der);
        }
    }
});
