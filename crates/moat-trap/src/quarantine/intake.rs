//! The intake thread: the reply path of the quarantine.
//!
//! It takes every delivery waiting, appends them to the [`super::journal`] in one write, syncs
//! the segment (`fdatasync`) and only then answers them. That is all a sender waits for: one
//! append and one sync per group, however many sessions are waiting. Deliveries that arrive
//! during a sync wait in the queue and make up the next group (group commit).
//! The deliveries then go on to the index writer ([`super::writer`]), which files and indexes
//! them behind the replies at a lower priority, so a flood's CPU goes first to the sessions.
//!
//! The writer may fall behind for as long as a flood lasts; what it has not indexed yet is in
//! the journal and in its queue. [`MAX_BACKLOG`] bounds that: past it, intake waits for the
//! writer, and replies slow down instead of memory growing.
//!
//! A full disk is a temporary condition: a journal append that fails for lack of space is
//! answered `452 4.3.1` (any other failure `451 4.3.0`), and while the writer holds deliveries
//! it could not file for lack of space, intake refuses new ones the same way instead of
//! filling the journal with more of what cannot be filed. Before refusing it asks the writer
//! to try again, so the first delivery after space came back is accepted.

use super::writer::{Job, Journaled};
use super::{files, index, journal::Journal, sha256_hex, Stats, Stored};
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where a delivery's answer goes: `Ok` once it is durable.
pub type Reply = tokio::sync::oneshot::Sender<std::io::Result<Stored>>;

/// Bytes journaled but not yet indexed past which intake waits for the writer.
pub const MAX_BACKLOG: u64 = 64 << 20;

/// Most deliveries taken into one append.
const MAX_BATCH: usize = 512;

/// How long intake waits for the writer's retry when the disk was full.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// After a retry found the disk still full, deliveries are refused without asking the writer
/// again for this long (a bot farm retrying at once must not keep the writer retrying).
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Content journaled but not yet indexed, by hash (with how many deliveries carry it), so that
/// a reply can say whether the content was already in the quarantine before the writer has
/// indexed the first copy.
///
/// Also whether the writer holds deliveries it could not file, and whether for lack of space.
#[derive(Default)]
pub struct Pending {
    shas: Mutex<HashMap<String, u32>>,
    failing: AtomicBool,
    full: AtomicBool,
}

impl Pending {
    fn add(&self, sha: &str) -> bool {
        let mut m = self.shas.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(sha.to_string()).or_insert(0);
        *n += 1;
        *n > 1
    }

    /// Whether the writer holds deliveries it could not file (`failing`), and whether the last
    /// attempt failed for lack of space (`full`).
    pub fn set_unfiled(&self, failing: bool, full: bool) {
        self.failing.store(failing, Ordering::Relaxed);
        self.full.store(failing && full, Ordering::Relaxed);
    }

    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// One delivery of `sha` was indexed.
    pub fn done(&self, sha: &str) {
        let mut m = self.shas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(sha) {
            *n -= 1;
            if *n == 0 {
                m.remove(sha);
            }
        }
    }
}

pub struct Intake {
    pub journal: Journal,
    pub writer: mpsc::Sender<Job>,
    pub pending: Arc<Pending>,
    /// The index, read-only, to tell a duplicate in the reply.
    pub lookup: Option<Connection>,
    pub stats: Arc<Stats>,
    pub refusals: Refusals,
}

/// Intake refusing deliveries because the writer cannot file (see [`Intake::room`]).
#[derive(Default)]
pub struct Refusals {
    /// When intake last asked the writer to retry because the disk was full.
    last_probe: Option<Instant>,
    /// When a journal append last failed for lack of space: until [`PROBE_EVERY`] later,
    /// deliveries are refused without trying (each failed append closes a segment).
    journal_full: Option<Instant>,
    /// Deliveries refused since the last one accepted (logged at the first, and every 1000th).
    count: u64,
}

impl Intake {
    /// Runs until every handle on the queue is dropped; then closes the last segment. The
    /// writer, whose queue closes when this thread ends, indexes the rest and removes the
    /// journal.
    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.blocking_recv() {
            let mut batch = vec![job];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if !self.take(batch) {
                return;
            }
        }
        self.seal();
    }

    /// Journals the batch's deliveries and forwards everything to the writer. `false` once the
    /// writer is gone.
    fn take(&mut self, batch: Vec<Job>) -> bool {
        let mut stores = Vec::new();
        let mut others = Vec::new();
        for j in batch {
            match j {
                Job::Store { meta, data, done } => stores.push((meta, data, done)),
                other => others.push(other),
            }
        }
        if !stores.is_empty() && !self.journal_group(stores) {
            return false;
        }
        for job in others {
            match job {
                Job::Flush(f) => {
                    // A flush leaves nothing in an open segment: the writer can drop them all.
                    self.seal();
                    if self.writer.blocking_send(Job::Flush(f)).is_err() {
                        return false;
                    }
                }
                Job::Rotate => self.seal(),
                other => {
                    if self.writer.blocking_send(other).is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn journal_group(&mut self, stores: Vec<(super::Meta, Vec<u8>, Reply)>) -> bool {
        if let Err(e) = self.room().and_then(|()| self.wait_for_writer()) {
            let (before, after) = (
                self.refusals.count,
                self.refusals.count + stores.len() as u64,
            );
            if before == 0 || before / 1000 != after / 1000 {
                tracing::warn!(refused = after, error = %e,
                    "quarantine: refusing deliveries (4xx) until there is room again");
            }
            self.refusals.count = after;
            for (_, _, done) in stores {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let _ = done.send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            return true;
        }
        self.accepting();
        let mut frames = Vec::new();
        let mut entries = Vec::with_capacity(stores.len());
        for (meta, data, done) in stores {
            let sha = sha256_hex(&data);
            let (bytes, offset) = files::encode(&meta, &data, &sha);
            super::journal::frame(&bytes, &mut frames);
            // Told before the sync, so that the reply follows it at once.
            let duplicate = self.pending.add(&sha)
                || self
                    .lookup
                    .as_ref()
                    .is_some_and(|db| matches!(index::blob_id(db, &sha), Ok(Some(_))));
            entries.push((meta, bytes, offset, sha, data.len(), duplicate, done));
        }
        if !self.journal.fits(frames.len()) {
            self.seal();
        }
        let appended = self.journal.append(&frames).and_then(|f| f.sync_data());
        match appended {
            Ok(()) => self.refusals.journal_full = None,
            Err(e) => {
                if super::writer::io_full(&e) {
                    self.refusals.journal_full = Some(Instant::now());
                }
                tracing::error!(error = %e, "quarantine: journal append failed; answering 4xx");
                for (_, _, _, sha, _, _, done) in entries {
                    self.pending.done(&sha);
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = done.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                }
                return true;
            }
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let segment = self.journal.number();
        let mut replies = Vec::with_capacity(entries.len());
        let mut forward = Vec::with_capacity(entries.len());
        for (meta, bytes, offset, sha, size, duplicate, done) in entries {
            replies.push((
                done,
                Stored {
                    id: meta.id.clone(),
                    duplicate,
                },
            ));
            self.stats
                .backlog
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            forward.push(Journaled {
                meta,
                bytes,
                offset,
                sha,
                size,
                segment,
            });
        }
        for (done, stored) in replies {
            self.stats.stored.fetch_add(1, Ordering::Relaxed);
            if stored.duplicate {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            let _ = done.send(Ok(stored));
        }
        forward
            .into_iter()
            .all(|j| self.writer.blocking_send(Job::Journaled(j)).is_ok())
    }

    /// `Err` (storage full) while the writer holds deliveries it could not file for lack of
    /// space, after asking it to try again (at most every [`PROBE_EVERY`]), and for
    /// [`PROBE_EVERY`] after a journal append failed for lack of space.
    fn room(&mut self) -> std::io::Result<()> {
        let full = || std::io::Error::new(std::io::ErrorKind::StorageFull, "the disk is full");
        if self
            .refusals
            .journal_full
            .is_some_and(|t| t.elapsed() < PROBE_EVERY)
        {
            return Err(full());
        }
        if !self.pending.is_full() {
            return Ok(());
        }
        if self
            .refusals
            .last_probe
            .is_none_or(|t| t.elapsed() >= PROBE_EVERY)
        {
            self.refusals.last_probe = Some(Instant::now());
            let (tx, rx) = std::sync::mpsc::channel();
            if self.writer.blocking_send(Job::Retry(Some(tx))).is_ok() {
                let _ = rx.recv_timeout(PROBE_WAIT);
            }
        }
        match self.pending.is_full() {
            false => Ok(()),
            true => Err(full()),
        }
    }

    fn accepting(&mut self) {
        if self.refusals.count > 0 {
            tracing::warn!(
                refused = self.refusals.count,
                "quarantine: accepting deliveries again"
            );
            self.refusals.count = 0;
        }
    }

    /// Waits (bounded by the writer's progress) while the writer is [`MAX_BACKLOG`] behind;
    /// `Err` if it is that far behind because it cannot file what it holds.
    fn wait_for_writer(&self) -> std::io::Result<()> {
        while self.stats.backlog.load(Ordering::Relaxed) > MAX_BACKLOG && !self.writer.is_closed() {
            if self.pending.is_failing() {
                return Err(std::io::Error::other(
                    "the quarantine cannot file what it holds, and holds too much",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Closes the current segment if it holds anything, and tells the writer: every message in
    /// it is ahead of that notice in the writer's queue.
    fn seal(&mut self) {
        if self.journal.is_empty() {
            return;
        }
        match self.journal.rotate() {
            Ok(closed) => {
                let _ = self.writer.blocking_send(Job::Rotated(closed));
            }
            Err(e) => tracing::error!(error = %e, "quarantine: cannot start a journal segment"),
        }
    }
}
