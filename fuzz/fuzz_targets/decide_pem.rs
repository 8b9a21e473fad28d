//! Arbitrary text through the PEM readers the filter (the connection's certificate, XFCC
//! `Cert=`) and the CLI (`--cert`) use, then `decide()` on every certificate found. The
//! filter's one-pass reader of a single block may only ever read what the general reader
//! reads.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peergate_filter::{Mode, Policy};

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|text: &[u8]| {
    let policy = POLICY.get_or_init(|| peergate_fuzz::policy(Mode::Enforce));
    let general = peergate_filter::xfcc::certificate_der_from_pem(text);
    if let Some(der) = peergate_filter::xfcc::single_certificate_der(text) {
        assert_eq!(Some(&der), general.as_ref(), "the one-pass reader read what the PEM reader does not");
    }
    if let Some(der) = general {
        peergate_fuzz::decide_and_audit(policy, &der);
    }
    if let Ok(all) = peergate_filter::inspect::certificates_from_bytes(text) {
        for der in all {
            peergate_fuzz::decide_and_audit(policy, &der);
        }
    }
});
