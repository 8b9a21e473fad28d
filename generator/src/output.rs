//! Writing files safely: atomically (temporary file, then rename), private keys 0600, and not
//! at all when the content is already there, so a second run changes nothing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// It did not exist.
    Created,
    /// It existed with other content or mode.
    Updated,
    /// Same content and mode: not touched.
    Unchanged,
    /// A file the generator no longer emits was removed.
    Removed,
}

impl FileStatus {
    /// A short word for reports.
    pub fn word(self) -> &'static str {
        match self {
            FileStatus::Created => "created",
            FileStatus::Updated => "updated",
            FileStatus::Unchanged => "unchanged",
            FileStatus::Removed => "removed",
        }
    }
}

/// A file operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to `path` with permission `mode`, atomically, unless it is already there.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<FileStatus, WriteError> {
    let existing = match fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(at(path)(e)),
    };
    if let Some(bytes) = &existing {
        let current_mode = fs::metadata(path).map_err(at(path))?.permissions().mode() & 0o777;
        if bytes == contents && current_mode == mode {
            return Ok(FileStatus::Unchanged);
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(at(dir))?;
    // The temporary file is created 0600 and only widened after the content is in, so a key
    // is never readable by others, not even briefly.
    let mut tmp = tempfile::Builder::new()
        .prefix(".peergate-")
        .tempfile_in(dir)
        .map_err(at(dir))?;
    tmp.write_all(contents).map_err(at(path))?;
    tmp.as_file().sync_all().map_err(at(path))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).map_err(at(path))?;
    tmp.persist(path).map_err(|e| at(path)(e.error))?;
    Ok(if existing.is_some() {
        FileStatus::Updated
    } else {
        FileStatus::Created
    })
}

/// Removes a file the generator no longer emits; absent is fine.
pub fn remove_stale(path: &Path) -> Result<Option<FileStatus>, WriteError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(FileStatus::Removed)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at(path)(e)),
    }
}
