//! The policy core, natively: what one decision costs with and without the cache, and the
//! parsing around it. `cargo make bench` runs this and copies the medians into BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_filter::cache::AssessmentCache;
use peergate_filter::peer::fingerprint;
use peergate_filter::policy::unix_seconds;
use peergate_filter::xfcc::{certificate_der_from_pem, xfcc_cert_matching};
use peergate_filter::{compile, compile_json, PluginConfig};

const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";
const AUTHORITY: &str = "helloworld.zufar.io";

fn world(kind: KeyKind) -> (PluginConfig, Issued) {
    let root = Ca::new("a-b-root-ca", kind);
    let leaf = root.issue(&Leaf::client(
        "cluster-a-client",
        &[&format!("URI:{CLIENT_ID}")],
        kind,
    ));
    let config = PluginConfig {
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![CLIENT_ID.into(), "spiffe://cluster-a/ns/ops/*".into()]),
        ..Default::default()
    };
    (config, leaf)
}

/// Envoy's XFCC form: `Cert="<URL-encoded PEM>"` among the other fields.
fn xfcc_header(leaf: &Issued) -> String {
    format!(
        "By=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway;Hash={};Cert=\"{}\";Subject=\"CN=cluster-a-client\";URI={CLIENT_ID}",
        peergate_filter::peer::hex(&fingerprint(&leaf.cert_der)),
        peergate_e2e::http::url_encode(&leaf.cert_pem)
    )
}

fn decisions(c: &mut Criterion) {
    let now = SystemTime::now();
    for (name, kind) in [("rsa2048", KeyKind::Rsa2048), ("p256", KeyKind::P256)] {
        let (config, leaf) = world(kind);
        let policy = compile(&config).unwrap();
        assert!(policy
            .decide(Some(&leaf.cert_der), AUTHORITY, now)
            .is_allowed());
        c.bench_function(&format!("decide_uncached/{name}"), |b| {
            b.iter(|| policy.decide(Some(black_box(&leaf.cert_der)), AUTHORITY, now))
        });
        // What the filter does per request once the connection's certificate is known: a
        // cache lookup by the connection's digest, then the request-dependent half.
        let mut cache = AssessmentCache::default();
        let digest = fingerprint(&leaf.cert_der);
        cache.insert(Arc::new(policy.assess(&leaf.cert_der)), unix_seconds(now));
        c.bench_function(&format!("decide_cached/{name}"), |b| {
            b.iter(|| {
                let assessment = cache
                    .get(black_box(&digest), unix_seconds(now), &policy)
                    .unwrap();
                policy.judge(&assessment, black_box(AUTHORITY), now)
            })
        });
        if kind == KeyKind::Rsa2048 {
            use x509_parser::prelude::{FromDer, X509Certificate};
            let root_der =
                certificate_der_from_pem(config.trusted_issuers[0].pem().as_bytes()).unwrap();
            let (_, root) = X509Certificate::from_der(&root_der).unwrap();
            let key = peergate_filter::signature::IssuerKey::from_spki(root.public_key()).unwrap();
            c.bench_function("part/parse", |b| {
                b.iter(|| {
                    X509Certificate::from_der(black_box(&leaf.cert_der))
                        .unwrap()
                        .1
                        .version()
                })
            });
            let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
            c.bench_function("part/summary", |b| {
                b.iter(|| {
                    peergate_filter::peer::PeerSummary::of(black_box(&cert), &digest).unwrap()
                })
            });
            c.bench_function("part/signature", |b| {
                b.iter(|| {
                    peergate_filter::verifier::Verifier::InProcess
                        .verify_leaf(black_box(&cert), &key)
                        .unwrap()
                })
            });
            // The same check with the `rsa` crate, the baseline for ours.
            {
                use rsa::pkcs1::DecodeRsaPublicKey;
                use sha2::Digest;
                let reference = rsa::PublicKey::from_pkcs1_der(
                    root.public_key().subject_public_key.data.as_ref(),
                )
                .unwrap();
                let tbs = cert.tbs_certificate.as_ref();
                let signature = cert.signature_value.data.as_ref();
                c.bench_function("part/signature_rsa_crate", |b| {
                    b.iter(|| {
                        let digest = sha2::Sha256::digest(black_box(tbs));
                        reference
                            .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, signature)
                            .unwrap()
                    })
                });
            }
            c.bench_function("part/sha256_der", |b| {
                b.iter(|| fingerprint(black_box(&leaf.cert_der)))
            });
        }
        let json = config.to_json();
        c.bench_function(&format!("compile/{name}"), |b| {
            b.iter(|| compile_json(black_box(json.as_bytes())).unwrap())
        });
        if kind == KeyKind::Rsa2048 {
            let header = xfcc_header(&leaf);
            c.bench_function("xfcc_cert_matching", |b| {
                b.iter(|| xfcc_cert_matching(black_box(&header), &digest).unwrap())
            });
            c.bench_function("pem_to_der", |b| {
                b.iter(|| certificate_der_from_pem(black_box(leaf.cert_pem.as_bytes())).unwrap())
            });
        }
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
