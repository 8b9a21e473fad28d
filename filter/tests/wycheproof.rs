//! Project Wycheproof's signature vectors through the function every signature the filter
//! accepts goes through (`signature::verify`), with the key decoded the way a trusted issuer's
//! is (`IssuerKey::from_spki`): every `valid` vector verifies, every `invalid` one fails, and
//! each `acceptable` one gives the verdict listed in `ACCEPTABLE` (the list is exact).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use peergate_e2e::wycheproof_vectors::{self, TestResult, Vector};
use peergate_filter::signature::{verify, IssuerKey};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// `(test set, tcId, verifies)` for every `acceptable` vector: the choice this filter makes.
///
/// The only acceptable PKCS#1 vectors are a DigestInfo whose SHA-2 AlgorithmIdentifier leaves
/// out the NULL parameters. RFC 8017 §9.2 (note 1) names the NULL form as the encoding; the
/// filter re-encodes that one block and compares byte for byte (no parser of the decrypted
/// block to fool), so the other form is refused. No CA in use signs without the NULL.
/// Wycheproof marks no ECDSA or Ed25519 vector of these sets acceptable.
const ACCEPTABLE: &[(&str, usize, bool)] = &[
    ("Rsa2048Sha256", 8, false),
    ("Rsa2048Sha384", 8, false),
    ("Rsa2048Sha512", 8, false),
    ("Rsa3072Sha256", 8, false),
    ("Rsa3072Sha384", 8, false),
    ("Rsa3072Sha512", 8, false),
    ("Rsa4096Sha256", 8, false),
    ("Rsa4096Sha384", 8, false),
    ("Rsa4096Sha512", 8, false),
];

#[derive(Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: Vec<(String, usize, bool, String)>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, set: &str, tc_id: usize, result: TestResult, comment: &str, ok: bool) {
        match result {
            TestResult::Valid => {
                self.valid += 1;
                if !ok {
                    self.failures
                        .push(format!("{set} #{tc_id} valid, refused: {comment}"));
                }
            }
            TestResult::Invalid => {
                self.invalid += 1;
                if ok {
                    self.failures
                        .push(format!("{set} #{tc_id} invalid, accepted: {comment}"));
                }
            }
            TestResult::Acceptable => {
                self.acceptable
                    .push((set.to_owned(), tc_id, ok, comment.to_owned()));
            }
        }
    }

    fn finish(self, what: &str, at_least: usize) {
        assert!(
            self.failures.is_empty(),
            "{what}: {} vectors disagree: {:#?}",
            self.failures.len(),
            self.failures
        );
        let unlisted: Vec<String> = self
            .acceptable
            .iter()
            .filter(|(set, tc_id, ok, _)| {
                !ACCEPTABLE
                    .iter()
                    .any(|(s, id, listed)| s == set && id == tc_id && listed == ok)
            })
            .map(|(set, tc_id, ok, comment)| format!("(\"{set}\", {tc_id}, {ok}), // {comment}"))
            .collect();
        assert!(
            unlisted.is_empty(),
            "{what}: acceptable vectors not listed with this verdict:\n{}",
            unlisted.join("\n")
        );
        assert!(
            self.valid + self.invalid >= at_least,
            "{what}: only {} valid and {} invalid vectors ran",
            self.valid,
            self.invalid
        );
        eprintln!(
            "{what}: {} valid verified, {} invalid refused, {} acceptable as listed",
            self.valid,
            self.invalid,
            self.acceptable.len()
        );
    }
}

fn key_of(spki_der: &[u8]) -> IssuerKey {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).unwrap();
    assert!(rest.is_empty());
    IssuerKey::from_spki(&spki).unwrap_or_else(|e| panic!("key refused: {e}"))
}

/// Every vector through `verify`, with the key decoded as a trusted issuer's is.
fn run(what: &str, vectors: Vec<Vector>, at_least: usize) {
    let mut tally = Tally::default();
    for v in vectors {
        let ok = verify(&key_of(&v.spki), v.scheme, &v.msg, &v.sig).is_ok();
        tally.record(&v.set, v.tc_id, v.result, &v.comment, ok);
    }
    tally.finish(what, at_least);
}

#[test]
fn rsa_pkcs1_v1_5() {
    run("RSA PKCS#1 v1.5", wycheproof_vectors::rsa_pkcs1(), 1000);
}

#[test]
fn ecdsa_p256_and_p384() {
    run("ECDSA P-256/P-384", wycheproof_vectors::ecdsa(), 1000);
}

#[test]
fn ed25519() {
    run("Ed25519", wycheproof_vectors::ed25519(), 100);
}
