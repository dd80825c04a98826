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
//!
//! A delivery it cannot file (its file not written, or the commit refused: a full disk) stays
//! in the journal, which keeps it and every later segment, and in memory, and is tried again
//! every [`RETRY_EVERY`] (and whenever intake, refusing deliveries because the disk is full,
//! asks) until it is filed: a full disk is a temporary condition, recovered from without a
//! restart. Meanwhile intake is told, so that it answers `452` rather than journal more.

mod pace;
mod recovery;

use super::{
    analyse, files, index, intake::Pending, journal, other_content_id, syncer, Login, Meta,
    QuarantineConfig, QuarantineError, Stats,
};
use pace::{gather, Hold, Pace};
use recovery::move_aside;
use rusqlite::{params, Connection};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How often the writer tries again to file what it could not.
const RETRY_EVERY: Duration = Duration::from_secs(1);

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
    /// Try again to file the deliveries that could not be (the writer's own timer, or intake
    /// refusing deliveries because the disk is full, which waits on the answer).
    Retry(Option<std::sync::mpsc::Sender<()>>),
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

/// One delivery of a group: its place among the group's [`Journaled`], and its origin.
struct Delivery {
    at: usize,
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
    /// Deliveries the writer could not file yet, oldest first; tried again until they are.
    unfiled: Vec<Journaled>,
    /// The first journal segment holding one of them: it and all after it stay.
    held: Option<u64>,
    /// A [`Job::Retry`] is on its way from the timer.
    retry_due: bool,
    /// Failed attempts since the deliveries held started failing, and since when.
    failures: u64,
    failing_since: Option<Instant>,
    /// A weak handle on the writer's own queue, for the retry timer.
    me: Option<mpsc::WeakSender<Job>>,
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
            unfiled: Vec::new(),
            held: None,
            retry_due: false,
            failures: 0,
            failing_since: None,
            me: None,
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
        self.syncer = syncer::spawn(self.cfg.dir.clone(), me.clone());
        self.me = Some(me);
        if !self.unfiled.is_empty() {
            self.schedule_retry();
        }
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
        // committed (or held, and kept in the journal for the next start): the journal can go
        // once the index and the files are durable (an empty last segment stays, and the next
        // start removes it).
        if !self.unfiled.is_empty() {
            self.commit(vec![Job::Retry(None)]);
        }
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
        let mut retry = false;
        let mut retry_waiting = Vec::new();
        let mut rotated = None;
        let mut synced = None;
        for j in batch {
            match j {
                Job::Journaled(d) => stores.push(d),
                Job::Login(l) => logins.push(l),
                Job::Flush(f) => {
                    retry = true;
                    flushes.push(f);
                }
                Job::Analysed(a) => analysed.extend(a),
                Job::AnswerAfterCommit(f) => answers.push(f),
                Job::Rotated(n) => rotated = rotated.max(Some(n)),
                Job::Synced(n) => synced = synced.max(Some(n)),
                Job::Retry(w) => {
                    retry = true;
                    match w {
                        Some(w) => retry_waiting.push(w),
                        None => self.retry_due = false,
                    }
                }
                // Sessions and the writer send these to intake, never here.
                Job::Store { .. } | Job::Rotate => {}
            }
        }
        // What could not be filed before goes first, when it is time to try again.
        let (mut stores, retried) = match retry && !self.unfiled.is_empty() {
            true => {
                let mut all = std::mem::take(&mut self.unfiled);
                let n = all.len();
                all.extend(stores);
                (all, n)
            }
            false => (stores, 0),
        };
        // One transaction from the first lookup to the commit: one round of SQLite's locks
        // per group rather than one per statement.
        let began = self.db.execute_batch("BEGIN IMMEDIATE");
        self.settle_ids(&mut stores);
        let (deliveries, blobs, failed) = self.write_files(&stores);
        let committed = began
            .and_then(|()| self.index_group(&stores, &blobs, &deliveries, &logins, &analysed))
            .and_then(|()| self.db.execute_batch("COMMIT"));
        if committed.is_err() && !self.db.is_autocommit() {
            let _ = self.db.execute_batch("ROLLBACK");
        }
        let ok = committed.is_ok();
        // Every delivery is either filed now or held (in memory and in the journal), so the
        // segments they came in are accounted for either way.
        self.latest = self
            .latest
            .max(stores.iter().map(|d| d.segment).max().unwrap_or(0));
        if let Some(n) = rotated {
            self.sealed = self.sealed.max(n);
            self.rotate_asked = false;
        }
        let mut filed_bytes = 0u64;
        let mut newly_failed = 0u64;
        for (i, d) in stores.into_iter().enumerate() {
            if ok && !failed.at.contains(&i) {
                self.pending.done(&d.sha);
                filed_bytes += d.bytes.len() as u64;
            } else {
                newly_failed += u64::from(i >= retried);
                self.unfiled.push(d);
            }
        }
        self.stats.backlog.fetch_sub(filed_bytes, Ordering::Relaxed);
        self.stats.failed.fetch_add(newly_failed, Ordering::Relaxed);
        let files = match ok {
            true => {
                let added: usize = blobs.iter().map(|b| b.size).sum();
                self.stats.bytes.fetch_add(added as u64, Ordering::Relaxed);
                self.stats
                    .logins
                    .fetch_add(logins.len() as u64, Ordering::Relaxed);
                if !blobs.is_empty() {
                    self.analysis_due = true;
                }
                blobs.into_iter().map(|b| b.file).collect()
            }
            false => {
                for b in &blobs {
                    let _ = std::fs::remove_file(files::new_dir(&self.cfg.dir).join(&b.file));
                }
                Vec::new()
            }
        };
        let failure = match &committed {
            Err(e) => Some((e.to_string(), sqlite_full(e) || failed.full)),
            Ok(()) => failed.error.map(|e| (e, failed.full)),
        };
        self.held_now(failure);
        if !deliveries.is_empty() || rotated.is_some() {
            if let Some(s) = &self.syncer {
                let through = self.removable();
                let _ = s.send(syncer::Written { through, files });
            }
        }
        if let Some(n) = synced {
            self.drop_journal(n);
        }
        for f in answers {
            let _ = f.send(());
        }
        for w in retry_waiting {
            let _ = w.send(());
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

    /// After a commit: where the deliveries held start in the journal, what intake is told,
    /// the retry timer, and the log. `failure`: why this commit left deliveries unfiled, and
    /// whether for lack of space (`None`: nothing it tried failed, so what intake was told
    /// about the deliveries still held stands).
    fn held_now(&mut self, failure: Option<(String, bool)>) {
        self.held = self.unfiled.iter().map(|d| d.segment).min();
        if self.unfiled.is_empty() {
            self.pending.set_unfiled(false, false);
            if let Some(since) = self.failing_since.take() {
                tracing::warn!(
                    after_secs = since.elapsed().as_secs(),
                    attempts = self.failures,
                    "quarantine: filing again; every held delivery is filed"
                );
            }
            self.failures = 0;
            return;
        }
        let Some((error, full)) = failure else {
            return;
        };
        self.pending.set_unfiled(true, full);
        self.failures += 1;
        let held = self.unfiled.len();
        match self.failing_since {
            None => {
                self.failing_since = Some(Instant::now());
                tracing::error!(%error, held, disk_full = full,
                    "quarantine: cannot file deliveries; the journal keeps them, retrying");
            }
            // About once a minute while it lasts.
            Some(since) if self.failures.is_multiple_of(60) => {
                tracing::error!(%error, held, disk_full = full,
                    failing_secs = since.elapsed().as_secs(),
                    "quarantine: still cannot file deliveries; the journal keeps them");
            }
            Some(_) => {}
        }
        self.schedule_retry();
    }

    /// Has the writer sent itself a [`Job::Retry`] in [`RETRY_EVERY`] (once at a time).
    fn schedule_retry(&mut self) {
        if self.retry_due {
            return;
        }
        let Some(me) = self.me.clone() else { return };
        let spawned = std::thread::Builder::new()
            .name("moat-retry".into())
            .spawn(move || {
                std::thread::sleep(RETRY_EVERY);
                if let Some(w) = me.upgrade() {
                    let _ = w.blocking_send(Job::Retry(None));
                }
            });
        self.retry_due = spawned.is_ok();
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

    /// Files a delivery whose id already names other content (in the index, or earlier in the
    /// group) under [`other_content_id`] instead, so that neither message is lost: one row
    /// per id, one file name per id and second.
    fn settle_ids(&self, stores: &mut [Journaled]) {
        let mut group: HashMap<String, String> = HashMap::with_capacity(stores.len());
        for j in stores.iter_mut() {
            let other = match group.get(&j.meta.id) {
                Some(sha) => *sha != j.sha,
                None => index::message_sha(&self.db, &j.meta.id)
                    .ok()
                    .flatten()
                    .is_some_and(|sha| sha != j.sha),
            };
            if other {
                let id = other_content_id(&j.meta.id, &j.sha);
                tracing::warn!(id = %j.meta.id, filed_as = %id,
                    "quarantine: id already names another message; filed under a derived id");
                j.meta.id = id;
            }
            group.insert(j.meta.id.clone(), j.sha.clone());
        }
    }

    /// Looks each delivery's content up and writes the files of new content (once per content:
    /// what the index or an earlier delivery of the group already holds is not written again).
    /// Returns the deliveries to index, the new content, and those whose file could not be
    /// written (they stay in the journal and are tried again).
    fn write_files(&mut self, stores: &[Journaled]) -> (Vec<Delivery>, Vec<NewBlob>, Failed) {
        let mut first_in_group: HashMap<&str, usize> = HashMap::new();
        let mut failed = Failed::default();
        let mut deliveries = Vec::with_capacity(stores.len());
        let mut blobs = Vec::new();
        for (i, j) in stores.iter().enumerate() {
            let origin = if let Some(&k) = first_in_group.get(j.sha.as_str()) {
                Origin::Group(k)
            } else if let Ok(Some(id)) = index::blob_id(&self.db, &j.sha) {
                Origin::Indexed(id)
            } else {
                first_in_group.insert(&j.sha, i);
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
                        // What it left in `tmp/` is written over by the retry (same name), or
                        // removed at the next start.
                        failed.full |= io_full(&e);
                        failed.error = Some(format!("writing a message file: {e}"));
                        failed.at.insert(i);
                    }
                }
            }
            let writer = match origin {
                Origin::New => Some(i),
                Origin::Group(k) => Some(k),
                Origin::Indexed(_) => None,
            };
            // A duplicate of content whose write failed in this group fails with it.
            if writer.is_some_and(|w| failed.at.contains(&w)) {
                failed.at.insert(i);
                continue;
            }
            deliveries.push(Delivery { at: i, origin });
        }
        (deliveries, blobs, failed)
    }

    /// The group's rows, inside the transaction `commit` opened.
    fn index_group(
        &self,
        stores: &[Journaled],
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
            let j = &stores[d.at];
            let blob = match d.origin {
                Origin::Indexed(id) => id,
                Origin::New | Origin::Group(_) => ids[j.sha.as_str()],
            };
            insert_message(tx, &j.meta, j.size, &j.sha, blob)?;
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

/// The deliveries of a group whose file could not be written (by their place in the group),
/// whether one failed for lack of space, and the last error.
#[derive(Default)]
struct Failed {
    at: HashSet<usize>,
    full: bool,
    error: Option<String>,
}

/// Whether an I/O error means the disk (or the user's quota on it) is full.
pub(super) fn io_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Whether SQLite refused a write because the disk is full.
fn sqlite_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
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
