//! The index writer at open: making the index agree with the files after any crash, and
//! replaying the journal.

use super::{delete_blob, insert_blob, insert_message, Job, Journaled, Writer, MAX_BATCH};
use crate::quarantine::{files, index, journal, other_content_id, sha256_hex, QuarantineError};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

impl Writer {
    /// Indexes every journaled delivery the index lacks (acknowledged before the last run
    /// stopped, not yet indexed or not yet durable there), makes it all durable, and removes
    /// the journal. A segment with a damaged frame in its middle is kept aside as
    /// `<number>.log.damaged` for the operator.
    pub(super) fn replay(&mut self) -> Result<(), QuarantineError> {
        let root = self.cfg.dir.clone();
        let jdir = journal::dir(&root);
        let io = |p: PathBuf| move |e| QuarantineError::Io(p, e);
        let segments = journal::segments(&root).map_err(io(jdir.clone()))?;
        let Some(&(last, _)) = segments.last() else {
            return Ok(());
        };
        self.sealed = last;
        let (mut replayed, mut damaged) = (0u64, 0u64);
        for (number, path) in &segments {
            let bytes = std::fs::read(path).map_err(io(path.clone()))?;
            let (frames, mut torn) = journal::frames(&bytes);
            let mut batch = Vec::new();
            let mut bad = 0u64;
            let count = frames.len();
            for (i, payload) in frames.into_iter().enumerate() {
                let Some((meta, data, offset)) = files::decode(payload) else {
                    // The last frame cut short inside preallocated space reads as whole
                    // but does not decode: a torn tail too. One in the middle is damage.
                    if i + 1 == count {
                        torn = true;
                    } else {
                        bad += 1;
                    }
                    continue;
                };
                let sha = sha256_hex(&data);
                let known = self
                    .indexed_whole(&meta.id, &sha)
                    .map_err(|e| QuarantineError::Index(crate::quarantine::index_path(&root), e))?;
                if known {
                    continue;
                }
                self.stats
                    .backlog
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                batch.push(Job::Journaled(Journaled {
                    sha,
                    size: data.len(),
                    meta,
                    bytes: payload.to_vec(),
                    offset,
                    segment: *number,
                }));
                replayed += 1;
                if batch.len() >= MAX_BATCH {
                    self.commit(std::mem::take(&mut batch));
                }
            }
            batch.push(Job::Rotated(*number));
            self.commit(batch);
            if torn {
                tracing::warn!(segment = %path.display(),
                    "quarantine: journal segment ends in a torn (never acknowledged) append");
            }
            // A segment some of whose deliveries are still held (a full disk) stays as it is
            // until they are filed: set aside, it would not be replayed at the next start.
            if bad > 0 && self.unfiled.iter().any(|d| d.segment == *number) {
                tracing::error!(frames = bad, segment = %path.display(),
                    "quarantine: damaged journal frames; segment kept until its messages are filed");
            } else if bad > 0 {
                damaged += bad;
                let mut aside = path.as_os_str().to_owned();
                aside.push(".damaged");
                std::fs::rename(path, &aside).map_err(io(path.clone()))?;
                tracing::error!(frames = bad, kept = %std::path::Path::new(&aside).display(),
                    "quarantine: damaged journal frames; segment kept aside");
            }
        }
        if let Some(h) = self.held {
            // A full disk is temporary: start anyway (intake answers 452 until the writer
            // files them), keeping the journal from that segment on. Anything else is not.
            if !self.pending.is_full() {
                return Err(QuarantineError::Io(
                    journal::dir(&root),
                    std::io::Error::other(format!(
                        "cannot index the journaled messages of segment {h}; the journal is kept"
                    )),
                ));
            }
            tracing::error!(segment = h, held = self.unfiled.len(),
                "quarantine: disk full; journaled messages kept in the journal until they can be filed");
        }
        self.sync_now();
        journal::remove_through(&root, self.removable()).map_err(io(jdir))?;
        if replayed > 0 || damaged > 0 {
            tracing::warn!(
                replayed,
                damaged,
                "quarantine: journaled messages indexed at start"
            );
        }
        self.stats.recovered.fetch_add(replayed, Ordering::Relaxed);
        Ok(())
    }

    /// Whether delivery `id` (content `sha`) is indexed with its file whole. A journaled
    /// delivery's file may have been cut short by the crash (written, not yet swept to disk):
    /// then its content's rows go, and the replay files and indexes it again, along with the
    /// content's other deliveries, which are in the journal too (the file was that recent).
    /// A delivery whose id named other content is looked up under the id it was filed as
    /// (`settle_ids`).
    fn indexed_whole(&mut self, id: &str, sha: &str) -> rusqlite::Result<bool> {
        let indexed = match index::message_sha(&self.db, id)? {
            Some(s) if s == sha => true,
            Some(_) => {
                index::message_sha(&self.db, &other_content_id(id, sha))?.as_deref() == Some(sha)
            }
            None => false,
        };
        if !indexed {
            return Ok(false);
        }
        let Some((blob, file)) = index::blob_file(&self.db, sha)? else {
            return Ok(true);
        };
        if matches!(
            files::read(&files::new_dir(&self.cfg.dir).join(&file)),
            Ok(Some(_))
        ) {
            return Ok(true);
        }
        tracing::warn!(%file, "quarantine: file cut short; filing it again from the journal");
        let tx = self.db.transaction()?;
        delete_blob(&tx, blob)?;
        tx.commit()?;
        Ok(false)
    }

    /// Makes the index agree with the files after any crash.
    pub(super) fn recover(&mut self) -> rusqlite::Result<()> {
        let new_dir = files::new_dir(&self.cfg.dir);
        // One listing of `new/` and one scan of the index, compared in memory (no stat per row).
        let present: HashSet<String> = std::fs::read_dir(&new_dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut known: HashSet<String> = HashSet::new();
        let mut missing: Vec<i64> = Vec::new();
        {
            let mut st = self.db.prepare("SELECT id, file FROM blobs")?;
            for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                let (id, file) = row?;
                if !present.contains(&file) {
                    missing.push(id);
                }
                known.insert(file);
            }
        }
        // Rows whose file is gone: drop them (the index must not claim what is not there; a
        // journaled delivery among them comes back with the replay).
        if !missing.is_empty() {
            let tx = self.db.transaction()?;
            for id in &missing {
                delete_blob(&tx, *id)?;
            }
            tx.commit()?;
            tracing::warn!(
                count = missing.len(),
                "quarantine: index rows without a file dropped"
            );
        }
        // Files the index never heard of: written, and their rows lost (or never committed).
        // A whole one is indexed from its header; a cut-short one is removed (if it was
        // acknowledged, the journal still holds it and the replay writes it again).
        let mut found = 0u64;
        for name in present.iter().filter(|n| !known.contains(*n)) {
            if files::id_of(name).is_none() {
                continue;
            }
            let path = new_dir.join(name);
            let Ok(Some((meta, data, offset))) = files::read(&path) else {
                tracing::warn!(file = %name, "quarantine: partial file removed");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let sha = sha256_hex(&data);
            let mut meta = meta;
            if index::message_sha(&self.db, &meta.id)?.is_some_and(|s| s != sha) {
                meta.id = other_content_id(&meta.id, &sha);
            }
            let tx = self.db.transaction()?;
            let blob = match index::blob_id(&tx, &sha)? {
                Some(id) => {
                    let _ = std::fs::remove_file(&path);
                    id
                }
                None => insert_blob(&tx, &sha, name, data.len(), offset, meta.received_ms)?,
            };
            insert_message(&tx, &meta, data.len(), &sha, blob)?;
            tx.commit()?;
            found += 1;
        }
        if found > 0 {
            tracing::warn!(count = found, "quarantine: files recovered into the index");
        }
        self.stats.recovered.store(found, Ordering::Relaxed);
        Ok(())
    }
}

/// Renames the index and its log files to `index.sqlite.old-<ms>` (and `-wal`, `-shm`).
pub(super) fn move_aside(ipath: &std::path::Path) -> std::io::Result<PathBuf> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut aside = ipath.as_os_str().to_owned();
    aside.push(format!(".old-{ms}"));
    let aside = PathBuf::from(aside);
    for suffix in ["", "-wal", "-shm"] {
        let (mut from, mut to) = (ipath.as_os_str().to_owned(), aside.as_os_str().to_owned());
        from.push(suffix);
        to.push(suffix);
        match std::fs::rename(&from, &to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(aside)
}
