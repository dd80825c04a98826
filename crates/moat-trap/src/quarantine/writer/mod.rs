//! The index writer: files and indexes what intake journaled, behind the replies.
//!
//! Intake ([`super::intake`]) has made each delivery durable in the journal and answered it;
//! this thread takes them in groups: hashes were computed there, so it looks the content up,
//! writes the file of new content (`tmp/` then `new/`, no sync) and commits the group's rows
//! in one transaction (not synced either: the journal holds the messages). The sync thread
//! ([`super::syncer`]) later makes the files durable in one sweep and reports back; the writer
//! then syncs the index and removes the journal segments that sweep covers.
//!
//! It runs at a lower priority than the sessions and intake: under a flood the CPU goes to
//! accepting mail, and the index catches up when the flood ebbs ([`super::intake::MAX_BACKLOG`]
//! bounds how far behind it may be). At open it replays whatever the journal still holds.

mod pace;
mod recovery;

use super::{
    analyse, files, index, intake::Pending, journal, syncer, Login, Meta, QuarantineConfig,
    QuarantineError, Stats,
};
use pace::{gather, Hold, Pace};
use recovery::move_aside;
use rusqlite::{params, Connection};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The jobs of both quarantine threads: sessions send `Store`, `Login` and `Flush` to intake,
/// which journals the stores and forwards everything else, in order, to the writer.
pub enum Job {
    Store {
        meta: Meta,
        data: Vec<u8>,
        done: super::intake::Reply,
    },
    Login(Login),
    /// Everything before it indexed, durable (journal emptied) and analysed (tests, shutdown).
    Flush(oneshot::Sender<()>),
    /// A delivery intake journaled and answered (intake → writer).
    Journaled(Journaled),
    /// Every delivery of this journal segment is ahead of this notice (intake → writer).
    Rotated(u64),
    /// Close the current segment, if it holds anything (writer → intake).
    Rotate,
    /// Indicators from the analysis thread, committed with the next group.
    Analysed(Vec<analyse::Analysis>),
    /// Answered right after the commit of the group it arrives in.
    AnswerAfterCommit(oneshot::Sender<()>),
    /// The sync thread made every file durable that was written before the writer sealed
    /// journal segments up to this number.
    Synced(u64),
}

/// A delivery as intake journaled it: the file's whole content (`bytes`, the received message
/// from `offset` on), its hash and size, and the journal segment holding it.
pub struct Journaled {
    pub meta: Meta,
    pub bytes: Vec<u8>,
    pub offset: u64,
    pub sha: String,
    pub size: usize,
    pub segment: u64,
}

/// Most jobs taken into one group commit.
const MAX_BATCH: usize = 65536;

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

/// One delivery of a group: envelope, size, content hash, origin.
struct Delivery {
    meta: Meta,
    size: usize,
    sha: String,
    origin: Origin,
}

/// Content new in this group, written to its file and about to be indexed.
struct NewBlob {
    sha: String,
    file: String,
    size: usize,
    offset: u64,
    first_ms: u64,
}

pub struct Writer {
    cfg: QuarantineConfig,
    db: Connection,
    stats: Arc<Stats>,
    pending: Arc<Pending>,
    /// Content was committed that the analysis thread has not been told about.
    analysis_due: bool,
    analyser: Option<std::sync::mpsc::Sender<analyse::Job>>,
    syncer: Option<std::sync::mpsc::Sender<syncer::Written>>,
    /// Intake's queue, to ask it to close a segment so that it can go.
    intake: Option<mpsc::WeakSender<Job>>,
    /// Every delivery of the journal segments up to this number is committed.
    sealed: u64,
    /// The highest segment holding a delivery committed so far.
    latest: u64,
    /// A segment was asked to close and its notice has not come yet.
    rotate_asked: bool,
    /// The first segment holding a delivery the writer failed to index: it and all after it
    /// stay until the next start replays them.
    held: Option<u64>,
    /// The index's write-ahead log, synced before journal segments go.
    wal: std::fs::File,
}

impl Writer {
    /// Opens the index, makes it agree with the files, and replays the journal.
    pub fn open(
        cfg: QuarantineConfig,
        stats: Arc<Stats>,
        pending: Arc<Pending>,
    ) -> Result<Self, QuarantineError> {
        let io = |p: PathBuf| move |e| QuarantineError::Io(p, e);
        for d in [
            files::tmp_dir(&cfg.dir),
            files::new_dir(&cfg.dir),
            journal::dir(&cfg.dir),
        ] {
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
        // Commits here do not sync: the journal holds every delivery until the writer has
        // synced the index and the files, and only then removes it.
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
        let mut w = Writer {
            cfg,
            db,
            stats,
            pending,
            analysis_due: true,
            analyser: None,
            syncer: None,
            intake: None,
            sealed: 0,
            latest: 0,
            rotate_asked: false,
            held: None,
            wal,
        };
        w.recover()
            .map_err(|e| QuarantineError::Index(ipath.clone(), e))?;
        w.replay()?;
        let bytes = index::total_bytes(&w.db).unwrap_or(0);
        w.stats.bytes.store(bytes.max(0) as u64, Ordering::Relaxed);
        w.stats.evicted.store(
            index::counter(&w.db, "evicted").unwrap_or(0).max(0) as u64,
            Ordering::Relaxed,
        );
        Ok(w)
    }

    /// Runs the writer until intake stops; then makes everything durable and removes the
    /// journal. `me` is a weak handle on the writer's own queue, for the helper threads'
    /// reports; `intake` one on intake's, to ask it to close a segment.
    pub fn run(
        mut self,
        mut rx: mpsc::Receiver<Job>,
        me: mpsc::WeakSender<Job>,
        intake: mpsc::WeakSender<Job>,
    ) {
        super::lower_priority();
        self.intake = Some(intake);
        if self.cfg.analyse {
            self.analyser = analyse::spawn(self.cfg.dir.clone(), me.clone());
        }
        self.syncer = syncer::spawn(self.cfg.dir.clone(), me);
        self.analyse_pending();
        let mut pace = Pace::new();
        while let Some(job) = rx.blocking_recv() {
            let batch = gather(&mut rx, job, pace.busy, Hold::DEFAULT);
            pace.committed(batch.len());
            self.commit(batch);
            self.enforce_quota();
            self.analyse_pending();
        }
        // Intake has stopped and sealed its last segment, and everything it journaled is
        // committed: the journal can go once the index and the files are durable (an empty
        // last segment stays, and the next start removes it).
        self.sync_now();
        if let Err(e) = journal::remove_through(&self.cfg.dir, self.removable()) {
            tracing::error!(error = %e, "quarantine: cannot remove the journal");
        }
    }

    fn commit(&mut self, batch: Vec<Job>) {
        let mut stores = Vec::new();
        let mut logins = Vec::new();
        let mut flushes = Vec::new();
        let mut analysed = Vec::new();
        let mut answers = Vec::new();
        let mut rotated = None;
        let mut synced = None;
        for j in batch {
            match j {
                Job::Journaled(d) => stores.push(d),
                Job::Login(l) => logins.push(l),
                Job::Flush(f) => flushes.push(f),
                Job::Analysed(a) => analysed.extend(a),
                Job::AnswerAfterCommit(f) => answers.push(f),
                Job::Rotated(n) => rotated = rotated.max(Some(n)),
                Job::Synced(n) => synced = synced.max(Some(n)),
                // Sessions and the writer send these to intake, never here.
                Job::Store { .. } | Job::Rotate => {}
            }
        }
        let segments: Vec<u64> = stores.iter().map(|d| d.segment).collect();
        let shas: Vec<String> = stores.iter().map(|d| d.sha.clone()).collect();
        let journaled: u64 = stores.iter().map(|d| d.bytes.len() as u64).sum();
        // One transaction from the first lookup to the commit: one round of SQLite's locks
        // per group rather than one per statement.
        let began = self.db.execute_batch("BEGIN IMMEDIATE");
        let (deliveries, blobs, failed) = self.write_files(stores);
        let committed = began
            .and_then(|()| self.index_group(&blobs, &deliveries, &logins, &analysed))
            .and_then(|()| self.db.execute_batch("COMMIT"));
        if committed.is_err() && !self.db.is_autocommit() {
            let _ = self.db.execute_batch("ROLLBACK");
        }
        for sha in &shas {
            self.pending.done(sha);
        }
        self.stats.backlog.fetch_sub(journaled, Ordering::Relaxed);
        let first_failed = match &committed {
            Ok(()) => failed,
            Err(_) => segments.iter().copied().min(),
        };
        if let Some(f) = first_failed {
            self.held = self.held.min(Some(f)).or(Some(f));
        }
        match committed {
            Ok(()) => {
                let added: usize = blobs.iter().map(|b| b.size).sum();
                self.stats.bytes.fetch_add(added as u64, Ordering::Relaxed);
                self.stats
                    .logins
                    .fetch_add(logins.len() as u64, Ordering::Relaxed);
                self.latest = self.latest.max(segments.iter().copied().max().unwrap_or(0));
                if let Some(n) = rotated {
                    self.sealed = self.sealed.max(n);
                    self.rotate_asked = false;
                }
                if !blobs.is_empty() {
                    self.analysis_due = true;
                }
                if !deliveries.is_empty() || rotated.is_some() {
                    if let Some(s) = &self.syncer {
                        let files = blobs.into_iter().map(|b| b.file).collect();
                        let through = self.removable();
                        let _ = s.send(syncer::Written { through, files });
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e,
                    "quarantine: index commit failed; the journal keeps the messages");
                self.stats
                    .failed
                    .fetch_add(deliveries.len() as u64, Ordering::Relaxed);
                for b in &blobs {
                    let _ = std::fs::remove_file(files::new_dir(&self.cfg.dir).join(&b.file));
                }
            }
        }
        if let Some(n) = synced {
            self.drop_journal(n);
        }
        for f in answers {
            let _ = f.send(());
        }
        if !flushes.is_empty() {
            self.sync_now();
            let through = self.removable();
            self.drop_journal(through);
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

    /// The highest journal segment number known so far (intake starts after it).
    pub fn last_segment(&self) -> u64 {
        self.sealed.max(self.latest)
    }

    /// The highest journal segment that may go once what was written so far is durable.
    fn removable(&self) -> u64 {
        match self.held {
            Some(h) => self.sealed.min(h.saturating_sub(1)),
            None => self.sealed,
        }
    }

    /// The files of everything committed in segments up to `through` are durable: sync the
    /// index and remove those segments. Then, if committed deliveries sit in a segment intake
    /// still has open, ask intake to close it, so that it too can go after the next sweep.
    fn drop_journal(&mut self, through: u64) {
        let through = through.min(self.removable());
        if through > 0 {
            let removed = self
                .wal
                .sync_data()
                .and_then(|()| journal::remove_through(&self.cfg.dir, through));
            if let Err(e) = removed {
                tracing::error!(error = %e, "quarantine: journal not removed; retrying later");
            }
        }
        if self.latest > self.sealed && !self.rotate_asked {
            if let Some(i) = self.intake.as_ref().and_then(|i| i.upgrade()) {
                self.rotate_asked = i.try_send(Job::Rotate).is_ok();
            }
        }
    }

    /// Looks each delivery's content up and writes the files of new content (once per content:
    /// what the index or an earlier delivery of the group already holds is not written again).
    /// Returns the deliveries to index, the new content, and the first journal segment holding
    /// a delivery whose file could not be written (it stays in the journal).
    fn write_files(
        &mut self,
        stores: Vec<Journaled>,
    ) -> (Vec<Delivery>, Vec<NewBlob>, Option<u64>) {
        let mut first_in_group: HashMap<String, usize> = HashMap::new();
        let mut failed: HashSet<usize> = HashSet::new();
        let mut first_failed: Option<u64> = None;
        let mut deliveries = Vec::with_capacity(stores.len());
        let mut blobs = Vec::new();
        for (i, j) in stores.into_iter().enumerate() {
            let origin = if let Some(&k) = first_in_group.get(&j.sha) {
                Origin::Group(k)
            } else if let Ok(Some(id)) = index::blob_id(&self.db, &j.sha) {
                Origin::Indexed(id)
            } else {
                first_in_group.insert(j.sha.clone(), i);
                Origin::New
            };
            if origin == Origin::New {
                let file = files::file_name(&j.meta.id, j.meta.received_ms);
                match files::write(&self.cfg.dir, &file, &j.bytes, false) {
                    Ok(()) => blobs.push(NewBlob {
                        sha: j.sha.clone(),
                        file,
                        size: j.size,
                        offset: j.offset,
                        first_ms: j.meta.received_ms,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "quarantine: cannot write a message file");
                        failed.insert(i);
                    }
                }
            }
            let writer = match origin {
                Origin::New => Some(i),
                Origin::Group(k) => Some(k),
                Origin::Indexed(_) => None,
            };
            // A duplicate of content whose write failed in this group fails with it.
            if writer.is_some_and(|w| failed.contains(&w)) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                first_failed = first_failed.min(Some(j.segment)).or(Some(j.segment));
                continue;
            }
            deliveries.push(Delivery {
                meta: j.meta,
                size: j.size,
                sha: j.sha,
                origin,
            });
        }
        (deliveries, blobs, first_failed)
    }

    /// The group's rows, inside the transaction `commit` opened.
    fn index_group(
        &self,
        blobs: &[NewBlob],
        deliveries: &[Delivery],
        logins: &[Login],
        analysed: &[analyse::Analysis],
    ) -> rusqlite::Result<()> {
        let tx = &self.db;
        let mut ids: HashMap<&str, i64> = HashMap::with_capacity(blobs.len());
        for b in blobs {
            let id = insert_blob(tx, &b.sha, &b.file, b.size, b.offset, b.first_ms)?;
            ids.insert(&b.sha, id);
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
        Ok(())
    }

    /// Makes the index and every file written so far durable, right now (flush, start and
    /// shutdown; the sync thread does the files in the background).
    fn sync_now(&mut self) {
        let synced = self
            .wal
            .sync_data()
            .and_then(|()| files::sync_tree(&self.cfg.dir));
        if let Err(e) = synced {
            tracing::error!(error = %e, "quarantine: sync failed; the journal keeps the messages");
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

/// Removes one content and everything hanging off it; returns the deliveries removed.
fn delete_blob(tx: &Connection, id: i64) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM iocs WHERE blob = ?1", [id])?;
    let messages = tx.execute("DELETE FROM messages WHERE blob = ?1", [id])?;
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
