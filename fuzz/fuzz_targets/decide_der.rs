//! `decide()` (and the audit and inspect of the same bytes) on arbitrary DER, in both modes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peergate_filter::{Mode, Policy};

static POLICIES: OnceLock<[Policy; 2]> = OnceLock::new();

fuzz_target!(|der: &[u8]| {
    let policies = POLICIES.get_or_init(|| {
        [
            peergate_fuzz::policy(Mode::Enforce),
            peergate_fuzz::policy(Mode::Audit),
        ]
    });
    for policy in policies {
        peergate_fuzz::decide_and_audit(policy, der);
    }
});
