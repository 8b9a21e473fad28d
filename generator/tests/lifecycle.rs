//! Certificate lifecycle as users run it: a staged root rotation (`peergate rotate --stage
//! trust|reissue|retire`), stages refused out of order, expiry shown and warned about, and
//! `gen --renew`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::SystemTime;

mod support;

use peergate_filter::{PluginConfig, Reason};
use serde_json::Value;
use support::{ok, peergate, plugin_config, read, refused, yaml};

const DOMAIN: &str = "helloworld.zufar.io";

/// A Secret's value for `key`, which must be there.
fn secret_of(path: &Path, key: &str) -> String {
    support::secret_value(path, key).unwrap_or_else(|| panic!("{}: no {key}", path.display()))
}

fn decide(out: &Path, pem: &str) -> Reason {
    let der = peergate_filter::xfcc::certificate_der_from_pem(pem.as_bytes()).unwrap();
    peergate_filter::compile(&plugin_config(out))
        .unwrap()
        .decide(Some(&der), DOMAIN, SystemTime::now())
        .reason
}

fn issuer_is(cert: &str, ca: &str) -> bool {
    let config = PluginConfig {
        trusted_issuers: vec![ca.to_owned().into()],
        allowed_sans: Some(vec!["spiffe://unused/*".into()]),
        client_profile: false,
        ..Default::default()
    };
    let der = peergate_filter::xfcc::certificate_der_from_pem(cert.as_bytes()).unwrap();
    peergate_filter::compile(&config)
        .unwrap()
        .decide(Some(&der), DOMAIN, SystemTime::now())
        .reason
        == Reason::SanNotAllowed
}

fn pems(text: &str) -> usize {
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

/// The three stages on the reference scenario, with and without an issuing CA: what each
/// cluster trusts and presents after each.
#[test]
fn a_staged_root_rotation_keeps_both_sides_admitted_at_every_step() {
    for extra in [&[][..], &["--intermediate", "issuing"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let certs = out.join("certs");
        fn with<'a>(args: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
            let mut all: Vec<&str> = args.to_vec();
            all.extend_from_slice(&["--out", "out"]);
            all.extend_from_slice(extra);
            all
        }
        let with = |args: &[&'static str]| with(args, extra);
        let printed = ok(dir.path(), &with(&["gen"]));
        assert!(printed.contains("no root rotation under way"), "{printed}");
        let old_root = read(&certs.join("root-cert.pem"));
        let old_client = read(&certs.join("cluster-a-client-cert.pem"));
        let client_secret = out.join("cluster-a/secret-cluster-a-client-cert.yaml");
        let credential = out.join("cluster-b/secret-cluster-b-server-cert.yaml");

        // Out of order: reissue and retire before trust.
        for stage in ["reissue", "retire"] {
            let stderr = refused(dir.path(), &with(&["rotate", "--stage", stage]));
            assert!(
                stderr.contains("the next stage is trust (peergate rotate --stage trust)"),
                "{stage}: {stderr}"
            );
        }

        // trust: a new root beside the old, both trusted everywhere; leaves unchanged.
        let printed = ok(dir.path(), &with(&["rotate", "--stage", "trust"]));
        assert!(printed.contains("rotation at stage trust"), "{printed}");
        let new_root = read(&certs.join("root-next-cert.pem"));
        assert_ne!(new_root, old_root);
        assert_eq!(read(&certs.join("root-cert.pem")), old_root);
        assert_eq!(read(&certs.join("cluster-a-client-cert.pem")), old_client);
        for secret in [&client_secret, &credential] {
            let ca = secret_of(secret, "ca.crt");
            assert!(
                ca.contains(&old_root) && ca.contains(&new_root),
                "{}",
                secret.display()
            );
        }
        let config = plugin_config(&out);
        assert_eq!(config.trusted_issuers.len(), 2);
        assert_eq!(decide(&out, &old_client), Reason::Allowed);
        // Idempotent, and the next stage cannot be skipped.
        let before = read(&out.join("cluster-b/wasmplugin.yaml"));
        ok(dir.path(), &with(&["rotate", "--stage", "trust"]));
        ok(dir.path(), &with(&["gen"]));
        assert_eq!(read(&out.join("cluster-b/wasmplugin.yaml")), before);
        let stderr = refused(dir.path(), &with(&["rotate", "--stage", "retire"]));
        assert!(stderr.contains("the next stage is reissue"), "{stderr}");

        // reissue: the leaves from the new root (or its issuing CA); both roots trusted.
        let printed = ok(dir.path(), &with(&["rotate", "--stage", "reissue"]));
        assert!(printed.contains("rotation at stage reissue"), "{printed}");
        let new_client = read(&certs.join("cluster-a-client-cert.pem"));
        assert_ne!(new_client, old_client);
        let new_signer = if extra.is_empty() {
            new_root.clone()
        } else {
            read(&certs.join("issuing-next-cert.pem"))
        };
        assert!(issuer_is(&new_client, &new_signer));
        assert_eq!(decide(&out, &new_client), Reason::Allowed);
        assert_eq!(
            decide(&out, &old_client),
            Reason::Allowed,
            "the old client is still admitted"
        );
        let sent = secret_of(&client_secret, "tls.crt");
        assert_eq!(pems(&sent), if extra.is_empty() { 1 } else { 2 });
        let stderr = refused(dir.path(), &with(&["rotate", "--stage", "trust"]));
        assert!(stderr.contains("the next stage is retire"), "{stderr}");
        ok(dir.path(), &with(&["rotate", "--stage", "reissue"]));
        assert_eq!(read(&certs.join("cluster-a-client-cert.pem")), new_client);

        // retire: the old root gone everywhere, kept in certs/retired/; the new one is root-*.
        let printed = ok(dir.path(), &with(&["rotate", "--stage", "retire"]));
        assert!(printed.contains("no root rotation under way"), "{printed}");
        assert_eq!(read(&certs.join("root-cert.pem")), new_root);
        assert!(!certs.join("root-next-cert.pem").exists());
        assert!(!certs.join("root-next-key.pem").exists());
        let retired: Vec<String> = std::fs::read_dir(certs.join("retired"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            retired
                .iter()
                .any(|f| f.starts_with("root-") && f.ends_with("-key.pem")),
            "{retired:?}"
        );
        for secret in [&client_secret, &credential] {
            let ca = secret_of(secret, "ca.crt");
            assert!(
                !ca.contains(&old_root) && ca.contains(&new_root),
                "{}",
                secret.display()
            );
        }
        assert_eq!(plugin_config(&out).trusted_issuers.len(), 1);
        assert_eq!(decide(&out, &new_client), Reason::Allowed);
        assert_ne!(
            decide(&out, &old_client),
            Reason::Allowed,
            "after retire the old root's client"
        );
        // The rotation is over: retire again changes nothing, gen is steady, a new one can start.
        let before = read(&out.join("cluster-b/wasmplugin.yaml"));
        ok(dir.path(), &with(&["rotate", "--stage", "retire"]));
        ok(dir.path(), &with(&["gen"]));
        assert_eq!(read(&out.join("cluster-b/wasmplugin.yaml")), before);
        ok(dir.path(), &with(&["rotate", "--stage", "trust"]));
        assert!(certs.join("root-next-cert.pem").exists());
    }
}

#[test]
fn expiry_is_shown_and_warned_about_with_the_command_that_renews() {
    let dir = tempfile::tempdir().unwrap();
    // A client certificate valid for 10 days: inside the default 30-day window.
    std::fs::write(
        dir.path().join("mesh.toml"),
        "[clusterA]\nvalidity = \"10d\"\n",
    )
    .unwrap();
    let out = peergate(dir.path(), &["gen", "--out", "out"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("certificate cluster-a-client: issued, 10 days left (until "),
        "{stdout}"
    );
    assert!(
        stdout.contains("certificate root: issued, 3650 days left"),
        "{stdout}"
    );
    assert!(
        stderr.contains("certificate cluster-a-client expires in 10 days")
            && stderr.contains("renew it with peergate gen --renew cluster-a-client"),
        "{stderr}"
    );
    assert!(!stderr.contains("certificate root expires"), "{stderr}");
    // inspect says the same of the certificate on disk.
    let inspected = ok(
        dir.path(),
        &["inspect", "out/certs/cluster-a-client-cert.pem"],
    );
    // inspect counts whole days from its own clock: once a second has passed since issuance
    // (a loaded machine), 10 days minus that second floors to 9.
    assert!(
        inspected.contains("10 days left") || inspected.contains("9 days left"),
        "{inspected}"
    );
    // --renew issues that one anew, nothing else.
    let certs = dir.path().join("out/certs");
    let client = read(&certs.join("cluster-a-client-cert.pem"));
    let server = read(&certs.join("cluster-b-server-cert.pem"));
    ok(
        dir.path(),
        &["gen", "--out", "out", "--renew", "cluster-a-client"],
    );
    assert_ne!(read(&certs.join("cluster-a-client-cert.pem")), client);
    assert_eq!(read(&certs.join("cluster-b-server-cert.pem")), server);
    let stderr = refused(dir.path(), &["gen", "--out", "out", "--renew", "root"]);
    assert!(stderr.contains("peergate rotate --stage trust"), "{stderr}");
    let stderr = refused(dir.path(), &["gen", "--out", "out", "--renew", "nobody"]);
    assert!(
        stderr.contains("--renew nobody: not a certificate of this output"),
        "{stderr}"
    );
    // The window is the plugin's: it reaches the pluginConfig when not the default.
    std::fs::write(
        dir.path().join("mesh.toml"),
        "[clusterA]\nvalidity = \"10d\"\n[plugin]\nexpiryWarningDays = 5\n",
    )
    .unwrap();
    let out = peergate(dir.path(), &["gen", "--out", "out"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("expires in"));
    assert_eq!(
        plugin_config(&dir.path().join("out")).expiry_warning_days,
        5
    );
}

fn objects_of_kind(out: &Path, cluster: &str, kind: &str) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out.join(cluster)).unwrap() {
        let path = entry.unwrap().path();
        let object = yaml(&path);
        if object["kind"] == kind {
            found.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                object,
            ));
        }
    }
    found
}

/// certificates = "cert-manager": Certificates instead of leaves, the trust Secret Istio
/// prefers to ca.crt, the default CA Issuer or the user's, and the root rotation through it.
#[test]
fn cert_manager_output_asks_for_what_gen_would_issue() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let printed = ok(
        dir.path(),
        &["gen", "--out", "out", "--certificates", "cert-manager"],
    );
    assert!(
        !printed.contains("certificate cluster-a-client:"),
        "{printed}"
    );
    assert!(
        printed.contains("cert-manager issues the leaves"),
        "{printed}"
    );
    // No leaf and no leaf key anywhere.
    let certs: Vec<String> = std::fs::read_dir(out.join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        certs
            .iter()
            .all(|f| f.starts_with("root-") || f == "rotation"),
        "{certs:?}"
    );
    assert!(!out
        .join("cluster-a/secret-cluster-a-client-cert.yaml")
        .exists());
    assert!(!out
        .join("cluster-b/secret-cluster-b-server-cert.yaml")
        .exists());

    let root = read(&out.join("certs/root-cert.pem"));
    let (_, client) = objects_of_kind(&out, "cluster-a", "Certificate").remove(0);
    let spec = &client["spec"];
    assert_eq!(client["metadata"]["namespace"], "client");
    assert_eq!(spec["secretName"], "cluster-a-client-cert");
    assert_eq!(spec["uris"][0], "spiffe://cluster-a/ns/client/sa/sleep");
    assert_eq!(
        spec["usages"],
        serde_json::json!(["digital signature", "key encipherment", "client auth"])
    );
    assert_eq!(spec["duration"], "8760h");
    assert_eq!(spec["renewBefore"], "2920h");
    assert_eq!(
        spec["privateKey"],
        serde_json::json!({"algorithm": "RSA", "size": 2048, "rotationPolicy": "Always", "encoding": "PKCS8"})
    );
    assert_eq!(
        spec["issuerRef"],
        serde_json::json!({"name": "peergate-ca", "kind": "Issuer", "group": "cert-manager.io"})
    );
    // The DestinationRule's files come from cert-manager's Secret and the trust Secret.
    let deployment = read(&out.join("cluster-a/deployment.yaml"));
    assert!(
        deployment.contains("cluster-a-client-cert-cacert"),
        "{deployment}"
    );
    let (_, server) = objects_of_kind(&out, "cluster-b", "Certificate").remove(0);
    assert_eq!(server["metadata"]["namespace"], "peergate-ingress");
    assert_eq!(server["spec"]["secretName"], "cluster-b-server-cert");
    assert_eq!(server["spec"]["dnsNames"][0], DOMAIN);
    assert_eq!(server["spec"]["usages"][2], "server auth");
    let gateway = read(&out.join("cluster-b/gateway.yaml"));
    assert!(
        gateway.contains("credentialName: cluster-b-server-cert"),
        "{gateway}"
    );
    for (cluster, secret) in [
        ("cluster-a", "cluster-a-client-cert"),
        ("cluster-b", "cluster-b-server-cert"),
    ] {
        let trust = out.join(format!("{cluster}/secret-{secret}-cacert.yaml"));
        assert_eq!(secret_of(&trust, "ca.crt"), root);
        let ca = out.join(format!("{cluster}/secret-peergate-ca.yaml"));
        assert_eq!(secret_of(&ca, "tls.crt"), root);
        assert_eq!(
            secret_of(&ca, "tls.key"),
            read(&out.join("certs/root-key.pem"))
        );
        assert_eq!(objects_of_kind(&out, cluster, "Issuer").len(), 1);
    }
    // The WasmPlugin trusts the CA the Issuer signs with, so renewals change nothing there.
    assert_eq!(plugin_config(&out).trusted_issuers.len(), 1);

    // gen --renew is cert-manager's job now.
    let stderr = refused(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--certificates",
            "cert-manager",
            "--renew",
            "cluster-a-client",
        ],
    );
    assert!(
        stderr.contains("cert-manager issues and renews it"),
        "{stderr}"
    );

    // A staged rotation: trust puts both roots in the trust Secrets, reissue moves the
    // Issuers to the new root.
    let with = |stage: &'static str| -> Vec<&'static str> {
        vec![
            "rotate",
            "--stage",
            stage,
            "--out",
            "out",
            "--certificates",
            "cert-manager",
        ]
    };
    ok(dir.path(), &with("trust"));
    let next = read(&out.join("certs/root-next-cert.pem"));
    let trust = out.join("cluster-b/secret-cluster-b-server-cert-cacert.yaml");
    assert_eq!(secret_of(&trust, "ca.crt"), format!("{root}{next}"));
    assert_eq!(
        secret_of(&out.join("cluster-b/secret-peergate-ca.yaml"), "tls.crt"),
        root
    );
    ok(dir.path(), &with("reissue"));
    assert_eq!(
        secret_of(&out.join("cluster-b/secret-peergate-ca.yaml"), "tls.crt"),
        next
    );
    assert_eq!(secret_of(&trust, "ca.crt"), format!("{root}{next}"));
    ok(dir.path(), &with("retire"));
    assert_eq!(secret_of(&trust, "ca.crt"), next);

    // An issuer of the user's: no Issuer and no CA key in the clusters.
    std::fs::write(
        dir.path().join("mesh.toml"),
        "certificates = \"cert-manager\"\n[certManager.issuerRef]\nname = \"vault\"\nkind = \"ClusterIssuer\"\n",
    )
    .unwrap();
    let run = peergate(dir.path(), &["gen", "--out", "out"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!String::from_utf8_lossy(&run.stderr).contains("Secret peergate-ca"));
    assert!(!out.join("cluster-a/secret-peergate-ca.yaml").exists());
    assert!(objects_of_kind(&out, "cluster-b", "Issuer").is_empty());
    let (_, client) = objects_of_kind(&out, "cluster-a", "Certificate").remove(0);
    assert_eq!(
        client["spec"]["issuerRef"],
        serde_json::json!({"name": "vault", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    // Back to static: gen's own leaves again, cert-manager's objects gone. (Asked for: an
    // empty mesh.toml would keep what the output records, cert-manager.)
    std::fs::write(dir.path().join("mesh.toml"), "certificates = \"static\"\n").unwrap();
    ok(dir.path(), &["gen", "--out", "out"]);
    assert!(out
        .join("cluster-a/secret-cluster-a-client-cert.yaml")
        .exists());
    assert!(!out.join("cluster-a/certificate.yaml").exists());
    assert!(!out
        .join("cluster-b/secret-cluster-b-server-cert-cacert.yaml")
        .exists());
}
