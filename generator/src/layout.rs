//! Where everything lives in an output folder. Every stage of a run reads its paths from here
//! and this module reads nothing back, so the layout is one place and no stage reaches into
//! another for a path.
//!
//! ```text
//! OUT/settings.toml                how the output was made (settings.rs)
//! OUT/certs/NAME-cert.pem, NAME-key.pem, NAME-crl.pem
//! OUT/certs/rotation               a root rotation's stage
//! OUT/certs/retired/               a retired root, kept
//! OUT/cluster-a/, OUT/cluster-b/   one YAML file per object
//! ```

use std::path::{Path, PathBuf};

/// The folder of certificates, keys and CRLs.
pub fn certs_dir(out: &Path) -> PathBuf {
    out.join("certs")
}

/// Paths of one certificate and its key under `OUT/certs/`.
pub fn cert_paths(out: &Path, name: &str) -> (PathBuf, PathBuf) {
    let dir = certs_dir(out);
    (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

/// Path of a CA's CRL under `OUT/certs/`.
pub fn crl_path(out: &Path, name: &str) -> PathBuf {
    certs_dir(out).join(format!("{name}-crl.pem"))
}

/// Path of the rotation state.
pub fn rotation_path(out: &Path) -> PathBuf {
    certs_dir(out).join("rotation")
}

/// Where a retired root is archived.
pub fn retired_dir(out: &Path) -> PathBuf {
    certs_dir(out).join("retired")
}

/// Path of the recorded settings.
pub fn settings_path(out: &Path) -> PathBuf {
    out.join("settings.toml")
}
