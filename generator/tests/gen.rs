//! `peergate gen` as users run it: the output contract, certificate profiles checked with
//! x509-parser and `openssl verify`, idempotence, `--force`, bad input, and the pluginConfig
//! the filter compiles.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use peergate_filter::{PluginConfig, Reason};
use serde_json::Value;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";
const DOMAIN: &str = "helloworld.zufar.io";

fn peergate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peergate"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn gen_ok(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["gen", "--out", "out"];
    all.extend_from_slice(args);
    let out = peergate(dir, &all);
    assert!(
        out.status.success(),
        "peergate {all:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(
                    entry.path().strip_prefix(dir).unwrap().to_path_buf(),
                    (
                        std::fs::read(entry.path()).unwrap(),
                        meta.permissions().mode() & 0o777,
                        meta.modified().unwrap(),
                    ),
                );
            }
        }
    }
    out
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    peergate_filter::xfcc::certificate_der_from_pem(text.as_bytes()).unwrap()
}

fn openssl_verify(root: &Path, leaf: &Path, purpose: &str) {
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
        .arg(root)
        .arg(leaf)
        .output()
        .expect("openssl is needed for these tests (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl verify {}: {}{}",
        leaf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both leaves chain to the root for their purpose, per OpenSSL.
fn verify_both_leaves(certs: &Path) {
    let root = certs.join("root-cert.pem");
    openssl_verify(&root, &certs.join("cluster-a-client-cert.pem"), "sslclient");
    openssl_verify(&root, &certs.join("cluster-b-server-cert.pem"), "sslserver");
}

fn ski(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn aki(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

fn hours(cert: &X509Certificate<'_>) -> i64 {
    let v = cert.validity();
    (v.not_after.timestamp() - v.not_before.timestamp()) / 3600
}

#[test]
fn default_run_writes_the_contract_with_the_right_profiles() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let out = dir.path().join("out");
    for f in [
        "certs/root-cert.pem",
        "certs/root-key.pem",
        "certs/cluster-a-client-cert.pem",
        "certs/cluster-a-client-key.pem",
        "certs/cluster-b-server-cert.pem",
        "certs/cluster-b-server-key.pem",
        "cluster-a/kustomization.yaml",
        "cluster-b/kustomization.yaml",
        "cluster-b/wasmplugin.yaml",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    for (path, (_, mode, _)) in snapshot(&out) {
        let name = path.to_string_lossy();
        let private = name.ends_with("-key.pem") || name.contains("secret-");
        assert_eq!(mode, if private { 0o600 } else { 0o644 }, "{name}");
    }

    let certs = out.join("certs");
    verify_both_leaves(&certs);

    let root_der = pem_der(&certs.join("root-cert.pem"));
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    let bc = root.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    let ku = root.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert!(ski(&root).is_some());
    assert_eq!(hours(&root), 87_600, "root validity");
    assert_eq!(root.subject().to_string(), "CN=a-b-root-ca");

    for (file, client) in [
        ("cluster-a-client-cert.pem", true),
        ("cluster-b-server-cert.pem", false),
    ] {
        let der = pem_der(&certs.join(file));
        let (_, leaf) = X509Certificate::from_der(&der).unwrap();
        assert!(!leaf.is_ca(), "{file}");
        assert!(
            leaf.basic_constraints().unwrap().is_some(),
            "{file}: explicit CA:false"
        );
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(
            ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign(),
            "{file}"
        );
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert_eq!(
            (eku.client_auth, eku.server_auth),
            (client, !client),
            "{file}"
        );
        assert!(ski(&leaf).is_some(), "{file}");
        assert_eq!(aki(&leaf), ski(&root), "{file}: AKI is the root's SKI");
        let serial = leaf.raw_serial();
        assert!(
            serial.len() >= 8 && serial[0] & 0x80 == 0 && serial[0] != 0,
            "{file}: serial"
        );
        assert_eq!(hours(&leaf), 8_760, "{file}");
        let sans: Vec<String> = leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                other => format!("{other:?}"),
            })
            .collect();
        let expected = if client {
            format!("URI:{CLIENT_ID}")
        } else {
            format!("DNS:{DOMAIN}")
        };
        assert_eq!(sans, vec![expected], "{file}");
    }
}

fn plugin_config(out: &Path) -> PluginConfig {
    let yaml = std::fs::read_to_string(out.join("cluster-b/wasmplugin.yaml")).unwrap();
    let object: Value = yaml_serde::from_str(&yaml).unwrap();
    PluginConfig::from_json(object["spec"]["pluginConfig"].to_string().as_bytes()).unwrap()
}

#[test]
fn the_plugin_config_admits_the_client_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &["--key-type", "ecdsa-p256"]);
    let out = dir.path().join("out");
    let config = plugin_config(&out);
    assert_eq!(config.allowed_sans, Some(vec![CLIENT_ID.to_owned()]));
    let policy = peergate_filter::compile(&config).unwrap();
    let now = SystemTime::now();
    let client = pem_der(&out.join("certs/cluster-a-client-cert.pem"));
    assert_eq!(
        policy.decide(Some(&client), DOMAIN, now).reason,
        Reason::Allowed
    );
    // The server's certificate comes from the same root but is a server's (serverAuth only):
    // refused as a client even under a pattern that covers its name.
    let server = pem_der(&out.join("certs/cluster-b-server-cert.pem"));
    assert_eq!(
        policy.decide(Some(&server), DOMAIN, now).reason,
        Reason::NotClientAuth
    );
    let mut broad = config.clone();
    broad.allowed_sans = Some(vec![format!("*.{}", DOMAIN.split_once('.').unwrap().1)]);
    assert_eq!(
        peergate_filter::compile(&broad)
            .unwrap()
            .decide(Some(&server), DOMAIN, now)
            .reason,
        Reason::NotClientAuth,
        "{broad:?}"
    );
    // A client of another generated mesh, same names, other root: refused by signature/key id.
    let other = tempfile::tempdir().unwrap();
    gen_ok(other.path(), &["--key-type", "ecdsa-p256"]);
    let stranger = pem_der(&other.path().join("out/certs/cluster-a-client-cert.pem"));
    let reason = policy.decide(Some(&stranger), DOMAIN, now).reason;
    assert!(
        matches!(reason, Reason::IssuerKeyIdMismatch | Reason::BadSignature),
        "{reason:?}"
    );
}

#[test]
fn second_run_changes_nothing_and_force_regenerates() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let out = dir.path().join("out");
    let first = snapshot(&out);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let report = gen_ok(dir.path(), &[]);
    assert!(report.contains("certificate root: reused"), "{report}");
    assert!(report.contains(", 0 changed"), "{report}");
    assert_eq!(
        snapshot(&out),
        first,
        "a second run must not touch any file"
    );

    let report = gen_ok(dir.path(), &["--force"]);
    assert!(report.contains("certificate root: issued"), "{report}");
    let forced = snapshot(&out);
    for key in [
        "certs/root-key.pem",
        "certs/cluster-a-client-cert.pem",
        "cluster-b/wasmplugin.yaml",
    ] {
        assert_ne!(
            forced[Path::new(key)].0,
            first[Path::new(key)].0,
            "{key} regenerated"
        );
    }
    assert_eq!(
        forced.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
}

#[test]
fn same_certificates_give_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    gen_ok(a.path(), &[]);
    let b = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(b.path().join("out")).unwrap();
    let copy = Command::new("cp")
        .arg("-rp")
        .arg(a.path().join("out/certs"))
        .arg(b.path().join("out/certs"))
        .status()
        .unwrap();
    assert!(copy.success());
    gen_ok(b.path(), &[]);
    let strip = |m: BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)>| {
        m.into_iter()
            .map(|(k, (bytes, mode, _))| (k, (bytes, mode)))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        strip(snapshot(&a.path().join("out"))),
        strip(snapshot(&b.path().join("out")))
    );
}

#[test]
fn a_changed_configuration_is_refused_without_force_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let out = dir.path().join("out");
    let before = snapshot(&out);
    for (args, expected) in [
        (
            &["--domain", "other.zufar.io"][..],
            "cluster-b-server-cert.pem: no longer fits: its SANs",
        ),
        (
            &["--key-type", "ecdsa-p256"][..],
            "--key-type ecdsa-p256 contradicts keyType = \"rsa2048\"",
        ),
        (
            &["--client-san", "spiffe://cluster-a/ns/client/sa/other"][..],
            "cluster-a-client-cert.pem: no longer fits",
        ),
    ] {
        let mut all = vec!["gen", "--out", "out"];
        all.extend_from_slice(args);
        let result = peergate(dir.path(), &all);
        assert_eq!(result.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stderr.contains("--force"), "{stderr}");
        assert_eq!(snapshot(&out), before, "{args:?} must not touch the output");
    }
    // With --force the new domain is taken.
    gen_ok(dir.path(), &["--domain", "other.zufar.io", "--force"]);
    let gateway = std::fs::read_to_string(out.join("cluster-b/gateway.yaml")).unwrap();
    assert!(gateway.contains("other.zufar.io"));
}

#[test]
fn a_missing_key_or_root_is_not_papered_over() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let out = dir.path().join("out");
    std::fs::remove_file(out.join("certs/cluster-a-client-key.pem")).unwrap();
    let result = peergate(dir.path(), &["gen", "--out", "out"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("exists without its key"));

    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let out = dir.path().join("out");
    std::fs::remove_file(out.join("certs/root-key.pem")).unwrap();
    std::fs::remove_file(out.join("certs/root-cert.pem")).unwrap();
    let before = snapshot(&out);
    let result = peergate(dir.path(), &["gen", "--out", "out"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("the root is missing"));
    assert_eq!(snapshot(&out), before);
}

#[test]
fn bad_input_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "[clusterB]\ndomian = \"x.io\"\n",
            "bad.toml:2:1: unknown field `domian`",
        ),
        ("keyType = \"rsa1024\"\n", "bad.toml:1:11:"),
        (
            "[root]\nvalidity = \"ten years\"\n",
            "bad.toml:2:12: invalid validity",
        ),
        ("[clusterB]\nport = 70000\n", "bad.toml:2:8:"),
        (
            "[clusterB]\ndomain = \"no_dots\"\n",
            "bad.toml: clusterB.domain",
        ),
        (
            "[clusterA]\nsans = [\"spiffe://a/*\"]\n",
            "bad.toml: clusterA.sans[0]",
        ),
        (
            "[plugin]\nfailStrategy = \"FAIL_OPEN\"\n",
            "bad.toml: plugin.failStrategy",
        ),
        ("[plugin]\nsha256 = \"abc\"\n", "bad.toml: plugin.sha256"),
        ("keyType = \n", "bad.toml:1:"),
        (
            "[monitoring]\ndeniedPerMinute = 0\n",
            "bad.toml: monitoring.deniedPerMinute",
        ),
        (
            "[monitoring]\nnamespace = \"Not_A_Namespace\"\n",
            "bad.toml: monitoring.namespace",
        ),
        (
            "[monitoring]\nruleLabels = { \"bad key\" = \"x\" }\n",
            "bad.toml: monitoring.ruleLabels.bad key",
        ),
        (
            "[monitoring]\nalerts = false\ndashboard = false\n",
            "bad.toml: monitoring",
        ),
        ("[monitoring]\ngrafana = true\n", "unknown field `grafana`"),
    ];
    for (text, expected) in cases {
        std::fs::write(dir.path().join("bad.toml"), text).unwrap();
        let result = peergate(dir.path(), &["gen", "--config", "bad.toml", "--out", "out"]);
        assert_eq!(result.status.code(), Some(2), "{text:?}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            stderr.contains(expected),
            "{text:?}: wanted {expected:?} in\n{stderr}"
        );
        assert!(
            !dir.path().join("out").exists(),
            "{text:?}: nothing may be written"
        );
    }
    let result = peergate(dir.path(), &["gen", "--key-type", "rsa1024"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("--key-type"));
    let result = peergate(dir.path(), &["gen", "--config", "missing.toml"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("missing.toml: cannot read"));
    let result = peergate(
        dir.path(),
        &["gen", "--fail-strategy", "FAIL_OPEN", "--out", "o2"],
    );
    assert_eq!(result.status.code(), Some(2));
    let result = peergate(
        dir.path(),
        &[
            "gen",
            "--fail-strategy",
            "FAIL_OPEN",
            "--allow-fail-open",
            "--out",
            "o3",
        ],
    );
    assert!(result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("warning: failStrategy FAIL_OPEN"));
}

#[test]
fn every_key_type_verifies_with_openssl() {
    for key_type in [
        "rsa2048",
        "rsa3072",
        "rsa4096",
        "ecdsa-p256",
        "ecdsa-p384",
        "ed25519",
    ] {
        let dir = tempfile::tempdir().unwrap();
        gen_ok(dir.path(), &["--key-type", key_type]);
        let certs = dir.path().join("out/certs");
        verify_both_leaves(&certs);
        let config = plugin_config(&dir.path().join("out"));
        let policy = peergate_filter::compile(&config).unwrap();
        let client = pem_der(&certs.join("cluster-a-client-cert.pem"));
        assert_eq!(
            policy
                .decide(Some(&client), DOMAIN, SystemTime::now())
                .reason,
            Reason::Allowed,
            "{key_type}"
        );
        let der = pem_der(&certs.join("cluster-b-server-cert.pem"));
        let (_, leaf) = X509Certificate::from_der(&der).unwrap();
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert_eq!(
            ku.key_encipherment(),
            key_type.starts_with("rsa"),
            "{key_type}"
        );
        // Reuse works for every type too.
        let report = gen_ok(dir.path(), &["--key-type", key_type]);
        assert!(report.contains(", 0 changed"), "{key_type}: {report}");
    }
}

fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is needed to check that kustomize builds the output");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn both_modes_build_with_kustomize() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let out = dir.path().join("out");
    let a = kustomize(&out.join("cluster-a"));
    assert!(a.contains("sidecar.istio.io/userVolumeMount"));
    assert!(a.contains("clientCertificate: /etc/peergate/client/tls.crt"));
    assert!(!a.contains("kind: Role"));
    let b = kustomize(&out.join("cluster-b"));
    for kind in [
        "Secret",
        "Namespace",
        "Service",
        "Deployment",
        "Gateway",
        "VirtualService",
        "WasmPlugin",
    ] {
        assert!(
            b.contains(&format!("kind: {kind}\n")),
            "cluster-b lacks {kind}"
        );
    }
    // A gateway of its own: XFCC is set in its pod template; the patch for an existing
    // gateway is not written.
    assert!(!out
        .join("cluster-b/ingressgateway-xfcc-patch.yaml")
        .exists());

    gen_ok(dir.path(), &["--client-cert-mode", "credentialName"]);
    let a = kustomize(&out.join("cluster-a"));
    assert!(a.contains("credentialName: cluster-a-client-cert"));
    assert!(a.contains("workloadSelector"));
    assert!(a.contains("kind: Role\n") && a.contains("kind: RoleBinding\n"));
    assert!(!a.contains("userVolume"));

    // Back to mounted: the RBAC files go away with the mode.
    gen_ok(dir.path(), &[]);
    assert!(!out.join("cluster-a/role.yaml").exists());
    assert!(!kustomize(&out.join("cluster-a")).contains("kind: Role"));
}

fn yaml_file(path: &Path) -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The gateway of its own: its Deployment, Service, ServiceAccount and SDS Role, and every
/// object that refers to it agree with it (selector, namespace, port), so they cannot drift.
#[test]
fn a_gateway_of_its_own_and_everything_that_follows_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = gen_ok(dir.path(), &[]);
    let b = dir.path().join("out/cluster-b");
    let deployment = yaml_file(&b.join("gateway-deployment.yaml"));
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(namespace, "peergate-ingress");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let template = &deployment["spec"]["template"];
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        selector,
        &serde_json::json!({"istio": "peergate-ingressgateway"})
    );
    assert_eq!(
        template["metadata"]["labels"]["istio"],
        "peergate-ingressgateway"
    );
    assert_eq!(
        template["metadata"]["labels"]["sidecar.istio.io/inject"],
        "true"
    );
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["inject.istio.io/templates"], "gateway");
    assert_eq!(
        annotations["sidecar.istio.io/componentLogLevel"],
        "misc:error,wasm:info"
    );
    assert!(annotations["proxy.istio.io/config"]
        .as_str()
        .unwrap()
        .contains("SANITIZE_SET"));
    let service_account = template["spec"]["serviceAccountName"].as_str().unwrap();
    let service = yaml_file(&b.join("gateway-service.yaml"));
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(&service["spec"]["selector"], selector);
    let ports: Vec<(i64, i64)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [(80, 80), (443, 443)]);
    let sa = yaml_file(&b.join("gateway-serviceaccount.yaml"));
    assert_eq!(sa["metadata"]["name"], service_account);
    let binding = yaml_file(&b.join("gateway-rolebinding.yaml"));
    assert_eq!(binding["subjects"][0]["name"], service_account);
    assert_eq!(binding["metadata"]["namespace"], namespace.as_str());
    let role = yaml_file(&b.join("gateway-role.yaml"));
    assert_eq!(
        role["rules"][0]["resources"],
        serde_json::json!(["secrets"])
    );

    let gateway = yaml_file(&b.join("gateway.yaml"));
    assert_eq!(&gateway["spec"]["selector"], selector);
    assert_eq!(gateway["metadata"]["namespace"], namespace.as_str());
    let credential = yaml_file(&b.join("secret-cluster-b-server-cert.yaml"));
    assert_eq!(credential["metadata"]["namespace"], namespace.as_str());
    let plugin = yaml_file(&b.join("wasmplugin.yaml"));
    assert_eq!(&plugin["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(plugin["metadata"]["namespace"], namespace.as_str());
    assert_eq!(
        plugin["spec"]["match"],
        serde_json::json!([{"mode": "CLIENT", "ports": [{"number": 443}]}])
    );
    assert!(plugin["spec"]["pluginConfig"]["protectedServerNames"].is_null());
    let vs = yaml_file(&b.join("virtualservice.yaml"));
    assert_eq!(
        vs["spec"]["gateways"],
        serde_json::json!([format!("{namespace}/helloworld-gateway")])
    );
    assert!(
        stdout.contains("next: before `kubectl apply -k"),
        "{stdout}"
    );
    assert!(stdout.contains("peergate audit --policy"), "{stdout}");
    assert!(stdout.contains("peergate probe --from"), "{stdout}");
    assert!(!stdout.contains("PrometheusRule CRD"), "{stdout}");
    assert!(!stdout.contains("istioctl proxy-config log"), "{stdout}");
}

/// An existing gateway: nothing of a gateway is generated, the plugin is scoped to its
/// listener port and to our server name, and gen says how to see the decision lines.
#[test]
fn an_existing_gateway_is_only_selected() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    std::fs::write(
        dir.path().join("mesh.toml"),
        "[clusterB.gateway]\nexisting = true\nnamespace = \"istio-system\"\nlabels = { istio = \"ingressgateway\" }\nlistenerPort = 8443\n",
    )
    .unwrap();
    let stdout = gen_ok(dir.path(), &["--config", "mesh.toml"]);
    let b = dir.path().join("out/cluster-b");
    for file in [
        "gateway-deployment.yaml",
        "gateway-service.yaml",
        "gateway-role.yaml",
        "gateway-namespace.yaml",
    ] {
        assert!(
            !b.join(file).exists(),
            "{file} is left from the own-gateway run"
        );
    }
    assert!(!kustomize(&b).contains("kind: ServiceAccount"));
    let plugin = yaml_file(&b.join("wasmplugin.yaml"));
    assert_eq!(plugin["metadata"]["namespace"], "istio-system");
    assert_eq!(
        plugin["spec"]["selector"]["matchLabels"],
        serde_json::json!({"istio": "ingressgateway"})
    );
    assert_eq!(
        plugin["spec"]["match"][0]["ports"],
        serde_json::json!([{"number": 8443}])
    );
    assert_eq!(
        plugin["spec"]["pluginConfig"]["protectedServerNames"],
        serde_json::json!([DOMAIN])
    );
    assert_eq!(
        yaml_file(&b.join("secret-cluster-b-server-cert.yaml"))["metadata"]["namespace"],
        "istio-system"
    );
    assert!(b.join("ingressgateway-xfcc-patch.yaml").exists());
    assert!(!std::fs::read_to_string(b.join("kustomization.yaml"))
        .unwrap()
        .contains("xfcc-patch"));
    assert!(
        stdout.contains("istioctl proxy-config log <pod> -n istio-system --level wasm:info"),
        "{stdout}"
    );
    assert!(stdout.contains("-l istio=ingressgateway"), "{stdout}");
    // A shared gateway keeps the request layer under `auto`: only it tells our host's
    // requests from the other hosts'.
    assert_eq!(plugin["spec"]["type"], Value::Null);
    assert!(
        stdout.contains("layer request: auto: the gateway is shared"),
        "{stdout}"
    );
    // And back (gen reads ./mesh.toml unless told otherwise): the gateway's objects come
    // back, the patch goes.
    std::fs::remove_file(dir.path().join("mesh.toml")).unwrap();
    gen_ok(dir.path(), &[]);
    assert!(b.join("gateway-deployment.yaml").exists());
    assert!(!b.join("ingressgateway-xfcc-patch.yaml").exists());
}

/// `--gateway-api kubernetes`: the Gateway API objects instead of the classic ones, agreeing
/// with each other (names, namespaces, ports, the CA ConfigMap), and back again without a
/// stale object of either left to be applied.
#[test]
fn a_gateway_api_gateway_and_back() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let stdout = gen_ok(dir.path(), &["--gateway-api", "kubernetes"]);
    let b = dir.path().join("out/cluster-b");
    for gone in [
        "gateway-deployment.yaml",
        "gateway-service.yaml",
        "gateway-serviceaccount.yaml",
        "gateway-role.yaml",
        "gateway-rolebinding.yaml",
        "virtualservice.yaml",
    ] {
        assert!(
            !b.join(gone).exists(),
            "{gone} is left from the classic run"
        );
    }
    let gateway = yaml_file(&b.join("gateway.yaml"));
    assert_eq!(gateway["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(gateway["spec"]["gatewayClassName"], "istio");
    let (name, ns) = ("peergate-ingressgateway", "peergate-ingress");
    assert_eq!(gateway["metadata"]["name"], name);
    assert_eq!(gateway["metadata"]["namespace"], ns);
    let listeners = gateway["spec"]["listeners"].as_array().unwrap();
    let https = listeners.iter().find(|l| l["port"] == 443).unwrap();
    assert_eq!(https["hostname"], DOMAIN);
    assert_eq!(https["tls"]["mode"], "Terminate");
    assert_eq!(
        https["tls"]["certificateRefs"][0]["name"],
        "cluster-b-server-cert"
    );
    let validation = &gateway["spec"]["tls"]["frontend"]["perPort"][0];
    assert_eq!(validation["port"], 443);
    assert_eq!(validation["tls"]["validation"]["mode"], "AllowValidOnly");
    let ca_ref = &validation["tls"]["validation"]["caCertificateRefs"][0];
    assert_eq!(ca_ref["kind"], "ConfigMap");
    let ca = yaml_file(&b.join(format!(
        "configmap-{}.yaml",
        ca_ref["name"].as_str().unwrap()
    )));
    assert_eq!(ca["metadata"]["namespace"], ns);
    assert_eq!(
        ca["data"]["ca.crt"].as_str().unwrap(),
        std::fs::read_to_string(dir.path().join("out/certs/root-cert.pem")).unwrap()
    );
    let secret = std::fs::read_to_string(b.join("secret-cluster-b-server-cert.yaml")).unwrap();
    assert!(!secret.contains("ca.crt"), "{secret}");
    let parameters = yaml_file(&b.join("gateway-parameters.yaml"));
    assert_eq!(
        gateway["spec"]["infrastructure"]["parametersRef"]["name"],
        parameters["metadata"]["name"]
    );
    assert!(parameters["data"]["deployment"]
        .as_str()
        .unwrap()
        .contains("replicas: 2"));
    // Routes of the gateway's namespace only, to the backend its ReferenceGrant admits.
    let route = yaml_file(&b.join("httproute.yaml"));
    assert_eq!(route["metadata"]["namespace"], ns);
    assert_eq!(route["spec"]["parentRefs"][0]["sectionName"], "https");
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"][0]["namespace"],
        "service"
    );
    let grant = yaml_file(&b.join("referencegrant.yaml"));
    assert_eq!(grant["metadata"]["namespace"], "service");
    assert_eq!(grant["spec"]["from"][0]["namespace"], ns);
    let redirect = yaml_file(&b.join("httproute-redirect.yaml"));
    assert_eq!(redirect["spec"]["parentRefs"][0]["sectionName"], "http");
    // The plugin: attached to the Gateway, scoped to its HTTPS listener.
    let plugin = yaml_file(&b.join("wasmplugin.yaml"));
    assert_eq!(plugin["spec"]["selector"], Value::Null);
    assert_eq!(
        plugin["spec"]["targetRefs"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}])
    );
    assert_eq!(
        plugin["spec"]["match"][0]["ports"],
        serde_json::json!([{"number": 443}])
    );
    let built = kustomize(&b);
    for kind in [
        "Gateway",
        "HTTPRoute",
        "ReferenceGrant",
        "ConfigMap",
        "WasmPlugin",
    ] {
        assert!(
            built.contains(&format!("kind: {kind}\n")),
            "cluster-b lacks {kind}"
        );
    }
    assert!(!built.contains("kind: VirtualService"));
    assert!(
        stdout.contains(&format!("wait --for=condition=Programmed gateway/{name}")),
        "{stdout}"
    );

    gen_ok(dir.path(), &["--gateway-api", "istio"]);
    for gone in [
        "httproute.yaml",
        "httproute-redirect.yaml",
        "referencegrant.yaml",
        "gateway-parameters.yaml",
        "configmap-cluster-b-server-cert-ca.yaml",
    ] {
        assert!(
            !b.join(gone).exists(),
            "{gone} is left from the Gateway API run"
        );
    }
    assert_eq!(
        yaml_file(&b.join("gateway.yaml"))["apiVersion"],
        "networking.istio.io/v1"
    );
    assert!(b.join("gateway-deployment.yaml").exists());
}

/// An existing Gateway API gateway: a ListenerSet on its own port in the backend's
/// namespace, the partner's cluster calling that port, and the owner's part left out of the
/// kustomization.
#[test]
fn a_listener_set_on_a_shared_gateway_api_gateway() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.toml"),
        "[clusterB.gateway]\napi = \"kubernetes\"\nexisting = true\nname = \"shared\"\nnamespace = \"edge\"\nlistenerPort = 8443\n",
    )
    .unwrap();
    let stdout = gen_ok(dir.path(), &["--config", "mesh.toml"]);
    let out = dir.path().join("out");
    let b = out.join("cluster-b");
    let set = yaml_file(&b.join("listenerset.yaml"));
    assert_eq!(set["metadata"]["namespace"], "service");
    assert_eq!(
        set["spec"]["parentRef"],
        serde_json::json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "shared", "namespace": "edge"})
    );
    assert_eq!(set["spec"]["listeners"][0]["port"], 8443);
    let route = yaml_file(&b.join("httproute.yaml"));
    assert_eq!(route["spec"]["parentRefs"][0]["kind"], "ListenerSet");
    // The credential and the CA beside the ListenerSet, where Istio resolves its references.
    let secret = yaml_file(&b.join("secret-cluster-b-server-cert.yaml"));
    assert_eq!(secret["metadata"]["namespace"], "service");
    let fragment = yaml_file(&b.join("owner-gateway-fragment.yaml"));
    let per_port = &fragment["spec"]["tls"]["frontend"]["perPort"][0];
    assert_eq!(per_port["port"], 8443);
    let ca_name = per_port["tls"]["validation"]["caCertificateRefs"][0]["name"]
        .as_str()
        .unwrap();
    let ca = yaml_file(&b.join(format!("configmap-{ca_name}.yaml")));
    assert_eq!(ca["metadata"]["namespace"], "service");
    let plugin = yaml_file(&b.join("wasmplugin.yaml"));
    assert_eq!(plugin["metadata"]["namespace"], "edge");
    assert_eq!(plugin["spec"]["targetRefs"][0]["name"], "shared");
    assert_eq!(
        plugin["spec"]["match"][0]["ports"],
        serde_json::json!([{"number": 8443}])
    );
    assert_eq!(
        plugin["spec"]["pluginConfig"]["protectedServerNames"],
        serde_json::json!([DOMAIN])
    );
    let built = kustomize(&b);
    assert!(built.contains("kind: ListenerSet\n"));
    assert!(
        !built.contains("kind: WasmPlugin"),
        "the owner applies the plugin"
    );
    assert!(
        !built.lines().any(|l| l == "kind: Gateway"),
        "the owner's Gateway is not ours to apply"
    );
    let a = kustomize(&out.join("cluster-a"));
    assert!(a.contains("number: 8443"), "{a}");
    assert!(!a.contains("number: 443\n"), "{a}");
    assert!(
        stdout.contains("https://helloworld.zufar.io:8443"),
        "{stdout}"
    );
    assert!(stdout.contains("layer request"), "{stdout}");
}

/// `layer = "auto"` (the default): the connection layer on a gateway of its own with Istio
/// 1.30 or newer, the request layer before 1.30 and on a shared gateway; an explicit layer is
/// kept; `gen` says which and why.
#[test]
fn the_layer_is_chosen_by_the_release_and_the_gateway() {
    let cases: [(&[&str], Option<&str>, peergate_filter::Layer, &str); 4] = [
        (
            &[],
            Some("NETWORK"),
            peergate_filter::Layer::Connection,
            "layer connection: auto: a gateway of its own on Istio 1.30 or newer",
        ),
        (
            &["--istio-version", "1.30"],
            Some("NETWORK"),
            peergate_filter::Layer::Connection,
            "layer connection: auto:",
        ),
        (
            &["--istio-version", "1.29"],
            None,
            peergate_filter::Layer::Request,
            "layer request: auto: this Istio's Envoy has no connection.peer_certificate",
        ),
        (
            &["--layer", "request"],
            None,
            peergate_filter::Layer::Request,
            "layer request: plugin.layer = \"request\"",
        ),
    ];
    for (args, plugin_type, layer, said) in cases {
        let dir = tempfile::tempdir().unwrap();
        let stdout = gen_ok(dir.path(), args);
        let plugin = yaml_file(&dir.path().join("out/cluster-b/wasmplugin.yaml"));
        assert_eq!(plugin["spec"]["type"].as_str(), plugin_type, "{args:?}");
        assert_eq!(
            plugin_config(&dir.path().join("out")).layer,
            layer,
            "{args:?}"
        );
        assert!(stdout.contains(said), "{args:?}: {stdout}");
    }
}

/// Revision-based installs, private registries, the injector's map form, and a client route
/// kept to its namespace.
#[test]
fn revisions_registries_and_cluster_a_scoping() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let a = dir.path().join("out/cluster-a");
    let b = dir.path().join("out/cluster-b");
    assert_eq!(
        yaml_file(&a.join("namespace.yaml"))["metadata"]["labels"],
        serde_json::json!({"istio-injection": "enabled"})
    );
    let annotations =
        &yaml_file(&a.join("deployment.yaml"))["spec"]["template"]["metadata"]["annotations"];
    let volumes: Value =
        serde_json::from_str(annotations["sidecar.istio.io/userVolume"].as_str().unwrap()).unwrap();
    assert_eq!(
        volumes,
        serde_json::json!({"peergate-client-cert": {"secret": {"secretName": "cluster-a-client-cert"}}})
    );
    let mounts: Value = serde_json::from_str(
        annotations["sidecar.istio.io/userVolumeMount"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        mounts,
        serde_json::json!({"peergate-client-cert": {"mountPath": "/etc/peergate/client", "readOnly": true}})
    );
    for file in [
        "destinationrule.yaml",
        "serviceentry.yaml",
        "virtualservice.yaml",
    ] {
        assert_eq!(
            yaml_file(&a.join(file))["spec"]["exportTo"],
            serde_json::json!(["."]),
            "{file}"
        );
    }

    gen_ok(
        dir.path(),
        &[
            "--istio-revision",
            "stable-1",
            "--image-pull-secret",
            "registry-credentials",
            "--image-pull-policy",
            "Always",
        ],
    );
    for ns in [a.join("namespace.yaml"), b.join("namespace.yaml")] {
        assert_eq!(
            yaml_file(&ns)["metadata"]["labels"],
            serde_json::json!({"istio.io/rev": "stable-1"})
        );
    }
    let labels =
        &yaml_file(&b.join("gateway-deployment.yaml"))["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["istio.io/rev"], "stable-1");
    assert!(labels["sidecar.istio.io/inject"].is_null());
    let plugin = yaml_file(&b.join("wasmplugin.yaml"));
    assert_eq!(plugin["spec"]["imagePullSecret"], "registry-credentials");
    assert_eq!(plugin["spec"]["imagePullPolicy"], "Always");
    gen_ok(
        dir.path(),
        &[
            "--image-pull-secret",
            "registry-credentials",
            "--api",
            "trafficextension",
        ],
    );
    let extension = yaml_file(&b.join("trafficextension.yaml"));
    assert_eq!(
        extension["spec"]["wasm"]["imagePullSecret"],
        "registry-credentials"
    );
}

#[test]
fn allowed_san_patterns_are_left_to_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let result = peergate(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--allowed-san",
            "spiffe://cluster-a/ns/other/*",
        ],
    );
    assert!(result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains(
            "warning: the gateway's policy does not admit cluster A's client (san_not_allowed)"
        ),
        "{stderr}"
    );
    let out = dir.path().join("out");
    let gateway = std::fs::read_to_string(out.join("cluster-b/gateway.yaml")).unwrap();
    assert!(
        !gateway.contains("subjectAltNames"),
        "patterns are not Istio SANs:\n{gateway}"
    );
    assert_eq!(
        plugin_config(&out).allowed_sans,
        Some(vec!["spiffe://cluster-a/ns/other/*".to_owned()])
    );

    let dir = tempfile::tempdir().unwrap();
    let result = peergate(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--allowed-san",
            "spiffe://cluster-a/*",
        ],
    );
    assert!(result.status.success());
    assert!(!String::from_utf8_lossy(&result.stderr).contains("warning"));

    let result = peergate(dir.path(), &["gen", "--out", "o2", "--allowed-san", "a*b"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("clusterB.allowedSans[0]"));
}

/// `[monitoring]`: the PrometheusRule and the dashboard ConfigMap in cluster B's kustomization,
/// in the gateway's namespace (or the section's), labelled as the section says; off without it.
#[test]
fn monitoring_objects_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    gen_ok(dir.path(), &[]);
    let b = dir.path().join("out/cluster-b");
    assert!(!b.join("prometheusrule.yaml").exists());
    assert!(!b.join("configmap-peergate-dashboard.yaml").exists());

    std::fs::write(
        dir.path().join("mesh.toml"),
        "[monitoring]\nruleLabels = { release = \"kps\" }\ndeniedPerMinute = 30\n",
    )
    .unwrap();
    let stdout = gen_ok(dir.path(), &["--config", "mesh.toml", "--force"]);
    assert!(stdout.contains("PrometheusRule CRD"), "{stdout}");
    let rule = yaml_file(&b.join("prometheusrule.yaml"));
    let gateway_ns = yaml_file(&b.join("gateway-deployment.yaml"))["metadata"]["namespace"].clone();
    assert_eq!(rule["metadata"]["namespace"], gateway_ns);
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let denials = rules
        .iter()
        .find(|r| r["alert"] == "PeergateDenialsHigh")
        .unwrap();
    assert!(
        denials["expr"].as_str().unwrap().ends_with("* 60 > 30"),
        "{denials}"
    );
    // A gateway of its own: unprotected traffic is alerted on.
    assert!(rules
        .iter()
        .any(|r| r["alert"] == "PeergateUnprotectedTraffic"));
    let map = yaml_file(&b.join("configmap-peergate-dashboard.yaml"));
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(map["data"]["peergate.json"].as_str().unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "peergate");
    let kustomization = std::fs::read_to_string(b.join("kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("- prometheusrule.yaml"),
        "{kustomization}"
    );
    assert!(
        kustomization.contains("- configmap-peergate-dashboard.yaml"),
        "{kustomization}"
    );

    // Dashboard only: the rule file goes away, and so does its line.
    std::fs::write(
        dir.path().join("mesh.toml"),
        "[monitoring]\nalerts = false\n",
    )
    .unwrap();
    let stdout = gen_ok(dir.path(), &["--config", "mesh.toml", "--force"]);
    assert!(!stdout.contains("PrometheusRule CRD"), "{stdout}");
    assert!(!b.join("prometheusrule.yaml").exists());
    assert!(b.join("configmap-peergate-dashboard.yaml").exists());
    let kustomization = std::fs::read_to_string(b.join("kustomization.yaml")).unwrap();
    assert!(
        !kustomization.contains("prometheusrule.yaml"),
        "{kustomization}"
    );

    // No section: neither.
    std::fs::write(dir.path().join("mesh.toml"), "").unwrap();
    gen_ok(dir.path(), &["--config", "mesh.toml", "--force"]);
    assert!(!b.join("configmap-peergate-dashboard.yaml").exists());
}
