//! The filter module as an OCI image Istio can pull (`WasmPlugin.url: oci://…`), written as an
//! OCI image layout directory: no Docker daemon, and deterministic (the same module gives the
//! same bytes and so the same manifest digest, which is what the WasmPlugin's `sha256` must
//! hold for an `oci://` URL).
//!
//! Two layouts, the two Istio accepts:
//! - `compat`: an ordinary image whose only layer is a tar+gzip holding `plugin.wasm` (what a
//!   `FROM scratch` + `COPY plugin.wasm` Dockerfile makes), OCI media types;
//! - `wasm`: the Wasm image variant (the "oci" variant of solo-io's Wasm image spec): config
//!   `application/vnd.module.wasm.config.v1+json`, and exactly two layers, that runtime config
//!   and the module itself as `application/vnd.module.wasm.content.layer.v1+wasm`. Istio's
//!   fetcher refuses any other number of layers (pkg/wasm/imagefetcher.go,
//!   extractOCIArtifactImage); the Istio oracle pulls both variants with it.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, Descriptor, Digest, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, OciLayoutBuilder, Os, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

use crate::output::{FileStatus, Staging, WriteError};

/// The file name Istio looks for in the compat image's layer.
pub const MODULE_FILE: &str = "plugin.wasm";
/// Media type of the Wasm variant's config.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// Media type of the Wasm variant's content layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Where `index.json` names the image (`oci:DIR:TAG` for skopeo).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Which of Istio's two image layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// An ordinary image, `plugin.wasm` in a tar+gzip layer.
    #[default]
    Compat,
    /// The Wasm image variant: the module as the content layer.
    Wasm,
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The module cannot be read.
    #[error("{path}: cannot read the module: {error}")]
    ReadModule {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not a WebAssembly module.
    #[error("{0}: not a WebAssembly module (no \\0asm header)")]
    NotWasm(PathBuf),
    /// The tag cannot be used in `oci:DIR:TAG`.
    #[error("tag {0:?}: use letters, digits, '_', '.' and '-' (at most 128, not starting with '.' or '-')")]
    BadTag(String),
    /// Building an OCI document failed (a bug: every field is set).
    #[error("building the OCI {what}: {message}")]
    Spec {
        /// Which document.
        what: &'static str,
        /// The library's message.
        message: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

fn spec(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> ImageError {
    move |e| ImageError::Spec {
        what,
        message: e.to_string(),
    }
}

/// A blob: its bytes and descriptor.
struct Blob {
    bytes: Vec<u8>,
    descriptor: Descriptor,
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn blob(media_type: MediaType, bytes: Vec<u8>) -> Result<Blob, ImageError> {
    let digest: Digest = format!("sha256:{}", sha256_hex(&bytes))
        .parse()
        .map_err(spec("digest"))?;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    Ok(Blob {
        descriptor: Descriptor::new(media_type, size, digest),
        bytes,
    })
}

/// `plugin.wasm` in a tar archive with fixed metadata (owner 0, mode 0644, time 0).
fn module_tar(module: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut header = tar::Header::new_ustar();
    header.set_size(u64::try_from(module.len()).unwrap_or(u64::MAX));
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, MODULE_FILE, module)?;
    builder.into_inner()
}

/// Gzip with no name and time 0 in the header, so the bytes depend on the input only.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// What [`write_layout`] made.
#[derive(Debug)]
pub struct Image {
    /// The manifest digest, `sha256:<hex>`: the WasmPlugin's `sha256` is its hex part.
    pub manifest_digest: String,
    /// SHA-256 of the module, hex.
    pub module_sha256: String,
    /// Every file of the layout, with what happened to it.
    pub files: Vec<(PathBuf, FileStatus)>,
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> ImageError {
    move |e| ImageError::Spec {
        what,
        message: e.to_string(),
    }
}

/// The blobs of an image of `module`: the manifest first, then config and layer.
fn blobs(module: &[u8], variant: Variant) -> Result<(Blob, Vec<Blob>), ImageError> {
    let (config, layer) = match variant {
        Variant::Compat => {
            let tar = module_tar(module).map_err(io("layer tar"))?;
            let diff_id = format!("sha256:{}", sha256_hex(&tar));
            let layer = blob(
                MediaType::ImageLayerGzip,
                gzip(&tar).map_err(io("layer gzip"))?,
            )?;
            let config = ImageConfigurationBuilder::default()
                .architecture(Arch::Wasm)
                .os(Os::Linux)
                .rootfs(
                    RootFsBuilder::default()
                        .diff_ids(vec![diff_id])
                        .build()
                        .map_err(spec("rootfs"))?,
                )
                .build()
                .map_err(spec("image config"))?;
            let json = config.to_string().map_err(spec("image config"))?;
            (blob(MediaType::ImageConfig, json.into_bytes())?, layer)
        }
        Variant::Wasm => {
            let config = blob(
                MediaType::Other(WASM_CONFIG_MEDIA_TYPE.into()),
                WASM_RUNTIME_CONFIG.as_bytes().to_vec(),
            )?;
            let layer = blob(
                MediaType::Other(WASM_LAYER_MEDIA_TYPE.into()),
                module.to_vec(),
            )?;
            // The spec's two layers: the runtime config (the same blob as the manifest's
            // config) and the module.
            let layers = vec![config.descriptor.clone(), layer.descriptor.clone()];
            return finish(config, layer, layers);
        }
    };
    let layers = vec![layer.descriptor.clone()];
    finish(config, layer, layers)
}

/// What the Wasm variant's config says: a proxy-wasm module for Envoy (ABI 0.2.1, the one
/// the proxy-wasm Rust SDK 0.2 exports).
const WASM_RUNTIME_CONFIG: &str =
    r#"{"type":"envoy_proxy","abiVersions":["proxy_abi_version_0_2_1"]}"#;

/// The manifest over `config` and `layers`, and the blobs to write (a blob named by two
/// descriptors is written once).
fn finish(
    config: Blob,
    layer: Blob,
    layers: Vec<Descriptor>,
) -> Result<(Blob, Vec<Blob>), ImageError> {
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor.clone())
        .layers(layers)
        .build()
        .map_err(spec("manifest"))?;
    let manifest = blob(
        MediaType::ImageManifest,
        manifest.to_string().map_err(spec("manifest"))?.into_bytes(),
    )?;
    Ok((manifest, vec![config, layer]))
}

fn check_tag(tag: &str) -> Result<(), ImageError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::BadTag(tag.to_owned()))
    }
}

/// Reads a module, checking it is WebAssembly.
pub fn read_module(path: &Path) -> Result<Vec<u8>, ImageError> {
    let module = std::fs::read(path).map_err(|error| ImageError::ReadModule {
        path: path.to_owned(),
        error,
    })?;
    if !module.starts_with(b"\0asm") {
        return Err(ImageError::NotWasm(path.to_owned()));
    }
    Ok(module)
}

/// The manifest digest an image of `module` gets, without writing anything.
pub fn manifest_digest(module: &[u8], variant: Variant) -> Result<String, ImageError> {
    let (manifest, _) = blobs(module, variant)?;
    Ok(manifest.descriptor.digest().to_string())
}

/// Writes (or updates) the OCI image layout in `out`: `oci-layout`, `index.json` naming the
/// image `tag`, and the blobs. Every file is staged and then renamed into place, so a failure
/// leaves an earlier layout as it was.
pub fn write_layout(
    module: &[u8],
    variant: Variant,
    out: &Path,
    tag: &str,
) -> Result<Image, ImageError> {
    check_tag(tag)?;
    let (manifest, others) = blobs(module, variant)?;
    let mut manifest_descriptor = manifest.descriptor.clone();
    manifest_descriptor.set_annotations(Some([(REF_NAME.to_owned(), tag.to_owned())].into()));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()
        .map_err(spec("index"))?
        .to_string()
        .map_err(spec("index"))?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(spec("oci-layout"))?
        .to_string()
        .map_err(spec("oci-layout"))?;

    let mut staging = Staging::new();
    let blob_dir = out.join("blobs").join("sha256");
    for blob in std::iter::once(&manifest).chain(&others) {
        let hex = blob.descriptor.digest().digest().to_owned();
        staging.stage(&blob_dir.join(hex), &blob.bytes, 0o644)?;
    }
    staging.stage(&out.join("oci-layout"), layout.as_bytes(), 0o644)?;
    // index.json last: a reader never sees it name a blob that is not there yet.
    staging.stage(&out.join("index.json"), index.as_bytes(), 0o644)?;
    let files = staging.commit()?;
    Ok(Image {
        manifest_digest: manifest.descriptor.digest().to_string(),
        module_sha256: sha256_hex(module),
        files,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module";

    #[test]
    fn same_module_same_digest_and_bytes() {
        for variant in [Variant::Compat, Variant::Wasm] {
            let a = tempfile::tempdir().unwrap();
            let b = tempfile::tempdir().unwrap();
            let ia = write_layout(MODULE, variant, a.path(), "v1").unwrap();
            let ib = write_layout(MODULE, variant, b.path(), "v1").unwrap();
            assert_eq!(ia.manifest_digest, ib.manifest_digest);
            assert_eq!(
                ia.manifest_digest,
                manifest_digest(MODULE, variant).unwrap()
            );
            let again = write_layout(MODULE, variant, a.path(), "v1").unwrap();
            assert!(again.files.iter().all(|(_, s)| *s == FileStatus::Unchanged));
            let other = manifest_digest(b"\0asm\x01\0\0\0 another", variant).unwrap();
            assert_ne!(other, ia.manifest_digest);
        }
        assert_ne!(
            manifest_digest(MODULE, Variant::Compat).unwrap(),
            manifest_digest(MODULE, Variant::Wasm).unwrap()
        );
    }

    #[test]
    fn the_compat_layer_holds_plugin_wasm() {
        let dir = tempfile::tempdir().unwrap();
        write_layout(MODULE, Variant::Compat, dir.path(), "v1").unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME].as_str(),
            Some("v1")
        );
        let blob = |d: &str| {
            std::fs::read(
                dir.path()
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let manifest: serde_json::Value = serde_json::from_slice(&blob(digest)).unwrap();
        let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some(MODULE_FILE));
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        assert_eq!(bytes, MODULE);
        assert!(entries.next().is_none());
    }

    #[test]
    fn bad_input_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_layout(MODULE, Variant::Wasm, dir.path(), "-x"),
            Err(ImageError::BadTag(_))
        ));
        let not_wasm = dir.path().join("x.wasm");
        std::fs::write(&not_wasm, "hello").unwrap();
        assert!(read_module(&not_wasm)
            .unwrap_err()
            .to_string()
            .contains("not a WebAssembly module"));
        assert!(read_module(&dir.path().join("missing.wasm"))
            .unwrap_err()
            .to_string()
            .contains("missing.wasm: cannot read"));
    }
}
