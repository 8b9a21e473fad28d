//! Property tests (proptest) for the parsers the fuzzers target, run on every `cargo make
//! test`: XFCC headers, digests, PEM, the pluginConfig and SAN patterns, and decisions on
//! certificates changed in any single byte. The fuzzers (`cargo make fuzz`) explore further;
//! these keep the invariants checked on every change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::SystemTime;

use base64::Engine;
use peergate_e2e::http::url_encode;
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_filter::pattern::{SanAllowList, SanPattern};
use peergate_filter::peer::{fingerprint, San};
use peergate_filter::xfcc::{
    certificate_der_from_pem, parse_digest, url_decode, xfcc_cert_matching, xfcc_certs,
};
use peergate_filter::{compile, HostConfig, Layer, Mode, PluginConfig, Policy, Reason};
use proptest::prelude::*;

const CLIENT_SAN: &str = "URI:spiffe://cluster-a/ns/client/sa/sleep";

struct World {
    root: Ca,
    rsa_root: Ca,
    clients: Vec<Issued>,
    policy: Policy,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let root = Ca::new("a-b-root-ca", KeyKind::P256);
        let rsa_root = Ca::new("a-b-rsa-root", KeyKind::Rsa2048);
        let clients = vec![
            root.issue(&Leaf::client("client-p256", &[CLIENT_SAN], KeyKind::P256)),
            rsa_root.issue(&Leaf::client("client-rsa", &[CLIENT_SAN], KeyKind::Rsa2048)),
            root.issue(&Leaf::client("client-ed", &[CLIENT_SAN], KeyKind::Ed25519)),
        ];
        let policy = compile(&PluginConfig {
            trusted_issuers: vec![
                root.cert.cert_pem.clone().into(),
                rsa_root.cert.cert_pem.clone().into(),
            ],
            allowed_sans: Some(vec!["spiffe://cluster-a/ns/client/sa/sleep".into()]),
            ..Default::default()
        })
        .unwrap();
        for client in &clients {
            assert!(policy
                .decide(Some(&client.cert_der), "h", SystemTime::now())
                .is_allowed());
        }
        World {
            root,
            rsa_root,
            clients,
            policy,
        }
    })
}

/// Text rich in the characters XFCC syntax gives meaning to.
fn xfcc_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[A-Za-z0-9,;="\\%: /.\-]{0,40}"#).unwrap()
}

/// A value as Envoy writes it: double-quoted, `"` and `\` escaped.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any text at all: the parsers return, and a certificate is only ever returned for the
    /// digest asked for.
    #[test]
    fn xfcc_parsers_never_panic(header in xfcc_text(), any in ".{0,200}", digest in any::<[u8; 32]>()) {
        for text in [&header, &any] {
            let _ = xfcc_certs(text);
            let _ = url_decode(text);
            let _ = parse_digest(text.as_bytes());
            if let Some(der) = xfcc_cert_matching(text, &digest) {
                prop_assert_eq!(fingerprint(&der), digest);
            }
        }
    }

    /// Elements written the way Envoy writes them, with any characters in the values, give
    /// back every `Cert=` value, in order.
    #[test]
    fn xfcc_values_round_trip(
        elements in proptest::collection::vec(
            (xfcc_text(), proptest::option::of(xfcc_text()), xfcc_text()), 0..6)
    ) {
        let header = elements
            .iter()
            .map(|(by, cert, uri)| {
                let mut pairs = vec![format!("By={}", quoted(by))];
                if let Some(cert) = cert {
                    pairs.push(format!("Cert={}", quoted(cert)));
                }
                pairs.push(format!("URI={}", quoted(uri)));
                pairs.join(";")
            })
            .collect::<Vec<_>>()
            .join(",");
        let expected: Vec<String> = elements.iter().filter_map(|(_, c, _)| c.clone()).collect();
        prop_assert_eq!(xfcc_certs(&header), expected, "header: {}", header);
    }

    /// Real certificates among forged elements, in any order: the one whose digest the
    /// connection reports is found, whatever comes before or after it; another digest finds
    /// nothing.
    #[test]
    fn xfcc_trusts_only_the_connections_certificate(
        order in Just((0..3usize).collect::<Vec<_>>()).prop_shuffle(),
        pick in 0..3usize,
        forged in xfcc_text(),
    ) {
        let w = world();
        let mut elements: Vec<String> = order
            .iter()
            .map(|&i| format!(
                "Hash={};Cert=\"{}\";URI=spiffe://x",
                peergate_filter::peer::hex(&fingerprint(&w.clients[i].cert_der)),
                url_encode(&w.clients[i].cert_pem)
            ))
            .collect();
        elements.insert(0, format!("Cert={};By=x", quoted(&forged)));
        let header = elements.join(",");
        let wanted = &w.clients[pick].cert_der;
        let found = xfcc_cert_matching(&header, &fingerprint(wanted));
        prop_assert_eq!(found.as_ref(), Some(wanted));
        prop_assert_eq!(xfcc_cert_matching(&header, &[7u8; 32]), None);
    }

    /// Under APPEND_FORWARD the client's part comes first and can be any junk (an
    /// unterminated quote, stray escapes); the element the proxy appends after it is still
    /// found. (The end-to-end hostile test found the unterminated quote.)
    #[test]
    fn xfcc_finds_the_proxys_element_after_any_client_prefix(
        prefix in xfcc_text(),
        which in 0..3usize,
    ) {
        let w = world();
        let client = &w.clients[which];
        let header = format!(
            "{prefix},By=spiffe://gw;Hash={};Cert=\"{}\";Subject=\"CN=x\";URI=spiffe://a",
            peergate_filter::peer::hex(&fingerprint(&client.cert_der)),
            url_encode(&client.cert_pem)
        );
        let found = xfcc_cert_matching(&header, &fingerprint(&client.cert_der));
        prop_assert_eq!(found.as_ref(), Some(&client.cert_der), "header: {}", header);
    }

    #[test]
    fn url_decoding_inverts_encoding(text in ".{0,300}") {
        prop_assert_eq!(url_decode(&url_encode(&text)), Some(text.into_bytes()));
    }

    #[test]
    fn digests_parse_in_any_case_and_nothing_else_does(
        digest in any::<[u8; 32]>(),
        upper in any::<bool>(),
        junk in "[^0-9a-fA-F\\s]",
        at in 0..64usize,
    ) {
        let hex = peergate_filter::peer::hex(&digest);
        let hex = if upper { hex.to_uppercase() } else { hex };
        prop_assert_eq!(parse_digest(format!(" {hex}\n").as_bytes()), Some(digest));
        let mut broken: Vec<char> = hex.chars().collect();
        broken[at] = junk.chars().next().unwrap();
        prop_assert_eq!(parse_digest(broken.iter().collect::<String>().as_bytes()), None);
        prop_assert_eq!(parse_digest(&hex.as_bytes()[..at]), None);
    }

    /// PEM of any bytes gives the bytes back, plain or URL-encoded as in XFCC.
    #[test]
    fn pem_blocks_decode_to_their_bytes(der in proptest::collection::vec(any::<u8>(), 1..600)) {
        let text = pem(&der);
        prop_assert_eq!(certificate_der_from_pem(text.as_bytes()), Some(der.clone()));
        prop_assert_eq!(certificate_der_from_pem(url_encode(&text).as_bytes()), Some(der));
    }

    /// A certificate the policy admits, changed in any one byte or cut short, is never
    /// admitted: everything in it is signed, or is the signature.
    #[test]
    fn an_admitted_certificate_changed_anywhere_is_refused(
        which in 0..3usize,
        at in any::<prop::sample::Index>(),
        xor in 1..=255u8,
        cut in any::<prop::sample::Index>(),
    ) {
        let w = world();
        let der = &w.clients[which].cert_der;
        let mut changed = der.clone();
        let i = at.index(der.len());
        changed[i] ^= xor;
        let decision = w.policy.decide(Some(&changed), "h", SystemTime::now());
        prop_assert!(!decision.is_allowed(), "byte {} ^ {:#04x} still admitted", i, xor);
        let short = &der[..cut.index(der.len())];
        prop_assert!(!w.policy.decide(Some(short), "h", SystemTime::now()).is_allowed());
    }

    /// Any configuration: compile returns (a policy or an error naming the problem), a policy
    /// decides, and the JSON form the generator writes reads back as the same configuration.
    #[test]
    fn any_configuration_compiles_or_is_refused(
        audit in any::<bool>(),
        connection in any::<bool>(),
        issuers in proptest::collection::vec(0..4usize, 0..3),
        sans in proptest::option::of(proptest::collection::vec(san_pattern_text(), 0..4)),
        hosts in proptest::collection::btree_map("[a-zA-Z0-9.*:\\-]{0,20}", proptest::collection::vec(san_pattern_text(), 0..3), 0..3),
        serials in proptest::collection::vec("[0-9a-fA-F: ]{0,12}", 0..3),
        fingerprints in proptest::collection::vec("[0-9a-fA-F:]{0,70}", 0..3),
        deny_status in proptest::option::of(any::<u16>()),
        log_allowed in any::<bool>(),
        protected in proptest::option::of(proptest::collection::vec("[a-zA-Z0-9.*:\\-]{0,20}", 0..3)),
        client_profile in any::<bool>(),
        subjects in proptest::option::of(proptest::collection::vec("(CN|cn|O|XX)=[a-z0-9* ,\\\\]{0,8}(,O=peergate tests)?", 0..3)),
        scoped in any::<bool>(),
        anchors in proptest::collection::vec(0..4usize, 0..2),
        expiry_warning_days in prop_oneof![Just(30u32), 0..4000u32],
    ) {
        let w = world();
        let pems = [
            w.root.cert.cert_pem.clone(),
            w.rsa_root.cert.cert_pem.clone(),
            w.clients[0].cert_pem.clone(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
        ];
        let config = PluginConfig {
            mode: if audit { Mode::Audit } else { Mode::Enforce },
            layer: if connection { Layer::Connection } else { Layer::Request },
            trusted_issuers: issuers
                .iter()
                .map(|&i| {
                    if scoped {
                        peergate_filter::TrustedIssuerConfig::Scoped(peergate_filter::ScopedIssuer {
                            certificate: pems[i].clone(),
                            scope: Some(vec!["spiffe://cluster-a/*".into()]),
                        })
                    } else {
                        pems[i].clone().into()
                    }
                })
                .collect(),
            trust_anchors: anchors.iter().map(|&i| pems[i].clone()).collect(),
            allowed_subjects: subjects,
            allowed_sans: sans,
            forward_identity: Default::default(),
            routes: Vec::new(),
            routes_only: false,
            hosts: hosts
                .into_iter()
                .map(|(host, allowed_sans)| (host, HostConfig { allowed_sans, ..Default::default() }))
                .collect::<BTreeMap<_, _>>(),
            denied_serials: serials,
            denied_fingerprints: fingerprints,
            deny_status,
            log_allowed,
            protected_server_names: protected,
            client_profile,
            crls: Vec::new(),
            expiry_warning_days,
        };
        let again = PluginConfig::from_json(config.to_json().as_bytes());
        prop_assert_eq!(again.as_ref(), Ok(&config));
        match compile(&config) {
            Ok(policy) => {
                // The clients' issuers: clients 0 and 2 are the P-256 root's (pems[0]), client
                // 1 the RSA root's (pems[1]).
                let trusted = |pem: usize| issuers.contains(&pem);
                for (client, issuer) in w.clients.iter().zip([0, 1, 0]) {
                    for authority in ["h", "helloworld.zufar.io:443", ""] {
                        let reason = policy.decide(Some(&client.cert_der), authority, SystemTime::now()).reason;
                        if trusted(issuer) {
                            // Issuer and validity pass; what is left is the policy's lists.
                            prop_assert!(
                                matches!(reason, Reason::Allowed | Reason::SanNotAllowed | Reason::NoRuleForHost | Reason::DeniedSerial | Reason::DeniedFingerprint | Reason::OutsideIssuerScope),
                                "{:?} for a client of a trusted root", reason
                            );
                        } else {
                            prop_assert_eq!(reason, Reason::UntrustedIssuer);
                        }
                    }
                }
                for authority in ["h", ""] {
                    prop_assert_eq!(policy.decide(None, authority, SystemTime::now()).reason, Reason::NoPeerCertificate);
                }
            }
            Err(error) => {
                let line = peergate_filter::policy::rejection_log_line(&error);
                prop_assert!(!line.contains('\n'));
            }
        }
    }

    /// A URI prefix admits a path below it exactly when every segment is non-empty, is not
    /// `.` or `..`, and holds no piece that could be decoded or read into another path (a
    /// percent-encoded `.`, `/` or `\`, a broken escape, a query, a fragment). Whatever it
    /// admits stays below the prefix after RFC 3986 dot-segment removal.
    #[test]
    fn uri_prefixes_admit_plain_segments_only(
        segments in proptest::collection::vec(
            proptest::collection::vec(0..PATH_PIECES.len(), 0..3),
            1..5,
        ),
    ) {
        let pattern = SanPattern::parse("spiffe://cluster-a/ns/*").unwrap();
        let texts: Vec<String> = segments
            .iter()
            .map(|pieces| pieces.iter().map(|&i| PATH_PIECES[i].0).collect())
            .collect();
        let uri = format!("spiffe://cluster-a/ns/{}", texts.join("/"));
        let expected = segments.iter().zip(&texts).all(|(pieces, text)| {
            !text.is_empty()
                && text != "."
                && text != ".."
                && pieces.iter().all(|&i| PATH_PIECES[i].1)
        });
        let admitted = pattern.matches(&San::Uri(uri.clone()));
        prop_assert_eq!(admitted, expected, "{}", uri);
        if admitted {
            // remove_dot_segments (RFC 3986 §5.2.4) changes nothing.
            let mut output: Vec<&str> = Vec::new();
            for segment in uri.trim_start_matches("spiffe://cluster-a/").split('/') {
                match segment {
                    "." => {}
                    ".." => { output.pop(); }
                    other => output.push(other),
                }
            }
            prop_assert_eq!(output.first().copied(), Some("ns"));
            prop_assert_eq!(output.len(), texts.len() + 1);
        }
    }

    /// Any pattern text parses or is refused; an exact pattern admits exactly its own name,
    /// and a `*.` pattern never admits the bare domain.
    #[test]
    fn san_patterns(text in san_pattern_text(), other in san_pattern_text()) {
        if let Ok(pattern) = SanPattern::parse(&text) {
            let list = SanAllowList::parse(std::slice::from_ref(&text)).unwrap();
            if !pattern.is_pattern() {
                // An exact pattern names one SAN of one kind: exactly one reading matches.
                let mut readings = vec![
                    San::Dns(text.clone()),
                    San::Uri(text.clone()),
                    San::Email(text.clone()),
                ];
                if let Ok(ip) = text.parse() {
                    readings.push(San::Ip(ip));
                }
                let matching: Vec<&San> = readings.iter().filter(|s| pattern.matches(s)).collect();
                prop_assert_eq!(matching.len(), 1, "{} matches {:?}", text, matching);
                prop_assert!(list.admits(&readings));
            }
            if let Some(domain) = text.strip_prefix("*.") {
                prop_assert!(!pattern.matches(&San::Dns(domain.to_owned())));
            }
            // Against any other text, the outcome is known from the pattern's form.
            let dns = pattern.matches(&San::Dns(other.clone()));
            let uri = pattern.matches(&San::Uri(other.clone()));
            if !pattern.is_pattern() {
                // An exact name admits only itself (DNS names in any case, and only host
                // names).
                prop_assert!(!dns || (other.eq_ignore_ascii_case(&text) && host_name(&other)));
                prop_assert!(!uri || other == text);
            } else if let Some(domain) = text.strip_prefix("*.") {
                let suffix = format!(".{}", domain.to_ascii_lowercase());
                let lower = other.to_ascii_lowercase();
                let expected = lower.strip_suffix(&suffix).is_some_and(|label| {
                    !label.is_empty() && !label.contains('.') && host_name(&other)
                });
                prop_assert_eq!(dns, expected, "*.{} against {}", domain, other);
                prop_assert!(!uri);
            } else if let Some(prefix) = text.strip_suffix('*') {
                prop_assert!(!dns);
                prop_assert!(!uri || (other.starts_with(prefix) && other.len() > prefix.len()));
            }
        }
    }
}

/// RFC 1123 host names, read as a regular language one character at a time (not the
/// filter's label splitting): labels of letters, digits and inner hyphens, 1 to 63 long,
/// separated by single dots, 253 characters at most.
fn host_name(name: &str) -> bool {
    let mut label_len = 0;
    let mut previous = '.';
    for c in name.chars() {
        match c {
            '.' if label_len == 0 || previous == '-' => return false,
            '.' => label_len = 0,
            '-' if label_len == 0 => return false,
            c if c.is_ascii_alphanumeric() || c == '-' => {
                label_len += 1;
                if label_len > 63 {
                    return false;
                }
            }
            _ => return false,
        }
        previous = c;
    }
    label_len > 0 && previous != '-' && name.len() <= 253
}

/// Pieces of URI paths: plain ones, and the ones a prefix must not let through.
const PATH_PIECES: &[(&str, bool)] = &[
    ("a", true),
    ("b1", true),
    (".", true),
    ("~", true),
    ("x=y", true),
    (";", true),
    (":", true),
    ("@", true),
    ("%41", true),
    ("%2e", false),
    ("%2E", false),
    ("%2f", false),
    ("%2F", false),
    ("%5C", false),
    ("%g1", false),
    ("?", false),
    ("#", false),
    ("\\", false),
    (" ", false),
];

/// Text shaped like SAN patterns: names, wildcards, SPIFFE prefixes, and junk.
fn san_pattern_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(r"(\*\.)?[a-z0-9\-]{1,8}(\.[a-z0-9\-]{1,8}){0,3}").unwrap(),
        proptest::string::string_regex(r"spiffe://[a-z0-9.\-]{1,10}(/[a-z0-9\-]{1,6}){0,4}(/\*)?")
            .unwrap(),
        proptest::string::string_regex(r".{0,20}").unwrap(),
    ]
}

/// The decision for an unchanged certificate, to make sure the property above is not
/// vacuous.
#[test]
fn the_unchanged_certificates_are_admitted() {
    let w = world();
    for client in &w.clients {
        assert_eq!(
            w.policy
                .decide(Some(&client.cert_der), "h", SystemTime::now())
                .reason,
            Reason::Allowed
        );
    }
}
