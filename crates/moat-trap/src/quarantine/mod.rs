//! The quarantine: every captured message on disk before the sender hears `250`.
//!
//! Layout under the quarantine directory: the journal (`journal/`, [`journal`]), Maildir's
//! `tmp/` and `new/` ([`files`]) and `index.sqlite` ([`index`]).
//!
//! Two threads share the work. Intake (`intake`) is the reply path: it takes every message
//! waiting, appends them to the journal in one write, and syncs that append before it
//! releases the replies. A group therefore costs one sequential sync however many sessions
//! are waiting, and no reply ever precedes the sync that holds its message. The index writer
//! ([`writer`]) then, at a lower priority, writes each new content's file and commits the
//! index rows in large groups; a sync thread ([`syncer`]) makes the files durable in one sweep
//! per second, and the journal segments they cover are removed.
//!
//! Crash safety (`kill -9` anywhere): an acknowledged message is in the journal until its file
//! and its index rows are durable. At start, [`Quarantine::open`] deletes `tmp/` debris, drops
//! index rows whose file vanished, indexes any whole file the index missed and removes
//! cut-short ones, then replays the journal: each delivery the index lacks is filed and indexed
//! as if it had just arrived. The index therefore never claims a half file once the quarantine
//! is open; until then, [`read_message`] falls back to the journal.

pub mod analyse;
pub mod files;
pub mod index;
// `intake` and `writer` are public only for the journal_recovery fuzz target, which replays a
// journal with `writer::Writer::open` (fuzz/fuzz_targets/journal_recovery.rs).
#[doc(hidden)]
pub mod intake;
pub mod journal;
mod syncer;
#[doc(hidden)]
pub mod views;
pub mod writer;

use moat_core::metric::Sample;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The envelope of one delivery, as stored in the file header and the index.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub id: String,
    pub received_ms: u64,
    pub client_ip: String,
    pub client_port: u16,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub auth_password: Option<String>,
    #[serde(default)]
    pub tls: bool,
    /// Which listener took it (`trap`, `capture`, or a configured name).
    #[serde(default)]
    pub listener: String,
}

#[derive(Debug, Clone)]
pub struct QuarantineConfig {
    pub dir: PathBuf,
    /// Disk quota for message content in bytes; the oldest content is evicted past it (0 = none).
    pub max_bytes: u64,
    /// Extract indicators from each new message (in the writer thread, after the replies).
    pub analyse: bool,
}

impl QuarantineConfig {
    pub fn new(dir: &Path) -> Self {
        QuarantineConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 30,
            analyse: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Index(PathBuf, rusqlite::Error),
}

/// What a store returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    /// The content was already in the quarantine; only the delivery was recorded.
    pub duplicate: bool,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub evicted: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    pub logins: AtomicU64,
    pub batches: AtomicU64,
    pub recovered: AtomicU64,
    /// Bytes journaled (and answered) but not yet indexed.
    pub backlog: AtomicU64,
}

/// A login attempt on the trap (every credential tried is kept), as recorded and as read back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Login {
    pub at_ms: u64,
    pub client_ip: String,
    pub mechanism: String,
    pub username: String,
    pub password: String,
    pub verdict: String,
    pub tls: bool,
}

/// A handle to the quarantine; cheap to clone. The writer thread stops when the last handle is
/// dropped, after finishing what it was given.
#[derive(Clone)]
pub struct Quarantine {
    tx: tokio::sync::mpsc::Sender<writer::Job>,
    stats: Arc<Stats>,
    dir: PathBuf,
}

impl std::fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quarantine")
            .field("dir", &self.dir)
            .finish()
    }
}

impl Quarantine {
    /// Opens (creating if needed) and recovers the quarantine, then starts its threads.
    pub fn open(cfg: QuarantineConfig) -> Result<Self, QuarantineError> {
        let stats = Arc::new(Stats::default());
        let pending = Arc::new(intake::Pending::default());
        let w = writer::Writer::open(cfg.clone(), stats.clone(), pending.clone())?;
        let io = |e| QuarantineError::Io(journal::dir(&cfg.dir), e);
        let journal = journal::Journal::open(&cfg.dir, w.last_segment()).map_err(io)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let (wtx, wrx) = tokio::sync::mpsc::channel(4096);
        let (me, to_intake) = (wtx.downgrade(), tx.downgrade());
        let intake = intake::Intake {
            journal,
            writer: wtx,
            pending,
            lookup: index::open_read(&index_path(&cfg.dir)).ok(),
            stats: stats.clone(),
            refusals: Default::default(),
        };
        std::thread::Builder::new()
            .name("moat-quarantine".into())
            .spawn(move || w.run(wrx, me, to_intake))
            .map_err(io)?;
        std::thread::Builder::new()
            .name("moat-intake".into())
            .spawn(move || intake.run(rx))
            .map_err(io)?;
        Ok(Quarantine {
            tx,
            stats,
            dir: cfg.dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stores one message. Returns only once it is durable (its journal append synced); an
    /// error means it is not, and the sender must be told to retry (`452` if the error is a
    /// full disk, `ErrorKind::StorageFull`, else `451`).
    ///
    /// An id that is not [`files::is_id`] is refused: it becomes part of the file name.
    pub async fn store(&self, meta: Meta, data: Vec<u8>) -> std::io::Result<Stored> {
        if !files::is_id(&meta.id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a quarantine id is 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(writer::Job::Store { meta, data, done })
            .await
            .map_err(|_| std::io::Error::other("quarantine writer stopped"))?;
        wait.await
            .map_err(|_| std::io::Error::other("quarantine writer stopped"))?
    }

    /// Records a login attempt. Best effort under overload: dropped (and counted) rather than
    /// slowing the session, since logins are evidence, not mail someone was promised.
    pub fn record_login(&self, login: Login) {
        if self.tx.try_send(writer::Job::Login(login)).is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until everything sent so far is indexed, durable in its file and analysed (tests,
    /// shutdown).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(writer::Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Counters and gauges for the admin `/metrics`.
    pub fn metrics(&self) -> Vec<Sample> {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            Sample::counter(
                "moat_quarantine_messages_total",
                "Messages stored durably",
                g(&s.stored),
            ),
            Sample::counter(
                "moat_quarantine_duplicates_total",
                "Deliveries whose content was already stored",
                g(&s.duplicates),
            ),
            Sample::counter(
                "moat_quarantine_evicted_total",
                "Messages evicted by the disk quota, oldest first",
                g(&s.evicted),
            ),
            Sample::counter(
                "moat_quarantine_failures_total",
                "Stores or login records that failed",
                g(&s.failed),
            ),
            Sample::gauge(
                "moat_quarantine_bytes",
                "Bytes of message content in the quarantine",
                g(&s.bytes),
            ),
            Sample::counter(
                "moat_trap_logins_total",
                "Login attempts recorded",
                g(&s.logins),
            ),
            Sample::counter(
                "moat_quarantine_commits_total",
                "Journal appends (one sync each, for every delivery waiting)",
                g(&s.batches),
            ),
            Sample::gauge(
                "moat_quarantine_backlog_bytes",
                "Bytes answered and journaled but not yet indexed",
                g(&s.backlog),
            ),
        ]
    }
}

/// A new message id: time-ordered (so ids sort by arrival) and unguessable, in the hex shape of
/// a Postfix queue id: the millisecond (44 bits) then 20 random bits.
///
/// Unique within the process: an id is a delivery's key (index row, file name, the `queued
/// as` reply), and two deliveries in one millisecond drew the same 20 bits often enough under
/// a flood (the second one's row was then dropped and its file replaced the first one's). So
/// an id never repeats or goes back: one that would is the last one plus one. Across restarts,
/// time has moved on.
pub fn new_id(now_ms: u64) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let fresh = (now_ms.min((1 << 44) - 1) << 20) | u64::from(fastrand::u32(..1 << 20));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let id = fresh.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return format!("{id:016X}"),
            Err(now) => last = now,
        }
    }
}

/// The id a delivery is indexed under when its own id already names other content: its id
/// (cut to 47 bytes) and the first 16 hex digits of its content's hash. Ids are unique within
/// a process (`new_id`), but across a restart with the clock stepped back, or in a damaged
/// journal, an id can come again with another message; filed under the same id, one of the
/// two would be lost (same row key, same file name). Derived from the content, so that
/// recovering the same journal twice files it under the same id both times.
pub fn other_content_id(id: &str, sha: &str) -> String {
    let mut end = id.len().min(47);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{}", &id[..end], &sha[..sha.len().min(16)])
}

pub fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.sqlite")
}

/// Nice 19 for the calling thread (Linux: `setpriority` on a thread id applies to that thread
/// only): the background threads (index writer, extraction, segment preparer) then take what
/// CPU the sessions and intake leave, and under a flood they catch up once it ebbs. Measured
/// with interleaved runs of the trap benchmark: about 9 % more messages a second than at
/// nice 10. Best effort; without it the thread merely competes as an equal.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// Reads the received bytes of a stored message: from its file, or, if the file is not whole
/// (a crash came before its sync and the trap has not restarted since), from the journal.
pub fn read_message(dir: &Path, row: &index::MessageRow) -> std::io::Result<Vec<u8>> {
    let body = |bytes: &[u8]| {
        let start = row.body_offset.max(0) as usize;
        bytes
            .get(start..)
            .filter(|b| b.len() as i64 == row.size)
            .map(<[u8]>::to_vec)
    };
    // The index names the file; a name that is not a plain file name (a damaged or edited
    // index, or none for a delivery still only in the journal) is never read, so nothing
    // outside the quarantine is.
    let file = if files::is_plain_name(&row.file) {
        std::fs::read(files::new_dir(dir).join(&row.file))
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a quarantine file name: {:?}", row.file),
        ))
    };
    if let Some(b) = file.as_deref().ok().and_then(body) {
        return Ok(b);
    }
    if let Some((_, data)) = journal_find(dir, |m, data| {
        m.id == row.id || sha256_hex(data) == row.sha256
    })? {
        return Ok(data);
    }
    Err(file.err().unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "message file is not whole")
    }))
}

/// A delivery found only in the journal (answered, not indexed yet), shaped like an index row.
/// Its `file` is empty: [`read_message`] then reads it from the journal.
pub fn journaled_row(meta: Meta, data: &[u8]) -> index::MessageRow {
    index::MessageRow {
        id: meta.id,
        received_ms: meta.received_ms as i64,
        client_ip: meta.client_ip,
        client_port: meta.client_port.into(),
        helo: meta.helo,
        mail_from: meta.mail_from,
        rcpt_to: meta.rcpt_to,
        auth_user: meta.auth_user,
        auth_password: meta.auth_password,
        tls: meta.tls,
        listener: meta.listener,
        size: data.len() as i64,
        sha256: sha256_hex(data),
        subject: None,
        file: String::new(),
        body_offset: 0,
    }
}

/// The newest `limit` deliveries, as `moat quarantine list` shows them: the index's, plus any
/// answered so recently that they are still only in the journal (the writer indexes behind
/// the replies), so that a listing never misses an acknowledged message.
pub fn list(
    dir: &Path,
    db: &rusqlite::Connection,
    limit: usize,
) -> Result<Vec<index::MessageRow>, QuarantineError> {
    let index_err = |e| QuarantineError::Index(index_path(dir), e);
    // The journal first, then the index: a delivery leaves the journal only after its row was
    // committed, so one that is gone from the journal when it is read is in the index read
    // after it. The other order missed deliveries indexed between the two reads.
    let mut in_journal = Vec::new();
    journal_find(dir, |m, data| {
        in_journal.push(journaled_row(m.clone(), data));
        false
    })
    .map_err(|e| QuarantineError::Io(journal::dir(dir), e))?;
    let mut rows = index::list(db, limit).map_err(index_err)?;
    // By id and content: a journaled delivery whose id names other content is filed under
    // another id (`other_content_id`), and is not the indexed one.
    let mut seen: std::collections::HashSet<(String, String)> = rows
        .iter()
        .map(|r| (r.id.clone(), r.sha256.clone()))
        .collect();
    let mut journaled = Vec::new();
    for row in in_journal {
        let key = (row.id.clone(), row.sha256.clone());
        let indexed = |id: &str| -> Result<bool, QuarantineError> {
            Ok(index::message_sha(db, id).map_err(index_err)?.as_deref() == Some(&row.sha256))
        };
        if seen.contains(&key)
            || indexed(&row.id)?
            || indexed(&other_content_id(&row.id, &row.sha256))?
        {
            continue;
        }
        seen.insert(key);
        journaled.push(row);
    }
    rows.extend(journaled);
    rows.sort_by(|a, b| (b.received_ms, &b.id).cmp(&(a.received_ms, &a.id)));
    rows.truncate(limit);
    Ok(rows)
}

/// The first delivery in the journal (oldest segment first) that `want` picks: its envelope
/// and received bytes. A scan: the journal holds about a second of traffic, and this serves
/// the rare reader that finds a file cut short or a message not indexed yet.
pub fn journal_find(
    dir: &Path,
    mut want: impl FnMut(&Meta, &[u8]) -> bool,
) -> std::io::Result<Option<(Meta, Vec<u8>)>> {
    for (_, path) in journal::segments(dir)? {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Removed meanwhile: its messages are indexed and durable by now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for payload in journal::frames(&bytes).0 {
            if let Some((meta, data, _)) = files::decode(payload) {
                if want(&meta, &data) {
                    return Ok(Some((meta, data)));
                }
            }
        }
    }
    Ok(None)
}

pub fn sha256_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests;
