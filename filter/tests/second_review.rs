//! The admission holes of the second review (issue 26), each tried as an attacker would, with
//! certificates made at test time: a scoped issuer's leaf naming another partner beside its
//! own, the same CA listed twice with two scopes, protected server names at the connection
//! layer, a revoked trusted issuer without `trustAnchors`, CAs with critical extensions the
//! filter does not process, and directory names written in another string type.
//!
//! Configurations use only fields that existed before these fixes, and reasons are compared by
//! their codes, so the same file runs against the code before them, where every test fails.
//! (The request layer's `:authority` on a shared gateway is shown in real Envoy,
//! `tests/filter_in_envoy.rs`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use peergate_e2e::pki::{
    BmpString, Ca, CustomExtension, DistinguishedName, DnType, DnValue, GeneralSubtree, Issued,
    KeyKind, Leaf, NameConstraints, PrintableString, TeletexString, UniversalString,
};
use peergate_filter::{compile, Layer, PluginConfig, ScopedIssuer, TrustedIssuerConfig};
use time::{Duration, OffsetDateTime};

const PARTNER_A: &str = "spiffe://partner-a/ns/client/sa/sleep";
const PARTNER_B: &str = "spiffe://partner-b/ns/client/sa/sleep";

fn scoped(ca: &Ca, scope: &[&str]) -> TrustedIssuerConfig {
    TrustedIssuerConfig::Scoped(ScopedIssuer {
        certificate: ca.cert.cert_pem.clone(),
        scope: Some(scope.iter().map(|s| (*s).to_owned()).collect()),
    })
}

fn allowing(issuers: Vec<TrustedIssuerConfig>, allowed: &[&str]) -> PluginConfig {
    PluginConfig {
        trusted_issuers: issuers,
        allowed_sans: Some(allowed.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    }
}

fn code(config: &PluginConfig, der: &[u8]) -> String {
    match compile(config) {
        Ok(policy) => policy
            .decide(Some(der), "h", SystemTime::now())
            .reason
            .code()
            .to_owned(),
        Err(e) => format!("config-rejected: {e}"),
    }
}

fn compile_error(config: &PluginConfig) -> String {
    match compile(config) {
        Ok(_) => "compiled".to_owned(),
        Err(e) => e.to_string(),
    }
}

fn client(ca: &Ca, sans: &[&str]) -> Issued {
    ca.issue(&Leaf::client("client", sans, KeyKind::P256))
}

// --- 1. A scope bounds the whole certificate ------------------------------------------------

#[test]
fn a_scoped_issuers_leaf_with_any_san_outside_its_scope_is_refused() {
    let ca_a = Ca::new("partner-a-ca", KeyKind::P256);
    let ca_b = Ca::new("partner-b-ca", KeyKind::P256);
    let config = allowing(
        vec![
            scoped(&ca_a, &["spiffe://partner-a/*"]),
            scoped(&ca_b, &["spiffe://partner-b/*"]),
        ],
        &["spiffe://partner-a/*", "spiffe://partner-b/*"],
    );
    let own = format!("URI:{PARTNER_B}");
    let stolen = format!("URI:{PARTNER_A}");
    // B's CA names A's workload beside B's own: the gateway would hand both to the backend.
    for sans in [
        vec![own.as_str(), stolen.as_str()],
        vec![stolen.as_str(), own.as_str()],
        vec![own.as_str(), "DNS:bank.example"],
        vec![own.as_str(), "email:ops@partner-a.example"],
        vec![own.as_str(), "IP:10.0.0.1"],
    ] {
        let leaf = client(&ca_b, &sans);
        assert_eq!(
            code(&config, &leaf.cert_der),
            "outside_issuer_scope",
            "{sans:?}"
        );
    }
    assert_eq!(code(&config, &client(&ca_b, &[&own]).cert_der), "allowed");
}

#[test]
fn the_audit_names_the_san_outside_the_scope() {
    let ca_b = Ca::new("partner-b-ca", KeyKind::P256);
    let config = allowing(
        vec![scoped(&ca_b, &["spiffe://partner-b/*"])],
        &["spiffe://partner-b/*"],
    );
    let leaf = client(
        &ca_b,
        &[&format!("URI:{PARTNER_B}"), &format!("URI:{PARTNER_A}")],
    );
    let report = compile(&config)
        .unwrap()
        .audit(&leaf.cert_der, "h", None, SystemTime::now());
    assert_eq!(report.reason.code(), "outside_issuer_scope");
    let deciding = report.deciding_check().unwrap();
    assert_eq!(
        deciding.reason.map(|r| r.code()),
        Some("outside_issuer_scope")
    );
    assert!(
        deciding.detail.contains(PARTNER_A),
        "the detail names the SAN: {}",
        deciding.detail
    );
}

// --- 2. The same CA listed twice --------------------------------------------------------------

#[test]
fn the_same_ca_listed_twice_is_a_configuration_error_naming_both() {
    let ca = Ca::new("partner-ca", KeyKind::P256);
    for issuers in [
        vec![
            ca.cert.cert_pem.clone().into(),
            scoped(&ca, &["spiffe://partner-a/*"]),
        ],
        vec![
            scoped(&ca, &["spiffe://partner-b/*"]),
            scoped(&ca, &["spiffe://partner-a/*"]),
        ],
    ] {
        let error = compile_error(&allowing(issuers, &["spiffe://partner-a/*"]));
        assert!(
            error.contains("trustedIssuers[0]") && error.contains("trustedIssuers[1]"),
            "{error}"
        );
    }
    // Unscoped first: a leaf naming B's workload would pass through the unscoped entry.
    let leaf = client(&ca, &[&format!("URI:{PARTNER_B}")]);
    let config = allowing(
        vec![
            ca.cert.cert_pem.clone().into(),
            scoped(&ca, &["spiffe://partner-a/*"]),
        ],
        &["spiffe://partner-a/*", "spiffe://partner-b/*"],
    );
    assert!(
        code(&config, &leaf.cert_der).starts_with("config-rejected"),
        "{}",
        code(&config, &leaf.cert_der)
    );
}

// --- 3. Protected server names at the connection layer -----------------------------------------

#[test]
fn protected_server_names_are_refused_at_the_connection_layer() {
    let ca = Ca::new("partner-ca", KeyKind::P256);
    let config = PluginConfig {
        layer: Layer::Connection,
        protected_server_names: Some(vec!["helloworld.zufar.io".into()]),
        ..allowing(vec![ca.cert.cert_pem.clone().into()], &[PARTNER_A])
    };
    let error = compile_error(&config);
    assert!(error.starts_with("protectedServerNames:"), "{error}");
}

// --- 4. A revoked trusted issuer, with or without trustAnchors -------------------------------

#[test]
fn a_trusted_issuer_revoked_by_another_configured_ca_refuses_its_leaves_without_anchors() {
    let root = Ca::new("agreed-root", KeyKind::P256);
    let issuing = root.intermediate("partner-a-issuing", KeyKind::P256, Some(0));
    let leaf = client(&issuing, &[&format!("URI:{PARTNER_A}")]);
    let revoked = root.crl(
        &[&issuing.cert],
        OffsetDateTime::now_utc() + Duration::days(7),
    );
    let issuers: Vec<TrustedIssuerConfig> = vec![
        root.cert.cert_pem.clone().into(),
        issuing.cert.cert_pem.clone().into(),
    ];
    let open = allowing(issuers.clone(), &[PARTNER_A]);
    assert_eq!(code(&open, &leaf.cert_der), "allowed");
    let without_anchors = PluginConfig {
        crls: vec![revoked.clone()],
        ..open.clone()
    };
    assert_eq!(code(&without_anchors, &leaf.cert_der), "revoked");
    let with_anchors = PluginConfig {
        trust_anchors: vec![root.cert.cert_pem.clone()],
        ..without_anchors
    };
    assert_eq!(code(&with_anchors, &leaf.cert_der), "revoked");
}

#[test]
fn a_crl_entry_that_would_have_no_effect_is_refused() {
    let root = Ca::new("agreed-root", KeyKind::P256);
    let issuing = root.intermediate("partner-a-issuing", KeyKind::P256, Some(0));
    let spare = root.intermediate("partner-b-issuing", KeyKind::P256, Some(0));
    let next_week = OffsetDateTime::now_utc() + Duration::days(7);
    // A root listing itself on its own CRL.
    let config = PluginConfig {
        crls: vec![root.crl(&[&root.cert], next_week)],
        ..allowing(vec![root.cert.cert_pem.clone().into()], &[PARTNER_A])
    };
    let error = compile_error(&config);
    assert!(
        error.starts_with("crls[0]") && error.contains("itself"),
        "{error}"
    );
    // A configured CA on no trusted issuer's chain.
    let config = PluginConfig {
        trust_anchors: vec![root.cert.cert_pem.clone(), spare.cert.cert_pem.clone()],
        crls: vec![root.crl(&[&spare.cert], next_week)],
        ..allowing(vec![issuing.cert.cert_pem.clone().into()], &[PARTNER_A])
    };
    let error = compile_error(&config);
    assert!(
        error.starts_with("crls[0]") && error.contains("trustAnchors[1]"),
        "{error}"
    );
}

// --- 5. Critical extensions of CAs ------------------------------------------------------------

#[test]
fn cas_with_critical_extensions_the_filter_does_not_process_are_refused() {
    // policyConstraints requireExplicitPolicy 0: every path must carry an acceptable policy,
    // which the filter does not check.
    let policy_constraints = || {
        let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 36], vec![0x30, 3, 0x80, 1, 0]);
        ext.set_criticality(true);
        ext
    };
    let root = Ca::with_params("policy-root", KeyKind::P256, |params| {
        params.custom_extensions = vec![policy_constraints()];
    });
    let leaf = client(&root, &[&format!("URI:{PARTNER_A}")]);
    let config = allowing(vec![root.cert.cert_pem.clone().into()], &[PARTNER_A]);
    let error = compile_error(&config);
    assert!(
        error.starts_with("trustedIssuers[0]") && error.contains("2.5.29.36"),
        "{error}"
    );
    assert!(code(&config, &leaf.cert_der).starts_with("config-rejected"));
    // The same in an anchor and in a chain link above the issuer.
    let anchor = Ca::with_params("policy-anchor", KeyKind::P256, |params| {
        params.custom_extensions = vec![policy_constraints()];
    });
    let issuing = anchor.intermediate("issuing", KeyKind::P256, Some(0));
    let config = PluginConfig {
        trust_anchors: vec![anchor.cert.cert_pem.clone()],
        ..allowing(vec![issuing.cert.cert_pem.clone().into()], &[PARTNER_A])
    };
    let error = compile_error(&config);
    assert!(
        error.starts_with("trustAnchors[0]") && error.contains("2.5.29.36"),
        "{error}"
    );
}

// --- 6. Directory names by meaning ------------------------------------------------------------

fn subject(values: Vec<(DnType, DnValue)>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (kind, value) in values {
        dn.push(kind, value);
    }
    dn
}

fn bmp(text: &str) -> DnValue {
    DnValue::BmpString(BmpString::try_from(text).unwrap())
}

fn client_with_subject(ca: &Ca, subject: DistinguishedName) -> Issued {
    ca.issue(&Leaf {
        subject: Some(subject),
        ..Leaf::client("unused", &[&format!("URI:{PARTNER_A}")], KeyKind::P256)
    })
}

fn dir_constrained(permitted: Vec<DistinguishedName>, excluded: Vec<DistinguishedName>) -> Ca {
    Ca::with_params("dir-constrained", KeyKind::P256, |params| {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted
                .into_iter()
                .map(GeneralSubtree::DirectoryName)
                .collect(),
            excluded_subtrees: excluded
                .into_iter()
                .map(GeneralSubtree::DirectoryName)
                .collect(),
        });
    })
}

#[test]
fn an_excluded_directory_name_holds_in_every_string_type() {
    let evil = || {
        subject(vec![(
            DnType::OrganizationName,
            DnValue::PrintableString(PrintableString::try_from("Evil Corp").unwrap()),
        )])
    };
    let ca = dir_constrained(Vec::new(), vec![evil()]);
    let config = allowing(vec![ca.cert.cert_pem.clone().into()], &[PARTNER_A]);
    for value in [
        bmp("Evil Corp"),
        DnValue::UniversalString(UniversalString::try_from("Evil Corp").unwrap()),
        DnValue::TeletexString(TeletexString::try_from("Evil Corp").unwrap()),
        DnValue::Utf8String("evil  corp".into()),
    ] {
        let leaf = client_with_subject(
            &ca,
            subject(vec![
                (DnType::OrganizationName, value.clone()),
                (DnType::CommonName, "svc".into()),
            ]),
        );
        assert_eq!(
            code(&config, &leaf.cert_der),
            "outside_name_constraints",
            "{value:?}"
        );
    }
    let good = client_with_subject(
        &ca,
        subject(vec![(DnType::OrganizationName, bmp("Partner A"))]),
    );
    assert_eq!(code(&config, &good.cert_der), "allowed");
}

#[test]
fn a_value_that_does_not_decode_is_refused_under_a_directory_name_rule() {
    // U+FFFE is no character: the BMPString does not decode.
    let undecodable = || DnValue::BmpString(BmpString::from_utf16be(vec![0xff, 0xfe]).unwrap());
    let partner = || subject(vec![(DnType::OrganizationName, "Partner A".into())]);
    for ca in [
        dir_constrained(vec![partner()], Vec::new()),
        dir_constrained(
            Vec::new(),
            vec![subject(vec![(DnType::OrganizationName, "Evil".into())])],
        ),
    ] {
        let config = allowing(vec![ca.cert.cert_pem.clone().into()], &[PARTNER_A]);
        let leaf = client_with_subject(
            &ca,
            subject(vec![
                (DnType::OrganizationName, "Partner A".into()),
                (DnType::CommonName, undecodable()),
            ]),
        );
        assert_eq!(code(&config, &leaf.cert_der), "outside_name_constraints");
    }
}

#[test]
fn allowed_subjects_compare_values_by_meaning() {
    let ca = Ca::new("partner-ca", KeyKind::P256);
    let config = PluginConfig {
        allowed_sans: Some(vec!["spiffe://nobody/*".into()]),
        allowed_subjects: Some(vec!["CN=svc-payments,O=Partner A".into()]),
        ..allowing(vec![ca.cert.cert_pem.clone().into()], &[])
    };
    for cn in [
        bmp("svc-payments"),
        DnValue::UniversalString(UniversalString::try_from("svc-payments").unwrap()),
        DnValue::TeletexString(TeletexString::try_from("svc-payments").unwrap()),
    ] {
        let leaf = client_with_subject(
            &ca,
            subject(vec![
                (DnType::OrganizationName, "Partner A".into()),
                (DnType::CommonName, cn.clone()),
            ]),
        );
        assert_eq!(code(&config, &leaf.cert_der), "allowed", "{cn:?}");
    }
}

#[test]
fn the_audits_hexstring_pastes_into_allowed_subjects_and_matches_that_subject_only() {
    let ca = Ca::new("partner-ca", KeyKind::P256);
    let odd = client_with_subject(
        &ca,
        subject(vec![
            (DnType::OrganizationName, "Partner A".into()),
            (
                DnType::CommonName,
                DnValue::BmpString(BmpString::from_utf16be(vec![0xff, 0xfe]).unwrap()),
            ),
        ]),
    );
    let probe = PluginConfig {
        allowed_sans: Some(vec!["spiffe://nobody/*".into()]),
        ..allowing(vec![ca.cert.cert_pem.clone().into()], &[])
    };
    let shown = compile(&probe)
        .unwrap()
        .audit(&odd.cert_der, "h", None, SystemTime::now())
        .peer
        .unwrap()
        .subject_rfc4514;
    // RFC 4514 §2.4: the whole BER encoding (BMPString tag 0x1e, length 2, U+FFFE).
    assert_eq!(shown, "CN=#1e02fffe,O=Partner A");
    let config = PluginConfig {
        allowed_subjects: Some(vec![shown.clone()]),
        ..probe
    };
    assert_eq!(code(&config, &odd.cert_der), "allowed");
    // The same characters as text are another subject.
    let text = client_with_subject(
        &ca,
        subject(vec![
            (DnType::OrganizationName, "Partner A".into()),
            (DnType::CommonName, "#1e02fffe".into()),
        ]),
    );
    assert_eq!(code(&config, &text.cert_der), "san_not_allowed");
}

// --- Found by the x509 oracle beyond the six classes ------------------------------------------

#[test]
fn a_dns_name_with_a_nul_is_outside_every_dns_subtree() {
    let ca = Ca::constrained("constrained", KeyKind::P256, &[".a.example"], &[]);
    let config = allowing(vec![ca.cert.cert_pem.clone().into()], &["api.a.example"]);
    // Cut at the NUL (as a C string reader does), the name is evil.example.
    let leaf = ca.issue(&Leaf::client(
        "client",
        &["DNS:api.a.example", "DNS:evil.example\0.a.example"],
        KeyKind::P256,
    ));
    assert_eq!(code(&config, &leaf.cert_der), "outside_name_constraints");
    let plain = ca.issue(&Leaf::client(
        "client",
        &["DNS:api.a.example"],
        KeyKind::P256,
    ));
    assert_eq!(code(&config, &plain.cert_der), "allowed");
}

#[test]
fn a_uri_prefix_with_an_empty_segment_after_the_authority_is_refused() {
    let ca = Ca::new("partner-ca", KeyKind::P256);
    let config = allowing(
        vec![ca.cert.cert_pem.clone().into()],
        &["spiffe://a.example//*"],
    );
    let leaf = client(&ca, &["URI:spiffe://a.example//x"]);
    let outcome = code(&config, &leaf.cert_der);
    assert!(
        outcome.starts_with("config-rejected: allowedSans[0]"),
        "{outcome}"
    );
}
