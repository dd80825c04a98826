//! Keeps the key ring in the state directory: read at start, rotated in place.
//!
//! Written to a temporary file, synced and renamed, so a crash mid-write leaves the old ring and
//! never half a key; created with mode 0600 because whoever reads it can mint clearance.

use crate::keys::{KeyError, KeyRing};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: KeyError },
}

/// Loads the ring at `path`, creating it if missing and rotating it if its current key is older
/// than `rotation_secs`. Returns the ring in use.
pub fn load_or_create(path: &Path, now: u64, rotation_secs: u64) -> Result<KeyRing, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let ring = match std::fs::read_to_string(path) {
        Ok(text) => KeyRing::from_text(&text).map_err(|source| KeyFileError::Parse {
            path: path.to_path_buf(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let r = KeyRing::generate(now).map_err(|source| KeyFileError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
            save(path, &r)?;
            return Ok(r);
        }
        Err(e) => return Err(io(e)),
    };
    if ring.needs_rotation(now, rotation_secs) {
        return rotate(path, &ring, now);
    }
    Ok(ring)
}

/// Rotates and persists; the caller swaps the returned ring in.
pub fn rotate(path: &Path, ring: &KeyRing, now: u64) -> Result<KeyRing, KeyFileError> {
    let next = ring.rotated(now).map_err(|source| KeyFileError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    save(path, &next)?;
    Ok(next)
}

fn save(path: &Path, ring: &KeyRing) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(ring.to_text().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_reloaded_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proof.keys");
        let a = load_or_create(&p, 1000, 3600).unwrap();
        let b = load_or_create(&p, 2000, 3600).unwrap();
        assert_eq!(
            a.current().tag(b"m"),
            b.current().tag(b"m"),
            "same key reloaded"
        );
        let c = load_or_create(&p, 1000 + 3600, 3600).unwrap();
        assert_eq!(c.current().id, 1);
        assert!(c.get(0).is_some(), "the previous key still verifies");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proof.keys");
        std::fs::write(&p, "garbage here\n").unwrap();
        let e = load_or_create(&p, 1, 10).unwrap_err().to_string();
        assert!(e.contains("proof.keys") && e.contains("line 1"), "{e}");
    }
}
