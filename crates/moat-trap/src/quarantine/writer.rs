//! The quarantine's single writer: group commit, spool, quota, recovery.
//!
//! One group commit: every delivery waiting is hashed; new content is written to its file
//! (`tmp/` then `new/`, no sync) and its bytes go into the index's `spool` in the same
//! transaction as its `blobs` and `messages` rows. That transaction is one sequential append
//! to the index's write-ahead log; [`super::acker`] syncs the log and only then releases the
//! replies, while this thread goes on with the next group. The sync thread
//! ([`super::syncer`]) later makes the files durable in one sweep and reports back, and the
//! next commit drops their spool rows.

use super::{
    acker, analyse, files, index, sha256_hex, syncer, Login, Meta, QuarantineConfig,
    QuarantineError, Stats, Stored,
};
use rusqlite::{params, Connection};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use acker::Reply;

pub enum Job {
    Store {
        meta: Meta,
        data: Vec<u8>,
        done: Reply,
    },
    Login(Login),
    /// Everything before it durable (files synced, spool empty) and analysed (tests, shutdown).
    Flush(oneshot::Sender<()>),
    /// Indicators from the analysis thread, committed with the next group.
    Analysed(Vec<analyse::Analysis>),
    /// Answered right after the commit of the group it arrives in.
    AnswerAfterCommit(oneshot::Sender<()>),
    /// The sync thread made every file whose spool row is at most this `id` durable.
    Synced(i64),
}

/// Most jobs taken into one group commit.
const MAX_BATCH: usize = 512;

/// Where a delivery's content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Written by this group for this delivery.
    New,
    /// Written by this group for an earlier delivery (its index in the group).
    Group(usize),
    /// Already in the quarantine, in this blob.
    Indexed(i64),
}

/// One delivery of a group: envelope, size, content hash, origin, reply slot.
struct Delivery {
    meta: Meta,
    size: usize,
    sha: String,
    origin: Origin,
    done: Reply,
}

/// Content new in this group, written to its file and about to be indexed and spooled.
struct NewBlob {
    sha: String,
    file: String,
    size: usize,
    offset: u64,
    first_ms: u64,
    bytes: Vec<u8>,
}

pub struct Writer {
    cfg: QuarantineConfig,
    db: Connection,
    stats: Arc<Stats>,
    /// Content was committed that the analysis thread has not been told about.
    analysis_due: bool,
    analyser: Option<std::sync::mpsc::Sender<analyse::Job>>,
    syncer: Option<std::sync::mpsc::Sender<syncer::Written>>,
    /// Spool rows up to this `id` belong to durable files and are dropped at the next commit.
    synced: Option<i64>,
    /// The highest spool `id` committed so far.
    spool_max: i64,
    /// Answers each committed group once the log is synced.
    acker: std::sync::mpsc::Sender<acker::Group>,
    /// The index's write-ahead log, synced directly on flush and shutdown.
    wal: std::fs::File,
}

impl Writer {
    pub fn open(cfg: QuarantineConfig, stats: Arc<Stats>) -> Result<Self, QuarantineError> {
        let io = |p: PathBuf| move |e| QuarantineError::Io(p, e);
        for d in [files::tmp_dir(&cfg.dir), files::new_dir(&cfg.dir)] {
            std::fs::create_dir_all(&d).map_err(io(d.clone()))?;
        }
        files::clean_tmp(&cfg.dir).map_err(io(files::tmp_dir(&cfg.dir)))?;
        let ipath = super::index_path(&cfg.dir);
        let db = match index::open(&ipath) {
            Err(e) if index::is_other_layout(&e) => {
                // An index from another Moat version: keep it (logins live only there), and
                // rebuild a new one from the files, which carry every envelope.
                let aside = move_aside(&ipath).map_err(io(ipath.clone()))?;
                tracing::warn!(error = %e, old = %aside.display(),
                    "quarantine: index of another version moved aside; rebuilding from the files");
                index::open(&ipath)
            }
            r => r,
        }
        .map_err(|e| QuarantineError::Index(ipath.clone(), e))?;
        // Commits here do not sync; the acker does, before any reply (see `acker`).
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| QuarantineError::Index(ipath.clone(), e))?;
        let wal_path = index::wal_path(&ipath);
        // The same file SQLite writes (created here if SQLite has not yet; never written).
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&wal_path)
            .map_err(io(wal_path.clone()))?;
        let acker = acker::spawn(
            wal.try_clone().map_err(io(wal_path.clone()))?,
            stats.clone(),
        )
        .map_err(io(wal_path))?;
        let mut w = Writer {
            cfg,
            db,
            stats,
            analysis_due: true,
            analyser: None,
            syncer: None,
            synced: None,
            spool_max: 0,
            acker,
            wal,
        };
        w.restore_spool()?;
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

    /// Rewrites, durably, every file still in the spool: acknowledged deliveries whose own
    /// sync had not happened when the last run stopped. Then the spool is emptied.
    fn restore_spool(&mut self) -> Result<(), QuarantineError> {
        let dir = &self.cfg.dir;
        let index_err = |e| QuarantineError::Index(super::index_path(dir), e);
        let io_err = |e| QuarantineError::Io(files::new_dir(dir), e);
        let mut restored = 0u64;
        {
            let mut st = self
                .db
                .prepare("SELECT s.file, s.data FROM spool s JOIN blobs b ON b.id = s.blob")
                .map_err(index_err)?;
            let mut rows = st.query([]).map_err(index_err)?;
            while let Some(r) = rows.next().map_err(index_err)? {
                let file: String = r.get(0).map_err(index_err)?;
                let data: Vec<u8> = r.get(1).map_err(index_err)?;
                files::write(dir, &file, &data, true).map_err(io_err)?;
                restored += 1;
            }
        }
        if restored > 0 {
            files::sync_dir(&files::new_dir(dir)).map_err(io_err)?;
            tracing::info!(
                count = restored,
                "quarantine: files restored from the spool"
            );
        }
        self.db
            .execute("DELETE FROM spool", [])
            .map_err(index_err)?;
        Ok(())
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
        // Rows whose file is gone: drop them (the index must not claim what is not there).
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
        // Files the index never heard of: written, but their group never committed, so never
        // acknowledged. A whole one is kept as evidence; a cut-short one is removed.
        let mut found = 0u64;
        for name in present.iter().filter(|n| !known.contains(*n)) {
            if files::id_of(name).is_none() {
                continue;
            }
            let path = new_dir.join(name);
            let Ok(Some((meta, data, offset))) = files::read(&path) else {
                tracing::warn!(file = %name, "quarantine: unacknowledged partial file removed");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let sha = sha256_hex(&data);
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

    /// Runs the writer until every handle is dropped; then makes everything durable.
    /// `me` is a weak handle on the writer's own queue, for the helper threads' reports.
    pub fn run(mut self, mut rx: mpsc::Receiver<Job>, me: mpsc::WeakSender<Job>) {
        if self.cfg.analyse {
            self.analyser = analyse::spawn(self.cfg.dir.clone(), me.clone());
        }
        self.syncer = syncer::spawn(self.cfg.dir.clone(), me);
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
        self.sync_now();
    }

    fn commit(&mut self, batch: Vec<Job>) {
        let mut stores = Vec::new();
        let mut logins = Vec::new();
        let mut flushes = Vec::new();
        let mut analysed = Vec::new();
        let mut answers = Vec::new();
        for j in batch {
            match j {
                Job::Store { meta, data, done } => stores.push((meta, data, done)),
                Job::Login(l) => logins.push(l),
                Job::Flush(f) => flushes.push(f),
                Job::Analysed(a) => analysed.extend(a),
                Job::AnswerAfterCommit(f) => answers.push(f),
                Job::Synced(r) => self.synced = self.synced.max(Some(r)),
            }
        }
        // One transaction from the first lookup to the commit: one round of SQLite's locks
        // per group rather than one per statement.
        let began = self.db.execute_batch("BEGIN IMMEDIATE");
        let (deliveries, blobs) = self.write_files(stores);
        let committed = began
            .and_then(|()| self.index_group(&blobs, &deliveries, &logins, &analysed))
            .and_then(|spool_max| self.db.execute_batch("COMMIT").map(|()| spool_max));
        if committed.is_err() && !self.db.is_autocommit() {
            let _ = self.db.execute_batch("ROLLBACK");
        }
        if committed.is_ok() {
            self.synced = None;
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        match committed {
            Ok(spool_max) => {
                let added: usize = blobs.iter().map(|b| b.size).sum();
                self.stats.bytes.fetch_add(added as u64, Ordering::Relaxed);
                self.stats
                    .logins
                    .fetch_add(logins.len() as u64, Ordering::Relaxed);
                let group: acker::Group = deliveries
                    .into_iter()
                    .map(|d| {
                        let duplicate = d.origin != Origin::New;
                        (
                            d.done,
                            Stored {
                                id: d.meta.id,
                                duplicate,
                            },
                        )
                    })
                    .collect();
                if !group.is_empty() {
                    let _ = self.acker.send(group);
                }
                if !blobs.is_empty() {
                    self.analysis_due = true;
                    self.spool_max = spool_max;
                    if let Some(s) = &self.syncer {
                        let files = blobs.into_iter().map(|b| b.file).collect();
                        let _ = s.send(syncer::Written { spool_max, files });
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "quarantine: commit failed; answering 451");
                // Never acknowledged: their files go too, so no file outlives its failed group.
                for b in &blobs {
                    let _ = std::fs::remove_file(files::new_dir(&self.cfg.dir).join(&b.file));
                }
                for d in deliveries {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = d.done.send(Err(std::io::Error::other(e.to_string())));
                }
            }
        }
        for f in answers {
            let _ = f.send(());
        }
        if !flushes.is_empty() {
            self.sync_now();
            self.analyse_pending();
            for f in flushes {
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
    }

    /// Hashes each delivery and writes the files of new content (once per content: what the
    /// index or an earlier delivery of the group already holds is not written again).
    /// Deliveries whose file could not be written are answered with the error here.
    fn write_files(
        &mut self,
        stores: Vec<(Meta, Vec<u8>, Reply)>,
    ) -> (Vec<Delivery>, Vec<NewBlob>) {
        let mut first_in_group: HashMap<String, usize> = HashMap::new();
        let mut failed: HashSet<usize> = HashSet::new();
        let mut deliveries = Vec::with_capacity(stores.len());
        let mut blobs = Vec::new();
        for (i, (meta, data, done)) in stores.into_iter().enumerate() {
            let sha = sha256_hex(&data);
            let size = data.len();
            let origin = if let Some(&j) = first_in_group.get(&sha) {
                Origin::Group(j)
            } else if let Ok(Some(id)) = index::blob_id(&self.db, &sha) {
                Origin::Indexed(id)
            } else {
                first_in_group.insert(sha.clone(), i);
                Origin::New
            };
            let writer = match origin {
                Origin::New => Some(i),
                Origin::Group(j) => Some(j),
                Origin::Indexed(_) => None,
            };
            if origin == Origin::New {
                let file = files::file_name(&meta.id, meta.received_ms);
                let (bytes, offset) = files::encode(&meta, &data, &sha);
                match files::write(&self.cfg.dir, &file, &bytes, false) {
                    Ok(()) => blobs.push(NewBlob {
                        sha: sha.clone(),
                        file,
                        size,
                        offset,
                        first_ms: meta.received_ms,
                        bytes,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "quarantine: cannot write a message");
                        failed.insert(i);
                    }
                }
            }
            // A duplicate of content whose write failed in this group fails with it.
            if writer.is_some_and(|w| failed.contains(&w)) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let _ = done.send(Err(std::io::Error::other("cannot write the message file")));
                continue;
            }
            deliveries.push(Delivery {
                meta,
                size,
                sha,
                origin,
                done,
            });
        }
        (deliveries, blobs)
    }

    /// The group's rows, inside the transaction `commit` opened. Returns the highest spool
    /// `id` it wrote.
    fn index_group(
        &self,
        blobs: &[NewBlob],
        deliveries: &[Delivery],
        logins: &[Login],
        analysed: &[analyse::Analysis],
    ) -> rusqlite::Result<i64> {
        let tx = &self.db;
        let mut spool_max = self.spool_max;
        let mut ids: HashMap<&str, i64> = HashMap::with_capacity(blobs.len());
        for b in blobs {
            let id = insert_blob(tx, &b.sha, &b.file, b.size, b.offset, b.first_ms)?;
            ids.insert(&b.sha, id);
            spool_max += 1;
            tx.prepare_cached("INSERT INTO spool(id, blob, file, data) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![spool_max, id, b.file, b.bytes])?;
        }
        for d in deliveries {
            let blob = match d.origin {
                Origin::Indexed(id) => id,
                Origin::New | Origin::Group(_) => ids[d.sha.as_str()],
            };
            insert_message(tx, &d.meta, d.size, &d.sha, blob)?;
        }
        for l in logins {
            tx.prepare_cached(
                "INSERT INTO logins(at_ms, client_ip, mechanism, username, password, verdict, tls)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                l.at_ms as i64,
                l.client_ip,
                l.mechanism,
                l.username,
                l.password,
                l.verdict,
                l.tls as i64
            ])?;
        }
        if let Some(r) = self.synced {
            tx.prepare_cached("DELETE FROM spool WHERE id <= ?1")?
                .execute([r])?;
        }
        // Background results never fail the deliveries they ride with.
        if !analysed.is_empty() {
            tx.execute_batch("SAVEPOINT analysis")?;
            match analyse::apply(tx, analysed) {
                Ok(()) => tx.execute_batch("RELEASE analysis")?,
                Err(e) => {
                    tracing::error!(error = %e, "quarantine: indicators not stored");
                    tx.execute_batch("ROLLBACK TO analysis; RELEASE analysis")?;
                }
            }
        }
        Ok(spool_max)
    }

    /// Makes every file written so far durable and empties the spool, right now (flush and
    /// shutdown; the sync thread does the same in the background).
    fn sync_now(&mut self) {
        if let Err(e) = self.wal.sync_data() {
            tracing::error!(error = %e, "quarantine: index sync failed");
        }
        let result = index::spool_files(&self.db)
            .map_err(|e| e.to_string())
            .and_then(|names| files::sync_all(&self.cfg.dir, &names).map_err(|e| e.to_string()));
        let result = result.and_then(|()| {
            self.db
                .execute("DELETE FROM spool WHERE id <= ?1", [self.spool_max])
                .map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "quarantine: sync failed; the spool keeps the messages");
        }
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
                .prepare("SELECT id, file, size FROM blobs ORDER BY first_ms, id")?;
            let mut rows = st.query([])?;
            while total > max {
                let Some(r) = rows.next()? else { break };
                let size: i64 = r.get(2)?;
                victims.push((r.get::<_, i64>(0)?, r.get::<_, String>(1)?));
                total = total.saturating_sub(size.max(0) as u64);
            }
        }
        let tx = self.db.transaction()?;
        let mut messages = 0i64;
        for (id, _) in &victims {
            messages += delete_blob(&tx, *id)? as i64;
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

    /// Wakes the analysis thread if content arrived since it was last woken; it finds the
    /// work in the index itself.
    fn analyse_pending(&mut self) {
        if std::mem::take(&mut self.analysis_due) {
            if let Some(a) = &self.analyser {
                let _ = a.send(analyse::Job::Wake);
            }
        }
    }
}

/// Renames the index and its log files to `index.sqlite.old-<ms>` (and `-wal`, `-shm`).
fn move_aside(ipath: &std::path::Path) -> std::io::Result<PathBuf> {
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

/// Removes one content and everything hanging off it; returns the deliveries removed.
fn delete_blob(tx: &Connection, id: i64) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM iocs WHERE blob = ?1", [id])?;
    let messages = tx.execute("DELETE FROM messages WHERE blob = ?1", [id])?;
    tx.execute("DELETE FROM spool WHERE blob = ?1", [id])?;
    tx.execute("DELETE FROM blobs WHERE id = ?1", [id])?;
    Ok(messages)
}

fn insert_blob(
    tx: &Connection,
    sha: &str,
    file: &str,
    size: usize,
    offset: u64,
    first_ms: u64,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO blobs(sha256, file, size, body_offset, first_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        sha,
        file,
        size as i64,
        offset as i64,
        first_ms as i64
    ])?;
    Ok(tx.last_insert_rowid())
}

fn insert_message(
    tx: &Connection,
    m: &Meta,
    size: usize,
    sha: &str,
    blob: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO messages(id, received_ms, client_ip, client_port, helo, mail_from,
            rcpt_to, auth_user, auth_password, tls, listener, size, sha256, blob)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
        sha,
        blob
    ])?;
    Ok(())
}
