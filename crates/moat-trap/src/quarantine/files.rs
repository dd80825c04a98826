//! The message files: Maildir layout (`tmp/` then `new/`), each file self-describing.
//!
//! A file is one line `X-Moat-Trap: {json}` (the envelope, so the index can be rebuilt from the
//! files alone) followed by the message exactly as received. Any mail reader opens it; the
//! content hash covers only the received bytes. Writes go to `tmp/`, are synced, and renamed
//! into `new/`; the caller syncs `new/` once per batch. A crash therefore leaves either a whole
//! file in `new/` or debris in `tmp/`, which [`clean_tmp`] removes at start.

use super::Meta;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const META_HEADER: &[u8] = b"X-Moat-Trap: ";

pub fn tmp_dir(root: &Path) -> PathBuf {
    root.join("tmp")
}

pub fn new_dir(root: &Path) -> PathBuf {
    root.join("new")
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

/// Writes `meta` + `data` under `tmp/`, syncs, renames into `new/`. Returns the final path and
/// the offset where the received bytes start.
pub fn write(root: &Path, name: &str, meta: &Meta, data: &[u8]) -> std::io::Result<(PathBuf, u64)> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(META_HEADER);
    serde_json::to_writer(&mut head, meta).map_err(std::io::Error::other)?;
    head.extend_from_slice(b"\r\n");
    let tmp = tmp_dir(root).join(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&head)?;
    f.write_all(data)?;
    f.sync_data()?;
    drop(f);
    let dst = new_dir(root).join(name);
    std::fs::rename(&tmp, &dst)?;
    Ok((dst, head.len() as u64))
}

/// Makes renames into a directory durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a stored file back into its envelope and received bytes. `None` if the file does not
/// start with Moat's header (not ours, or damaged).
pub fn read(path: &Path) -> std::io::Result<Option<(Meta, Vec<u8>, u64)>> {
    let bytes = std::fs::read(path)?;
    Ok(split(&bytes).map(|(m, off)| (m, bytes[off..].to_vec(), off as u64)))
}

fn split(bytes: &[u8]) -> Option<(Meta, usize)> {
    let rest = bytes.strip_prefix(META_HEADER)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let meta: Meta = serde_json::from_slice(&rest[..end]).ok()?;
    Some((meta, META_HEADER.len() + end + 2))
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
