//! What the fuzz targets share: a policy built from the generator's own roots (committed in
//! `fuzz/roots/`, written by `cargo make fuzz-seeds`), and the invariants every decision must
//! keep whatever the input.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peergate_filter::config::RouteConfig;
use peergate_filter::routes::RequestLine;
use peergate_filter::{compile, HostConfig, Mode, PluginConfig, Policy, Reason};

/// The roots the generator made for each key type.
pub const ROOTS: [&str; 4] = [
    include_str!("../roots/rsa2048-root-cert.pem"),
    include_str!("../roots/ecdsa-p256-root-cert.pem"),
    include_str!("../roots/ecdsa-p384-root-cert.pem"),
    include_str!("../roots/ed25519-root-cert.pem"),
];

/// The generated client's SAN.
pub const CLIENT_SAN: &str = "spiffe://cluster-a/ns/client/sa/sleep";
/// The generated gateway domain, which has a rule of its own.
pub const DOMAIN: &str = "helloworld.zufar.io";

/// The generated client certificate (RSA-2048, issued by the first root).
pub const CLIENT: &str = include_str!("../roots/rsa2048-client-cert.pem");

/// A fixed instant in the middle of the seed certificates' validity (half a year before the
/// committed client certificate expires), so a run's verdicts do not change with the date.
pub fn now() -> SystemTime {
    static NOW: OnceLock<SystemTime> = OnceLock::new();
    *NOW.get_or_init(|| {
        // No fallback: a clock at the epoch would make every verdict `not_yet_valid` and the
        // targets would fuzz nothing but that.
        let der = peergate_filter::xfcc::certificate_der_from_pem(CLIENT.as_bytes())
            .unwrap_or_else(|| panic!("roots/rsa2048-client-cert.pem is not a PEM certificate: run cargo make fuzz-seeds"));
        let info = peergate_filter::inspect::inspect(&der, UNIX_EPOCH)
            .unwrap_or_else(|e| panic!("roots/rsa2048-client-cert.pem cannot be inspected ({e}): run cargo make fuzz-seeds"));
        let days = u64::try_from(info.days_left - 182)
            .unwrap_or_else(|_| panic!("roots/rsa2048-client-cert.pem expires within half a year of 1970?"));
        UNIX_EPOCH + Duration::from_secs(days * 86_400)
    })
}

/// Every feature of the policy at once: several issuers, patterns, a host rule, deny lists.
pub fn policy(mode: Mode) -> Policy {
    let config = PluginConfig {
        mode,
        layer: peergate_filter::Layer::Request,
        trusted_issuers: ROOTS.iter().map(|r| (*r).into()).collect(),
        allowed_sans: Some(vec![
            CLIENT_SAN.to_owned(),
            "spiffe://cluster-a/ns/*".to_owned(),
            "*.zufar.io".to_owned(),
        ]),
        hosts: [(
            DOMAIN.to_owned(),
            HostConfig {
                allowed_sans: vec![CLIENT_SAN.to_owned()],
                routes: vec![
                    RouteConfig {
                        path_prefix: "/payments/".to_owned(),
                        methods: Some(vec!["POST".to_owned()]),
                        ..Default::default()
                    },
                    RouteConfig {
                        path_prefix: "/admin/".to_owned(),
                        allowed_sans: Some(vec!["spiffe://ops/*".to_owned()]),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        )]
        .into(),
        denied_serials: vec!["01".to_owned()],
        denied_fingerprints: vec!["00".repeat(32)],
        deny_status: Some(403),
        log_allowed: true,
        ..Default::default()
    };
    match compile(&config) {
        Ok(policy) => policy,
        // The roots are committed files; this is a broken checkout, not a finding.
        Err(e) => panic!("the fuzz policy does not compile: {e}"),
    }
}

/// Decides on `der` for several authorities and checks that the audit agrees with the
/// decision, as `filter/tests/limbo.rs` does for the limbo cases: the same verdict, and the
/// first failed check gives the decision's reason.
pub fn decide_and_audit(policy: &Policy, der: &[u8]) {
    let requests = [
        None,
        Some(RequestLine {
            path: "/payments/x?y",
            method: "POST",
        }),
        Some(RequestLine {
            path: "/payments/x",
            method: "GET",
        }),
        Some(RequestLine {
            path: "/admin/",
            method: "GET",
        }),
        Some(RequestLine {
            path: "/a/../admin/",
            method: "GET",
        }),
    ];
    for (authority, request) in [DOMAIN, "other.zufar.io:8443", "", "\u{0}[::1]:x"]
        .into_iter()
        .flat_map(|a| requests.iter().map(move |r| (a, *r)))
    {
        let assessment = std::sync::Arc::new(policy.assess(der));
        let decision = policy.judge_request(&assessment, authority, request, now());
        let report = policy.audit(der, authority, request, now());
        assert_eq!(report.reason, decision.reason, "audit and decide disagree");
        if decision.reason == Reason::Allowed {
            assert!(
                report.deciding_check().is_none(),
                "allowed with a failed check"
            );
        } else {
            assert_eq!(
                report.deciding_check().and_then(|c| c.reason),
                Some(decision.reason),
                "the first failed check is not the decision's reason"
            );
        }
        // The log line is built from attacker-controlled fields: it must stay one JSON line.
        let line = peergate_filter::decision_log::decision_log_line(
            &decision,
            policy.mode(),
            policy.layer(),
            authority,
            peergate_filter::decision_log::CertSource::Connection,
            now(),
        );
        assert!(!line.contains('\n'), "a decision log line spans lines");
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_ok(),
            "a decision log line is not JSON: {line}"
        );
    }
    let _ = peergate_filter::inspect::inspect(der, now());
}
