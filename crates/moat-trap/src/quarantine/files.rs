//! The message files: Maildir layout (`tmp/` then `new/`), each file self-describing.
//!
//! A file is one line `X-Moat-Trap: {json}` (the envelope plus the size and SHA-256 of what
//! follows, so the index can be rebuilt from the files alone and a cut-short file is
//! recognised) followed by the message exactly as received. Any mail reader opens it; the
//! content hash covers only the received bytes.
//!
//! Files are written to `tmp/` and renamed into `new/`, so a Maildir reader never sees half a
//! file, but they are not synced one by one: the journal ([`super::journal`]) holds the same
//! bytes, which is what makes a delivery durable before its `250`. [`sync_all`] makes a whole
//! run of files durable at once afterwards, and only then does their journal segment go.
//! After a crash, [`clean_tmp`] removes `tmp/` debris and the journal replay writes again
//! every file it still holds.

use super::{sha256_hex, Meta};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const META_HEADER: &[u8] = b"X-Moat-Trap: ";

/// The header's JSON: the envelope, and what the received bytes must be. `size` and `sha256`
/// are absent from files written before they were added; such files are taken as whole.
/// Generic so that writing borrows the envelope (`Header<&Meta, &str>`) instead of copying it
/// for every message, and reading owns it (`Header<Meta, String>`).
#[derive(Serialize, Deserialize)]
struct Header<M, S> {
    #[serde(flatten)]
    meta: M,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<S>,
}

pub fn tmp_dir(root: &Path) -> PathBuf {
    root.join("tmp")
}

pub fn new_dir(root: &Path) -> PathBuf {
    root.join("new")
}

/// Whether `id` may be a message id: 1 to 64 ASCII letters, digits, `-` or `_` (what
/// [`super::new_id`] makes, Postfix's queue-id shape). Ids become file names, so nothing that
/// could climb out of the quarantine directory ever is one.
pub fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is a plain file name inside a directory: no separator, not `.` or `..`,
/// not hidden, no NUL.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// The file name for a message id: Maildir's `time.unique.host` shape.
pub fn file_name(id: &str, received_ms: u64) -> String {
    format!("{}.{id}.moat", received_ms / 1000)
}

/// The id back from a file name written by [`file_name`].
pub fn id_of(name: &str) -> Option<&str> {
    let mut parts = name.split('.');
    let (_, id, host) = (parts.next()?, parts.next()?, parts.next()?);
    (host == "moat" && parts.next().is_none() && !id.is_empty()).then_some(id)
}

/// A file's whole content for `meta` + `data` (whose hash is `sha`), and the offset where the
/// received bytes start.
pub fn encode(meta: &Meta, data: &[u8], sha: &str) -> (Vec<u8>, u64) {
    let header = Header {
        meta,
        size: Some(data.len()),
        sha256: Some(sha),
    };
    let mut bytes = Vec::with_capacity(data.len() + 384);
    bytes.extend_from_slice(META_HEADER);
    serde_json::to_writer(&mut bytes, &header).expect("a Meta always serialises");
    bytes.extend_from_slice(b"\r\n");
    let offset = bytes.len() as u64;
    bytes.extend_from_slice(data);
    (bytes, offset)
}

/// Writes `bytes` under `tmp/` and renames the file into `new/` (not synced: see the module
/// documentation). With `durable`, the file is synced before the rename; the caller still
/// syncs `new/`.
pub fn write(root: &Path, name: &str, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = tmp_dir(root).join(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_data()?;
    }
    drop(f);
    std::fs::rename(&tmp, new_dir(root).join(name))
}

/// Makes renames into a directory durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes every file written so far under `root` durable, with their directory entries.
///
/// On Linux this is one `syncfs` of the quarantine's filesystem: the kernel writes the run of
/// small files back in merged I/O with one journal commit, where a sync per file costs a
/// journal commit and a device flush each. `names` is the fallback elsewhere (and if `syncfs`
/// is refused): each file synced, then `new/`.
pub fn sync_all(root: &Path, names: &[String]) -> std::io::Result<()> {
    let dir = std::fs::File::open(new_dir(root))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `dir` is an open descriptor for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
    }
    for name in names {
        match std::fs::File::open(new_dir(root).join(name)) {
            Ok(f) => f.sync_data()?,
            // Evicted since it was written: nothing to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    dir.sync_all()
}

/// Makes every file under `root` durable: one `syncfs` on Linux, else (or if it is refused)
/// a sync of every file in `new/`.
pub fn sync_tree(root: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(new_dir(root))?;
        // SAFETY: `dir` is an open descriptor for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    let mut names = Vec::new();
    for e in std::fs::read_dir(new_dir(root))? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    for name in &names {
        std::fs::File::open(new_dir(root).join(name))?.sync_data()?;
    }
    sync_dir(&new_dir(root))
}

/// Reads a stored file back into its envelope and received bytes. `None` if the file does not
/// start with Moat's header (not ours, or damaged) or is not whole (its received bytes differ
/// from the size or hash its header names).
pub fn read(path: &Path) -> std::io::Result<Option<(Meta, Vec<u8>, u64)>> {
    let bytes = std::fs::read(path)?;
    Ok(decode(&bytes))
}

/// [`read`] on bytes in memory.
pub fn decode(bytes: &[u8]) -> Option<(Meta, Vec<u8>, u64)> {
    let rest = bytes.strip_prefix(META_HEADER)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let header: Header<Meta, String> = serde_json::from_slice(&rest[..end]).ok()?;
    let offset = META_HEADER.len() + end + 2;
    let data = &bytes[offset..];
    if header.size.is_some_and(|n| n != data.len())
        || header.sha256.is_some_and(|h| h != sha256_hex(data))
    {
        return None;
    }
    Some((header.meta, data.to_vec(), offset as u64))
}

/// Removes what a crash left half-written.
pub fn clean_tmp(root: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(tmp_dir(root))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::remove_file(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}
