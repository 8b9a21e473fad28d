//! The filter's two signature verifiers side by side inside real Envoys (the suite's 1.40 and
//! the older 1.36): the one compiled into the module, and Envoy's `verify_signature`
//! (BoringSSL) as the filter uses it, over Project Wycheproof's vectors for every scheme the
//! filter verifies and over generated certificates: issued, forged under a look-alike CA,
//! the ECDSA twin, malformed signature values, and keys that do not match. Every case must
//! get the same result from both, and Envoy must have given the verdict itself for every RSA
//! and ECDSA case (so the comparison is not the module against itself).

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use peergate_e2e::envoy::{admin_get, built_in_target, envoy_binary, legacy_envoy_binary, Envoy};
use peergate_e2e::gateway::{admin, named_wasm_filter, router_filter};
use peergate_e2e::http::read_response;
use peergate_e2e::pki::{ecdsa_twin, Ca, Issued, KeyKind, Leaf};
use peergate_e2e::wycheproof_vectors::{self, TestResult};
use peergate_filter::signature::{Hash, Scheme};
use serde_json::{json, Value};

fn verifier_module() -> std::path::PathBuf {
    built_in_target(
        "PEERGATE_VERIFIER_WASM",
        "wasm32-wasip1/release/peergate_verifier_module.wasm",
        "The verifier test module: run `cargo make build-verifier-module`",
    )
}

/// One case and what the test knows of it.
struct Case {
    what: String,
    body: Value,
    /// Wycheproof's verdict, or the one a certificate case must get.
    expected: Expected,
    /// Whether Envoy must decide it (an RSA or ECDSA signature under a key of its kind).
    host_decides: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Valid,
    Invalid,
    /// Not a signature of the key's kind: refused before any verifier runs.
    Unsupported,
    /// Wycheproof's "acceptable": either, as long as both verifiers agree.
    Either,
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn expected_of(result: TestResult) -> Expected {
    match result {
        TestResult::Valid => Expected::Valid,
        TestResult::Invalid => Expected::Invalid,
        TestResult::Acceptable => Expected::Either,
    }
}

/// The scheme as the test module names it.
fn scheme_name(scheme: Scheme) -> String {
    let hash = |hash| match hash {
        Hash::Sha256 => "sha256",
        Hash::Sha384 => "sha384",
        Hash::Sha512 => "sha512",
    };
    match scheme {
        Scheme::RsaPkcs1(h) => format!("rsa-pkcs1-{}", hash(h)),
        Scheme::Ecdsa(h) => format!("ecdsa-{}", hash(h)),
        Scheme::Ed25519 => "ed25519".into(),
    }
}

fn wycheproof_cases() -> Vec<Case> {
    let vectors = [
        wycheproof_vectors::rsa_pkcs1(),
        wycheproof_vectors::ecdsa(),
        wycheproof_vectors::ed25519(),
    ];
    vectors
        .into_iter()
        .flatten()
        .map(|v| Case {
            what: format!("{} #{}", v.set, v.tc_id),
            host_decides: v.scheme != Scheme::Ed25519,
            body: json!({
                "spki": b64(&v.spki), "scheme": scheme_name(v.scheme),
                "message": b64(&v.msg), "signature": b64(&v.sig)
            }),
            expected: expected_of(v.result),
        })
        .collect()
}

fn certificate_case(
    what: String,
    leaf: &[u8],
    issuer: &Issued,
    expected: Expected,
    host_decides: bool,
) -> Case {
    Case {
        what,
        body: json!({ "leaf": b64(leaf), "issuer": b64(&issuer.cert_der) }),
        expected,
        host_decides,
    }
}

/// The certificate with its signature value replaced (nothing else changes).
fn resigned(leaf: &Issued, signature: &[u8]) -> Vec<u8> {
    peergate_filter::der::with_signature_value(&leaf.cert_der, signature).expect("re-framed")
}

fn signature_of(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).expect("certificate");
    cert.signature_value.data.to_vec()
}

/// Signature values a verifier must refuse, made from a valid one.
fn malformed(signature: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut flipped = signature.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let mut last_flipped = signature.to_vec();
    *last_flipped.last_mut().expect("a signature") ^= 0x80;
    let mut zero_prefixed = vec![0u8];
    zero_prefixed.extend_from_slice(signature);
    let mut trailing = signature.to_vec();
    trailing.push(0);
    vec![
        ("a bit flipped in the middle", flipped),
        ("the last byte's top bit flipped", last_flipped),
        ("a zero byte before it", zero_prefixed),
        ("a zero byte after it", trailing),
        (
            "truncated by one byte",
            signature[..signature.len() - 1].to_vec(),
        ),
        ("empty", Vec::new()),
        ("all zeros", vec![0u8; signature.len()]),
    ]
}

fn certificate_cases() -> Vec<Case> {
    let kinds = [
        KeyKind::Rsa2048,
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::Ed25519,
    ];
    let cas: Vec<(KeyKind, Ca)> = kinds
        .iter()
        .map(|&kind| (kind, Ca::new(&format!("verifier {kind:?} CA"), kind)))
        .collect();
    let mut cases = Vec::new();
    for (kind, ca) in &cas {
        let host = *kind != KeyKind::Ed25519;
        let leaf = ca.issue(&Leaf::client(
            "peer",
            &["spiffe://a.example/ns/x/sa/y"],
            KeyKind::P256,
        ));
        cases.push(certificate_case(
            format!("{kind:?}: issued"),
            &leaf.cert_der,
            &ca.cert,
            Expected::Valid,
            host,
        ));
        let forger = ca.look_alike(*kind);
        let forged = forger.issue(&Leaf::client(
            "peer",
            &["spiffe://a.example/ns/x/sa/y"],
            KeyKind::P256,
        ));
        cases.push(certificate_case(
            format!("{kind:?}: forged by a look-alike CA"),
            &forged.cert_der,
            &ca.cert,
            Expected::Invalid,
            host,
        ));
        if matches!(kind, KeyKind::P256 | KeyKind::P384) {
            let twin = ecdsa_twin(&leaf, *kind);
            cases.push(certificate_case(
                format!("{kind:?}: the ECDSA twin"),
                &twin.cert_der,
                &ca.cert,
                Expected::Valid,
                host,
            ));
        }
        for (how, signature) in malformed(&signature_of(&leaf.cert_der)) {
            cases.push(certificate_case(
                format!("{kind:?}: signature {how}"),
                &resigned(&leaf, &signature),
                &ca.cert,
                Expected::Invalid,
                host,
            ));
        }
        // Every other CA's key, against this CA's leaf: a key that does not match.
        for (other_kind, other) in &cas {
            if other_kind == kind {
                continue;
            }
            let (expected, host) = match (kind, other_kind) {
                // Both ECDSA: the scheme fits the other curve's key, and the check fails.
                (KeyKind::P256, KeyKind::P384) | (KeyKind::P384, KeyKind::P256) => {
                    (Expected::Invalid, true)
                }
                _ => (Expected::Unsupported, false),
            };
            cases.push(certificate_case(
                format!("{kind:?} leaf under the {other_kind:?} CA's key"),
                &leaf.cert_der,
                &other.cert,
                expected,
                host,
            ));
        }
    }
    cases
}

fn verifier_envoy(binary: &Path) -> Envoy {
    let listener = json!({
        "name": "verifier",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "verifier",
                "route_config": { "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{ "match": { "prefix": "/" }, "direct_response": { "status": 404 } }]
                }]},
                // The buffer filter holds the route's direct response back until the module
                // has the whole body and answers (a module pausing on the headers would not
                // get the body).
                "http_filters": [
                    named_wasm_filter("verifier", &verifier_module(), ""),
                    { "name": "envoy.filters.http.buffer", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                        "max_request_bytes": 4_194_304
                    }},
                    router_filter()
                ]
            }
        }]}]
    });
    let bootstrap = json!({ "admin": admin(), "static_resources": { "listeners": [listener] } });
    Envoy::start_with(binary, &bootstrap).unwrap_or_else(|failure| panic!("{failure:?}"))
}

/// Posts the cases in batches, on one keep-alive connection; the outcomes in order.
fn outcomes(envoy: &Envoy, cases: &[Case]) -> Vec<Value> {
    let stream = TcpStream::connect(envoy.listener("verifier")).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut all = Vec::new();
    for batch in cases.chunks(150) {
        let body =
            serde_json::to_vec(&batch.iter().map(|c| &c.body).collect::<Vec<_>>()).expect("json");
        let head = format!(
            "POST /verify HTTP/1.1\r\nHost: verifier\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes()).expect("write");
        writer.write_all(&body).expect("write");
        let response = read_response(&mut reader)
            .unwrap_or_else(|e| panic!("no response ({e}); Envoy's log:\n{}", envoy.log()));
        assert_eq!(response.status, 200, "{}", response.text());
        let outcomes: Vec<Value> = serde_json::from_slice(&response.body).expect("outcomes");
        assert_eq!(outcomes.len(), batch.len());
        all.extend(outcomes);
    }
    all
}

fn check(binary: &Path, cases: &[Case]) {
    let envoy = verifier_envoy(binary);
    let results = outcomes(&envoy, cases);
    let mut disagreements = Vec::new();
    let mut host_verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for (case, outcome) in cases.iter().zip(&results) {
        let (module, filter, host) = (
            outcome["module"].as_str().unwrap_or_default(),
            outcome["filter"].as_str().unwrap_or_default(),
            outcome["host"].as_str().unwrap_or_default(),
        );
        *host_verdicts
            .entry(host.split(':').next().unwrap_or_default().to_owned())
            .or_default() += 1;
        let expected_ok = match case.expected {
            Expected::Valid => module == "valid",
            Expected::Invalid => module == "invalid",
            Expected::Unsupported => module == "unsupported",
            Expected::Either => true,
        };
        let host_ok = if case.host_decides {
            host == "verified" || host == "refused"
        } else {
            host.starts_with("not-asked")
        };
        if module != filter || !expected_ok || !host_ok {
            disagreements.push(format!(
                "{}: module {module}, filter with Envoy's verifier {filter}, Envoy {host} (expected {:?}{})",
                case.what,
                case.expected,
                if case.host_decides { ", Envoy deciding" } else { ", Envoy not asked" }
            ));
        }
    }
    let (_, version) = admin_get(envoy.admin, "/server_info").expect("server_info");
    let version = serde_json::from_str::<Value>(&version).expect("json")["version"].clone();
    eprintln!(
        "{version}: {} cases, Envoy's verdicts {host_verdicts:?}",
        cases.len()
    );
    assert!(
        disagreements.is_empty(),
        "{version}: {} of {} cases:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}

#[test]
fn envoys_verifier_decides_as_the_modules_own() {
    let mut cases = wycheproof_cases();
    cases.extend(certificate_cases());
    assert!(cases.len() > 3000, "only {} cases", cases.len());
    check(&envoy_binary(), &cases);
    check(&legacy_envoy_binary(), &cases);
}
