//! `peergate audit --logs` on decision lines the real filter wrote inside a real Envoy, in the
//! log formats an operator meets: Istio's proxy text format (what `kubectl logs` prints for
//! istio-ingressgateway), Istio's JSON format, and Envoy's default format.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use peergate_e2e::backend::Backend;
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{envoy_binary, filter_wasm, peergate_binary, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::{CLIENT_ID, DOMAIN};
use peergate_filter::peer::{fingerprint, hex};
use peergate_filter::{Mode, PluginConfig};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The `--log-format` istio-agent starts the proxy with (text logging).
const ISTIO_TEXT_FORMAT: &str = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t";
/// The same with `--log_as_json`.
const ISTIO_JSON_FORMAT: &str = r#"{"level":"%l","time":"%Y-%m-%dT%T.%fZ","scope":"envoy %n","msg":"%j","caller":"%g:%#","thread":%t}"#;

fn peergate(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(peergate_binary())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

struct World {
    root: Ca,
    look_alike: Ca,
    server: Issued,
    client: Issued,
    stranger: Issued,
    impostor: Issued,
}

impl World {
    fn new() -> Self {
        let kind = KeyKind::P256;
        let root = Ca::new("a-b-root-ca", kind);
        let look_alike = root.same_name(kind);
        let san = format!("URI:{CLIENT_ID}");
        World {
            server: root.issue(&Leaf::server(DOMAIN, kind)),
            client: root.issue(&Leaf::client("cluster-a-client", &[&san], kind)),
            stranger: root.issue(&Leaf::client(
                "stranger",
                &["URI:spiffe://cluster-x/ns/x/sa/x"],
                kind,
            )),
            impostor: look_alike.issue(&Leaf::client("cluster-a-client", &[&san], kind)),
            look_alike,
            root,
        }
    }

    fn client(&self, leaf: &Issued) -> TlsClient {
        TlsClient::new(
            &self.root.cert.cert_pem,
            Some((&leaf.cert_pem, &leaf.key_pem)),
        )
    }

    fn policy(&self, mode: Mode) -> PluginConfig {
        PluginConfig {
            mode,
            trusted_issuers: vec![self.root.cert.cert_pem.clone().into()],
            allowed_sans: Some(vec![CLIENT_ID.to_owned()]),
            log_allowed: true,
            ..Default::default()
        }
    }

    /// Starts a gateway (enforce and audit listeners) logging in `format` (Envoy's default
    /// when `None`).
    fn gateway(&self, format: Option<&str>) -> (Envoy, Backend) {
        let backend = Backend::start();
        let tls = GatewayTls {
            cert: &self.server.cert_pem,
            key: &self.server.key_pem,
            // TLS admits the look-alike's leaves; only the filter tells them apart.
            client_ca_bundle: &format!(
                "{}{}",
                self.root.cert.cert_pem, self.look_alike.cert.cert_pem
            ),
        };
        let listeners = [
            MtlsListener {
                name: "enforce".into(),
                plugin_config: self.policy(Mode::Enforce).to_json(),
                xfcc: Xfcc::SanitizeSet,
            },
            MtlsListener {
                name: "audit".into(),
                plugin_config: self.policy(Mode::Audit).to_json(),
                xfcc: Xfcc::SanitizeSet,
            },
        ];
        let config = bootstrap(&listeners, &tls, &filter_wasm(), backend.addr);
        let args: Vec<&str> = format.map(|f| vec!["--log-format", f]).unwrap_or_default();
        let envoy = Envoy::start_with_args(&envoy_binary(), &config, &args)
            .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
        (envoy, backend)
    }
}

fn send(envoy: &Envoy, listener: &str, client: &TlsClient, times: usize, status: u16) {
    for _ in 0..times {
        let response = client
            .get(envoy.listener(listener), DOMAIN, DOMAIN, "/hello", &[])
            .unwrap();
        assert_eq!(response.status, status, "{listener}: {}", response.text());
    }
}

/// The log once every decision line of `expected` requests is flushed.
fn flushed_log(envoy: &Envoy, expected: usize) -> String {
    for _ in 0..100 {
        let log = envoy.log();
        if log.matches("\\\"decision\\\":").count() + log.matches("\"decision\":").count()
            >= expected
        {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the decision lines did not reach the log:\n{}", envoy.log());
}

fn peer<'a>(summary: &'a Value, leaf: &Issued) -> &'a Value {
    let fp = hex(&fingerprint(&leaf.cert_der));
    summary["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["fingerprint"] == fp.as_str())
        .unwrap_or_else(|| panic!("no peer {fp} in {summary:#}"))
}

fn summary_json(args: &[&str], stdin: Option<&[u8]>) -> Value {
    let out = peergate(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn summarises_the_real_filters_decisions_per_peer() {
    let world = World::new();
    let started = OffsetDateTime::now_utc();
    let (envoy, backend) = world.gateway(Some(ISTIO_TEXT_FORMAT));
    send(&envoy, "enforce", &world.client(&world.client), 3, 200);
    send(&envoy, "enforce", &world.client(&world.stranger), 2, 403);
    send(&envoy, "audit", &world.client(&world.stranger), 1, 200);
    send(&envoy, "enforce", &world.client(&world.impostor), 1, 403);
    assert_eq!(backend.count(), 4);
    let log = flushed_log(&envoy, 7);
    let finished = OffsetDateTime::now_utc();
    assert!(
        log.lines()
            .any(|l| l.ends_with(|c: char| c.is_ascii_digit()) && l.contains("\tthread=")),
        "the gateway should log in Istio's format:\n{log}"
    );
    let log_file = envoy.dir.path().join("envoy.log");
    let summary = summary_json(
        &["audit", "--logs", log_file.to_str().unwrap(), "--json"],
        None,
    );

    assert_eq!(summary["decisions"], 7, "{summary:#}");
    assert_eq!(summary["allowed"], 3);
    assert_eq!(summary["denied"], 4);
    assert_eq!(summary["unreadable"], 0);
    assert!(
        summary["lines"].as_u64().unwrap() > 7,
        "Envoy's own lines are read and skipped"
    );

    let client = peer(&summary, &world.client);
    assert_eq!(client["allowed"], 3);
    assert_eq!(client["denied"], 0);
    assert_eq!(client["sans"][0], format!("URI:{CLIENT_ID}"));
    assert!(client["subject"]
        .as_str()
        .unwrap()
        .contains("CN=cluster-a-client"));

    let stranger = peer(&summary, &world.stranger);
    assert_eq!(stranger["denied"], 3);
    assert_eq!(
        stranger["enforced"], 2,
        "the audit listener's denial is not enforced"
    );
    assert_eq!(stranger["reasons"]["san_not_allowed"], 3);
    assert_eq!(stranger["authorities"][0], DOMAIN);

    let impostor = peer(&summary, &world.impostor);
    assert_eq!(impostor["reasons"]["issuer_key_id_mismatch"], 1);
    assert_eq!(impostor["enforced"], 1);
    // Most denied first.
    assert_eq!(summary["peers"][0]["fingerprint"], stranger["fingerprint"]);

    // First and last seen come from the filter's own time stamps and bracket the traffic.
    let at = |v: &Value| OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap();
    for p in summary["peers"].as_array().unwrap() {
        let (first, last) = (at(&p["first_seen"]), at(&p["last_seen"]));
        assert!(started - Duration::from_secs(1) <= first, "{p:#}");
        assert!(
            first <= last && last <= finished + Duration::from_secs(1),
            "{p:#}"
        );
    }

    // The same log through standard input, for people.
    let out = peergate(&["audit", "--logs", "-"], Some(log.as_bytes()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text.contains("7 decisions (3 allowed, 4 denied), 0 unreadable"),
        "{text}"
    );
    assert!(text.contains("san_not_allowed ×3"), "{text}");
    assert!(text.contains("issuer_key_id_mismatch ×1"), "{text}");
    assert!(text.contains(&format!(
        "sha256 {}",
        hex(&fingerprint(&world.client.cert_der))
    )));
}

#[test]
fn reads_istio_json_logs_and_envoy_default_logs_with_rejected_configurations() {
    let world = World::new();
    // Istio's JSON logging: the decision line is an escaped string inside "msg".
    let (envoy, _backend) = world.gateway(Some(ISTIO_JSON_FORMAT));
    send(&envoy, "enforce", &world.client(&world.client), 1, 200);
    send(&envoy, "enforce", &world.client(&world.impostor), 2, 403);
    let json_log = flushed_log(&envoy, 3);
    assert!(json_log.contains("peergate: {\\\"time\\\":"), "{json_log}");

    // Envoy's default format, from a gateway whose configuration the filter refuses.
    let mut bad = world.policy(Mode::Enforce);
    bad.allowed_sans = Some(vec!["spiffe://a*".into()]);
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.root.cert.cert_pem,
    };
    let backend = Backend::start();
    let listener = MtlsListener {
        name: "bad".into(),
        plugin_config: bad.to_json(),
        xfcc: Xfcc::SanitizeSet,
    };
    let config = bootstrap(&[listener], &tls, &filter_wasm(), backend.addr);
    let refused_log = match Envoy::start(&config) {
        Err(failure) => failure.log,
        Ok(envoy) => {
            envoy
                .wait_for_log_line(&["rejecting configuration"], Duration::from_secs(5))
                .expect("the filter logs the refusal");
            envoy.log()
        }
    };
    assert!(
        refused_log.starts_with('['),
        "Envoy's default format:\n{refused_log}"
    );

    let both = format!("{json_log}{refused_log}");
    let summary = summary_json(&["audit", "--logs", "-", "--json"], Some(both.as_bytes()));
    assert_eq!(summary["decisions"], 3, "{summary:#}");
    assert_eq!(peer(&summary, &world.impostor)["denied"], 2);
    assert_eq!(peer(&summary, &world.client)["allowed"], 1);
    assert!(peer(&summary, &world.client)["first_seen"].is_string());
    let rejections = summary["rejected_configurations"].as_array().unwrap();
    assert_eq!(rejections.len(), 1, "{summary:#}");
    assert!(
        rejections[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("allowedSans[0]: pattern \"spiffe://a*\""),
        "{summary:#}"
    );
    assert!(
        rejections[0]["time"].is_string(),
        "time from Envoy's [..] prefix"
    );
}

/// Issue 19: a peer inside `expiryWarningDays` is allowed, its line (with `daysLeft`) written
/// once per certificate even with `logAllowed` off, `peergate.expiring` counts each such
/// decision, a trusted issuer inside the window is warned about when the configuration
/// loads, and `audit --logs` lists the expiring peer first.
#[test]
fn an_expiring_peer_is_logged_once_counted_and_listed_first() {
    use time::Duration as Days;
    let kind = KeyKind::P256;
    let now = OffsetDateTime::now_utc();
    // The root itself leaves the 30-day window in 20 days (and an hour, so "20" holds).
    let root = Ca::with_validity(
        "a-b-root-ca",
        kind,
        now - Days::days(1),
        now + Days::days(20) + Days::hours(1),
    );
    let san = format!("URI:{CLIENT_ID}");
    let valid_for = |days: i64| Leaf {
        not_after: now + Days::days(days) + Days::hours(1),
        ..Leaf::client("cluster-a-client", &[&san], kind)
    };
    let expiring = root.issue(&valid_for(10));
    let lasting = root.issue(&valid_for(19));
    let stranger = root.issue(&Leaf::client(
        "stranger",
        &["URI:spiffe://cluster-x/ns/x/sa/x"],
        kind,
    ));
    let server = root.issue(&Leaf::server(DOMAIN, kind));
    let backend = Backend::start();
    let tls = GatewayTls {
        cert: &server.cert_pem,
        key: &server.key_pem,
        client_ca_bundle: &root.cert.cert_pem,
    };
    // A window of 15 days: the 10-day client is inside it, the 19-day one outside, the root
    // (20 days) too, so the configure-time warning is checked with a window of its own below.
    let policy = |days: u32| PluginConfig {
        trusted_issuers: vec![root.cert.cert_pem.clone().into()],
        allowed_sans: Some(vec![CLIENT_ID.to_owned()]),
        log_allowed: false,
        expiry_warning_days: days,
        ..Default::default()
    };
    let listeners = [
        MtlsListener {
            name: "fifteen".into(),
            plugin_config: policy(15).to_json(),
            xfcc: Xfcc::SanitizeSet,
        },
        MtlsListener {
            name: "thirty".into(),
            plugin_config: policy(30).to_json(),
            xfcc: Xfcc::SanitizeSet,
        },
    ];
    let config = bootstrap(&listeners, &tls, &filter_wasm(), backend.addr);
    // One worker, so one VM: "once per certificate" is per VM.
    let envoy = Envoy::start_with_args(
        &envoy_binary(),
        &config,
        &["--log-format", ISTIO_TEXT_FORMAT, "--concurrency", "1"],
    )
    .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    let client =
        |leaf: &Issued| TlsClient::new(&root.cert.cert_pem, Some((&leaf.cert_pem, &leaf.key_pem)));

    // The root is inside the 30-day window only: one warning, from that configuration.
    let warning = envoy
        .wait_for_log_line(
            &[
                "CN=a-b-root-ca\" expires in 20 days",
                "within expiryWarningDays (30)",
            ],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no configure-time warning:\n{}", envoy.log()));
    assert!(warning.contains("\twarning\t"), "{warning}");
    assert!(
        !envoy.log().contains("within expiryWarningDays (15)"),
        "{}",
        envoy.log()
    );

    send(&envoy, "fifteen", &client(&expiring), 3, 200);
    send(&envoy, "fifteen", &client(&lasting), 2, 200);
    send(&envoy, "fifteen", &client(&stranger), 4, 403);
    assert_eq!(backend.count(), 5);
    // Four denial lines and one expiry line; the other allowed decisions are not logged.
    let log = flushed_log(&envoy, 5);
    std::thread::sleep(Duration::from_millis(300));
    let log = if envoy.log().len() > log.len() {
        envoy.log()
    } else {
        log
    };
    let expiry_lines: Vec<&str> = log.lines().filter(|l| l.contains("daysLeft")).collect();
    assert_eq!(expiry_lines.len(), 1, "{log}");
    assert!(
        expiry_lines[0].contains("\"daysLeft\":10"),
        "{}",
        expiry_lines[0]
    );
    assert!(expiry_lines[0].contains(&hex(&fingerprint(&expiring.cert_der))));
    assert_eq!(log.matches("\"decision\":\"allow\"").count(), 1, "{log}");
    envoy.settle("peergate.expiring", &3, |e| {
        e.counter("wasmcustom.peergate.expiring")
    });

    // audit --logs: the expiring peer first, though the stranger was denied more.
    let summary = summary_json(&["audit", "--logs", "-", "--json"], Some(log.as_bytes()));
    let first = &summary["peers"][0];
    assert_eq!(
        first["fingerprint"],
        hex(&fingerprint(&expiring.cert_der)).as_str(),
        "{summary:#}"
    );
    assert_eq!(first["days_left"], 10);
    assert_eq!(peer(&summary, &stranger)["denied"], 4);
    assert!(peer(&summary, &stranger).get("days_left").is_none());
    let out = peergate(&["audit", "--logs", "-"], Some(log.as_bytes()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("expires in 10 days: renew its certificate"),
        "{text}"
    );
}
