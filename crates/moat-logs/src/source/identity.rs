//! Which file a position belongs to: device and inode, plus a fingerprint of the first bytes.
//!
//! Device and inode alone are not enough: an inode freed by a deleted log is often handed to
//! the very next file created in that directory, and a truncated file keeps its inode while
//! its content starts over. The fingerprint tells those apart from the file we were reading.

use serde::{Deserialize, Serialize};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many leading bytes the fingerprint covers once the file is that long: enough to span a
/// few timestamped lines, so two generations of a log are told apart even when they open with
/// the same banner.
pub const FINGERPRINT_MAX: u32 = 1024;

/// A point in one particular file: its identity and the offset just after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    pub dev: u64,
    pub ino: u64,
    /// Number of leading bytes `fp_hash` covers; 0 while the file was empty.
    pub fp_len: u32,
    pub fp_hash: u64,
    pub offset: u64,
}

impl FileMark {
    /// Whether `meta` describes the same inode (not yet whether the content is the same).
    pub fn same_inode(&self, meta: &Metadata) -> bool {
        self.dev == meta.dev() && self.ino == meta.ino()
    }

    /// Whether `file` is the file this mark was taken in: same inode or not (a copy made by
    /// copytruncate has another), its first `fp_len` bytes unchanged, and at least `offset`
    /// bytes long.
    pub fn content_matches(&self, file: &File, size: u64) -> io::Result<bool> {
        if size < self.offset || size < u64::from(self.fp_len) {
            return Ok(false);
        }
        let head = read_head(file, self.fp_len)?;
        Ok(head.len() == self.fp_len as usize && fnv1a(&head) == self.fp_hash)
    }

    /// The mark at the start of `file`, fingerprinting what it holds now.
    pub fn at_start(file: &File, meta: &Metadata) -> io::Result<FileMark> {
        let head = read_head(file, FINGERPRINT_MAX.min(clamp_u32(meta.len())))?;
        Ok(FileMark {
            dev: meta.dev(),
            ino: meta.ino(),
            fp_len: clamp_u32(head.len() as u64),
            fp_hash: fnv1a(&head),
            offset: 0,
        })
    }

    /// Checks the fingerprint against the file as it is now, and lengthens it while the file
    /// is shorter than [`FINGERPRINT_MAX`] so that a small file still gets a strong one later.
    /// Returns false when the head changed: the file was truncated and written again.
    pub fn verify_and_extend(&mut self, file: &File, size: u64) -> io::Result<bool> {
        let want = FINGERPRINT_MAX.min(clamp_u32(size));
        if want <= self.fp_len {
            if size < u64::from(self.fp_len) {
                return Ok(false);
            }
            let head = read_head(file, self.fp_len)?;
            return Ok(head.len() == self.fp_len as usize && fnv1a(&head) == self.fp_hash);
        }
        let head = read_head(file, want)?;
        if head.len() < self.fp_len as usize || fnv1a(&head[..self.fp_len as usize]) != self.fp_hash
        {
            return Ok(false);
        }
        self.fp_len = clamp_u32(head.len() as u64);
        self.fp_hash = fnv1a(&head);
        Ok(true)
    }
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn read_head(file: &File, len: u32) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; len as usize];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

/// FNV-1a, 64 bits. Written out rather than taken from std's `DefaultHasher`, whose output may
/// change between Rust releases: fingerprints are stored in checkpoints and must compare equal
/// after an upgrade. Strength against forgery is not needed: the bytes are the log's own.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Suffixes of rotated generations that are compressed, hence not readable as text.
const COMPRESSED: &[&str] = &[".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip"];

/// Finds the file a mark was taken in among the rotated siblings of `path` (`log.1`, `log.0`,
/// `log-20240101`, ...): by inode first (rename rotation), then by content (a copy left by
/// copytruncate). Returns it open, with its size, only if it still holds `mark.offset` bytes.
pub fn find_rotated(path: &Path, mark: &FileMark) -> io::Result<Option<(File, u64, PathBuf)>> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let base = base.as_encoded_bytes();
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let name_bytes = name.as_encoded_bytes();
        let rotated_name = name_bytes.len() > base.len()
            && name_bytes.starts_with(base)
            && matches!(name_bytes[base.len()], b'.' | b'-' | b'_');
        let compressed = COMPRESSED
            .iter()
            .any(|s| name_bytes.ends_with(s.as_bytes()));
        if rotated_name && !compressed {
            let modified = entry.metadata().and_then(|m| m.modified());
            candidates.push((modified.unwrap_or(std::time::UNIX_EPOCH), entry.path()));
        }
    }
    // Newest first: among copies with the same head, the latest generation is the one that
    // was made from the file we were reading (`log.1` or `log-20240102`, whatever the naming).
    candidates.sort_by(|a, b| b.cmp(a));
    let mut copy = None;
    for (_, candidate) in candidates {
        let Ok(file) = File::open(&candidate) else {
            continue;
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let size = meta.len();
        if !mark.content_matches(&file, size)? {
            continue;
        }
        if mark.same_inode(&meta) {
            return Ok(Some((file, size, candidate)));
        }
        // A content match needs a real fingerprint: an empty head matches every file.
        if copy.is_none() && mark.fp_len > 0 {
            copy = Some((file, size, candidate));
        }
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_grows_and_detects_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"first\n").unwrap();
        let r = File::open(&path).unwrap();
        let mut mark = FileMark::at_start(&r, &r.metadata().unwrap()).unwrap();
        assert_eq!(mark.fp_len, 6);
        f.write_all(&[b'x'; 2000]).unwrap();
        assert!(mark.verify_and_extend(&r, 2006).unwrap());
        assert_eq!(mark.fp_len, FINGERPRINT_MAX);
        f.set_len(0).unwrap();
        f.write_all(&[b'y'; 2000]).unwrap();
        assert!(!mark.verify_and_extend(&r, 2000).unwrap());
    }

    #[test]
    fn finds_a_renamed_generation_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, b"hello\nworld\n").unwrap();
        let f = File::open(&path).unwrap();
        let mut mark = FileMark::at_start(&f, &f.metadata().unwrap()).unwrap();
        mark.offset = 6;
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        std::fs::write(dir.path().join("app.log.2.gz"), b"hello\nworld\n").unwrap();
        std::fs::write(&path, b"new\n").unwrap();
        let (_, size, found) = find_rotated(&path, &mark).unwrap().unwrap();
        assert_eq!(size, 12);
        assert!(found.ends_with("app.log.1"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
