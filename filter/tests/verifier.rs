//! When a policy with a host verifier takes the host's word, and when it checks the signature
//! itself, against stand-in hosts (the real one, Envoy's, is checked in `tests/host_verifier.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::Cell;
use std::time::SystemTime;

use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_filter::verifier::{parse_verify_signature_result, Verifier};
use peergate_filter::{compile, PluginConfig, Reason};

const SAN: &str = "spiffe://a.example/ns/x/sa/y";

thread_local! {
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

fn counted<T>(answer: T) -> T {
    CALLS.with(|c| c.set(c.get() + 1));
    answer
}

/// A host that says every signature verifies.
fn credulous(_: &[u8]) -> Option<Vec<u8>> {
    counted(Some(vec![0x08, 0x01]))
}

/// A host whose check ran and refused.
fn refusing(_: &[u8]) -> Option<Vec<u8>> {
    counted(Some(
        b"\x12\x26Failed to verify digest. Error code: 0".to_vec(),
    ))
}

/// A host that could not set the check up (what Envoy says for Ed25519 with a digest).
fn unable(_: &[u8]) -> Option<Vec<u8>> {
    counted(Some(
        b"\x12\x23Failed to initialize digest verify.".to_vec(),
    ))
}

/// A host without the function, or refusing the arguments.
fn absent(_: &[u8]) -> Option<Vec<u8>> {
    counted(None)
}

/// Bytes that are not a `VerifySignatureResult`.
fn garbled(_: &[u8]) -> Option<Vec<u8>> {
    counted(Some(vec![0x12, 0x40]))
}

fn reason(verifier: Verifier, issuer: &Ca, leaf: &Issued) -> (Reason, usize) {
    let config = PluginConfig {
        trusted_issuers: vec![issuer.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![SAN.into()]),
        ..Default::default()
    };
    let policy = compile(&config).unwrap().with_verifier(verifier);
    CALLS.with(|c| c.set(0));
    let reason = policy
        .decide(Some(&leaf.cert_der), "h", SystemTime::now())
        .reason;
    (reason, CALLS.with(Cell::get))
}

#[test]
fn the_stand_in_answers_parse_as_envoy_words_them() {
    assert_eq!(
        parse_verify_signature_result(&refusing(&[]).unwrap()),
        Some((false, "Failed to verify digest. Error code: 0".into()))
    );
    assert_eq!(
        parse_verify_signature_result(&unable(&[]).unwrap()),
        Some((false, "Failed to initialize digest verify.".into()))
    );
}

#[test]
fn the_hosts_verdict_stands_for_rsa_and_ecdsa() {
    for kind in [KeyKind::Rsa2048, KeyKind::P256, KeyKind::P384] {
        let ca = Ca::new("verifier CA", kind);
        let forged =
            ca.look_alike(kind)
                .issue(&Leaf::client("c", &[&format!("URI:{SAN}")], KeyKind::P256));
        let genuine = ca.issue(&Leaf::client("c", &[&format!("URI:{SAN}")], KeyKind::P256));
        // The host is believed both ways: it is what decides (and why it must be Envoy's own).
        assert_eq!(
            reason(Verifier::Host(credulous), &ca, &forged),
            (Reason::Allowed, 1),
            "{kind:?}"
        );
        assert_eq!(
            reason(Verifier::Host(refusing), &ca, &genuine),
            (Reason::BadSignature, 1),
            "{kind:?}"
        );
    }
}

#[test]
fn without_a_verdict_the_module_checks_it_itself() {
    for kind in [KeyKind::Rsa2048, KeyKind::P256] {
        let ca = Ca::new("verifier CA", kind);
        let forged =
            ca.look_alike(kind)
                .issue(&Leaf::client("c", &[&format!("URI:{SAN}")], KeyKind::P256));
        let genuine = ca.issue(&Leaf::client("c", &[&format!("URI:{SAN}")], KeyKind::P256));
        for host in [unable as fn(&[u8]) -> _, absent, garbled] {
            assert_eq!(
                reason(Verifier::Host(host), &ca, &genuine),
                (Reason::Allowed, 1)
            );
            let (in_process, _) = reason(Verifier::InProcess, &ca, &forged);
            assert_eq!(in_process, Reason::BadSignature);
            assert_eq!(reason(Verifier::Host(host), &ca, &forged), (in_process, 1));
        }
    }
}

#[test]
fn ed25519_is_never_asked() {
    let ca = Ca::new("verifier CA", KeyKind::Ed25519);
    let genuine = ca.issue(&Leaf::client("c", &[&format!("URI:{SAN}")], KeyKind::P256));
    assert_eq!(
        reason(Verifier::Host(refusing), &ca, &genuine),
        (Reason::Allowed, 0)
    );
}
