//! Indicator extraction for stored content, run on its own thread behind the replies.
//!
//! Extraction is `moat-intel`'s. This thread reads its work off the index (`analysed = 0`,
//! in blob `id` order, through a read-only connection) and hands the results to the writer,
//! which commits them with its next group commit. The writer's connection thus stays the only
//! one writing: no lock contention, and its page cache is never invalidated by another
//! writer's commit.
//!
//! Its work list is the index itself rather than a queue of hashes, so however far a flood
//! puts it behind, its memory stays one chunk; whatever a restart interrupts is picked up
//! again, since only a committed result clears `analysed`.

use super::{files, index, writer};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};

pub enum Job {
    /// New content was committed: look for blobs not analysed yet.
    Wake,
    /// Answered (through the writer, after it committed the results) once everything
    /// committed before it is analysed.
    Flush(oneshot::Sender<()>),
}

/// One blob's result: its id and what was found (`None`: its bytes could not be read; it
/// is marked done without indicators, so one bad file cannot stall the work behind it).
pub type Analysis = (i64, Option<moat_intel::Indicators>);

/// Blobs analysed per round (and per result message to the writer).
const CHUNK: usize = 256;

/// Starts the analysis thread. Results go to the writer through `results`, a weak handle so
/// that this thread never keeps the writer alive.
///
/// The thread runs at a lower scheduling priority. Extraction is background work; under a
/// flood the CPU goes first to the sessions and the group commit, whose replies senders wait
/// for, and the analysis catches up when the flood ebbs.
pub fn spawn(
    dir: PathBuf,
    results: mpsc::WeakSender<writer::Job>,
) -> Option<std::sync::mpsc::Sender<Job>> {
    let db = match index::open_read(&super::index_path(&dir)) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "quarantine: analysis disabled, cannot open the index");
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("moat-analyse".into())
        .spawn(move || {
            super::lower_priority();
            let mut cursor = 0i64;
            while let Ok(first) = rx.recv() {
                let mut flushes = Vec::new();
                let mut take = |j: Job| {
                    if let Job::Flush(f) = j {
                        flushes.push(f)
                    }
                };
                take(first);
                while let Ok(j) = rx.try_recv() {
                    take(j);
                }
                loop {
                    let (work, last) = match analyse_next(&db, &dir, cursor, CHUNK) {
                        Ok(Some(next)) => next,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "quarantine: indicator extraction failed");
                            break;
                        }
                    };
                    cursor = last;
                    let Some(w) = results.upgrade() else { return };
                    if w.blocking_send(writer::Job::Analysed(work)).is_err() {
                        return;
                    }
                }
                if !flushes.is_empty() {
                    let Some(w) = results.upgrade() else { return };
                    for f in flushes {
                        if w.blocking_send(writer::Job::AnswerAfterCommit(f)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    spawned.ok().map(|_| tx)
}

/// Extracts up to `limit` blobs not analysed yet whose `id` is above `after`. Returns the
/// results and the last `id` taken, or `None` when there is nothing left.
pub fn analyse_next(
    db: &Connection,
    dir: &Path,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Option<(Vec<Analysis>, i64)>> {
    let todo: Vec<(i64, String, i64)> = db
        .prepare_cached(
            "SELECT id, file, body_offset FROM blobs
              WHERE id > ?1 AND analysed = 0 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![after, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let Some(last) = todo.last().map(|t| t.0) else {
        return Ok(None);
    };
    let work = todo
        .into_iter()
        .map(|(id, file, offset)| {
            // The writer writes a file (whole, renamed from `tmp/`) before it indexes it.
            let bytes = std::fs::read(files::new_dir(dir).join(&file)).ok();
            let ind = bytes
                .map(|b| moat_intel::extract(b.get(offset.max(0) as usize..).unwrap_or_default()));
            (id, ind)
        })
        .collect();
    Ok(Some((work, last)))
}

/// A message's indicators as the index keeps them (and as `moat quarantine show` prints them
/// for a message not analysed yet).
pub fn iocs(ind: &moat_intel::Indicators) -> Vec<index::Ioc> {
    let mut out = Vec::new();
    let mut add = |kind: &str, value: &str, detail: Option<String>| {
        out.push(index::Ioc {
            kind: kind.into(),
            value: value.into(),
            detail,
        })
    };
    for u in &ind.urls {
        let detail = format!(
            "{:?}{}",
            u.source,
            if u.shortener { ",shortener" } else { "" }
        );
        add("url", &u.url, Some(detail));
    }
    for d in &ind.domains {
        add("domain", d, None);
    }
    for r in &ind.recipients {
        add("recipient", r, None);
    }
    for s in &ind.senders {
        add("sender", s, None);
    }
    for (hop, r) in ind.received.iter().enumerate() {
        add("received", r, Some(hop.to_string()));
    }
    out
}

/// Stores analysis results (inside the writer's transaction). A blob's indicators commit
/// together with its `analysed` flag, so a blob still unanalysed has none to replace; content
/// evicted meanwhile, or already analysed, is skipped.
pub fn apply(tx: &Connection, work: &[Analysis]) -> rusqlite::Result<()> {
    for (id, ind) in work {
        let fingerprint = ind.as_ref().map(fingerprint_json);
        let subject = ind.as_ref().map(|i| i.subject.clone());
        let updated = tx
            .prepare_cached(
                "UPDATE blobs SET analysed = 1, subject = ?2, fingerprint = ?3
                  WHERE id = ?1 AND analysed = 0",
            )?
            .execute(params![id, subject, fingerprint])?;
        let Some(ind) = ind.as_ref().filter(|_| updated > 0) else {
            continue;
        };
        for i in iocs(ind) {
            tx.prepare_cached(
                "INSERT INTO iocs(blob, kind, value, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, i.kind, i.value, i.detail])?;
        }
    }
    Ok(())
}

/// The campaign fingerprint as stored: JSON (`moat_intel::Fingerprint`'s serde form), so the
/// clustering code can change its fields without a schema migration.
fn fingerprint_json(ind: &moat_intel::Indicators) -> String {
    serde_json::to_string(&ind.fingerprint).unwrap_or_else(|_| "{}".into())
}
