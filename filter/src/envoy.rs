//! Envoy's side of the policy core's host-independent pieces, for any module that links the
//! core (the filter's glue, and the test and benchmark modules that compare against it).

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::verifier::Verifier;

const VERIFY_SIGNATURE: &str = "verify_signature";

/// Envoy's `verify_signature` foreign function (BoringSSL, natively): the serialized
/// arguments in, the serialized result out; `None` when Envoy gave no result.
pub fn verify_signature(arguments: &[u8]) -> Option<Vec<u8>> {
    hostcalls::call_foreign_function(VERIFY_SIGNATURE, Some(arguments))
        .ok()
        .flatten()
}

/// Envoy's verifier where the host has `verify_signature`, else the module's own. Empty
/// arguments name no key, which Envoy refuses as a bad argument; a host without the function
/// says it is not found.
pub fn verifier() -> Verifier {
    match hostcalls::call_foreign_function(VERIFY_SIGNATURE, Some(&[])) {
        Err(Status::NotFound) => Verifier::InProcess,
        _ => Verifier::Host(verify_signature),
    }
}
