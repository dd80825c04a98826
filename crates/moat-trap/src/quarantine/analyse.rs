//! Indicator extraction for stored content, run by the writer after the replies went out.
//!
//! Extraction is `moat-intel`'s; this module only moves its results into the index: one row
//! per URL, registrable domain, header recipient, sender identity and `Received` hop, plus the
//! subject and the campaign fingerprint on the blob.

use super::{files, index};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

pub enum Job {
    Blobs(Vec<String>),
    /// Answered once everything sent before it is analysed.
    Flush(oneshot::Sender<()>),
}

/// Starts the analysis thread, with its own index connection so extraction never holds up a
/// group commit. Its commits use `synchronous=NORMAL`: a blob's indicators and its `analysed`
/// flag commit together, so whatever a crash loses is redone at the next start.
pub fn spawn(dir: PathBuf) -> Option<std::sync::mpsc::Sender<Job>> {
    let mut db = match index::open(&super::index_path(&dir)) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "quarantine: analysis disabled, cannot open the index");
            return None;
        }
    };
    let _ = db.pragma_update(None, "synchronous", "NORMAL");
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("moat-analyse".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut shas = Vec::new();
                let mut flushes = Vec::new();
                let mut take = |j: Job| match j {
                    Job::Blobs(b) => shas.extend(b),
                    Job::Flush(f) => flushes.push(f),
                };
                take(first);
                while let Ok(j) = rx.try_recv() {
                    take(j);
                }
                for chunk in shas.chunks(256) {
                    if let Err(e) = analyse_blobs(&mut db, &dir, chunk) {
                        tracing::error!(error = %e, "quarantine: indicator extraction failed");
                    }
                }
                for f in flushes {
                    let _ = f.send(());
                }
            }
        });
    spawned.ok().map(|_| tx)
}

/// Extracts and indexes each blob in `shas` (one transaction for all of them).
pub fn analyse_blobs(db: &mut Connection, dir: &Path, shas: &[String]) -> rusqlite::Result<()> {
    let mut work = Vec::with_capacity(shas.len());
    for sha in shas {
        let row: Option<(String, i64)> = db
            .query_row(
                "SELECT file, body_offset FROM blobs WHERE sha256 = ?1",
                [sha],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        let Some((file, offset)) = row else { continue };
        let Ok(bytes) = std::fs::read(files::new_dir(dir).join(&file)) else {
            continue;
        };
        let raw = bytes.get(offset.max(0) as usize..).unwrap_or_default();
        work.push((sha.clone(), moat_intel::extract(raw)));
    }
    let tx = db.transaction()?;
    for (sha, ind) in &work {
        tx.execute("DELETE FROM iocs WHERE sha256 = ?1", [sha])?;
        let add = |kind: &str, value: &str, detail: Option<String>| {
            tx.prepare_cached(
                "INSERT INTO iocs(sha256, kind, value, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![sha, kind, value, detail])
            .map(|_| ())
        };
        for u in &ind.urls {
            let detail = format!(
                "{:?}{}",
                u.source,
                if u.shortener { ",shortener" } else { "" }
            );
            add("url", &u.url, Some(detail))?;
        }
        for d in &ind.domains {
            add("domain", d, None)?;
        }
        for r in &ind.recipients {
            add("recipient", r, None)?;
        }
        for s in &ind.senders {
            add("sender", s, None)?;
        }
        for (hop, r) in ind.received.iter().enumerate() {
            add("received", r, Some(hop.to_string()))?;
        }
        let fingerprint = fingerprint_json(ind);
        tx.execute(
            "UPDATE blobs SET analysed = 1, subject = ?2, fingerprint = ?3 WHERE sha256 = ?1",
            params![sha, ind.subject, fingerprint],
        )?;
    }
    tx.commit()
}

/// The campaign fingerprint as stored: JSON (`moat_intel::Fingerprint`'s serde form), so the
/// clustering code can change its fields without a schema migration.
fn fingerprint_json(ind: &moat_intel::Indicators) -> String {
    serde_json::to_string(&ind.fingerprint).unwrap_or_else(|_| "{}".into())
}
