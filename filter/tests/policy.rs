//! The policy core against certificates made at test time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_filter::cache::AssessmentCache;
use peergate_filter::decision_log::{decision_log_line, CertSource, DecisionRecord};
use peergate_filter::{compile, compile_json, CompileError, Layer, Mode, PluginConfig, Reason};
use time::{Duration, OffsetDateTime};

const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";
const CLIENT_SAN: &str = "URI:spiffe://cluster-a/ns/client/sa/sleep";

struct Pki {
    root: Ca,
    other_root: Ca,
    look_alike: Ca,
    client: Issued,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let root = Ca::new("a-b-root-ca", KeyKind::P256);
        let client = root.issue(&Leaf::client(
            "cluster-a-client",
            &[CLIENT_SAN],
            KeyKind::P256,
        ));
        Pki {
            other_root: Ca::new("someone-else", KeyKind::P256),
            look_alike: root.look_alike(KeyKind::P256),
            root,
            client,
        }
    })
}

fn config(root: &Ca, allowed: &[&str]) -> PluginConfig {
    PluginConfig {
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        allowed_sans: Some(allowed.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn secs(t: SystemTime) -> i64 {
    peergate_filter::policy::unix_seconds(t)
}

fn at_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap())
}

fn reason(config: &PluginConfig, leaf: &Issued, authority: &str) -> Reason {
    compile(config)
        .unwrap()
        .decide(Some(&leaf.cert_der), authority, now())
        .reason
}

#[test]
fn allowed_client_passes_and_is_summarized() {
    let pki = pki();
    let policy = compile(&config(&pki.root, &[CLIENT_ID])).unwrap();
    let decision = policy.decide(Some(&pki.client.cert_der), "helloworld.zufar.io", now());
    assert_eq!(decision.reason, Reason::Allowed);
    let peer = decision.peer().unwrap();
    assert!(
        peer.subject.contains("CN=cluster-a-client"),
        "{}",
        peer.subject
    );
    assert!(peer.issuer.contains("CN=a-b-root-ca"), "{}", peer.issuer);
    assert_eq!(peer.sans.len(), 1);
    assert_eq!(peer.sans[0].to_string(), format!("URI:{CLIENT_ID}"));
    assert_eq!(peer.fingerprint.len(), 64);
    assert!(!peer.serial.is_empty());
}

#[test]
fn every_supported_key_type_verifies_and_a_mismatch_does_not() {
    for (ca_kind, leaf_kind) in [
        (KeyKind::Rsa2048, KeyKind::Rsa2048),
        (KeyKind::P256, KeyKind::P256),
        (KeyKind::P384, KeyKind::P384),
        (KeyKind::Ed25519, KeyKind::Ed25519),
        (KeyKind::Rsa2048, KeyKind::P256),
        (KeyKind::P384, KeyKind::Rsa2048),
    ] {
        let root = Ca::new("typed-root", ca_kind);
        let leaf = root.issue(&Leaf::client("c", &["c.example"], leaf_kind));
        assert_eq!(
            reason(&config(&root, &["c.example"]), &leaf, "h"),
            Reason::Allowed,
            "{ca_kind:?} CA, {leaf_kind:?} leaf"
        );
        let look_alike = root.look_alike(ca_kind);
        let forged = look_alike.issue(&Leaf::client("c", &["c.example"], leaf_kind));
        assert_eq!(
            reason(&config(&root, &["c.example"]), &forged, "h"),
            Reason::BadSignature,
            "{ca_kind:?} look-alike"
        );
    }
}

#[test]
fn another_ca_is_untrusted() {
    let pki = pki();
    let stranger = pki
        .other_root
        .issue(&Leaf::client("x", &[CLIENT_SAN], KeyKind::P256));
    assert_eq!(
        reason(&config(&pki.root, &[CLIENT_ID]), &stranger, "h"),
        Reason::UntrustedIssuer
    );
}

#[test]
fn same_name_same_key_id_other_key_fails_on_the_signature() {
    let pki = pki();
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, real) = X509Certificate::from_der(&pki.root.cert.cert_der).unwrap();
    let (_, fake) = X509Certificate::from_der(&pki.look_alike.cert.cert_der).unwrap();
    assert_eq!(real.subject().as_raw(), fake.subject().as_raw());
    assert_ne!(real.public_key().raw, fake.public_key().raw);
    let forged = pki
        .look_alike
        .issue(&Leaf::client("x", &[CLIENT_SAN], KeyKind::P256));
    assert_eq!(
        reason(&config(&pki.root, &[CLIENT_ID]), &forged, "h"),
        Reason::BadSignature
    );
    let mut no_aki = Leaf::client("x", &[CLIENT_SAN], KeyKind::P256);
    no_aki.authority_key_id = false;
    let forged = pki.look_alike.issue(&no_aki);
    assert_eq!(
        reason(&config(&pki.root, &[CLIENT_ID]), &forged, "h"),
        Reason::BadSignature
    );
}

#[test]
fn same_name_other_key_id_is_a_key_id_mismatch() {
    let pki = pki();
    // A CA with the same DN but its own key identifier.
    let other = Ca::new("a-b-root-ca", KeyKind::P256);
    let leaf = other.issue(&Leaf::client("x", &[CLIENT_SAN], KeyKind::P256));
    assert_eq!(
        reason(&config(&pki.root, &[CLIENT_ID]), &leaf, "h"),
        Reason::IssuerKeyIdMismatch
    );
    // Trusting both same-named CAs admits each one's leaves.
    let mut both = config(&pki.root, &[CLIENT_ID]);
    both.trusted_issuers
        .push(other.cert.cert_pem.clone().into());
    assert_eq!(reason(&both, &leaf, "h"), Reason::Allowed);
    assert_eq!(reason(&both, &pki.client, "h"), Reason::Allowed);
}

#[test]
fn a_pem_bundle_in_one_entry_trusts_every_certificate() {
    let pki = pki();
    let mut cfg = config(&pki.other_root, &[CLIENT_ID]);
    cfg.trusted_issuers[0] =
        format!("{}{}", cfg.trusted_issuers[0].pem(), pki.root.cert.cert_pem).into();
    let policy = compile(&cfg).unwrap();
    assert_eq!(policy.issuer_count(), 2);
    assert_eq!(reason(&cfg, &pki.client, "h"), Reason::Allowed);
}

#[test]
fn validity_window_is_inclusive_and_checked_at_the_given_time() {
    let pki = pki();
    let mut leaf = Leaf::client("x", &[CLIENT_SAN], KeyKind::P256);
    // Inside the root's own window (from a day ago), which is checked after the leaf's.
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(20);
    leaf.not_before = start;
    leaf.not_after = start + Duration::hours(10);
    let issued = pki.root.issue(&leaf);
    let policy = compile(&config(&pki.root, &[CLIENT_ID])).unwrap();
    let at = |t: i64| {
        policy
            .decide(Some(&issued.cert_der), "h", at_unix(t))
            .reason
    };
    let nb = start.unix_timestamp();
    let na = nb + 36_000;
    assert_eq!(at(nb - 1), Reason::NotYetValid);
    assert_eq!(at(nb), Reason::Allowed);
    assert_eq!(at(na), Reason::Allowed);
    assert_eq!(at(na + 1), Reason::Expired);
    let just_after = at_unix(na) + std::time::Duration::from_millis(5);
    assert_eq!(
        policy
            .decide(Some(&issued.cert_der), "h", just_after)
            .reason,
        Reason::Expired
    );
    assert_eq!(
        policy.decide(Some(&issued.cert_der), "h", now()).reason,
        Reason::Expired
    );
}

#[test]
fn deny_lists_refuse_by_serial_and_fingerprint() {
    let pki = pki();
    let mut leaf = Leaf::client("x", &[CLIENT_SAN], KeyKind::P256);
    leaf.serial = Some(vec![0x80, 0x01, 0x02]);
    let issued = pki.root.issue(&leaf);
    let mut cfg = config(&pki.root, &[CLIENT_ID]);
    cfg.denied_serials = vec!["80:01:02".into()];
    assert_eq!(reason(&cfg, &issued, "h"), Reason::DeniedSerial);
    cfg.denied_serials = vec!["00800102".into()];
    assert_eq!(reason(&cfg, &issued, "h"), Reason::DeniedSerial);
    cfg.denied_serials.clear();
    let fp = compile(&cfg)
        .unwrap()
        .assess(&issued.cert_der)
        .peer
        .unwrap()
        .fingerprint;
    cfg.denied_fingerprints = vec![fp.to_uppercase()];
    assert_eq!(reason(&cfg, &issued, "h"), Reason::DeniedFingerprint);
    assert_eq!(reason(&cfg, &pki.client, "h"), Reason::Allowed);
}

#[test]
fn sans_are_matched_per_host() {
    let pki = pki();
    let json = serde_json::json!({
        "trustedIssuers": [pki.root.cert.cert_pem],
        "allowedSans": ["spiffe://nobody/*"],
        "hosts": {
            "Helloworld.zufar.io": {"allowedSans": [CLIENT_ID]},
            "admin.zufar.io": {"allowedSans": ["spiffe://cluster-a/ns/admin/*"]}
        }
    });
    let cfg: PluginConfig = serde_json::from_value(json).unwrap();
    assert_eq!(
        reason(&cfg, &pki.client, "helloworld.zufar.io"),
        Reason::Allowed
    );
    assert_eq!(
        reason(&cfg, &pki.client, "HELLOWORLD.zufar.io:443"),
        Reason::Allowed
    );
    assert_eq!(
        reason(&cfg, &pki.client, "admin.zufar.io"),
        Reason::SanNotAllowed
    );
    // Other authorities fall back to the top-level list.
    assert_eq!(reason(&cfg, &pki.client, "other.io"), Reason::SanNotAllowed);
    let mut only_hosts = cfg.clone();
    only_hosts.allowed_sans = None;
    assert_eq!(
        reason(&only_hosts, &pki.client, "other.io"),
        Reason::NoRuleForHost
    );
    assert_eq!(
        reason(&only_hosts, &pki.client, "helloworld.zufar.io"),
        Reason::Allowed
    );
}

#[test]
fn wildcard_and_prefix_patterns_on_real_certificates() {
    let pki = pki();
    let dns_one = pki.root.issue(&Leaf::client(
        "x",
        &["svc.cluster-a.example.com"],
        KeyKind::P256,
    ));
    let dns_two = pki.root.issue(&Leaf::client(
        "x",
        &["a.svc.cluster-a.example.com"],
        KeyKind::P256,
    ));
    let cfg = config(
        &pki.root,
        &["*.cluster-a.example.com", "spiffe://cluster-a/*"],
    );
    assert_eq!(reason(&cfg, &dns_one, "h"), Reason::Allowed);
    assert_eq!(reason(&cfg, &dns_two, "h"), Reason::SanNotAllowed);
    assert_eq!(reason(&cfg, &pki.client, "h"), Reason::Allowed);
    let ip = pki.root.issue(&Leaf::client(
        "x",
        &["IP:10.1.2.3", "email:a@b.c"],
        KeyKind::P256,
    ));
    assert_eq!(
        reason(&config(&pki.root, &["10.1.2.3"]), &ip, "h"),
        Reason::Allowed
    );
    assert_eq!(
        reason(&config(&pki.root, &["a@b.c"]), &ip, "h"),
        Reason::Allowed
    );
    assert_eq!(
        reason(&config(&pki.root, &["10.1.2.4"]), &ip, "h"),
        Reason::SanNotAllowed
    );
}

#[test]
fn missing_and_garbage_certificates() {
    let pki = pki();
    let policy = compile(&config(&pki.root, &[CLIENT_ID])).unwrap();
    assert_eq!(
        policy.decide(None, "h", now()).reason,
        Reason::NoPeerCertificate
    );
    for garbage in [
        &b""[..],
        b"\x30",
        b"not der at all",
        &pki.client.cert_der[..10],
    ] {
        assert_eq!(
            policy.decide(Some(garbage), "h", now()).reason,
            Reason::UnparsableCertificate
        );
    }
    let mut trailing = pki.client.cert_der.clone();
    trailing.push(0);
    assert_eq!(
        policy.decide(Some(&trailing), "h", now()).reason,
        Reason::UnparsableCertificate
    );
}

#[test]
fn audit_mode_never_refuses() {
    let pki = pki();
    let mut cfg = config(&pki.root, &["spiffe://nobody"]);
    cfg.mode = Mode::Audit;
    let policy = compile(&cfg).unwrap();
    let decision = policy.decide(Some(&pki.client.cert_der), "h", now());
    assert_eq!(decision.reason, Reason::SanNotAllowed);
    assert!(!policy.refuses(&decision));
    cfg.mode = Mode::Enforce;
    assert!(compile(&cfg).unwrap().refuses(&decision));
}

#[test]
fn decision_log_line_carries_the_peer() {
    let pki = pki();
    let policy = compile(&config(&pki.root, &["spiffe://nobody"])).unwrap();
    let decision = policy.decide(Some(&pki.client.cert_der), "helloworld.zufar.io", now());
    let at = at_unix(1_795_809_365) + std::time::Duration::from_millis(42);
    let line = decision_log_line(
        &decision,
        Mode::Enforce,
        Layer::Request,
        "helloworld.zufar.io",
        CertSource::Connection,
        at,
    );
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["time"], "2026-11-27T19:56:05.042Z");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reason"], "san_not_allowed");
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["enforced"], true);
    assert_eq!(v["authority"], "helloworld.zufar.io");
    assert_eq!(v["source"], "connection");
    assert_eq!(v["sans"][0], format!("URI:{CLIENT_ID}"));
    assert!(v["subject"].as_str().unwrap().contains("cluster-a-client"));
    assert!(v["issuer"].as_str().unwrap().contains("a-b-root-ca"));
    assert_eq!(v["fingerprint"].as_str().unwrap().len(), 64);
    assert!(v["serial"].is_string());
    // What `peergate audit --logs` reads back is what the filter wrote.
    let record: DecisionRecord<'static> = serde_json::from_str(&line).unwrap();
    assert_eq!(
        record,
        DecisionRecord::of(
            &decision,
            Mode::Enforce,
            Layer::Request,
            "helloworld.zufar.io",
            CertSource::Connection,
            at
        )
    );
    assert_eq!(record.sans.unwrap().as_ref(), decision.peer().unwrap().sans);
    let none = peergate_filter::Decision::without_certificate(Reason::NoPeerCertificate);
    let v: serde_json::Value = serde_json::from_str(&decision_log_line(
        &none,
        Mode::Audit,
        Layer::Connection,
        "h",
        CertSource::None,
        now(),
    ))
    .unwrap();
    assert_eq!(v["enforced"], false);
    assert_eq!(
        v["layer"], "connection",
        "the layer is written when it is not the default"
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["layer"].is_null(),
        "and left out for requests, so older readers see the same lines"
    );
    assert!(v.get("subject").is_none());
}

#[test]
fn cache_expires_at_not_after_and_stays_bounded() {
    let pki = pki();
    let policy = compile(&config(&pki.root, &[CLIENT_ID])).unwrap();
    let a = Arc::new(policy.assess(&pki.client.cert_der));
    let not_after = a.not_after().unwrap();
    let mut cache = AssessmentCache::new(2);
    let t = secs(now());
    cache.insert(Arc::clone(&a), t);
    assert!(cache.get(&a.fingerprint, t, &policy).is_some());
    assert!(cache.get(&a.fingerprint, not_after, &policy).is_some());
    assert!(cache.get(&a.fingerprint, not_after + 1, &policy).is_none());
    assert!(cache.is_empty(), "an expired entry is dropped on lookup");

    let leaves: Vec<_> = (0..3)
        .map(|i| {
            let leaf = pki.root.issue(&Leaf::client(
                &format!("c{i}"),
                &[CLIENT_SAN],
                KeyKind::P256,
            ));
            Arc::new(policy.assess(&leaf.cert_der))
        })
        .collect();
    for l in &leaves {
        cache.insert(Arc::clone(l), t);
    }
    assert_eq!(cache.len(), 2);
    assert!(
        cache.get(&leaves[0].fingerprint, t, &policy).is_none(),
        "oldest evicted"
    );
    assert!(cache.get(&leaves[2].fingerprint, t, &policy).is_some());
    // Unparsable input is cached for a while too, so garbage cannot force re-parsing.
    let garbage = Arc::new(policy.assess(b"garbage"));
    cache.insert(Arc::clone(&garbage), t);
    assert!(cache.get(&garbage.fingerprint, t, &policy).is_some());
    assert!(cache.get(&garbage.fingerprint, t + 301, &policy).is_none());
    cache.clear();
    assert!(cache.is_empty());
}

/// A flood of distinct certificates (here unparsable ones, which are cached too) never grows the
/// cache past its capacity, also when entries expire and come back; the cache's own invariant
/// (its eviction order holds exactly its keys) is asserted on every insertion in this build.
#[test]
fn cache_stays_bounded_under_100_000_distinct_certificates() {
    let pki = pki();
    let policy = compile(&config(&pki.root, &[CLIENT_ID])).unwrap();
    let mut cache = AssessmentCache::default();
    let capacity = peergate_filter::cache::DEFAULT_CAPACITY;
    let mut t = secs(now());
    let mut largest = 0;
    for i in 0..100_000u32 {
        let assessment =
            Arc::new(policy.assess(format!("not a certificate {}", i % 50_000).as_bytes()));
        if cache.get(&assessment.fingerprint, t, &policy).is_none() {
            cache.insert(assessment, t);
        }
        largest = largest.max(cache.len());
        // Time passes: unparsable entries expire after 300 s and the second half of the loop
        // brings the same inputs back.
        if i % 1000 == 0 {
            t += 7;
        }
    }
    assert_eq!(largest, capacity);
    assert!(cache.len() <= capacity);
}

fn compile_error(json: serde_json::Value) -> String {
    compile_json(json.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn configuration_errors_name_the_field() {
    let pki = pki();
    let root = pki.root.cert.cert_pem.clone();
    let client = pki.client.cert_pem.clone();
    let cases = [
        (
            serde_json::json!({"trustedIssuers": [], "allowedSans": ["a"]}),
            "trustedIssuers: at least one",
        ),
        (
            serde_json::json!({"allowedSans": ["a"]}),
            "missing field `trustedIssuers`",
        ),
        (
            serde_json::json!({"trustedIssuers": ["not pem"], "allowedSans": ["a"]}),
            "trustedIssuers[0]: not a PEM certificate",
        ),
        (
            serde_json::json!({"trustedIssuers": [root, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"], "allowedSans": ["a"]}),
            "trustedIssuers[1]: certificate does not parse",
        ),
        (
            serde_json::json!({"trustedIssuers": [client], "allowedSans": ["a"]}),
            "trustedIssuers[0]: \"O=peergate tests, CN=cluster-a-client\" is not a CA",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "allowedSans": ["a"], "denyStaus": 401}),
            "unknown field `denyStaus`",
        ),
        (
            serde_json::json!({"trustedIssuers": [root]}),
            "allowedSans: required",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "allowedSans": []}),
            "allowedSans: the list is empty",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "allowedSans": ["ok", "a*b"]}),
            "allowedSans[1]: pattern \"a*b\" has a misplaced",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "hosts": {"h.io": {"allowedSans": ["*."]}}}),
            "hosts.h.io.allowedSans[0]",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "hosts": {"h.io:443": {"allowedSans": ["a"]}}}),
            "hosts.h.io:443: write the host without a port",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "hosts": {"h.io": {"allowedSans": ["a"]}, "H.IO": {"allowedSans": ["b"]}}}),
            "listed twice",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "allowedSans": ["a"], "deniedSerials": ["xyz"]}),
            "deniedSerials[0]",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "allowedSans": ["a"], "deniedFingerprints": ["abcd"]}),
            "deniedFingerprints[0]",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "allowedSans": ["a"], "denyStatus": 200}),
            "denyStatus: 200",
        ),
        (
            serde_json::json!({"trustedIssuers": [root], "allowedSans": ["a"], "mode": "strict"}),
            "field `mode`",
        ),
        (
            serde_json::json!({"trustedIssuers": root, "allowedSans": ["a"]}),
            "field `trustedIssuers`",
        ),
    ];
    for (json, expected) in cases {
        let message = compile_error(json.clone());
        assert!(
            message.contains(expected),
            "{json}\n  gave: {message}\n  wanted: {expected}"
        );
    }
    assert!(matches!(
        compile_json(b"{not json"),
        Err(CompileError::Parse(_))
    ));
}

#[test]
fn the_serialized_configuration_compiles_to_the_same_policy() {
    let pki = pki();
    let mut cfg = config(&pki.root, &[CLIENT_ID]);
    cfg.deny_status = Some(401);
    cfg.mode = Mode::Audit;
    let policy = compile_json(cfg.to_json().as_bytes()).unwrap();
    assert_eq!(policy.deny_status(), 401);
    assert_eq!(policy.mode(), Mode::Audit);
    assert_eq!(
        policy.decide(Some(&pki.client.cert_der), "h", now()).reason,
        Reason::Allowed
    );
}

/// Found by the `compile_config` fuzzer: an unknown field whose name holds `\n` made the
/// rejection line span lines, so whoever writes the pluginConfig could forge log lines (a fake
/// decision line among them). The input is in fuzz/regressions/compile_config/.
#[test]
fn rejection_log_line_is_one_line_and_bounded() {
    let forged = r#"{"trustedIssuers":[],"x\n{\"decision\":\"allow\"}":1}"#;
    let error = compile_json(forged.as_bytes()).err().unwrap();
    let line = peergate_filter::policy::rejection_log_line(&error);
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.contains(r"x\n{"),
        "the newline is shown escaped: {line}"
    );

    let crash = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/compile_config/crash-def325d3cb80a79cbf63dbbfee240d52bb089432"
    ))
    .unwrap();
    let line = peergate_filter::policy::rejection_log_line(&compile_json(&crash).err().unwrap());
    assert!(!line.contains('\n'), "{line}");

    let huge = format!(r#"{{"trustedIssuers":[],"{}":1}}"#, "a".repeat(100_000));
    let line =
        peergate_filter::policy::rejection_log_line(&compile_json(huge.as_bytes()).err().unwrap());
    assert!(line.len() < 1200, "{} bytes", line.len());
    assert!(line.ends_with("… (truncated)"));
}

/// Found by the property test `an_admitted_certificate_changed_anywhere_is_refused`: the
/// outer signatureAlgorithm under another tag, or a signature BIT STRING with an unused bit,
/// kept the signed content and so the signature valid, under a new SHA-256. A certificate on
/// `deniedFingerprints` could come back as such a variant. Both are refused now, as not DER.
#[test]
fn a_re_encoded_certificate_does_not_escape_the_fingerprint_deny_list() {
    let pki = pki();
    let der = &pki.client.cert_der;
    let digest = peergate_filter::peer::fingerprint(der);
    let mut config = config(&pki.root, &[CLIENT_ID]);
    config.denied_fingerprints = vec![peergate_filter::peer::hex(&digest)];
    assert_eq!(reason(&config, &pki.client, "h"), Reason::DeniedFingerprint);

    let policy = compile(&config).unwrap();
    // Locate the outer signatureAlgorithm and the signature BIT STRING from the end: the
    // signature is the last element, the algorithm right before it.
    let (alg_at, bits_at) = outer_positions(der);
    for (at, xor) in [(alg_at + 2, 0x01), (bits_at + 2, 0x01)] {
        let mut variant = der.clone();
        variant[at] ^= xor;
        let decision = policy.decide(Some(&variant), "h", now());
        assert_eq!(decision.reason, Reason::UnparsableCertificate, "byte {at}");
        let report = policy.audit(&variant, "h", None, now());
        assert_eq!(
            report.deciding_check().and_then(|c| c.reason),
            Some(Reason::UnparsableCertificate)
        );
    }
}

/// Offsets of the outer signatureAlgorithm and signatureValue elements of a certificate.
fn outer_positions(der: &[u8]) -> (usize, usize) {
    fn skip(der: &[u8], at: usize) -> (usize, usize) {
        // (header length, content length) of the element at `at`.
        let first = der[at + 1];
        if first < 0x80 {
            (2, usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            let len = der[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |v, &b| (v << 8) | usize::from(b));
            (2 + n, len)
        }
    }
    let (outer_header, _) = skip(der, 0);
    let tbs_at = outer_header;
    let (h, l) = skip(der, tbs_at);
    let alg_at = tbs_at + h + l;
    let (h, l) = skip(der, alg_at);
    (alg_at, alg_at + h + l)
}

#[test]
fn connection_layer_configuration() {
    let pki = pki();
    let mut config = config(&pki.root, &[CLIENT_ID]);
    config.layer = Layer::Connection;
    let policy = compile(&config).unwrap();
    assert_eq!(policy.layer(), Layer::Connection);
    // The same decision as at the request layer: the SNI plays the authority's part.
    assert!(policy
        .decide(Some(&pki.client.cert_der), "helloworld.zufar.io", now())
        .is_allowed());
    assert!(config.to_json().contains(r#""layer":"connection""#));
    let mut request = config.clone();
    request.layer = Layer::Request;
    assert!(
        !request.to_json().contains("layer"),
        "the default is not written, so configurations from before the field read the same"
    );

    let mut with_status = config.clone();
    with_status.deny_status = Some(403);
    assert_eq!(
        compile(&with_status).err(),
        Some(CompileError::DenyStatusAtConnectionLayer)
    );
    for ip in ["10.0.0.1", "::1"] {
        let mut ip_rule = config.clone();
        ip_rule.allowed_sans = None;
        ip_rule.hosts.insert(
            ip.into(),
            peergate_filter::HostConfig {
                allowed_sans: vec![CLIENT_ID.into()],
                ..Default::default()
            },
        );
        let error = compile(&ip_rule).err().unwrap().to_string();
        assert!(error.contains("server name (SNI)"), "{ip}: {error}");
        ip_rule.layer = Layer::Request;
        // At the request layer an IP authority is a fine rule.
        assert!(compile(&ip_rule).is_ok(), "{ip}");
    }
    let error = compile_json(br#"{"layer":"transport","trustedIssuers":[]}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("layer"), "{error}");
}

/// `protectedServerNames`: on a gateway shared with other hosts, only these TLS server names
/// (case-insensitive) and connections without one are decided.
#[test]
fn protected_server_names_are_host_names_compared_case_insensitively() {
    let p = pki();
    let with = |names: Vec<&str>| {
        let mut config = config(&p.root, &[CLIENT_ID]);
        config.protected_server_names = Some(names.into_iter().map(str::to_owned).collect());
        compile(&config)
    };
    let policy = with(vec!["Helloworld.Zufar.io", "b.example."]).unwrap();
    assert!(policy.limits_server_names());
    assert!(policy.protects("helloworld.zufar.io"));
    assert!(policy.protects("HELLOWORLD.ZUFAR.IO."));
    assert!(policy.protects("b.example"));
    assert!(!policy.protects("other.example.com"));
    assert!(!policy.protects("helloworld.zufar.io.evil"));
    // No server name at all: decided, never passed.
    assert!(policy.protects(""));
    assert_eq!(
        policy.protected_server_names(),
        Some(vec![
            "b.example".to_owned(),
            "helloworld.zufar.io".to_owned()
        ])
    );
    // A request is decided when its server name or its authority is protected (issue 26).
    let authority = |a: &'static str| move || a.to_owned();
    assert!(policy.protects_request("other.example.com", authority("helloworld.zufar.io")));
    assert!(policy.protects_request("other.example.com", authority("HelloWorld.Zufar.IO.:443")));
    assert!(policy.protects_request("helloworld.zufar.io", authority("other.example.com")));
    assert!(policy.protects_request("", authority("other.example.com")));
    assert!(!policy.protects_request("other.example.com", authority("other.example.com")));
    assert!(!policy.protects_request("other.example.com", authority("helloworld.zufar.io.evil")));
    let everything = compile(&config(&p.root, &[CLIENT_ID])).unwrap();
    assert!(!everything.limits_server_names());
    assert!(everything.protects("other.example.com"));
    assert!(everything.protects_request("other.example.com", authority("other.example.com")));
    for (names, expected) in [
        (vec![], "protectedServerNames: the list is empty"),
        (
            vec!["*.zufar.io"],
            "protectedServerNames[0]: \"*.zufar.io\" is not a host name",
        ),
        (vec!["a.io:443"], "protectedServerNames[0]"),
        (vec!["10.0.0.1"], "is an IP address"),
        (
            vec!["a.io", "A.io"],
            "protectedServerNames[1]: \"A.io\" is listed twice",
        ),
    ] {
        let err = with(names).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

/// An assessment carries what its policy decided about the certificate once (trust, the
/// default rule's verdict on the names): judged by another policy, a narrower allow-list must
/// still apply, and the filter knows to assess such a cached certificate anew.
#[test]
fn an_assessment_is_judged_by_the_names_of_the_policy_that_judges_it() {
    let pki = pki();
    let before = compile(&config(&pki.root, &[CLIENT_ID])).unwrap();
    let after = compile(&config(
        &pki.root,
        &["spiffe://cluster-a/ns/client/sa/other"],
    ))
    .unwrap();
    let assessment = Arc::new(before.assess(&pki.client.cert_der));
    assert!(assessment.is_from(&before));
    assert!(!assessment.is_from(&after));
    assert_eq!(
        before.judge(&assessment, "h", now()).reason,
        Reason::Allowed
    );
    assert_eq!(
        after.judge(&assessment, "h", now()).reason,
        Reason::SanNotAllowed
    );
    // The same configuration compiled again is another policy: its CRLs or CAs may differ.
    let again = compile(&config(&pki.root, &[CLIENT_ID])).unwrap();
    assert!(!assessment.is_from(&again));
    assert_eq!(again.judge(&assessment, "h", now()).reason, Reason::Allowed);
    // The cache hands an entry only to the policy that made it, and drops it for another.
    let mut cache = AssessmentCache::default();
    cache.insert(Arc::clone(&assessment), secs(now()));
    assert!(cache
        .get(&assessment.fingerprint, secs(now()), &before)
        .is_some());
    assert!(cache
        .get(&assessment.fingerprint, secs(now()), &after)
        .is_none());
    assert!(
        cache.is_empty(),
        "another policy's entry is dropped on lookup"
    );
}

/// Partner A may call `/payments/` (GET, POST), partner B only `GET /status`; the longest
/// prefix decides, an unmatched path falls back to the host's names unless `routesOnly`, and
/// a path in any other spelling than the canonical one is refused before a route is chosen.
#[test]
fn routes_decide_by_path_method_and_peer() {
    let pki = pki();
    let partner_b = pki.root.issue(&Leaf::client(
        "partner-b",
        &["URI:spiffe://partner-b/ns/status/sa/poller"],
        KeyKind::P256,
    ));
    let json = |routes_only: bool| {
        serde_json::json!({
            "trustedIssuers": [pki.root.cert.cert_pem],
            "hosts": {
                "api.zufar.io": {
                    "allowedSans": [CLIENT_ID, "spiffe://partner-b/*"],
                    "routesOnly": routes_only,
                    "routes": [
                        {"pathPrefix": "/payments/", "methods": ["GET", "POST"], "allowedSans": [CLIENT_ID]},
                        {"pathPrefix": "/payments/refunds/", "methods": ["POST"], "allowedSans": [CLIENT_ID]},
                        {"pathPrefix": "/status", "methods": ["GET"]}
                    ]
                }
            }
        })
    };
    let policy = compile(&serde_json::from_value(json(false)).unwrap()).unwrap();
    let decide = |leaf: &Issued, method: &str, path: &str| {
        let assessment = Arc::new(policy.assess(&leaf.cert_der));
        let request = peergate_filter::routes::RequestLine { path, method };
        let d = policy.judge_request(&assessment, "api.zufar.io", Some(request), now());
        (d.reason, d.route)
    };
    let route = |r: &str| Some(r.to_owned());
    let a = &pki.client;
    let b = &partner_b;
    let cases: &[(&Issued, &str, &str, Reason, Option<String>)] = &[
        (
            a,
            "POST",
            "/payments/charge",
            Reason::Allowed,
            route("/payments/"),
        ),
        (
            a,
            "GET",
            "/payments/charge?x=1",
            Reason::Allowed,
            route("/payments/"),
        ),
        (
            a,
            "DELETE",
            "/payments/charge",
            Reason::RouteNotAllowed,
            route("/payments/"),
        ),
        (
            a,
            "post",
            "/payments/charge",
            Reason::RouteNotAllowed,
            route("/payments/"),
        ),
        (
            b,
            "GET",
            "/payments/charge",
            Reason::RouteNotAllowed,
            route("/payments/"),
        ),
        (
            a,
            "POST",
            "/payments/refunds/9",
            Reason::Allowed,
            route("/payments/refunds/"),
        ),
        (
            a,
            "GET",
            "/payments/refunds/9",
            Reason::RouteNotAllowed,
            route("/payments/refunds/"),
        ),
        // A route without names takes the host's: both partners.
        (b, "GET", "/status", Reason::Allowed, route("/status")),
        (a, "GET", "/status", Reason::Allowed, route("/status")),
        (
            b,
            "POST",
            "/status",
            Reason::RouteNotAllowed,
            route("/status"),
        ),
        // No route: the host's names.
        (b, "GET", "/status/x", Reason::Allowed, None),
        (b, "GET", "/other", Reason::Allowed, None),
        // Other spellings of a route's path are refused, not matched.
        (
            b,
            "GET",
            "/status/../payments/charge",
            Reason::UnnormalizedPath,
            None,
        ),
        (
            b,
            "GET",
            "/payments%2Fcharge",
            Reason::UnnormalizedPath,
            None,
        ),
        (
            b,
            "GET",
            "//payments/charge",
            Reason::UnnormalizedPath,
            None,
        ),
        (
            b,
            "GET",
            "/p%61yments/charge",
            Reason::UnnormalizedPath,
            None,
        ),
    ];
    for (leaf, method, path, want, want_route) in cases {
        assert_eq!(
            decide(leaf, method, path),
            (*want, want_route.clone()),
            "{} {method} {path}",
            leaf.cert_pem.len()
        );
    }
    // routesOnly: an unmatched path is a denial.
    let only = compile(&serde_json::from_value(json(true)).unwrap()).unwrap();
    let assessment = Arc::new(only.assess(&partner_b.cert_der));
    let request = peergate_filter::routes::RequestLine {
        path: "/other",
        method: "GET",
    };
    assert_eq!(
        only.judge_request(&assessment, "api.zufar.io", Some(request), now())
            .reason,
        Reason::RouteNotAllowed
    );
    // Routes need the request layer.
    let mut connection: PluginConfig = serde_json::from_value(json(false)).unwrap();
    connection.layer = Layer::Connection;
    assert!(matches!(
        compile(&connection),
        Err(CompileError::RoutesAtConnectionLayer)
    ));
    let mut bad: PluginConfig = serde_json::from_value(json(false)).unwrap();
    if let Some(host) = bad.hosts.get_mut("api.zufar.io") {
        host.routes[0].path_prefix = "/payments/../".into();
    }
    let err = compile(&bad).unwrap_err().to_string();
    assert!(
        err.contains("hosts.api.zufar.io.routes[0].pathPrefix"),
        "{err}"
    );
}
