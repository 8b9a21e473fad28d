//! `OUT/settings.toml`: how an output was made. `gen` (and `revoke` and `rotate`, which are
//! runs of the same generator) writes the resolved settings a later run must repeat to work on
//! the same certificates: the issuing CA's name, where the root's key is kept when not in the
//! output, the key type, who issues the leaves, the Istio release. A later run reads them, so a
//! user who made the output last month need not remember the command line; a setting asked for
//! explicitly (a flag, or `mesh.toml`) that contradicts a recorded one is refused, naming both,
//! unless `--force`. No secret is in it: the root key's path, never the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mesh::{Certificates, IstioVersion, KeyType, Mesh};

/// The version this peergate writes and the newest it reads.
pub const SETTINGS_VERSION: u32 = 1;

/// The recorded settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// The file format's version ([`SETTINGS_VERSION`]).
    pub version: u32,
    /// `keyType`.
    pub key_type: KeyType,
    /// `certificates`: `static` or `cert-manager`.
    pub certificates: Certificates,
    /// `istioVersion`.
    pub istio_version: IstioVersion,
    /// The issuing CA's name (`[intermediate] name`, `--intermediate`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<String>,
    /// Where the root's key is kept (`--root-key`), when not in `certs/`: an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_key: Option<PathBuf>,
}

/// Why the recorded settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not what `gen` writes.
    #[error("{path}: {message} (peergate gen writes this file; remove it to start from mesh.toml and the flags alone)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said.
        message: String,
    },
    /// A newer peergate wrote it.
    #[error("{path}: version {found}, and this peergate reads version {SETTINGS_VERSION} at most: use the peergate that made the output, or a newer one")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// An explicit setting differs from the recorded one.
    #[error("{given} contradicts {key} = {recorded} in {path}, which says how this output was made: the certificates in it depend on that; rerun with --force to make them anew with the new value")]
    Contradiction {
        /// The explicit value and where it came from (`--intermediate "b"`).
        given: String,
        /// The key in the file.
        key: &'static str,
        /// The recorded value.
        recorded: String,
        /// The file.
        path: PathBuf,
    },
}

impl Settings {
    /// The settings of a run that generates `mesh` with the root's key at `root_key`.
    pub fn of(mesh: &Mesh, root_key: Option<&Path>) -> Self {
        Settings {
            version: SETTINGS_VERSION,
            key_type: mesh.key_type,
            certificates: mesh.certificates,
            istio_version: mesh.istio_version,
            intermediate: mesh.intermediate.as_ref().map(|i| i.name.clone()),
            root_key: root_key.map(|path| std::path::absolute(path).unwrap_or(path.to_owned())),
        }
    }

    /// The file's text: a comment saying what it is, then the settings.
    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# How peergate made this output: the settings later runs (gen, revoke, rotate) repeat\n\
             # from here, so they need not be given again. Written by every run; no secrets.\n{body}"
        )
    }

    /// The settings recorded in `out`, if any.
    pub fn read(out: &Path) -> Result<Option<Self>, SettingsError> {
        let path = crate::layout::settings_path(out);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let parse = |message: String| SettingsError::Parse {
            path: path.clone(),
            message,
        };
        let found = toml::from_str::<Versioned>(&text)
            .map_err(|e| parse(e.message().to_owned()))?
            .version;
        if found > SETTINGS_VERSION {
            return Err(SettingsError::Version { path, found });
        }
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| parse(e.message().to_owned()))
    }
}

/// The settings a run asked for explicitly, each with where it came from (`--key-type`,
/// `mesh.toml`): these are never replaced by recorded ones.
#[derive(Debug, Clone, Default)]
pub struct Explicit {
    /// `--key-type` or `keyType`.
    pub key_type: Option<String>,
    /// `--certificates` or `certificates`.
    pub certificates: Option<String>,
    /// `--istio-version` or `istioVersion`.
    pub istio_version: Option<String>,
    /// `--intermediate` or `[intermediate]`.
    pub intermediate: Option<String>,
    /// `--root-key`.
    pub root_key: Option<String>,
}

/// Which recorded settings a `mesh.toml` text sets (its top-level keys and sections), whatever
/// their values: a file that writes the default value asks for it as much as a flag would.
pub fn set_in_mesh_file(text: &str) -> Vec<&'static str> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    ["keyType", "certificates", "istioVersion", "intermediate"]
        .into_iter()
        .filter(|key| table.contains_key(*key))
        .collect()
}

/// Completes a run's settings from the recorded ones: each setting not asked for explicitly
/// takes its recorded value. An explicit one that differs is refused unless `force` where the
/// certificates in the output depend on it (the issuing CA, the root key's place, the key
/// type); the Istio release and who issues the leaves are taken and recorded (moving between
/// `static` and `cert-manager` is a run of its own, as before). Returns a line per recorded
/// value used, for the run's output.
pub fn complete_from(
    recorded: &Settings,
    explicit: &Explicit,
    force: bool,
    mesh: &mut Mesh,
    root_key: &mut Option<PathBuf>,
    out: &Path,
) -> Result<Vec<String>, SettingsError> {
    let path = crate::layout::settings_path(out);
    let contradiction =
        |given: &str, key: &'static str, recorded: String| SettingsError::Contradiction {
            given: given.to_owned(),
            key,
            recorded,
            path: path.clone(),
        };
    let mut used = Vec::new();
    match &explicit.key_type {
        Some(given) if mesh.key_type != recorded.key_type && !force => {
            return Err(contradiction(given, "keyType", quoted(recorded.key_type)))
        }
        Some(_) => {}
        None => {
            mesh.key_type = recorded.key_type;
            used.push(format!("keyType = {}", quoted(recorded.key_type)));
        }
    }
    if explicit.certificates.is_none() {
        mesh.certificates = recorded.certificates;
        used.push(format!(
            "certificates = {}",
            quoted(recorded.certificates.word())
        ));
    }
    if explicit.istio_version.is_none() {
        mesh.istio_version = recorded.istio_version;
        used.push(format!("istioVersion = {}", quoted(recorded.istio_version)));
    }
    complete_intermediate(recorded, explicit, force, mesh, &mut used)
        .map_err(|(given, value)| contradiction(&given, "intermediate", value))?;
    match (&explicit.root_key, root_key.as_deref(), &recorded.root_key) {
        (Some(given), Some(asked), Some(kept))
            if std::path::absolute(asked).unwrap_or(asked.to_owned()) != *kept && !force =>
        {
            return Err(contradiction(given, "rootKey", quoted(kept.display())))
        }
        (Some(given), _, None) if !force => {
            return Err(contradiction(
                given,
                "rootKey",
                "(absent: the root's key is in certs/)".to_owned(),
            ))
        }
        (None, _, Some(kept)) => {
            *root_key = Some(kept.clone());
            used.push(format!("rootKey = {}", quoted(kept.display())));
        }
        _ => {}
    }
    Ok(used)
}

/// The issuing CA: recorded when not asked for; `Err` with the explicit value and the recorded
/// one when they differ.
fn complete_intermediate(
    recorded: &Settings,
    explicit: &Explicit,
    force: bool,
    mesh: &mut Mesh,
    used: &mut Vec<String>,
) -> Result<(), (String, String)> {
    let asked = mesh.intermediate.as_ref().map(|i| i.name.clone());
    match (&explicit.intermediate, &recorded.intermediate) {
        (Some(given), recorded_name) if asked != *recorded_name && !force => Err((
            given.clone(),
            recorded_name
                .as_ref()
                .map_or_else(|| "(absent: the root signs the leaves)".to_owned(), quoted),
        )),
        (None, Some(name)) => {
            mesh.intermediate
                .get_or_insert_with(Default::default)
                .name
                .clone_from(name);
            used.push(format!("intermediate = {}", quoted(name)));
            Ok(())
        }
        _ => Ok(()),
    }
}

fn quoted(value: impl std::fmt::Display) -> String {
    format!("{:?}", value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let mesh = Mesh {
            intermediate: Some(Default::default()),
            ..Default::default()
        };
        let settings = Settings::of(&mesh, Some(Path::new("/vault/root-key.pem")));
        std::fs::write(crate::layout::settings_path(dir.path()), settings.render()).unwrap();
        assert_eq!(Settings::read(dir.path()).unwrap(), Some(settings));
        assert_eq!(Settings::read(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn a_newer_or_foreign_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::layout::settings_path(dir.path());
        std::fs::write(&path, "version = 2\n").unwrap();
        let err = Settings::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("settings.toml") && err.contains("version 2"),
            "{err}"
        );
        std::fs::write(&path, "version = 1\nkeyType = \"rsa2048\"\ncolour = 1\n").unwrap();
        let err = Settings::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("settings.toml"), "{err}");
    }
}
