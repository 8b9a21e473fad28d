//! The delivery path for real: `peergate image` writes the built module as an OCI image layout
//! (both of Istio's layouts), umoci and skopeo read it, skopeo pushes it to a real registry
//! (Debian's `docker-registry`, the CNCF distribution registry) on loopback, `peergate gen
//! --wasm-image` writes the WasmPlugin, and the image pulled back by the digest in that
//! WasmPlugin is the one pushed, its layers as the layout says. That Istio's own fetcher reads
//! each variant and hands Envoy the module's bytes is shown by the Istio oracle
//! (tests/istio/wasm_test.go), with istio-agent's code, not here.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peergate::image::sha256_hex;
use peergate_e2e::envoy::{admin_get, filter_wasm, peergate_binary};
use serde_json::Value;

/// Runs a tool, failing loudly (never skipping) when it is not installed.
fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with `cargo make install-oci-tools` (Debian: skopeo, docker-registry, umoci)")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The registry, on a free loopback port, storing into a temporary folder.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry ({e}): install it with `cargo make install-oci-tools`")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(admin_get(addr.parse().unwrap(), "/v2/"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "the registry did not answer on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// The module in an image layout as its variant puts it: the content layer of the Wasm variant
/// (whose manifest has exactly the two layers of the spec, config and content), or
/// `plugin.wasm` in the last tar+gzip layer of an ordinary image.
fn module_in_layout(layout: &Path) -> Vec<u8> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(&read_blob(
        layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    if manifest["config"]["mediaType"] == "application/vnd.module.wasm.config.v1+json" {
        let types: Vec<&str> = layers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "application/vnd.module.wasm.config.v1+json",
                "application/vnd.module.wasm.content.layer.v1+wasm"
            ]
        );
        let layer = layers
            .iter()
            .find(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
            .expect("a wasm content layer");
        return read_blob(layout, layer["digest"].as_str().unwrap());
    }
    let last = layers.last().expect("a layer");
    let gz = read_blob(layout, last["digest"].as_str().unwrap());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("plugin.wasm") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("no plugin.wasm in the last layer");
}

/// `peergate image`: the manifest digest it prints.
fn image(module: &Path, out: &Path, variant: &str) -> String {
    let output = run(
        peergate_binary().to_str().unwrap(),
        &[
            "image",
            "--wasm",
            module.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--variant",
            variant,
            "--tag",
            "0.1.0",
        ],
    );
    let digest = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest
}

#[test]
fn the_module_goes_through_a_registry_and_comes_back_by_the_generated_digest() {
    let module_path = filter_wasm();
    let module = std::fs::read(&module_path).unwrap();
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    for variant in ["compat", "wasm"] {
        let layout = work.path().join(format!("layout-{variant}"));
        let digest = image(&module_path, &layout, variant);

        // Deterministic: another layout of the same module, the same digest and bytes.
        let again = work.path().join(format!("again-{variant}"));
        assert_eq!(image(&module_path, &again, variant), digest);
        assert_eq!(
            std::fs::read(layout.join("index.json")).unwrap(),
            std::fs::read(again.join("index.json")).unwrap()
        );

        // The layout as other tools read it.
        let oci_ref = format!("oci:{}:0.1.0", layout.display());
        let raw = run("skopeo", &["inspect", "--raw", &oci_ref]).stdout;
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw)),
            digest,
            "skopeo's manifest"
        );
        assert_eq!(
            module_in_layout(&layout),
            module,
            "{variant}: the layout's module"
        );
        if variant == "compat" {
            let tags = run("umoci", &["ls", "--layout", layout.to_str().unwrap()]).stdout;
            assert_eq!(String::from_utf8_lossy(&tags).trim(), "0.1.0");
            let bundle = work.path().join("bundle");
            run(
                "umoci",
                &[
                    "unpack",
                    "--rootless",
                    "--image",
                    &format!("{}:0.1.0", layout.display()),
                    bundle.to_str().unwrap(),
                ],
            );
            assert_eq!(
                std::fs::read(bundle.join("rootfs/plugin.wasm")).unwrap(),
                module
            );
        }

        // Push, as the README says.
        let repository = format!("{}/peergate/filter-{variant}", registry.addr);
        run(
            "skopeo",
            &[
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                &oci_ref,
                &format!("docker://{repository}:0.1.0"),
            ],
        );

        // The generator takes the image reference with its digest.
        let gen_dir = work.path().join(format!("gen-{variant}"));
        run(
            peergate_binary().to_str().unwrap(),
            &[
                "gen",
                "--out",
                gen_dir.to_str().unwrap(),
                "--wasm-image",
                &format!("{repository}:0.1.0@{digest}"),
            ],
        );
        let plugin: Value = yaml_serde::from_str(
            &std::fs::read_to_string(gen_dir.join("cluster-b/wasmplugin.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(plugin["spec"]["url"], format!("oci://{repository}:0.1.0"));
        let sha = plugin["spec"]["sha256"].as_str().unwrap().to_owned();
        assert_eq!(format!("sha256:{sha}"), digest);

        // Pull back by the digest the WasmPlugin holds: the registry serves that very
        // manifest, and its layer holds the module Istio would load.
        let by_digest = format!("docker://{repository}@sha256:{sha}");
        let served = run(
            "skopeo",
            &["inspect", "--raw", "--tls-verify=false", &by_digest],
        )
        .stdout;
        assert_eq!(sha256_hex(&served), sha);
        let pulled = work.path().join(format!("pulled-{variant}"));
        run(
            "skopeo",
            &[
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                &by_digest,
                &format!("oci:{}:pulled", pulled.display()),
            ],
        );
        assert_eq!(module_in_layout(&pulled), module, "{variant}: pulled back");
    }
}

/// The https:// and file:// forms of the module's URL, and TrafficExtension output.
#[test]
fn wasm_url_digests_and_traffic_extension() {
    let module_path = filter_wasm();
    let module = std::fs::read(&module_path).unwrap();
    let work = tempfile::tempdir().unwrap();
    let gen = |name: &str, args: &[&str]| -> PathBuf {
        let out = work.path().join(name);
        let mut all = vec![
            "gen",
            "--out",
            out.to_str().unwrap(),
            "--wasm",
            module_path.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run(peergate_binary().to_str().unwrap(), &all);
        out
    };
    let read = |dir: &Path, file: &str| -> Value {
        yaml_serde::from_str(&std::fs::read_to_string(dir.join("cluster-b").join(file)).unwrap())
            .unwrap()
    };
    let https = gen(
        "https",
        &["--wasm-url", "https://example.com/peergate.wasm"],
    );
    let plugin = read(&https, "wasmplugin.yaml");
    assert_eq!(
        plugin["spec"]["sha256"].as_str().unwrap(),
        sha256_hex(&module)
    );
    let file = gen("file", &["--wasm-url", "file:///var/local/peergate.wasm"]);
    assert!(read(&file, "wasmplugin.yaml")["spec"]["sha256"].is_null());

    let extension = gen(
        "extension",
        &[
            "--api",
            "trafficextension",
            "--layer",
            "connection",
            "--wasm-url",
            "https://example.com/p.wasm",
        ],
    );
    assert!(!extension.join("cluster-b/wasmplugin.yaml").exists());
    let te = read(&extension, "trafficextension.yaml");
    assert_eq!(te["kind"], "TrafficExtension");
    assert_eq!(
        te["spec"]["selector"]["matchLabels"]["istio"],
        "peergate-ingressgateway"
    );
    assert_eq!(te["spec"]["phase"], "AUTHN");
    assert_eq!(te["spec"]["wasm"]["type"], "NETWORK");
    assert_eq!(te["spec"]["wasm"]["failStrategy"], "FAIL_CLOSE");
    assert_eq!(
        te["spec"]["wasm"]["sha256"].as_str().unwrap(),
        sha256_hex(&module)
    );
    assert_eq!(te["spec"]["wasm"]["pluginConfig"]["layer"], "connection");
    let kustomization =
        std::fs::read_to_string(extension.join("cluster-b/kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("trafficextension.yaml")
            && !kustomization.contains("wasmplugin.yaml")
    );
}
