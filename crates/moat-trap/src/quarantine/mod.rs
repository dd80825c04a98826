//! The quarantine: every captured message on disk before the sender hears `250`.
//!
//! Layout under the quarantine directory: Maildir's `tmp/` and `new/` ([`files`]) and
//! `index.sqlite` ([`index`]). One writer thread ([`writer`]) owns both and commits in groups:
//! it takes every message waiting, writes their files, and commits their index rows together
//! with their bytes (the `spool`) in one transaction, synced, before it releases the replies.
//! A group therefore costs one sequential index sync however many sessions are waiting, and
//! no reply ever precedes the sync that holds its message. A sync thread then makes the files
//! durable in one sweep per second and their spool copies are dropped.
//!
//! Crash safety (`kill -9` anywhere): an acknowledged message is in the index's spool until
//! its file is durable. At start, [`Quarantine::open`] deletes `tmp/` debris, rewrites (and
//! syncs) every file still in the spool, indexes any whole file the index missed (written,
//! never acknowledged) and removes cut-short ones, and drops index rows whose file vanished.
//! The index therefore never claims a half file once the quarantine is open; until then,
//! [`read_message`] falls back to the spool.

mod acker;
pub mod analyse;
pub mod files;
pub mod index;
mod syncer;
mod writer;

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
    /// Opens (creating if needed) and recovers the quarantine, then starts its writer thread.
    pub fn open(cfg: QuarantineConfig) -> Result<Self, QuarantineError> {
        let stats = Arc::new(Stats::default());
        let w = writer::Writer::open(cfg.clone(), stats.clone())?;
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let me = tx.downgrade();
        std::thread::Builder::new()
            .name("moat-quarantine".into())
            .spawn(move || w.run(rx, me))
            .map_err(|e| QuarantineError::Io(cfg.dir.clone(), e))?;
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

    /// Stores one message. Returns only once it is durable (file, directory and index synced);
    /// an error means it is not, and the sender must be told to retry (`451`).
    pub async fn store(&self, meta: Meta, data: Vec<u8>) -> std::io::Result<Stored> {
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

    /// Waits until everything sent so far is written (tests, shutdown).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(writer::Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// `(name, help, value)` for the admin `/metrics`.
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            (
                "moat_quarantine_messages_total",
                "Messages stored durably",
                g(&s.stored),
            ),
            (
                "moat_quarantine_duplicates_total",
                "Deliveries whose content was already stored",
                g(&s.duplicates),
            ),
            (
                "moat_quarantine_evicted_total",
                "Messages evicted by the disk quota, oldest first",
                g(&s.evicted),
            ),
            (
                "moat_quarantine_failures_total",
                "Stores or login records that failed",
                g(&s.failed),
            ),
            (
                "moat_quarantine_bytes",
                "Bytes of message content in the quarantine",
                g(&s.bytes),
            ),
            (
                "moat_trap_logins_total",
                "Login attempts recorded",
                g(&s.logins),
            ),
            (
                "moat_quarantine_commits_total",
                "Group commits (one directory and index sync each)",
                g(&s.batches),
            ),
        ]
    }
}

/// A new message id: time-ordered (so ids sort by arrival) and unguessable, in the hex shape of
/// a Postfix queue id.
pub fn new_id(now_ms: u64) -> String {
    format!("{:011X}{:05X}", now_ms, fastrand::u32(..1 << 20))
}

pub fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.sqlite")
}

/// Reads the received bytes of a stored message: from its file, or, if the file is not whole
/// (a crash came before its sync and the trap has not restarted since), from the spool.
pub fn read_message(dir: &Path, row: &index::MessageRow) -> std::io::Result<Vec<u8>> {
    let body = |bytes: &[u8]| {
        let start = row.body_offset.max(0) as usize;
        bytes
            .get(start..)
            .filter(|b| b.len() as i64 == row.size)
            .map(<[u8]>::to_vec)
    };
    let file = std::fs::read(files::new_dir(dir).join(&row.file));
    if let Some(b) = file.as_deref().ok().and_then(body) {
        return Ok(b);
    }
    let spooled = index::open_read(&index_path(dir))
        .and_then(|db| index::spooled(&db, &row.file))
        .map_err(std::io::Error::other)?;
    spooled.as_deref().and_then(body).ok_or_else(|| {
        file.err().unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "message file is not whole")
        })
    })
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
