//! The quarantine's single writer: group commit, quota, recovery and analysis.

use super::{
    analyse, files, index, sha256_hex, Login, Meta, QuarantineConfig, QuarantineError, Stats,
    Stored,
};
use rusqlite::{params, Connection};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<std::io::Result<Stored>>;
/// One delivery waiting for its commit: envelope, size, content hash, duplicate, reply slot.
type Row = (Meta, usize, String, bool, Reply);

/// Where a delivery's content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Written by this batch for this delivery.
    New,
    /// Written by this batch for an earlier delivery (its index in the batch).
    Batch(usize),
    /// Already in the quarantine.
    Indexed,
}

/// A delivery of this batch before its files are written: envelope, content, hash, origin.
type Pending = (Meta, Vec<u8>, String, Origin, Reply);

/// Threads used to write one batch's files.
const WRITE_THREADS: usize = 8;

/// Writes (and syncs, and renames into `new/`) the files named in `to_write`, whose content is
/// `pending[index]`, on up to [`WRITE_THREADS`] threads. Results in `to_write` order.
fn write_files(
    dir: &std::path::Path,
    to_write: &[(usize, String)],
    pending: &[Pending],
) -> Vec<std::io::Result<u64>> {
    let one = |(i, name): &(usize, String)| {
        let (meta, data, ..) = &pending[*i];
        files::write(dir, name, meta, data).map(|(_, off)| off)
    };
    if to_write.len() <= 1 {
        return to_write.iter().map(one).collect();
    }
    let per = to_write.len().div_ceil(WRITE_THREADS);
    std::thread::scope(|sc| {
        let handles: Vec<_> = to_write
            .chunks(per)
            .map(|chunk| sc.spawn(move || chunk.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(std::io::Error::other("writer thread panicked"))])
            })
            .collect()
    })
}

pub enum Job {
    Store {
        meta: Meta,
        data: Vec<u8>,
        done: oneshot::Sender<std::io::Result<Stored>>,
    },
    Login(Login),
    Flush(oneshot::Sender<()>),
}

/// Most jobs taken into one group commit.
const MAX_BATCH: usize = 256;

pub struct Writer {
    cfg: QuarantineConfig,
    db: Connection,
    stats: Arc<Stats>,
    /// Blobs still to hand to the analysis thread (found at start, or stored since).
    pending_analysis: Vec<String>,
    analyser: Option<std::sync::mpsc::Sender<analyse::Job>>,
}

struct NewBlob {
    sha: String,
    file: String,
    size: usize,
    offset: u64,
    first_ms: u64,
}

impl Writer {
    pub fn open(cfg: QuarantineConfig, stats: Arc<Stats>) -> Result<Self, QuarantineError> {
        let io = |p: PathBuf| move |e| QuarantineError::Io(p, e);
        for d in [files::tmp_dir(&cfg.dir), files::new_dir(&cfg.dir)] {
            std::fs::create_dir_all(&d).map_err(io(d.clone()))?;
        }
        files::clean_tmp(&cfg.dir).map_err(io(files::tmp_dir(&cfg.dir)))?;
        let ipath = super::index_path(&cfg.dir);
        let db = index::open(&ipath).map_err(|e| QuarantineError::Index(ipath.clone(), e))?;
        let mut w = Writer {
            cfg,
            db,
            stats,
            pending_analysis: Vec::new(),
            analyser: None,
        };
        w.recover()
            .map_err(|e| QuarantineError::Index(ipath.clone(), e))?;
        let bytes = index::total_bytes(&w.db).unwrap_or(0);
        w.stats.bytes.store(bytes.max(0) as u64, Ordering::Relaxed);
        w.stats.evicted.store(
            index::counter(&w.db, "evicted").unwrap_or(0).max(0) as u64,
            Ordering::Relaxed,
        );
        Ok(w)
    }

    /// Makes the index agree with the files after any crash.
    fn recover(&mut self) -> rusqlite::Result<()> {
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
        let mut missing: Vec<String> = Vec::new();
        {
            let mut st = self.db.prepare("SELECT sha256, file FROM blobs")?;
            for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                let (sha, file) = row?;
                if !present.contains(&file) {
                    missing.push(sha);
                }
                known.insert(file);
            }
        }
        // Rows whose file is gone: drop them (the index must not claim what is not there).
        if !missing.is_empty() {
            let tx = self.db.transaction()?;
            for sha in &missing {
                delete_blob(&tx, sha)?;
            }
            tx.commit()?;
            tracing::warn!(
                count = missing.len(),
                "quarantine: index rows without a file dropped"
            );
        }
        // Whole files the index never heard of: written and synced, crash before the commit.
        let mut found = 0u64;
        {
            for name in present.iter().filter(|n| !known.contains(*n)) {
                if files::id_of(name).is_none() {
                    continue;
                }
                let path = new_dir.join(name);
                let Ok(Some((meta, data, offset))) = files::read(&path) else {
                    tracing::warn!(file = %name, "quarantine: unreadable file left alone");
                    continue;
                };
                let sha = sha256_hex(&data);
                let tx = self.db.transaction()?;
                if index::blob_file(&tx, &sha)?.is_none() {
                    insert_blob(
                        &tx,
                        &NewBlob {
                            sha: sha.clone(),
                            file: name.clone(),
                            size: data.len(),
                            offset,
                            first_ms: meta.received_ms,
                        },
                    )?;
                    self.pending_analysis.push(sha.clone());
                } else {
                    let _ = std::fs::remove_file(&path);
                }
                insert_message(&tx, &meta, data.len(), &sha)?;
                tx.commit()?;
                found += 1;
            }
        }
        if found > 0 {
            tracing::warn!(count = found, "quarantine: files recovered into the index");
        }
        self.stats.recovered.store(found, Ordering::Relaxed);
        let mut st = self
            .db
            .prepare("SELECT sha256 FROM blobs WHERE analysed = 0 ORDER BY first_ms")?;
        let todo: Vec<String> = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        drop(st);
        for s in todo {
            if !self.pending_analysis.contains(&s) {
                self.pending_analysis.push(s);
            }
        }
        Ok(())
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        if self.cfg.analyse {
            self.analyser = analyse::spawn(self.cfg.dir.clone());
        }
        self.analyse_pending();
        while let Some(job) = rx.blocking_recv() {
            let mut batch = vec![job];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            self.commit(batch);
            self.enforce_quota();
            self.analyse_pending();
        }
    }

    fn commit(&mut self, batch: Vec<Job>) {
        let mut stores = Vec::new();
        let mut logins = Vec::new();
        let mut flushes = Vec::new();
        for j in batch {
            match j {
                Job::Store { meta, data, done } => stores.push((meta, data, done)),
                Job::Login(l) => logins.push(l),
                Job::Flush(f) => flushes.push(f),
            }
        }
        // Files first: write and sync, then rename into `new/`. Content already stored (in the
        // index, or earlier in this batch) is not written again. The new files are written on
        // several threads at once: each needs its own fsync, and concurrent fsyncs share journal
        // commits where sequential ones would each wait for their own.
        let mut first_in_batch: HashMap<String, usize> = HashMap::new();
        let mut to_write: Vec<(usize, String)> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        for (meta, data, done) in stores {
            let sha = sha256_hex(&data);
            let i = pending.len();
            let origin = if let Some(&j) = first_in_batch.get(&sha) {
                Origin::Batch(j)
            } else if matches!(index::blob_file(&self.db, &sha), Ok(Some(_))) {
                Origin::Indexed
            } else {
                first_in_batch.insert(sha.clone(), i);
                to_write.push((i, files::file_name(&meta.id, meta.received_ms)));
                Origin::New
            };
            pending.push((meta, data, sha, origin, done));
        }
        let written = write_files(&self.cfg.dir, &to_write, &pending);
        let mut new_blobs: HashMap<String, NewBlob> = HashMap::new();
        let mut failed: HashMap<usize, String> = HashMap::new();
        for ((i, name), result) in to_write.into_iter().zip(written) {
            match result {
                Ok(offset) => {
                    let (meta, data, sha, ..) = &pending[i];
                    new_blobs.insert(
                        sha.clone(),
                        NewBlob {
                            sha: sha.clone(),
                            file: name,
                            size: data.len(),
                            offset,
                            first_ms: meta.received_ms,
                        },
                    );
                }
                Err(e) => {
                    failed.insert(i, e.to_string());
                }
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        for (i, (meta, data, sha, origin, done)) in pending.into_iter().enumerate() {
            // A duplicate of content whose write failed in this batch fails with it.
            let writer = match origin {
                Origin::New => Some(i),
                Origin::Batch(j) => Some(j),
                Origin::Indexed => None,
            };
            if let Some(msg) = writer.and_then(|w| failed.get(&w)) {
                let e = std::io::Error::other(msg.clone());
                tracing::error!(error = %e, "quarantine: cannot write a message");
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let _ = done.send(Err(e));
                continue;
            }
            rows.push((meta, data.len(), sha, origin != Origin::New, done));
        }
        let synced = if new_blobs.is_empty() {
            Ok(())
        } else {
            files::sync_dir(&files::new_dir(&self.cfg.dir))
        };
        let committed = synced.map_err(|e| e.to_string()).and_then(|()| {
            self.index_batch(&new_blobs, &rows, &logins)
                .map_err(|e| e.to_string())
        });
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        match committed {
            Ok(()) => {
                let added: usize = new_blobs.values().map(|b| b.size).sum();
                self.stats.bytes.fetch_add(added as u64, Ordering::Relaxed);
                self.stats
                    .logins
                    .fetch_add(logins.len() as u64, Ordering::Relaxed);
                for (meta, _, _, dup, done) in rows {
                    self.stats.stored.fetch_add(1, Ordering::Relaxed);
                    if dup {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = done.send(Ok(Stored {
                        id: meta.id,
                        duplicate: dup,
                    }));
                }
                if self.cfg.analyse {
                    self.pending_analysis.extend(new_blobs.into_keys());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "quarantine: commit failed; answering 451");
                for (_, _, _, _, done) in rows {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = done.send(Err(std::io::Error::other(e.clone())));
                }
            }
        }
        for f in flushes {
            // Analysis runs behind the commits: a flush waits for it too.
            self.analyse_pending();
            match &self.analyser {
                Some(a) => {
                    let _ = a.send(analyse::Job::Flush(f));
                }
                None => {
                    let _ = f.send(());
                }
            }
        }
    }

    fn index_batch(
        &mut self,
        blobs: &HashMap<String, NewBlob>,
        rows: &[Row],
        logins: &[Login],
    ) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        for b in blobs.values() {
            insert_blob(&tx, b)?;
        }
        for (meta, size, sha, _, _) in rows {
            insert_message(&tx, meta, *size, sha)?;
        }
        for l in logins {
            tx.execute(
                "INSERT INTO logins(at_ms, client_ip, mechanism, username, password, verdict, tls)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    l.at_ms as i64,
                    l.client_ip,
                    l.mechanism,
                    l.username,
                    l.password,
                    l.verdict,
                    l.tls as i64
                ],
            )?;
        }
        tx.commit()
    }

    /// Evicts the oldest content until the quarantine fits its quota. Rows go first (one
    /// commit), files after: a crash in between only brings an evicted message back.
    fn enforce_quota(&mut self) {
        let max = self.cfg.max_bytes;
        if max == 0 || self.stats.bytes.load(Ordering::Relaxed) <= max {
            return;
        }
        if let Err(e) = self.evict(max) {
            tracing::error!(error = %e, "quarantine: eviction failed");
        }
    }

    fn evict(&mut self, max: u64) -> rusqlite::Result<()> {
        let mut total = index::total_bytes(&self.db)?.max(0) as u64;
        let mut victims = Vec::new();
        {
            let mut st = self
                .db
                .prepare("SELECT sha256, file, size FROM blobs ORDER BY first_ms, sha256")?;
            let mut rows = st.query([])?;
            while total > max {
                let Some(r) = rows.next()? else { break };
                let size: i64 = r.get(2)?;
                victims.push((r.get::<_, String>(0)?, r.get::<_, String>(1)?));
                total = total.saturating_sub(size.max(0) as u64);
            }
        }
        let tx = self.db.transaction()?;
        let mut messages = 0i64;
        for (sha, _) in &victims {
            messages += delete_blob(&tx, sha)? as i64;
        }
        index::add_counter(&tx, "evicted", messages)?;
        tx.commit()?;
        for (_, file) in &victims {
            let _ = std::fs::remove_file(files::new_dir(&self.cfg.dir).join(file));
        }
        self.stats
            .evicted
            .fetch_add(messages.max(0) as u64, Ordering::Relaxed);
        self.stats.bytes.store(total, Ordering::Relaxed);
        tracing::info!(
            messages,
            blobs = victims.len(),
            "quarantine: quota reached, oldest evicted"
        );
        Ok(())
    }

    fn analyse_pending(&mut self) {
        if self.pending_analysis.is_empty() {
            return;
        }
        let todo = std::mem::take(&mut self.pending_analysis);
        if let Some(a) = &self.analyser {
            let _ = a.send(analyse::Job::Blobs(todo));
        }
    }
}

/// Removes one content and everything hanging off it; returns the deliveries removed.
fn delete_blob(tx: &Connection, sha: &str) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM iocs WHERE sha256 = ?1", [sha])?;
    let messages = tx.execute("DELETE FROM messages WHERE sha256 = ?1", [sha])?;
    tx.execute("DELETE FROM blobs WHERE sha256 = ?1", [sha])?;
    Ok(messages)
}

fn insert_blob(tx: &Connection, b: &NewBlob) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO blobs(sha256, file, size, body_offset, first_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        b.sha,
        b.file,
        b.size as i64,
        b.offset as i64,
        b.first_ms as i64
    ])?;
    Ok(())
}

fn insert_message(tx: &Connection, m: &Meta, size: usize, sha: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO messages(id, received_ms, client_ip, client_port, helo, mail_from,
            rcpt_to, auth_user, auth_password, tls, listener, size, sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        m.id,
        m.received_ms as i64,
        m.client_ip,
        m.client_port as i64,
        m.helo,
        m.mail_from,
        serde_json::to_string(&m.rcpt_to).unwrap_or_else(|_| "[]".into()),
        m.auth_user,
        m.auth_password,
        m.tls as i64,
        m.listener,
        size as i64,
        sha
    ])?;
    Ok(())
}
