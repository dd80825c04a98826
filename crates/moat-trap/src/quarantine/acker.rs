//! Releases replies once the commit that holds them is durable, overlapping that sync with
//! the next group's work.
//!
//! The writer commits with `synchronous=NORMAL`: SQLite appends the group's frames to the
//! write-ahead log without syncing, and the writer moves on to the next group at once. This
//! thread then syncs the log file (`fdatasync`, one call for every group that arrived
//! meanwhile) and only then answers the group's senders. A commit is durable once its log
//! frames are on disk: after a crash, SQLite replays every whole committed transaction from
//! the log. So no `250` precedes the sync of its message, yet the writer never waits for the
//! disk.

use super::{Stats, Stored};
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;

pub type Reply = oneshot::Sender<std::io::Result<Stored>>;

/// One committed group: each delivery's reply slot and what it will be told.
pub type Group = Vec<(Reply, Stored)>;

/// Starts the thread that syncs `wal` (the index's `-wal` file, open for as long as the
/// writer's connection keeps it) and then answers.
pub fn spawn(wal: File, stats: Arc<Stats>) -> std::io::Result<std::sync::mpsc::Sender<Group>> {
    let (tx, rx) = std::sync::mpsc::channel::<Group>();
    std::thread::Builder::new()
        .name("moat-ack".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut groups = vec![first];
                while let Ok(g) = rx.try_recv() {
                    groups.push(g);
                }
                let synced = wal.sync_data();
                if let Err(e) = &synced {
                    tracing::error!(error = %e, "quarantine: index sync failed; answering 451");
                }
                for (done, stored) in groups.into_iter().flatten() {
                    match &synced {
                        Ok(()) => {
                            stats.stored.fetch_add(1, Ordering::Relaxed);
                            if stored.duplicate {
                                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = done.send(Ok(stored));
                        }
                        Err(e) => {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            let _ = done.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        }
                    }
                }
            }
        })?;
    Ok(tx)
}
