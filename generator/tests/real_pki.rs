//! `peergate gen --intermediate`, `--root-key` and `peergate revoke` as users run them: the
//! chain each side sends and trusts, the scoped issuer and the anchor in the WasmPlugin, a root
//! key kept out of the output, and revocations that reach the WasmPlugin and the gateway's
//! credential and survive the next run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

mod support;

use peergate_filter::{Reason, TrustedIssuerConfig};
use support::{ok, peergate, plugin_config, read, refused, secret_value, snapshot_bytes, yaml};

const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";
const DOMAIN: &str = "helloworld.zufar.io";

fn der(pem: &str) -> Vec<u8> {
    peergate_filter::xfcc::certificate_der_from_pem(pem.as_bytes()).unwrap()
}

fn decide(out: &Path, cert: &Path) -> Reason {
    peergate_filter::compile(&plugin_config(out))
        .unwrap()
        .decide(Some(&der(&read(cert))), DOMAIN, SystemTime::now())
        .reason
}

fn openssl_verify_chain(root: &Path, intermediate: &Path, leaf: &Path, purpose: &str) {
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
        .arg(root)
        .arg("-untrusted")
        .arg(intermediate)
        .arg(leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify {}: {}{}",
        leaf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pem_count(text: &str, label: &str) -> usize {
    text.matches(&format!("-----BEGIN {label}-----")).count()
}

#[test]
fn an_issuing_ca_signs_the_leaves_and_each_side_gets_the_right_chain() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(
        dir.path(),
        &["gen", "--out", "out", "--intermediate", "partner-issuing"],
    );
    let certs = out.join("certs");
    for name in ["cluster-a-client", "cluster-b-server"] {
        let purpose = if name.contains("client") {
            "sslclient"
        } else {
            "sslserver"
        };
        openssl_verify_chain(
            &certs.join("root-cert.pem"),
            &certs.join("partner-issuing-cert.pem"),
            &certs.join(format!("{name}-cert.pem")),
            purpose,
        );
    }
    // The issuing CA: pathLenConstraint 0, under the root.
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(certs.join("partner-issuing-cert.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");

    // Cluster A sends the leaf with its issuing CA and trusts the root.
    let client_secret = out.join("cluster-a/secret-cluster-a-client-cert.yaml");
    let tls_crt = secret_value(&client_secret, "tls.crt").unwrap();
    assert_eq!(pem_count(&tls_crt, "CERTIFICATE"), 2);
    assert!(tls_crt.ends_with(&read(&certs.join("partner-issuing-cert.pem"))));
    assert_eq!(
        secret_value(&client_secret, "ca.crt").unwrap(),
        read(&certs.join("root-cert.pem"))
    );
    // The gateway's credential: the same for the server, the root as client CA, both CRLs.
    let credential = std::fs::read_dir(out.join("cluster-b"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("secret-")
        })
        .unwrap();
    assert_eq!(yaml(&credential)["type"], "kubernetes.io/tls");
    assert_eq!(
        pem_count(
            &secret_value(&credential, "tls.crt").unwrap(),
            "CERTIFICATE"
        ),
        2
    );
    assert_eq!(
        secret_value(&credential, "ca.crt").unwrap(),
        read(&certs.join("root-cert.pem"))
    );
    let ca_crl = secret_value(&credential, "ca.crl").unwrap();
    assert_eq!(pem_count(&ca_crl, "X509 CRL"), 2, "{ca_crl}");

    // The WasmPlugin: the issuing CA scoped to the client's names, the root as its anchor.
    let config = plugin_config(&out);
    match &config.trusted_issuers[..] {
        [TrustedIssuerConfig::Scoped(scoped)] => {
            assert_eq!(
                scoped.certificate,
                read(&certs.join("partner-issuing-cert.pem"))
            );
            assert_eq!(scoped.scope, Some(vec![CLIENT_ID.to_owned()]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        config.trust_anchors,
        vec![read(&certs.join("root-cert.pem"))]
    );
    assert_eq!(config.crls.len(), 2);
    assert_eq!(
        decide(&out, &certs.join("cluster-a-client-cert.pem")),
        Reason::Allowed
    );
    assert_eq!(
        decide(&out, &certs.join("cluster-b-server-cert.pem")),
        Reason::NotClientAuth
    );

    // `peergate audit` shows the chain and the scope that applied.
    let audit = peergate(
        dir.path(),
        &[
            "audit",
            "--policy",
            "out/cluster-b",
            "--cert",
            "out/certs/cluster-a-client-cert.pem",
            "--host",
            DOMAIN,
        ],
    );
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.status.code(), Some(0), "{text}");
    assert!(
        text.contains("1 trusted issuer, 1 trust anchor, 2 CRLs"),
        "{text}"
    );
    for line in [
        "issuer_chain         pass    trustedIssuers[0] \"CN=partner-issuing\" ← trustAnchors[0] \"CN=a-b-root-ca\"",
        "revocation           pass    on none of crls[0], crls[1]",
        &format!("issuer_scope         pass    every SAN (URI:{CLIENT_ID}) is inside trustedIssuers[0]'s scope"),
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }

    // A second run changes nothing.
    let before = snapshot_bytes(&out);
    let again = ok(
        dir.path(),
        &["gen", "--out", "out", "--intermediate", "partner-issuing"],
    );
    assert!(
        again.contains("certificate partner-issuing: reused"),
        "{again}"
    );
    assert_eq!(snapshot_bytes(&out), before);
}

#[test]
fn the_root_key_can_stay_out_of_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let vault = tempfile::tempdir().unwrap();
    let root_key = vault.path().join("root-key.pem");
    let key_arg = root_key.to_str().unwrap();
    ok(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--root-key",
            key_arg,
        ],
    );
    let certs = dir.path().join("out/certs");
    assert!(
        !certs.join("root-key.pem").exists(),
        "the root key was copied"
    );
    assert!(certs.join("root-cert.pem").exists());
    assert_eq!(
        std::fs::metadata(&root_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_before = read(&root_key);
    // Without the key: everything it signed is reused, so nothing needs it.
    let again = ok(
        dir.path(),
        &["gen", "--out", "out", "--intermediate", "issuing"],
    );
    assert!(again.contains("certificate root: reused"), "{again}");
    assert!(!certs.join("root-key.pem").exists());
    // Something only the root signs (a new issuing CA) needs it, and says how to give it: on
    // an output that does not record where the key is (made before settings.toml; with it the
    // recorded key signs, see tests/settings.rs).
    std::fs::remove_file(certs.join("issuing-cert.pem")).unwrap();
    std::fs::remove_file(certs.join("issuing-key.pem")).unwrap();
    std::fs::remove_file(dir.path().join("out/settings.toml")).unwrap();
    let stderr = refused(
        dir.path(),
        &["gen", "--out", "out", "--intermediate", "issuing"],
    );
    assert!(
        stderr.contains("the root's key is needed to sign the issuing CA")
            && stderr.contains("--root-key"),
        "{stderr}"
    );
    // With it: a new issuing CA (and leaves under it); the key file is not touched.
    // The old leaves were not issued by the new issuing CA: replacing them needs --force.
    let stderr = refused(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--root-key",
            key_arg,
        ],
    );
    assert!(stderr.contains("its issuing CA is new"), "{stderr}");
    ok(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--root-key",
            key_arg,
            "--force",
        ],
    );
    assert_eq!(read(&root_key), key_before);
    assert!(!certs.join("root-key.pem").exists());
    // Both places at once is refused.
    std::fs::write(certs.join("root-key.pem"), &key_before).unwrap();
    refused(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--root-key",
            key_arg,
        ],
    );
}

#[test]
fn revocations_reach_the_plugin_and_the_credential_and_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let gen = ["gen", "--out", "out", "--intermediate", "issuing"];
    ok(dir.path(), &gen);
    let certs = out.join("certs");
    let client = certs.join("cluster-a-client-cert.pem");

    // The output's own client: refused without --force.
    let stderr = refused(
        dir.path(),
        &[
            "revoke",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--cert",
            client.to_str().unwrap(),
        ],
    );
    assert!(
        stderr.contains("cluster A's client certificate") && stderr.contains("--force"),
        "{stderr}"
    );

    // Another client of the issuing CA, revoked by certificate.
    let old_client = read(&client);
    let stolen = dir.path().join("stolen.pem");
    std::fs::write(&stolen, &old_client).unwrap();
    let printed = ok(
        dir.path(),
        &[
            "revoke",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--cert",
            stolen.to_str().unwrap(),
            "--reason",
            "keyCompromise",
            "--force",
        ],
    );
    assert!(printed.contains("issuing CA's"), "{printed}");
    // The revoked client was reissued; the old one is refused as revoked, the new one admitted.
    assert_ne!(read(&client), old_client);
    let config = plugin_config(&out);
    let policy = peergate_filter::compile(&config).unwrap();
    assert_eq!(
        policy
            .decide(Some(&der(&old_client)), DOMAIN, SystemTime::now())
            .reason,
        Reason::Revoked
    );
    assert_eq!(decide(&out, &client), Reason::Allowed);
    let crl = read(&certs.join("issuing-crl.pem"));
    let crl_text = Command::new("openssl")
        .args(["crl", "-noout", "-text"])
        .stdin(std::fs::File::open(certs.join("issuing-crl.pem")).unwrap())
        .output()
        .unwrap();
    let crl_text = String::from_utf8_lossy(&crl_text.stdout);
    assert!(crl_text.contains("Key Compromise"), "{crl_text}");

    // By serial, then the next gen keeps both.
    ok(
        dir.path(),
        &[
            "revoke",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--serial",
            "0a:bc:de",
        ],
    );
    let before = read(&certs.join("issuing-crl.pem"));
    assert_ne!(before, crl);
    ok(dir.path(), &gen);
    assert_eq!(
        read(&certs.join("issuing-crl.pem")),
        before,
        "gen re-signed or lost revocations"
    );
    let crl_text = Command::new("openssl")
        .args(["crl", "-noout", "-text"])
        .stdin(std::fs::File::open(certs.join("issuing-crl.pem")).unwrap())
        .output()
        .unwrap();
    let crl_text = String::from_utf8_lossy(&crl_text.stdout);
    assert!(crl_text.contains("0ABCDE"), "{crl_text}");
    assert_eq!(crl_text.matches("Serial Number:").count(), 2, "{crl_text}");
    let credential = out.join("cluster-b/secret-cluster-b-server-cert.yaml");
    let ca_crl = secret_value(&credential, "ca.crl").unwrap_or_else(|| {
        panic!(
            "{}",
            std::fs::read_to_string(&credential).unwrap_or_default()
        )
    });
    assert!(ca_crl.contains(&before));

    // A certificate from elsewhere is refused.
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["gen", "--out", "out"]);
    let foreign = other.path().join("out/certs/cluster-a-client-cert.pem");
    assert!(refused(
        dir.path(),
        &[
            "revoke",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--cert",
            foreign.to_str().unwrap(),
        ],
    )
    .contains("not issued by the root or the issuing CA"));
}

#[test]
fn without_an_issuing_ca_the_roots_crl_appears_with_the_first_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(dir.path(), &["gen", "--out", "out"]);
    assert!(plugin_config(&out).crls.is_empty());
    let credential = out.join("cluster-b/secret-cluster-b-server-cert.yaml");
    assert_eq!(secret_value(&credential, "ca.crl"), None);
    let stdout = ok(dir.path(), &["revoke", "--out", "out", "--serial", "01:23"]);
    assert_eq!(plugin_config(&out).crls.len(), 1);
    // The default layer on the newest pinned Istio decides once per connection: revoke says how to cut
    // the connections a revoked peer already holds.
    assert!(
        stdout.contains(
            "kubectl -n peergate-ingress rollout restart deployment peergate-ingressgateway"
        ),
        "{stdout}"
    );
    let ca_crl = secret_value(&credential, "ca.crl").unwrap();
    assert_eq!(ca_crl, read(&out.join("certs/root-crl.pem")));
    assert_eq!(
        decide(&out, &out.join("certs/cluster-a-client-cert.pem")),
        Reason::Allowed
    );
    assert!(
        refused(dir.path(), &["revoke", "--out", "out", "--serial", "xyz"]).contains("--serial")
    );
}
