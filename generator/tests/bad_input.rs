//! `peergate gen` under bad input, as a table: each case starts from a real earlier output,
//! breaks one thing, and must end with exit status 2, a message naming the field or file, and
//! every existing file byte-for-byte as it was (SHA-256 of each, modes too), with no temporary
//! file left behind. A full disk and a read-only folder are real: a tiny tmpfs in a private
//! mount namespace (`unshare`).
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

use sha2::{Digest, Sha256};

fn peergate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peergate"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Every file under `dir`: SHA-256 (hex) and mode. Hidden files (temporary ones) included.
fn checksums(dir: &Path) -> BTreeMap<PathBuf, (String, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // No skipping: an unreadable folder would hide whatever changed inside it.
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: cannot list it to take checksums: {e}", d.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let rel = entry.path().strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_dir() {
                out.insert(rel, ("<dir>".to_owned(), meta.permissions().mode() & 0o777));
                stack.push(entry.path());
            } else {
                let digest = Sha256::digest(std::fs::read(entry.path()).unwrap());
                let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
                out.insert(rel, (hex, meta.permissions().mode() & 0o777));
            }
        }
    }
    out
}

/// What a case starts from.
#[derive(Clone, Copy)]
enum Start {
    /// No output yet.
    Empty,
    /// A complete default output in `out/`.
    Generated,
}

struct Case {
    name: &'static str,
    start: Start,
    /// Changes made to the project before the run (the earlier output is in `out/`).
    setup: fn(&Path),
    /// `mesh.toml` for the run, if any (passed as `--config mesh.toml`).
    config: Option<&'static str>,
    args: &'static [&'static str],
    /// Every one of these must be in the error message.
    expected: &'static [&'static str],
}

fn nothing(_: &Path) {}

fn corrupt_server_key(dir: &Path) {
    std::fs::write(
        dir.join("out/certs/cluster-b-server-key.pem"),
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
}

fn truncate_root_cert(dir: &Path) {
    let path = dir.join("out/certs/root-cert.pem");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
}

fn swap_client_key_for_server_key(dir: &Path) {
    let certs = dir.join("out/certs");
    std::fs::copy(
        certs.join("cluster-b-server-key.pem"),
        certs.join("cluster-a-client-key.pem"),
    )
    .unwrap();
}

fn out_is_a_file(dir: &Path) {
    std::fs::write(dir.join("out-file"), "I am a file, not a folder\n").unwrap();
}

fn remove_client_pair(dir: &Path) {
    let certs = dir.join("out/certs");
    std::fs::remove_file(certs.join("cluster-a-client-cert.pem")).unwrap();
    std::fs::remove_file(certs.join("cluster-a-client-key.pem")).unwrap();
}

fn generate_with_short_root(dir: &Path) {
    std::fs::write(dir.join("short.toml"), "[root]\nvalidity = \"400d\"\n").unwrap();
    let result = peergate(dir, &["gen", "--config", "short.toml", "--out", "out"]);
    assert!(result.status.success(), "{result:?}");
    remove_client_pair(dir);
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key in mesh.toml",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB]\ndomian = \"x.zufar.io\"\n"),
        args: &[],
        expected: &["mesh.toml:2:1", "unknown field `domian`", "domain"],
    },
    Case {
        name: "invalid domain",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB]\ndomain = \"hello world.io\"\n"),
        args: &[],
        expected: &["mesh.toml", "clusterB.domain", "not a DNS name"],
    },
    Case {
        name: "invalid domain on the command line",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--domain=under_score.zufar.io"],
        expected: &["clusterB.domain"],
    },
    Case {
        name: "a pattern where the client's SAN must be a name",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterA]\nsans = [\"spiffe://cluster-a/ns/*\"]\n"),
        args: &[],
        expected: &["clusterA.sans[0]", "pattern"],
    },
    Case {
        name: "an allowed SAN pattern the filter would refuse",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB]\nallowedSans = [\"spiffe://*/x\"]\n"),
        args: &[],
        expected: &["clusterB.allowedSans[0]"],
    },
    Case {
        name: "key type typo in mesh.toml",
        start: Start::Generated,
        setup: nothing,
        config: Some("keyType = \"ecdsa-p265\"\n"),
        args: &[],
        expected: &["mesh.toml:1:11", "ecdsa-p256"],
    },
    Case {
        name: "key type typo on the command line",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--key-type", "rsa248"],
        expected: &["--key-type", "rsa2048"],
    },
    Case {
        name: "an image reference without a repository",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--wasm-image", "peergate"],
        expected: &["plugin.wasmImage", "registry/repository"],
    },
    Case {
        name: "an image digest that is not sha256",
        start: Start::Generated,
        setup: nothing,
        config: Some("[plugin]\nwasmImage = \"ghcr.io/acme/p:1@md5:abc\"\n"),
        args: &[],
        expected: &["mesh.toml", "plugin.wasmImage", "sha256:<64 hex digits>"],
    },
    Case {
        name: "a module URL of another scheme",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--wasm-url", "ftp://example.com/p.wasm"],
        expected: &["plugin.wasmUrl", "https://"],
    },
    Case {
        name: "an https module URL without a built module to hash",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &[
            "--wasm-url",
            "https://example.com/p.wasm",
            "--wasm",
            "nothing.wasm",
        ],
        expected: &[
            "plugin.wasmUrl",
            "nothing.wasm cannot be read",
            "cargo make build-filter",
        ],
    },
    Case {
        name: "an upper-case sha256 (Istio's CRD pattern is lower-case)",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &[
            "--plugin-sha256",
            "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
        ],
        expected: &["plugin.sha256", "lower-case", "^[a-f0-9]{64}$"],
    },
    Case {
        name: "the connection layer on Istio 1.29",
        start: Start::Generated,
        setup: nothing,
        config: Some("istioVersion = \"1.29.6\"\n[plugin]\nlayer = \"connection\"\n"),
        args: &[],
        expected: &[
            "mesh.toml",
            "plugin.layer",
            "needs Istio 1.30",
            "connection.peer_certificate",
            "istioVersion is 1.29.6",
        ],
    },
    Case {
        name: "a TrafficExtension on Istio 1.28",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--api", "trafficextension", "--istio-version", "1.28"],
        expected: &["plugin.api", "needs Istio 1.30", "TrafficExtension"],
    },
    Case {
        name: "an Istio older than supported",
        start: Start::Generated,
        setup: nothing,
        config: Some("istioVersion = \"1.26\"\n"),
        args: &[],
        expected: &["istioVersion", "older than Istio 1.28"],
    },
    Case {
        name: "an Istio version that is not one",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--istio-version", "2.0"],
        expected: &["--istio-version", "1.MINOR"],
    },
    Case {
        name: "an existing gateway without its listener port",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\nexisting = true\nnamespace = \"istio-system\"\nlabels = { istio = \"ingressgateway\" }\n"),
        args: &[],
        expected: &["clusterB.gateway.listenerPort", "targetPort", "8443"],
    },
    Case {
        name: "the connection layer on an existing, shared gateway",
        start: Start::Generated,
        setup: nothing,
        config: Some("[plugin]\nlayer = \"connection\"\n[clusterB.gateway]\nexisting = true\nnamespace = \"istio-system\"\nlabels = { istio = \"ingressgateway\" }\nlistenerPort = 8443\n"),
        args: &[],
        expected: &["plugin.layer", "shared gateway", "layer = \"request\""],
    },
    Case {
        name: "a listener port for a gateway of its own",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\nlistenerPort = 8443\n"),
        args: &[],
        expected: &["clusterB.gateway.listenerPort", "existing = true"],
    },
    Case {
        name: "the legacy pluginListenerPort beside [clusterB.gateway]",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB]\npluginListenerPort = 8443\n[clusterB.gateway]\nreplicas = 3\n"),
        args: &[],
        expected: &["clusterB.pluginListenerPort", "[clusterB.gateway]"],
    },
    Case {
        name: "gateway labels under the Gateway API",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\napi = \"kubernetes\"\nlabels = { app = \"edge\" }\n"),
        args: &[],
        expected: &["clusterB.gateway.labels", "api = \"kubernetes\"", "gateway.networking.k8s.io/gateway-name"],
    },
    Case {
        name: "an existing Gateway API gateway without its name",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\napi = \"kubernetes\"\nexisting = true\nlistenerPort = 8443\n"),
        args: &[],
        expected: &["clusterB.gateway.name", "owner's Gateway"],
    },
    Case {
        name: "an existing Gateway API gateway without the ListenerSet's port",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\napi = \"kubernetes\"\nexisting = true\nname = \"shared\"\n"),
        args: &[],
        expected: &["clusterB.gateway.listenerPort", "perPort", "no other host"],
    },
    Case {
        name: "a ListenerSet before Istio 1.30",
        start: Start::Generated,
        setup: nothing,
        config: Some("istioVersion = \"1.28\"\n[clusterB.gateway]\napi = \"kubernetes\"\nexisting = true\nname = \"shared\"\nlistenerPort = 8443\n"),
        args: &[],
        expected: &["clusterB.gateway.existing", "needs Istio 1.30", "ListenerSet"],
    },
    Case {
        name: "the connection layer on a ListenerSet",
        start: Start::Generated,
        setup: nothing,
        config: Some("[plugin]\nlayer = \"connection\"\n[clusterB.gateway]\napi = \"kubernetes\"\nexisting = true\nname = \"shared\"\nlistenerPort = 8443\n"),
        args: &[],
        expected: &["plugin.layer", "shared gateway"],
    },
    Case {
        name: "the Gateway API before Istio 1.28",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--gateway-api", "kubernetes", "--istio-version", "1.27"],
        expected: &["clusterB.gateway.api", "needs Istio 1.28"],
    },
    Case {
        name: "an unknown gateway API",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\napi = \"contour\"\n"),
        args: &[],
        expected: &["mesh.toml:2:7", "contour", "kubernetes"],
    },
    Case {
        name: "a Gateway name too long for what Istio deploys",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\napi = \"kubernetes\"\nname = \"a-gateway-name-of-sixty-characters-which-is-fine-on-its-own\"\n"),
        args: &[],
        expected: &["clusterB.gateway.name", "-istio", "63"],
    },
    Case {
        name: "a classic Gateway on a Gateway API gateway",
        start: Start::Generated,
        setup: nothing,
        config: Some("istioVersion = \"1.31\"\n[clusterB.gateway]\nexisting = true\nnamespace = \"edge\"\nlabels = { \"gateway.networking.k8s.io/gateway-name\" = \"shared\" }\nlistenerPort = 443\n"),
        args: &[],
        expected: &["clusterB.gateway.labels", "credential", "strict gateway merging", "ListenerSet"],
    },
    Case {
        name: "a route path with a dot-segment",
        start: Start::Generated,
        setup: nothing,
        config: Some("[[clusterB.routes]]\npathPrefix = \"/a/../b/\"\n"),
        args: &[],
        expected: &["clusterB.routes[0].pathPrefix", ". or .."],
    },
    Case {
        name: "a route pattern that is not one",
        start: Start::Generated,
        setup: nothing,
        config: Some("[[clusterB.routes]]\npathPrefix = \"/a/\"\nallowedSans = [\"spiffe://x/*/y\"]\n"),
        args: &[],
        expected: &["clusterB.routes[0].allowedSans[0]"],
    },
    Case {
        name: "routes at the connection layer",
        start: Start::Generated,
        setup: nothing,
        config: Some("[plugin]\nlayer = \"connection\"\n[[clusterB.routes]]\npathPrefix = \"/a/\"\n"),
        args: &[],
        expected: &["plugin.layer", "path or method"],
    },
    Case {
        name: "gateway labels that are not labels",
        start: Start::Generated,
        setup: nothing,
        config: Some("[clusterB.gateway]\nlabels = { istio = \"-bad value\" }\n"),
        args: &[],
        expected: &["clusterB.gateway.labels", "not a Kubernetes label"],
    },
    Case {
        name: "a revision that is not a name",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--istio-revision", "Stable_1"],
        expected: &["istioRevision", "not a revision name"],
    },
    Case {
        name: "an image pull secret that is not a Secret name",
        start: Start::Generated,
        setup: nothing,
        config: Some("[plugin]\nimagePullSecret = \"my secret\"\n"),
        args: &[],
        expected: &["plugin.imagePullSecret"],
    },
    Case {
        name: "a misspelled image pull policy",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--image-pull-policy", "Sometimes"],
        expected: &["--image-pull-policy", "IfNotPresent"],
    },
    Case {
        name: "a missing configuration file",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--config", "nope.toml"],
        expected: &["nope.toml: cannot read"],
    },
    Case {
        name: "output folder is a file",
        start: Start::Empty,
        setup: out_is_a_file,
        config: None,
        args: &["--out", "out-file"],
        expected: &["out-file", "Not a directory"],
    },
    Case {
        name: "existing certificates that no longer fit, without --force",
        start: Start::Generated,
        setup: nothing,
        config: None,
        args: &["--domain", "other.zufar.io"],
        expected: &["cluster-b-server-cert.pem", "no longer fits", "--force"],
    },
    Case {
        name: "corrupt existing key",
        start: Start::Generated,
        setup: corrupt_server_key,
        config: None,
        args: &[],
        expected: &[
            "cluster-b-server-key.pem",
            "the key does not load",
            "--force",
        ],
    },
    Case {
        name: "truncated existing root certificate",
        start: Start::Generated,
        setup: truncate_root_cert,
        config: None,
        args: &[],
        expected: &["root-cert.pem", "not a PEM certificate", "--force"],
    },
    Case {
        name: "a key that belongs to another certificate",
        start: Start::Generated,
        setup: swap_client_key_for_server_key,
        config: None,
        args: &[],
        expected: &[
            "cluster-a-client-key.pem",
            "does not belong to the certificate",
        ],
    },
    Case {
        name: "a root configured to expire before the leaves",
        start: Start::Generated,
        setup: nothing,
        config: Some("[root]\nvalidity = \"100d\"\n"),
        args: &[],
        expected: &[
            "clusterA.validity",
            "8760h is longer than root.validity (2400h)",
        ],
    },
    Case {
        name: "a reused root that would expire before a new leaf",
        start: Start::Empty,
        setup: generate_with_short_root,
        config: Some("[root]\nvalidity = \"900d\"\n[clusterA]\nvalidity = \"850d\"\n"),
        args: &[],
        expected: &[
            "root-cert.pem: the root expires on",
            "before a new cluster-a-client certificate would",
            "--force",
        ],
    },
];

fn run_case(case: &Case) {
    let dir = tempfile::tempdir().unwrap();
    if let Start::Generated = case.start {
        let result = peergate(dir.path(), &["gen", "--out", "out"]);
        assert!(result.status.success(), "{}: seeding failed", case.name);
    }
    (case.setup)(dir.path());
    let mut args = vec!["gen"];
    if !case.args.contains(&"--out") {
        args.extend(["--out", "out"]);
    }
    if let Some(config) = case.config {
        std::fs::write(dir.path().join("mesh.toml"), config).unwrap();
        args.extend(["--config", "mesh.toml"]);
    }
    args.extend_from_slice(case.args);
    let before = checksums(dir.path());
    let result = peergate(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        result.status.code(),
        Some(2),
        "{}: exit status; stderr:\n{stderr}",
        case.name
    );
    for needle in case.expected {
        assert!(
            stderr.contains(needle),
            "{}: {needle:?} missing from:\n{stderr}",
            case.name
        );
    }
    assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
    assert_eq!(
        checksums(dir.path()),
        before,
        "{}: files changed, appeared or vanished",
        case.name
    );
}

#[test]
fn every_bad_input_is_refused_and_changes_nothing() {
    for case in CASES {
        run_case(case);
    }
}

/// Runs `script` as root of a new user and mount namespace, so it can mount a tmpfs of its
/// own. No privilege is needed beyond unprivileged user namespaces; without them the test
/// fails and says so (it never skips).
fn in_mount_namespace(script: &str, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new("unshare");
    command
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ])
        .args(["bash", "-euo", "pipefail", "-c", script]);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run unshare (util-linux), needed to simulate a full disk: {e}")
    });
    assert!(
        output.status.success(),
        "the mount-namespace script failed (are unprivileged user namespaces enabled?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A checksum listing written by the script: `sha256  ./path` lines plus modes.
fn listing(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

const LIST: &str = r#"list() { (cd "$1" && find . -print0 | sort -z | xargs -0 stat -c '%n %a %F' && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }"#;

#[test]
fn a_full_disk_and_a_read_only_folder_leave_the_output_as_it_was() {
    let work = tempfile::tempdir().unwrap();
    let seed = work.path().join("seed");
    std::fs::create_dir(&seed).unwrap();
    let result = peergate(&seed, &["gen", "--out", "out"]);
    assert!(result.status.success());
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let report = work.path().join("report");
    std::fs::create_dir(&report).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_peergate"));

    // 1. A regeneration (--force) on a disk with only a few pages left: some temporary files
    //    fit, then ENOSPC. 2. The same on a read-only folder. 3. A first run on a disk too small
    //    for the output. 4. A run with nothing to change on the read-only folder succeeds.
    let script = format!(
        r#"{LIST}
run() {{ set +e; (cd "$MNT" && "$PEERGATE" "$@") >"$REPORT/$name.out" 2>"$REPORT/$name.err"; echo $? >"$REPORT/$name.rc"; set -e; }}

mount -t tmpfs -o size=1m tmpfs "$MNT"
cp -a "$SEED/out" "$MNT/out"
avail=$(df -B4096 --output=avail "$MNT" | tail -n 1)
dd if=/dev/zero of="$MNT/filler" bs=4096 count=$((avail - 3)) status=none
list "$MNT/out" >"$REPORT/full.before"
name=full; run gen --out out --force
list "$MNT/out" >"$REPORT/full.after"
rm "$MNT/filler"

mount -o remount,ro "$MNT"
list "$MNT/out" >"$REPORT/ro.before"
name=ro; run gen --out out --force
list "$MNT/out" >"$REPORT/ro.after"
name=ro-unchanged; run gen --out out
umount "$MNT"

mount -t tmpfs -o size=40k tmpfs "$MNT"
name=fresh; run gen --out out
list "$MNT" >"$REPORT/fresh.after"
umount "$MNT"
"#
    );
    in_mount_namespace(
        &script,
        &[
            ("MNT", &mnt),
            ("SEED", &seed),
            ("REPORT", &report),
            ("PEERGATE", &bin),
        ],
    );
    let read = |name: &str| listing(&report.join(name));
    let rc = |name: &str| read(&format!("{name}.rc")).trim().to_owned();

    assert_eq!(rc("full"), "2", "full disk: {}", read("full.err"));
    let err = read("full.err");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("out/"), "the message names the file: {err}");
    assert_eq!(
        read("full.before"),
        read("full.after"),
        "full disk changed the output"
    );
    assert!(
        !read("full.after").contains(".peergate-"),
        "a temporary file was left"
    );

    assert_eq!(rc("ro"), "2", "read-only: {}", read("ro.err"));
    let err = read("ro.err");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(err.contains("out/"), "{err}");
    assert_eq!(read("ro.before"), read("ro.after"));
    assert_eq!(
        rc("ro-unchanged"),
        "0",
        "nothing to write is no error, even read-only: {}",
        read("ro-unchanged.err")
    );

    assert_eq!(rc("fresh"), "2", "tiny disk: {}", read("fresh.err"));
    assert!(read("fresh.err").contains("No space left on device"));
    let left = read("fresh.after");
    assert_eq!(
        left.lines().filter(|l| !l.starts_with(". ")).count(),
        0,
        "a failed first run leaves no file and no folder behind:\n{left}"
    );
}
