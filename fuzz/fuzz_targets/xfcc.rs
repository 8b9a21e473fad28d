//! `x-forwarded-client-cert` values: the element matching the connection's digest, every
//! `Cert=`, the digest parser and URL decoding. A header is attacker-controlled whenever a
//! gateway forwards the client's own value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peergate_filter::xfcc;

fuzz_target!(|data: &[u8]| {
    let _ = xfcc::parse_digest(data);
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let _ = xfcc::url_decode(header);
    let certs = xfcc::xfcc_certs(header);
    // The digest of every Hash= value present, and one that matches nothing.
    let mut digests = vec![[0u8; 32]];
    for part in header.split([';', ',']) {
        if let Some(hex) = part.trim().strip_prefix("Hash=") {
            if let Some(d) = xfcc::parse_digest(hex.as_bytes()) {
                digests.push(d);
            }
        }
    }
    for digest in &digests {
        if let Some(der) = xfcc::xfcc_cert_matching(header, digest) {
            // Whatever is returned must be a certificate whose SHA-256 is the digest asked for:
            // the filter trusts it as the connection's own.
            assert_eq!(&peergate_filter::peer::fingerprint(&der), digest);
        }
    }
    let _ = certs;
});
