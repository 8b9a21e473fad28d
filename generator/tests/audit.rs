//! `peergate audit` and `peergate inspect` as users run them, on certificates made at test
//! time: every verdict the policy can reach offline, the policy formats, bad input (exit 2,
//! naming the file), JSON, and fingerprints checked against `openssl`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_filter::policy::rejection_log_line;
use peergate_filter::{compile, HostConfig, Mode, PluginConfig, Reason};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";
const CLIENT_SAN: &str = "URI:spiffe://cluster-a/ns/client/sa/sleep";
const DOMAIN: &str = "helloworld.zufar.io";

struct World {
    root: Ca,
    client: Issued,
    stranger: Issued,
    /// Same-named CA, own key id.
    rogue: Issued,
    /// Same-named CA, no AKI in the leaf: only the signature tells.
    rogue_without_aki: Issued,
    other: Issued,
    expired: Issued,
    future: Issued,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let kind = KeyKind::P256;
        let root = Ca::new("a-b-root-ca", kind);
        let same_name = root.same_name(kind);
        let client = |cn: &str| Leaf::client(cn, &[CLIENT_SAN], kind);
        let mut without_aki = client("cluster-a-client");
        without_aki.authority_key_id = false;
        let mut expired = client("expired");
        expired.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        expired.not_after = OffsetDateTime::now_utc() - Duration::days(2);
        let mut future = client("future");
        future.not_before = OffsetDateTime::now_utc() + Duration::days(3);
        future.not_after = OffsetDateTime::now_utc() + Duration::days(30);
        World {
            client: root.issue(&client("cluster-a-client")),
            stranger: root.issue(&Leaf::client(
                "stranger",
                &["URI:spiffe://cluster-x/ns/x/sa/x", "DNS:x.example"],
                kind,
            )),
            rogue: same_name.issue(&client("cluster-a-client")),
            rogue_without_aki: root.look_alike(kind).issue(&without_aki),
            other: Ca::new("someone-else", kind).issue(&client("cluster-a-client")),
            expired: root.issue(&expired),
            future: root.issue(&future),
            root,
        }
    })
}

fn config(allowed: &[&str]) -> PluginConfig {
    PluginConfig {
        trusted_issuers: vec![world().root.cert.cert_pem.clone().into()],
        allowed_sans: Some(allowed.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    }
}

/// A WasmPlugin manifest as the generator writes it, with `config` as its pluginConfig.
fn wasmplugin_yaml(config: &PluginConfig) -> String {
    let doc = serde_json::json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "peergate", "namespace": "istio-system"},
        "spec": {
            "selector": {"matchLabels": {"istio": "ingressgateway"}},
            "url": "oci://registry.example.com/peergate:0.1.0",
            "phase": "AUTHN",
            "pluginConfig": serde_json::to_value(config).unwrap(),
        }
    });
    yaml_serde::to_string(&doc).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn peergate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peergate"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn peergate_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_peergate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `peergate audit` on `cert` (PEM) under `config` (as a WasmPlugin file), with `extra`
/// arguments.
fn audit_run(config: &PluginConfig, cert: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "wasmplugin.yaml", &wasmplugin_yaml(config));
    let cert = write(dir.path(), "peer.pem", cert);
    let mut args = vec![
        "audit",
        "--policy",
        policy.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    peergate(&args)
}

/// Audits `cert` (PEM) under `config` and returns the exit code and the JSON report.
fn audit_json(config: &PluginConfig, cert: &str, extra: &[&str]) -> (i32, Value) {
    let out = audit_run(config, cert, &[&["--json"], extra].concat());
    let (stdout, stderr) = text(&out);
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap(), json)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

#[test]
fn an_allowed_peer_passes_every_check_and_exits_0() {
    let w = world();
    let (code, json) = audit_json(&config(&[CLIENT_ID]), &w.client.cert_pem, &[]);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["verdict"], "allow");
    let report = &json["certificates"][0];
    assert_eq!(report["reason"], "allowed");
    assert_eq!(report["enforced"], false);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "parse",
            "issuer_name",
            "issuer_key_id",
            "issuer_signature",
            "issuer_chain",
            "basic_constraints",
            "key_usage",
            "critical_extensions",
            "key_size",
            "name_constraints",
            "not_before",
            "not_after",
            "issuer_validity",
            "revocation",
            "denied_serial",
            "denied_fingerprint",
            "host_rule",
            "route",
            "san",
            "subject",
            "issuer_scope"
        ]
    );
    for c in report["checks"].as_array().unwrap() {
        // The subject is looked at only under allowedSubjects, which this policy has not.
        let expected = if c["check"] == "subject" {
            "skip"
        } else {
            "pass"
        };
        assert_eq!(c["outcome"], expected, "{c:#}");
    }
    assert!(check(report, "san")["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("allowedSans[0] \"{CLIENT_ID}\"")));
    assert_eq!(report["peer"]["sans"][0], CLIENT_SAN);
}

/// name, policy, peer, extra flags, expected reason, the check that decides.
type DenyCase<'a> = (
    &'a str,
    &'a PluginConfig,
    &'a Issued,
    Vec<&'a str>,
    Reason,
    &'a str,
);

/// Every denial reachable from a certificate and a policy: the exit code, the reason, the
/// check that gives it, and agreement with the filter's own `decide()`.
#[test]
fn each_deny_reason_names_its_check_and_exits_1() {
    let w = world();
    let client_serial =
        peergate_filter::inspect::inspect(&w.client.cert_der, std::time::SystemTime::now())
            .unwrap()
            .serial;
    let client_fingerprint =
        peergate_filter::peer::hex(&peergate_filter::peer::fingerprint(&w.client.cert_der));
    let denied_serial = PluginConfig {
        denied_serials: vec![client_serial],
        ..config(&[CLIENT_ID])
    };
    let denied_fingerprint = PluginConfig {
        denied_fingerprints: vec![client_fingerprint],
        ..config(&[CLIENT_ID])
    };
    let per_host = PluginConfig {
        allowed_sans: None,
        hosts: [(
            DOMAIN.to_owned(),
            HostConfig {
                allowed_sans: vec![CLIENT_ID.to_owned()],
                ..Default::default()
            },
        )]
        .into(),
        ..config(&[])
    };
    let in_two_days = (OffsetDateTime::now_utc() + Duration::days(400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let allowed = config(&[CLIENT_ID]);
    let cases: Vec<DenyCase<'_>> = vec![
        (
            "wrong SAN",
            &allowed,
            &w.stranger,
            vec![],
            Reason::SanNotAllowed,
            "san",
        ),
        (
            "another CA",
            &allowed,
            &w.other,
            vec![],
            Reason::UntrustedIssuer,
            "issuer_name",
        ),
        (
            "same-named CA",
            &allowed,
            &w.rogue,
            vec![],
            Reason::IssuerKeyIdMismatch,
            "issuer_key_id",
        ),
        (
            "same-named CA, no AKI",
            &allowed,
            &w.rogue_without_aki,
            vec![],
            Reason::BadSignature,
            "issuer_signature",
        ),
        (
            "expired",
            &allowed,
            &w.expired,
            vec![],
            Reason::Expired,
            "not_after",
        ),
        (
            "not yet valid",
            &allowed,
            &w.future,
            vec![],
            Reason::NotYetValid,
            "not_before",
        ),
        (
            "expired by --at",
            &allowed,
            &w.client,
            vec!["--at", &in_two_days],
            Reason::Expired,
            "not_after",
        ),
        (
            "denied serial",
            &denied_serial,
            &w.client,
            vec![],
            Reason::DeniedSerial,
            "denied_serial",
        ),
        (
            "denied fingerprint",
            &denied_fingerprint,
            &w.client,
            vec![],
            Reason::DeniedFingerprint,
            "denied_fingerprint",
        ),
        (
            "no rule for host",
            &per_host,
            &w.client,
            vec!["--host", "other.example"],
            Reason::NoRuleForHost,
            "host_rule",
        ),
    ];
    for (name, config, leaf, extra, reason, deciding) in cases {
        let (code, json) = audit_json(config, &leaf.cert_pem, &extra);
        let report = &json["certificates"][0];
        assert_eq!(code, 1, "{name}: exit code\n{json:#}");
        assert_eq!(json["verdict"], "deny", "{name}");
        assert_eq!(report["reason"], reason.code(), "{name}\n{json:#}");
        assert_eq!(report["enforced"], true, "{name}");
        let failed: Vec<&Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["outcome"] == "fail")
            .collect();
        assert_eq!(
            failed[0]["check"], deciding,
            "{name}: deciding check\n{json:#}"
        );
        assert_eq!(failed[0]["reason"], reason.code(), "{name}");
        // The filter's own decision, natively, agrees (unless --at moved the clock).
        if extra.first() != Some(&"--at") {
            let host = extra.get(1).copied().unwrap_or("");
            let decided = compile(config).unwrap().decide(
                Some(&leaf.cert_der),
                host,
                std::time::SystemTime::now(),
            );
            assert_eq!(decided.reason, reason, "{name}: decide()");
        }
    }
    // The same host rule admits the client on its own authority, port and case aside.
    let (code, _) = audit_json(
        &per_host,
        &w.client.cert_pem,
        &["--host", "HelloWorld.zufar.io:443"],
    );
    assert_eq!(code, 0);
}

#[test]
fn a_stranger_shows_its_sans_and_the_patterns_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yaml",
        &wasmplugin_yaml(&config(&[CLIENT_ID, "*.cluster-a.example"])),
    );
    let cert = write(dir.path(), "stranger.pem", &world().stranger.cert_pem);
    let out = peergate(&[
        "audit",
        "--policy",
        policy.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("san                  FAIL    none of URI:spiffe://cluster-x/ns/x/sa/x, DNS:x.example matches allowedSans [spiffe://cluster-a/ns/client/sa/sleep, *.cluster-a.example]"), "{stdout}");
    assert!(stdout.contains("verdict  DENY  san_not_allowed: no SAN matches the allowed patterns for this authority, nor the subject an allowed subject; the gateway answers 403"), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no colour when not a terminal:\n{stdout}"
    );
}

#[test]
fn audit_mode_reports_the_denial_it_would_not_enforce() {
    let audit_mode = PluginConfig {
        mode: Mode::Audit,
        ..config(&[CLIENT_ID])
    };
    let (code, json) = audit_json(&audit_mode, &world().stranger.cert_pem, &[]);
    assert_eq!(code, 1);
    assert_eq!(json["certificates"][0]["mode"], "audit");
    assert_eq!(json["certificates"][0]["enforced"], false);
    assert_eq!(json["policy"]["mode"], "audit");
}

#[test]
fn unparsable_and_unsupported_certificates_are_verdicts_not_errors() {
    // A PEM block whose content is not X.509: the filter would deny it, so audit does.
    let garbage = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
    let (code, json) = audit_json(&config(&[CLIENT_ID]), garbage, &[]);
    assert_eq!(code, 1);
    assert_eq!(json["certificates"][0]["reason"], "unparsable_certificate");
    assert_eq!(check(&json["certificates"][0], "parse")["outcome"], "fail");
    assert_eq!(check(&json["certificates"][0], "san")["outcome"], "skip");

    // RSA-PSS, made by openssl: a signature scheme the filter does not verify.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(d)
            .args(args)
            .output()
            .expect("openssl is needed for these tests (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=pss-root",
        "-days",
        "30",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=pss-leaf",
    ]);
    write(
        d,
        "ext.cnf",
        &format!("subjectAltName={CLIENT_SAN}\nauthorityKeyIdentifier=keyid\n"),
    );
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "7",
        "-days",
        "10",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-extfile",
        "ext.cnf",
        "-out",
        "leaf.pem",
    ]);
    let pss_config = PluginConfig {
        trusted_issuers: vec![std::fs::read_to_string(d.join("ca.pem")).unwrap().into()],
        ..config(&[CLIENT_ID])
    };
    let leaf = std::fs::read_to_string(d.join("leaf.pem")).unwrap();
    let (code, json) = audit_json(&pss_config, &leaf, &[]);
    assert_eq!(code, 1);
    let report = &json["certificates"][0];
    assert_eq!(
        report["reason"], "unsupported_signature_algorithm",
        "{json:#}"
    );
    assert_eq!(check(report, "issuer_key_id")["outcome"], "pass");
    assert_eq!(check(report, "san")["outcome"], "pass");
}

#[test]
fn a_bundle_audits_each_certificate_and_fails_if_any_is_denied() {
    let w = world();
    let bundle = format!("{}{}", w.client.cert_pem, w.stranger.cert_pem);
    let (code, json) = audit_json(&config(&[CLIENT_ID]), &bundle, &[]);
    assert_eq!(code, 1);
    let reports = json["certificates"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["verdict"], "allow");
    assert_eq!(reports[1]["verdict"], "deny");
    assert!(reports[0]["source"]
        .as_str()
        .unwrap()
        .ends_with("peer.pem[0]"));

    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yaml",
        &wasmplugin_yaml(&config(&[CLIENT_ID])),
    );
    let out = peergate_stdin(
        &["audit", "--policy", policy.to_str().unwrap(), "--cert", "-"],
        bundle.as_bytes(),
    );
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("standard input[1]"), "{stdout}");
    assert!(
        stdout.contains("2 certificates: 1 allowed, 1 denied"),
        "{stdout}"
    );
}

/// Envoy's form: `Cert="<URL-encoded PEM>"`.
fn xfcc_element(leaf: &Issued) -> String {
    format!(
        "Hash=00;Cert=\"{}\";Subject=\"CN=x\";URI={CLIENT_ID}",
        peergate_e2e::http::url_encode(&leaf.cert_pem)
    )
}

#[test]
fn xfcc_values_are_audited_element_by_element() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yaml",
        &wasmplugin_yaml(&config(&[CLIENT_ID])),
    );
    let policy = policy.to_str().unwrap();
    let header = xfcc_element(&w.client);
    let out = peergate(&["audit", "--policy", policy, "--xfcc", &header, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["certificates"][0]["source"], "xfcc[0]");

    let two = format!("{},{}", xfcc_element(&w.rogue), xfcc_element(&w.client));
    let out = peergate(&["audit", "--policy", policy, "--xfcc", &two, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["certificates"][0]["reason"], "issuer_key_id_mismatch");
    assert_eq!(json["certificates"][1]["reason"], "allowed");

    let out = peergate(&[
        "audit",
        "--policy",
        policy,
        "--xfcc",
        "By=spiffe://x;Hash=ab",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--xfcc: no Cert= field"), "{stderr}");
    let out = peergate(&[
        "audit",
        "--policy",
        policy,
        "--xfcc",
        "Cert=\"not%20a%20cert\"",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("--xfcc: element 0"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn policies_come_from_wasmplugin_files_folders_and_plugin_config_json() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cert = write(d, "client.pem", &w.client.cert_pem);
    let cert = cert.to_str().unwrap();
    let json_policy = write(d, "plugin-config.json", &config(&[CLIENT_ID]).to_json());
    let out = peergate(&[
        "audit",
        "--policy",
        json_policy.to_str().unwrap(),
        "--cert",
        cert,
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out)
        .0
        .contains("plugin-config.json: pluginConfig (enforce, 1 trusted issuer, deny status 403)"));

    // The generator's own output: `manifests/cluster-b` holds the plugin object among other
    // files, a WasmPlugin or (with --api trafficextension) a TrafficExtension, selecting the
    // gateway by labels or (with --gateway-api kubernetes) attached to a Gateway API Gateway.
    let folder = d.join("out/cluster-b");
    let generated_client = d.join("out/certs/cluster-a-client-cert.pem");
    for (flags, expected) in [
        (
            ["--api", "wasmplugin", "--gateway-api", "istio"],
            "wasmplugin.yaml: WasmPlugin peergate-ingress/peergate",
        ),
        (
            ["--api", "trafficextension", "--gateway-api", "istio"],
            "trafficextension.yaml: TrafficExtension peergate-ingress/peergate",
        ),
        (
            ["--api", "wasmplugin", "--gateway-api", "kubernetes"],
            "wasmplugin.yaml: WasmPlugin peergate-ingress/peergate",
        ),
    ] {
        let gen = Command::new(env!("CARGO_BIN_EXE_peergate"))
            .current_dir(d)
            .args(["gen", "--out", "out", "--key-type", "ecdsa-p256"])
            .args(flags)
            .output()
            .unwrap();
        assert!(gen.status.success(), "{:?}", text(&gen));
        let out = peergate(&[
            "audit",
            "--policy",
            folder.to_str().unwrap(),
            "--cert",
            generated_client.to_str().unwrap(),
            "--host",
            DOMAIN,
        ]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(stdout.contains(expected), "{stdout}");
        // This test's client comes from another root: the generated policy refuses it.
        let out = peergate(&[
            "audit",
            "--policy",
            folder.to_str().unwrap(),
            "--cert",
            cert,
        ]);
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn bad_input_exits_2_and_names_the_file() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_policy = write(d, "good.yaml", &wasmplugin_yaml(&config(&[CLIENT_ID])));
    let good_policy = good_policy.to_str().unwrap();
    let cert = write(d, "client.pem", &w.client.cert_pem);
    let cert = cert.to_str().unwrap();
    let missing = d.join("missing.yaml");
    let empty_dir = d.join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    write(
        &empty_dir,
        "gateway.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n",
    );
    let two = d.join("two");
    std::fs::create_dir(&two).unwrap();
    write(&two, "a.yaml", &wasmplugin_yaml(&config(&[CLIENT_ID])));
    write(&two, "b.yaml", &wasmplugin_yaml(&config(&[CLIENT_ID])));
    let not_yaml = write(d, "broken.yaml", "kind: [WasmPlugin\n");
    let key_only = write(d, "key.pem", &w.client.key_pem);
    let text_file = write(d, "notes.txt", "hello\n");
    let bad_pattern = PluginConfig {
        allowed_sans: Some(vec!["spiffe://a*".into()]),
        ..config(&[])
    };
    let rejected = write(d, "rejected.yaml", &wasmplugin_yaml(&bad_pattern));
    let expected_log = rejection_log_line(&compile(&bad_pattern).unwrap_err());
    let typo = write(
        d,
        "typo.json",
        r#"{"trustedIssuers": [], "allowedSan": ["x"]}"#,
    );
    let typo_log = rejection_log_line(
        &peergate_filter::compile_json(br#"{"trustedIssuers": [], "allowedSan": ["x"]}"#)
            .unwrap_err(),
    );

    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        (
            "missing policy",
            vec!["--policy".into(), s(&missing), "--cert".into(), cert.into()],
            format!("{}: No such file", missing.display()),
        ),
        (
            "no WasmPlugin in folder",
            vec![
                "--policy".into(),
                s(&empty_dir),
                "--cert".into(),
                cert.into(),
            ],
            format!(
                "{}: no peergate WasmPlugin or TrafficExtension in its 1 YAML/JSON files",
                empty_dir.display()
            ),
        ),
        (
            "two WasmPlugins",
            vec!["--policy".into(), s(&two), "--cert".into(), cert.into()],
            "more than one peergate configuration".into(),
        ),
        (
            "not YAML",
            vec![
                "--policy".into(),
                s(&not_yaml),
                "--cert".into(),
                cert.into(),
            ],
            format!("{}: not YAML or JSON", not_yaml.display()),
        ),
        (
            "policy the filter rejects",
            vec![
                "--policy".into(),
                s(&rejected),
                "--cert".into(),
                cert.into(),
            ],
            format!("the filter would refuse this configuration and log: {expected_log}"),
        ),
        (
            "pluginConfig typo",
            vec!["--policy".into(), s(&typo), "--cert".into(), cert.into()],
            typo_log,
        ),
        (
            "missing cert",
            vec![
                "--policy".into(),
                good_policy.into(),
                "--cert".into(),
                s(&d.join("nope.pem")),
            ],
            "nope.pem: cannot read".into(),
        ),
        (
            "key instead of cert",
            vec![
                "--policy".into(),
                good_policy.into(),
                "--cert".into(),
                s(&key_only),
            ],
            format!(
                "{}: no CERTIFICATE block (found PRIVATE KEY)",
                key_only.display()
            ),
        ),
        (
            "not PEM",
            vec![
                "--policy".into(),
                good_policy.into(),
                "--cert".into(),
                s(&text_file),
            ],
            "notes.txt: neither PEM".into(),
        ),
        (
            "bad --at",
            vec![
                "--policy".into(),
                good_policy.into(),
                "--cert".into(),
                cert.into(),
                "--at".into(),
                "tomorrow".into(),
            ],
            "--at: \"tomorrow\" is neither".into(),
        ),
        (
            "no input",
            vec!["--policy".into(), good_policy.into()],
            "required".into(),
        ),
        (
            "no policy",
            vec!["--cert".into(), cert.into()],
            "--policy".into(),
        ),
    ];
    for (name, args, expected) in cases {
        let mut all = vec!["audit".to_owned()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = peergate(&refs);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: exit code\n{stdout}{stderr}"
        );
        assert!(
            stderr.contains(&expected),
            "{name}: expected {expected:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let out = peergate(&["inspect", text_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("notes.txt: neither PEM"),
        "{:?}",
        text(&out)
    );
}

fn openssl_stdout(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is needed for these tests (Debian package openssl)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.unwrap_or_default())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}");
    out.stdout
}

/// name, PEM, key algorithm, bits, curve, is a CA.
type KeyCase<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<u64>,
    Option<&'a str>,
    bool,
);

#[test]
fn inspect_matches_openssl_fingerprints_and_spki_hashes() {
    let w = world();
    let rsa_root = Ca::new("rsa-root", KeyKind::Rsa2048);
    let rsa_leaf = rsa_root.issue(&Leaf::client(
        "rsa-client",
        &[CLIENT_SAN, "DNS:a.example"],
        KeyKind::Rsa2048,
    ));
    let p384 = Ca::new("p384-root", KeyKind::P384);
    let ed = Ca::new("ed-root", KeyKind::Ed25519);
    let cases: Vec<KeyCase<'_>> = vec![
        (
            "p256 client",
            &w.client.cert_pem,
            "ECDSA",
            Some(256),
            Some("P-256"),
            false,
        ),
        (
            "rsa client",
            &rsa_leaf.cert_pem,
            "RSA",
            Some(2048),
            None,
            false,
        ),
        (
            "rsa root",
            &rsa_root.cert.cert_pem,
            "RSA",
            Some(2048),
            None,
            true,
        ),
        (
            "p384 root",
            &p384.cert.cert_pem,
            "ECDSA",
            Some(384),
            Some("P-384"),
            true,
        ),
        (
            "ed25519 root",
            &ed.cert.cert_pem,
            "Ed25519",
            Some(256),
            None,
            true,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, pem, algorithm, bits, curve, is_ca) in cases {
        let file = write(dir.path(), "c.pem", pem);
        let out = peergate(&["inspect", file.to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {:?}", text(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let info = &json["certificates"][0];
        let openssl_fp = String::from_utf8(openssl_stdout(
            &["x509", "-noout", "-fingerprint", "-sha256"],
            Some(pem.as_bytes()),
        ))
        .unwrap();
        let openssl_fp = openssl_fp.trim().split_once('=').unwrap().1.to_owned();
        assert_eq!(info["fingerprint_openssl"], openssl_fp.as_str(), "{name}");
        assert_eq!(
            info["fingerprint"],
            openssl_fp.replace(':', "").to_lowercase(),
            "{name}"
        );
        // base64(SHA-256(SubjectPublicKeyInfo DER)): openssl's recipe for verify_certificate_spki.
        let pubkey = openssl_stdout(&["x509", "-noout", "-pubkey"], Some(pem.as_bytes()));
        let spki = openssl_stdout(&["pkey", "-pubin", "-outform", "der"], Some(&pubkey));
        let digest = openssl_stdout(&["dgst", "-sha256", "-binary"], Some(&spki));
        let b64 = String::from_utf8(openssl_stdout(&["base64", "-A"], Some(&digest))).unwrap();
        assert_eq!(info["spki_sha256"], b64.trim(), "{name}");
        assert_eq!(info["key"]["algorithm"], algorithm, "{name}");
        assert_eq!(info["key"]["bits"].as_u64(), bits, "{name}");
        assert_eq!(info["key"]["curve"].as_str(), curve, "{name}");
        assert_eq!(info["is_ca"], is_ca, "{name}");
        assert!(
            (363..=3650).contains(&info["days_left"].as_i64().unwrap()),
            "{name}: {info:#}"
        );

        let out = peergate(&["inspect", file.to_str().unwrap()]);
        let (stdout, _) = text(&out);
        assert!(
            stdout.contains(&format!("SHA-256 fingerprint    {openssl_fp}")),
            "{name}:\n{stdout}"
        );
    }
    let expired = write(dir.path(), "expired.pem", &w.expired.cert_pem);
    let out = peergate(&["inspect", expired.to_str().unwrap()]);
    assert!(
        text(&out).0.contains("(expired 2 days ago)"),
        "{:?}",
        text(&out)
    );
    let out = peergate(&["inspect", expired.to_str().unwrap(), "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["certificates"][0]["days_left"], -2);
    assert_eq!(json["certificates"][0]["expired"], true);
}

/// `--path` and `--method` choose the route as the filter does, and the route check says which
/// one applied and why it refused.
#[test]
fn the_route_for_a_path_and_method_decides() {
    let w = world();
    let mut cfg = config(&[CLIENT_ID]);
    cfg.routes = serde_json::from_value(serde_json::json!([
        {"pathPrefix": "/payments/", "methods": ["POST"]},
        {"pathPrefix": "/admin/", "allowedSans": ["spiffe://ops/*"]}
    ]))
    .unwrap();
    let cert = &w.client.cert_pem;
    let (code, json) = audit_json(
        &cfg,
        cert,
        &["--path", "/payments/charge", "--method", "POST"],
    );
    let report = &json["certificates"][0];
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(report["route"], "/payments/");
    assert_eq!(report["request"], "POST /payments/charge");
    let (code, json) = audit_json(&cfg, cert, &["--path", "/payments/charge"]);
    let report = &json["certificates"][0];
    assert_eq!(code, 1);
    assert_eq!(report["reason"], "route_not_allowed");
    assert_eq!(check(report, "route")["outcome"], "fail");
    assert!(check(report, "route")["detail"]
        .as_str()
        .unwrap()
        .contains("admits POST, not GET"));
    let (_, json) = audit_json(&cfg, cert, &["--path", "/admin/x"]);
    assert_eq!(json["certificates"][0]["reason"], "route_not_allowed");
    let (_, json) = audit_json(&cfg, cert, &["--path", "/payments/../admin/x"]);
    assert_eq!(json["certificates"][0]["reason"], "unnormalized_path");
    // Without --path the routes are not judged (the route check says so).
    let (code, json) = audit_json(&cfg, cert, &[]);
    assert_eq!(code, 0);
    assert_eq!(check(&json["certificates"][0], "route")["outcome"], "skip");
}

#[test]
fn expiry_is_machine_readable_and_fail_expiring_sets_the_exit_status() {
    let w = world();
    let mut soon = Leaf::client("soon", &[CLIENT_SAN], KeyKind::P256);
    soon.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    soon.not_after = OffsetDateTime::now_utc() + Duration::days(10) + Duration::hours(1);
    let soon = w.root.issue(&soon);
    let mut config = config(&[CLIENT_ID]);
    config.expiry_warning_days = 30;

    let (code, json) = audit_json(&config, &soon.cert_pem, &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["policy"]["expiry_warning_days"], 30);
    let peer = &json["certificates"][0]["peer"];
    assert_eq!(peer["days_left"], 10, "{peer}");
    assert_eq!(peer["expiring"], true, "{peer}");
    let (code, _) = audit_json(&config, &soon.cert_pem, &["--fail-expiring"]);
    assert_eq!(code, 1, "an expiring peer with --fail-expiring");

    // The long-lived client is outside the window: allowed, not expiring, exit 0 either way.
    let (code, json) = audit_json(&config, &w.client.cert_pem, &["--fail-expiring"]);
    assert_eq!(code, 0, "{json}");
    let peer = &json["certificates"][0]["peer"];
    assert_eq!(peer["expiring"], false, "{peer}");
    assert!(peer["days_left"].as_i64().unwrap() > 30, "{peer}");

    // An expired peer: negative days, expiring, and denied anyway.
    let (code, json) = audit_json(&config, &w.expired.cert_pem, &[]);
    assert_eq!(code, 1);
    let peer = &json["certificates"][0]["peer"];
    assert_eq!(peer["days_left"], -2, "{peer}");
    assert_eq!(peer["expiring"], true, "{peer}");

    // `expiryWarningDays: 0` flags nothing.
    config.expiry_warning_days = 0;
    let (code, json) = audit_json(&config, &soon.cert_pem, &["--fail-expiring"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["certificates"][0]["peer"]["expiring"], false);

    // The text report says it too.
    config.expiry_warning_days = 30;
    let out = audit_run(&config, &soon.cert_pem, &["--fail-expiring"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("(10 days left, expiring)"), "{stdout}");
}
