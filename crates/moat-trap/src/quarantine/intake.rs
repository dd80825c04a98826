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

use super::writer::{Job, Journaled};
use super::{files, index, journal::Journal, sha256_hex, Stats, Stored};
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where a delivery's answer goes: `Ok` once it is durable.
pub type Reply = tokio::sync::oneshot::Sender<std::io::Result<Stored>>;

/// Bytes journaled but not yet indexed past which intake waits for the writer.
pub const MAX_BACKLOG: u64 = 64 << 20;

/// Most deliveries taken into one append.
const MAX_BATCH: usize = 512;

/// Content journaled but not yet indexed, by hash (with how many deliveries carry it), so that
/// a reply can say whether the content was already in the quarantine before the writer has
/// indexed the first copy.
#[derive(Default)]
pub struct Pending {
    shas: Mutex<HashMap<String, u32>>,
}

impl Pending {
    fn add(&self, sha: &str) -> bool {
        let mut m = self.shas.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(sha.to_string()).or_insert(0);
        *n += 1;
        *n > 1
    }

    /// One delivery of `sha` was indexed (or failed to be).
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
        self.wait_for_writer();
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
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "quarantine: journal append failed; answering 451");
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

    /// Waits (bounded by the writer's progress) while the writer is [`MAX_BACKLOG`] behind.
    fn wait_for_writer(&self) {
        while self.stats.backlog.load(Ordering::Relaxed) > MAX_BACKLOG && !self.writer.is_closed() {
            std::thread::sleep(Duration::from_millis(1));
        }
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
