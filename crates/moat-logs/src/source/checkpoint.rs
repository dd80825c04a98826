//! Where each source stopped, kept across restarts in one small JSON file.
//!
//! The consumer, not the source, decides what is done: it acknowledges a line once the line's
//! effects (a failure counted, a ban decided) are in place, and saves now and then. A crash
//! then re-reads at most the lines after the last save and never skips one.

use super::{Line, Position, SourceError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
struct Stored {
    version: u32,
    positions: BTreeMap<String, Position>,
}

/// The same shape as [`Stored`], borrowed, so saving does not copy the map.
#[derive(Serialize)]
struct StoredRef<'a> {
    version: u32,
    positions: &'a BTreeMap<String, Position>,
}

/// Positions by source name (a file's path, `journal:...`), with the file they are saved in.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    positions: BTreeMap<String, Position>,
    dirty: bool,
}

impl Checkpoints {
    /// Reads the state file; a missing one is an empty state (first start).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, SourceError> {
        let path = path.into();
        let positions = match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes).map_err(|source| {
                    SourceError::CheckpointFormat {
                        path: path.clone(),
                        source,
                    }
                })?;
                if stored.version != FORMAT_VERSION {
                    return Err(SourceError::CheckpointVersion {
                        path,
                        version: stored.version,
                    });
                }
                stored.positions
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(SourceError::Io { path, source }),
        };
        Ok(Checkpoints {
            path,
            positions,
            dirty: false,
        })
    }

    /// The state file these checkpoints are saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, source: &str) -> Option<&Position> {
        self.positions.get(source)
    }

    /// The saved position of a file source, to hand to [`super::FileTail::new`].
    pub fn file(&self, source: &str) -> Option<crate::source::FileMark> {
        match self.positions.get(source) {
            Some(Position::File(mark)) => Some(*mark),
            _ => None,
        }
    }

    /// The saved cursor of a journal source, to hand to the journal source.
    pub fn journal_cursor(&self, source: &str) -> Option<&str> {
        match self.positions.get(source) {
            Some(Position::Journal { cursor }) => Some(cursor),
            _ => None,
        }
    }

    /// Records that `line` and every line before it in its source have been processed.
    pub fn ack(&mut self, line: &Line) {
        self.set(&line.source, &line.position);
    }

    /// Records a position directly: a file tail's starting point before it emitted any line,
    /// so that a restart does not skip what was written in between.
    pub fn set(&mut self, source: &str, position: &Position) {
        if matches!(position, Position::None) {
            return;
        }
        match self.positions.get_mut(source) {
            Some(old) if old == position => {}
            Some(old) => {
                old.clone_from(position);
                self.dirty = true;
            }
            None => {
                self.positions.insert(source.to_owned(), position.clone());
                self.dirty = true;
            }
        }
    }

    /// Forgets a source that is no longer configured.
    pub fn remove(&mut self, source: &str) {
        if self.positions.remove(source).is_some() {
            self.dirty = true;
        }
    }

    /// Whether something was acknowledged since the last save.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the state if it changed. The new file is complete and on disk before it replaces
    /// the old one (temp file in the same directory, fsync, rename, fsync of the directory), so
    /// a crash at any point leaves either the old state or the new one, never a torn file.
    pub fn save(&mut self) -> Result<(), SourceError> {
        if !self.dirty {
            return Ok(());
        }
        let io_err = |source| SourceError::Io {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&StoredRef {
            version: FORMAT_VERSION,
            positions: &self.positions,
        })
        .map_err(|e| io_err(std::io::Error::other(e)))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = format!(
            ".{}.",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io_err)?;
        tmp.write_all(&json).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&self.path).map_err(|e| io_err(e.error))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileMark;

    #[test]
    fn round_trip_and_only_dirty_saves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let mut cp = Checkpoints::load(&path).unwrap();
        assert!(cp.get("x").is_none());
        cp.save().unwrap();
        assert!(!path.exists(), "nothing to save yet");
        let mark = FileMark {
            dev: 1,
            ino: 2,
            fp_len: 3,
            fp_hash: u64::MAX,
            offset: 5,
        };
        cp.set("/var/log/auth.log", &Position::File(mark));
        let cursor = "s=abc;i=1".to_string();
        cp.set("journal:sshd", &Position::Journal { cursor });
        cp.set("stdin", &Position::None);
        cp.save().unwrap();
        assert!(!cp.is_dirty());
        let back = Checkpoints::load(&path).unwrap();
        assert_eq!(back.file("/var/log/auth.log"), Some(mark));
        assert_eq!(back.journal_cursor("journal:sshd"), Some("s=abc;i=1"));
        assert!(back.get("stdin").is_none());
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp file left behind");
    }

    #[test]
    fn garbage_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = Checkpoints::load(&path).unwrap_err();
        assert!(matches!(err, SourceError::CheckpointFormat { .. }), "{err}");
    }
}
