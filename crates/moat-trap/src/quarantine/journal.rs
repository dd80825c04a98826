//! The journal: where an accepted message becomes durable before its `250`.
//!
//! Segments under `journal/` (`<number>.log`, numbered in order). Each group of deliveries is
//! one append of frames to the current segment, synced before the group's replies go
//! ([`super::intake`]). A frame is the magic `MQJ1`, the payload length (u64,
//! little endian) and the payload: the message's whole file content as [`super::files::encode`]
//! makes it, so the index writer stores those same bytes as the Maildir file.
//!
//! A segment is deleted once every message in it is indexed and its file durable. After a
//! crash, [`super::writer`] replays what is left: a message already indexed is skipped, any
//! other is indexed as if it had just arrived. The first frame that is cut short or damaged
//! ends a segment's replay; it and what follows were never acknowledged, because a group is
//! answered only after its whole append was synced.
//!
//! Segments are preallocated: a helper thread writes a spare segment full of zeros and syncs
//! it ahead of need, so that the sync after each append writes the appended block and nothing
//! else (appending to a growing file would also write its inode each time: measured 0.15 ms
//! against 0.26 ms per sync on the development VM). Zeros after the last frame are free
//! space, not damage. Without a spare ready, a segment simply grows.
//!
//! No I/O in the framing ([`frame`], [`frames`]); segment files are created, written and listed
//! here too, but syncing after an append is the caller's.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"MQJ1";
const FRAME_HEAD: usize = 12;

/// A segment's preallocated size: one is closed and the next started when a group no longer
/// fits (a group larger than this gets a segment that grows to hold it).
pub const SEGMENT_BYTES: u64 = 4 << 20;

pub fn dir(root: &Path) -> PathBuf {
    root.join("journal")
}

fn segment_path(root: &Path, number: u64) -> PathBuf {
    dir(root).join(format!("{number:016}.log"))
}

/// Appends one frame holding `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The payloads of the whole frames at the start of `bytes`, in order. Stops at the first frame
/// that is cut short or does not start with the magic, and says whether what stopped it was a
/// torn tail rather than the end (the file's end, or only zeros after the last frame).
pub fn frames(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            return (out, false);
        }
        let Some(head) = rest.get(..FRAME_HEAD) else {
            return (out, true);
        };
        if &head[..4] != MAGIC {
            return (out, true);
        }
        let len = u64::from_le_bytes(head[4..].try_into().expect("8 bytes"));
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(FRAME_HEAD))
            .filter(|&e| e <= rest.len());
        let Some(end) = end else {
            return (out, true);
        };
        out.push(&rest[FRAME_HEAD..end]);
        rest = &rest[end..];
    }
    (out, false)
}

/// The segments on disk, oldest first.
pub fn segments(root: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir(root)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, e.path()));
    }
    out.sort();
    Ok(out)
}

/// Deletes every segment numbered at most `through`, then syncs the directory.
pub fn remove_through(root: &Path, through: u64) -> std::io::Result<usize> {
    let mut n = 0;
    for (number, path) in segments(root)? {
        if number > through {
            break;
        }
        std::fs::remove_file(path)?;
        n += 1;
    }
    if n > 0 {
        File::open(dir(root))?.sync_all()?;
    }
    Ok(n)
}

/// The segment being appended to.
pub struct Journal {
    root: PathBuf,
    number: u64,
    file: Arc<File>,
    /// Where the next frame goes.
    len: u64,
    /// Preallocated segments from the helper thread.
    spares: std::sync::mpsc::Receiver<(PathBuf, File)>,
    /// The helper thread stops once this is gone.
    _alive: Arc<()>,
}

impl Journal {
    /// Starts a new segment after any on disk and after `after` (the writer has replayed and
    /// removed the old ones by now, but numbers never go back), and the helper thread that
    /// prepares the next ones.
    pub fn open(root: &Path, after: u64) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir(root))?;
        for e in std::fs::read_dir(dir(root))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("spare-") {
                // A journal dropped a moment ago may still be removing its own last spare.
                match std::fs::remove_file(e.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        let next = segments(root)?.last().map_or(after, |(n, _)| after.max(*n)) + 1;
        let alive = Arc::new(());
        let spares = spawn_preparer(dir(root), Arc::downgrade(&alive));
        let file = create(root, next, &spares)?;
        Ok(Journal {
            root: root.to_path_buf(),
            number: next,
            file,
            len: 0,
            spares,
            _alive: alive,
        })
    }

    /// The current segment's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Whether anything was appended to the current segment.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `n` more bytes fit in the current segment's preallocated space (always, if it
    /// is empty: it then grows as needed).
    pub fn fits(&self, n: usize) -> bool {
        self.is_empty() || self.len + n as u64 <= SEGMENT_BYTES
    }

    /// Writes `frames` after the last frame (one write) and returns the segment file, which the
    /// caller syncs before answering. A failed write may leave a torn tail that replay stops
    /// at, so the next append goes to a new segment: nothing acknowledged follows a tear.
    pub fn append(&mut self, frames: &[u8]) -> std::io::Result<Arc<File>> {
        use std::os::unix::fs::FileExt;
        if let Err(e) = self.file.write_all_at(frames, self.len) {
            let _ = self.rotate();
            return Err(e);
        }
        self.len += frames.len() as u64;
        Ok(self.file.clone())
    }

    /// Closes the current segment and starts the next one; returns the closed one's number.
    pub fn rotate(&mut self) -> std::io::Result<u64> {
        let file = create(&self.root, self.number + 1, &self.spares)?;
        let closed = self.number;
        self.number += 1;
        self.file = file;
        self.len = 0;
        Ok(closed)
    }
}

/// Creates segment `number` (from a spare if one is ready) and makes its directory entry
/// durable, so that a synced append to it survives a crash.
fn create(
    root: &Path,
    number: u64,
    spares: &std::sync::mpsc::Receiver<(PathBuf, File)>,
) -> std::io::Result<Arc<File>> {
    let path = segment_path(root, number);
    let f = match spares.try_recv() {
        Ok((spare, f)) => {
            std::fs::rename(spare, &path)?;
            f
        }
        Err(_) => std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)?,
    };
    File::open(dir(root))?.sync_all()?;
    Ok(Arc::new(f))
}

/// The next spare segment's number in this process.
static SPARE_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long the segment preparer waits before trying again after it failed (a full disk).
const PREPARE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the thread that keeps one spare segment ready: `spare-<k>` under `journal/`,
/// [`SEGMENT_BYTES`] of zeros, synced. It stops when the journal is dropped (`alive` gone).
/// A spare it cannot make (a full disk) is tried again every [`PREPARE_RETRY`], and none is
/// made while the disk has less than two segments' worth free (the last megabytes go to
/// messages, and a failed attempt would take them for a moment); meanwhile segments are
/// created as they are needed, and grow.
fn spawn_preparer(
    dir: PathBuf,
    alive: std::sync::Weak<()>,
) -> std::sync::mpsc::Receiver<(PathBuf, File)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    let _ = std::thread::Builder::new()
        .name("moat-journal".into())
        .spawn(move || {
            super::lower_priority();
            let mut failing = false;
            loop {
                // Numbered across the process, so that a journal dropped a moment ago (whose
                // preparer may still be writing) and its successor never pick the same name.
                let k = SPARE_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = dir.join(format!("spare-{k}"));
                let made = (|| {
                    if free_bytes(&dir).is_some_and(|b| b < 2 * SEGMENT_BYTES) {
                        return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
                    }
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .read(true)
                        .create_new(true)
                        .open(&path)?;
                    let zeros = vec![0u8; 1 << 20];
                    let mut w = &f;
                    for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
                        w.write_all(&zeros)?;
                    }
                    f.sync_all()?;
                    Ok::<_, std::io::Error>(f)
                })();
                match made {
                    Ok(f) => {
                        failing = false;
                        if tx.send((path.clone(), f)).is_err() {
                            let _ = std::fs::remove_file(&path);
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e,
                                "quarantine: cannot prepare a journal segment; trying again later");
                        }
                        std::thread::sleep(PREPARE_RETRY);
                        if alive.strong_count() == 0 {
                            return;
                        }
                    }
                }
            }
        });
    rx
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir` (`None`: unknown).
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid C string and `st` a zeroed statvfs the call fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the duration of the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_stop_at_a_torn_tail() {
        let mut buf = Vec::new();
        frame(b"first", &mut buf);
        frame(b"", &mut buf);
        frame(b"third one", &mut buf);
        let whole = buf.len();
        assert_eq!(
            frames(&buf),
            (vec![&b"first"[..], b"", b"third one"], false)
        );
        // Zeros after the last frame are the preallocated rest of the segment, not a tear.
        let mut padded = buf.clone();
        padded.resize(padded.len() + 4096, 0);
        assert_eq!(
            frames(&padded),
            (vec![&b"first"[..], b"", b"third one"], false)
        );
        for cut in 1..whole {
            let (got, torn) = frames(&buf[..cut]);
            assert!(torn || cut == 17 || cut == 29, "cut {cut}");
            assert!(got.len() <= 3);
        }
        // Garbage after whole frames ends the replay there.
        buf.extend_from_slice(b"\0\0\0\0junk");
        assert_eq!(frames(&buf).0.len(), 3);
        assert!(frames(&buf).1);
        // A length that overflows is a tear, not a panic.
        let mut evil = MAGIC.to_vec();
        evil.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(frames(&evil), (vec![], true));
    }

    #[test]
    fn segments_rotate_and_are_removed_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), 0).unwrap();
        assert!(j.is_empty() && j.fits(usize::MAX));
        let mut buf = Vec::new();
        frame(b"a", &mut buf);
        j.append(&buf).unwrap();
        assert_eq!(j.rotate().unwrap(), 1);
        j.append(&buf).unwrap();
        assert_eq!(j.number(), 2);
        assert!(j.fits(1000) && !j.fits(SEGMENT_BYTES as usize));
        // Frames read back from the (possibly preallocated) segment, then only the end.
        let seg2 = std::fs::read(segment_path(d.path(), 2)).unwrap();
        assert_eq!(frames(&seg2), (vec![&b"a"[..]], false));
        let nums: Vec<u64> = segments(d.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(nums, [1, 2]);
        assert_eq!(remove_through(d.path(), 1).unwrap(), 1);
        let nums: Vec<u64> = segments(d.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(nums, [2]);
        // A journal opened later never reuses a number.
        assert_eq!(Journal::open(d.path(), 0).unwrap().number(), 3);
        assert_eq!(Journal::open(d.path(), 9).unwrap().number(), 10);
    }
}
