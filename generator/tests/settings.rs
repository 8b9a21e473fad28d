//! The output remembers how it was made (`OUT/settings.toml`): `revoke`, `rotate` and a later
//! `gen` need not repeat `--intermediate`, `--root-key`, `--key-type`, `--certificates` or
//! `--istio-version`, and a flag (or `mesh.toml`) that contradicts the record where the
//! output's certificates depend on it is refused naming both values unless `--force`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{ok, read, refused, snapshot_bytes};

#[test]
fn revoke_and_rotate_work_on_an_issuing_ca_output_without_repeating_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--intermediate",
            "issuing",
            "--key-type",
            "ecdsa-p256",
        ],
    );
    let out = dir.path().join("out");
    let recorded = read(&out.join("settings.toml"));
    assert!(
        recorded.contains("intermediate = \"issuing\""),
        "{recorded}"
    );
    assert!(recorded.contains("keyType = \"ecdsa-p256\""), "{recorded}");
    assert!(!recorded.contains("PRIVATE KEY"), "{recorded}");

    // The client's certificate, signed by the issuing CA: found without --intermediate.
    let revoked = ok(
        dir.path(),
        &[
            "revoke",
            "--out",
            "out",
            "--cert",
            "out/certs/cluster-a-client-cert.pem",
            "--force",
        ],
    );
    assert!(revoked.contains("issuing CA's (issuing) CRL"), "{revoked}");
    assert!(revoked.contains("intermediate = \"issuing\""), "{revoked}");
    // A serial goes on the CRL of the CA that signs leaves now: the issuing CA's.
    let by_serial = ok(dir.path(), &["revoke", "--out", "out", "--serial", "0abc"]);
    assert!(
        by_serial.contains("issuing CA's (issuing) CRL"),
        "{by_serial}"
    );
    // A later plain gen keeps the issuing CA and the key type.
    let again = ok(dir.path(), &["gen", "--out", "out"]);
    assert!(again.contains("certificate issuing: reused"), "{again}");
    assert!(again.contains("ecdsa-p256 keys"), "{again}");
    // And the rotation finds the issuing CA to renew beside the root.
    ok(dir.path(), &["rotate", "--stage", "trust", "--out", "out"]);
    assert!(out.join("certs/issuing-next-cert.pem").exists());
}

#[test]
fn a_flag_that_contradicts_the_record_is_refused_naming_both_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &["gen", "--out", "out", "--intermediate", "issuing"],
    );
    let out = dir.path().join("out");
    let before = snapshot_bytes(&out);
    for (args, given, recorded) in [
        (
            &["--intermediate", "other"][..],
            "--intermediate \"other\"",
            "intermediate = \"issuing\"",
        ),
        (
            &["--key-type", "ed25519"][..],
            "--key-type ed25519",
            "keyType = \"rsa2048\"",
        ),
    ] {
        let mut all = vec!["gen", "--out", "out"];
        all.extend_from_slice(args);
        let stderr = refused(dir.path(), &all);
        assert!(
            stderr.contains(given) && stderr.contains(recorded) && stderr.contains("--force"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            snapshot_bytes(&out),
            before,
            "{args:?} must not touch the output"
        );
    }
    // mesh.toml asking for another issuing CA is a contradiction too.
    std::fs::write(
        dir.path().join("mesh.toml"),
        "[intermediate]\nname = \"from-file\"\n",
    )
    .unwrap();
    let stderr = refused(dir.path(), &["gen", "--out", "out"]);
    assert!(
        stderr.contains("mesh.toml's [intermediate] name = \"from-file\""),
        "{stderr}"
    );
    std::fs::remove_file(dir.path().join("mesh.toml")).unwrap();
    // Who issues the leaves is a run of its own (no certificate of the output depends on it):
    // taken and recorded, and kept by the next run.
    ok(
        dir.path(),
        &["gen", "--out", "out", "--certificates", "cert-manager"],
    );
    ok(dir.path(), &["gen", "--out", "out"]);
    assert!(read(&out.join("settings.toml")).contains("certificates = \"cert-manager\""));
    assert!(out.join("cluster-a/certificate.yaml").exists());
    ok(
        dir.path(),
        &["gen", "--out", "out", "--certificates", "static"],
    );
    // With --force the new value is taken and recorded.
    ok(
        dir.path(),
        &["gen", "--out", "out", "--key-type", "ed25519", "--force"],
    );
    let recorded = read(&out.join("settings.toml"));
    assert!(recorded.contains("keyType = \"ed25519\""), "{recorded}");
    assert!(
        recorded.contains("intermediate = \"issuing\""),
        "{recorded}"
    );
}

#[test]
fn the_istio_release_is_remembered_and_may_move_on() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &["gen", "--out", "out", "--istio-version", "1.28"],
    );
    let again = ok(dir.path(), &["gen", "--out", "out"]);
    assert!(again.contains("Istio 1.28"), "{again}");
    // An upgrade shapes no certificate: taken without --force, and recorded.
    let upgraded = ok(
        dir.path(),
        &["gen", "--out", "out", "--istio-version", "1.30"],
    );
    assert!(upgraded.contains("Istio 1.30"), "{upgraded}");
    assert!(read(&dir.path().join("out/settings.toml")).contains("istioVersion = \"1.30\""));
}

#[test]
fn the_root_keys_place_is_remembered() {
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
    let recorded = read(&dir.path().join("out/settings.toml"));
    assert!(
        recorded.contains(&format!("rootKey = {key_arg:?}")),
        "{recorded}"
    );
    // A new issuing CA needs the root's key: the recorded one signs it (with --force, as the
    // leaves under it are new too), without --root-key.
    let certs = dir.path().join("out/certs");
    std::fs::remove_file(certs.join("issuing-cert.pem")).unwrap();
    std::fs::remove_file(certs.join("issuing-key.pem")).unwrap();
    let reissued = ok(dir.path(), &["gen", "--out", "out", "--force"]);
    assert!(
        reissued.contains("certificate issuing: issued"),
        "{reissued}"
    );
    assert!(!certs.join("root-key.pem").exists());
    // Another place for it contradicts the record.
    let elsewhere = vault.path().join("elsewhere.pem");
    let stderr = refused(
        dir.path(),
        &[
            "gen",
            "--out",
            "out",
            "--root-key",
            elsewhere.to_str().unwrap(),
        ],
    );
    assert!(stderr.contains("rootKey"), "{stderr}");
}
