//! Writing the output safely: every new content is first written in full to a temporary file
//! next to its target (created 0600, synced, then given its mode), and only when all of them
//! are on disk are they renamed over their targets. A failure while staging (a full disk, a
//! read-only folder) removes the temporary files and the folders this run created, so the
//! previous output stays exactly as it was. Files whose content and mode are already right are
//! not touched at all, so a second run changes nothing.

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
#[error("{path}: {error}")]
pub struct WriteError {
    /// The file or folder.
    pub path: PathBuf,
    /// The OS error (part of the message, so not repeated as a cause).
    pub error: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |error| WriteError {
        path: path.to_owned(),
        error,
    }
}

/// One file waiting to be renamed into place.
struct Staged {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
    status: FileStatus,
}

/// The files of one run, staged before any of them replaces its target. Dropping it without
/// [`Staging::commit`] leaves the disk as it was before the run.
#[derive(Default)]
pub struct Staging {
    staged: Vec<Staged>,
    /// Files that are already right (content and mode): not touched.
    unchanged: Vec<PathBuf>,
    /// Folders created by this run, outermost first.
    created_dirs: Vec<PathBuf>,
    committed: bool,
}

impl Staging {
    /// An empty staging area.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stages `contents` for `path` with permission `mode`, unless it is already there.
    pub fn stage(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
        let existing = match fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(at(path)(e)),
        };
        if let Some(bytes) = &existing {
            let current_mode = fs::metadata(path).map_err(at(path))?.permissions().mode() & 0o777;
            if bytes == contents && current_mode == mode {
                self.unchanged.push(path.to_owned());
                return Ok(());
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        self.create_dir_all(dir)?;
        // Created 0600 and only widened once the content is in, so a key is never readable
        // by others, not even briefly.
        let mut tmp = tempfile::Builder::new()
            .prefix(".peergate-")
            .tempfile_in(dir)
            .map_err(at(dir))?;
        tmp.write_all(contents).map_err(at(path))?;
        tmp.as_file().sync_all().map_err(at(path))?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).map_err(at(path))?;
        self.staged.push(Staged {
            target: path.to_owned(),
            tmp,
            status: if existing.is_some() {
                FileStatus::Updated
            } else {
                FileStatus::Created
            },
        });
        Ok(())
    }

    /// Like `fs::create_dir_all`, remembering what it created so a failed run can remove it.
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), WriteError> {
        let mut missing = Vec::new();
        let mut cursor = Some(dir);
        while let Some(d) = cursor {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d.to_owned());
            cursor = d.parent();
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => self.created_dirs.push(d),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(at(&d)(e)),
            }
        }
        Ok(())
    }

    /// Renames every staged file over its target and syncs the folders. Returns every path
    /// with what happened to it, in the order staged (unchanged ones last).
    pub fn commit(mut self) -> Result<Vec<(PathBuf, FileStatus)>, WriteError> {
        let mut done = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for Staged {
            target,
            tmp,
            status,
        } in std::mem::take(&mut self.staged)
        {
            // A rename within one folder needs no space: it fails only if the folder changed
            // under us, and then the files renamed so far are complete new versions.
            tmp.persist(&target).map_err(|e| at(&target)(e.error))?;
            if let Some(dir) = target.parent() {
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_owned());
                }
            }
            done.push((target, status));
        }
        self.committed = true;
        for dir in dirs {
            // Make the renames durable; a folder that cannot be opened for syncing is not an
            // error worth failing a finished run for.
            if let Ok(handle) = fs::File::open(&dir) {
                let _ = handle.sync_all();
            }
        }
        done.extend(
            std::mem::take(&mut self.unchanged)
                .into_iter()
                .map(|p| (p, FileStatus::Unchanged)),
        );
        Ok(done)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Temporary files go first (NamedTempFile removes itself), then the folders this run
        // created, innermost first; a folder that is not empty is left alone.
        self.staged.clear();
        for dir in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Removes a file the generator no longer emits; absent is fine.
pub fn remove_stale(path: &Path) -> Result<Option<FileStatus>, WriteError> {
    // Looked up first: unlinking even a missing file fails on a read-only file system, and a
    // run with nothing to change must succeed there.
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(at(path)(e)),
        Ok(_) => {}
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(FileStatus::Removed)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at(path)(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_written_until_commit_and_a_dropped_run_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("a.yaml");
        fs::write(&old, b"old").unwrap();
        let mut staging = Staging::new();
        staging.stage(&old, b"new", 0o644).unwrap();
        staging
            .stage(&dir.path().join("x/y/b.pem"), b"key", 0o600)
            .unwrap();
        assert_eq!(fs::read(&old).unwrap(), b"old");
        drop(staging);
        assert_eq!(fs::read(&old).unwrap(), b"old");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files and new folders are removed");

        let mut staging = Staging::new();
        staging.stage(&old, b"new", 0o644).unwrap();
        staging
            .stage(&dir.path().join("x/b.pem"), b"key", 0o600)
            .unwrap();
        let done = staging.commit().unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(fs::read(&old).unwrap(), b"new");
        let mode = fs::metadata(dir.path().join("x/b.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut staging = Staging::new();
        staging.stage(&old, b"new", 0o644).unwrap();
        assert_eq!(
            staging.commit().unwrap(),
            vec![(old.clone(), FileStatus::Unchanged)]
        );
    }
}
