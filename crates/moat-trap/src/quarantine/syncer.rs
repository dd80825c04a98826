//! The sync thread: makes the files the index writer wrote durable, in one sweep per
//! interval, and tells the writer which journal segments that frees.

use super::{files, writer};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long the sync thread lets written files gather before one sweep makes them durable.
/// The longer, the more writes the kernel merges; the journal holds their bytes meanwhile.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Files after which the sync thread sweeps without waiting out [`SYNC_INTERVAL`].
const SYNC_MAX_FILES: usize = 8192;

/// What the sync thread is told after each commit: the files it wrote, and the highest journal
/// segment whose deliveries are all committed by now.
pub struct Written {
    pub through: u64,
    pub files: Vec<String>,
}

/// Starts the sync thread: it gathers the files each commit wrote for up to
/// [`SYNC_INTERVAL`], makes them durable in one sweep ([`files::sync_all`]), and reports the
/// journal segment they reach to the writer, which then removes the segments. A failed sweep
/// keeps them pending (and in the journal) for the next one.
pub fn spawn(
    root: PathBuf,
    writer: mpsc::WeakSender<writer::Job>,
) -> Option<std::sync::mpsc::Sender<Written>> {
    let (tx, rx) = std::sync::mpsc::channel::<Written>();
    let spawned = std::thread::Builder::new()
        .name("moat-sync".into())
        .spawn(move || {
            let mut files: Vec<String> = Vec::new();
            let mut reach = 0u64;
            while let Ok(first) = rx.recv() {
                let mut next = Some(first);
                let deadline = Instant::now() + SYNC_INTERVAL;
                while let Some(w) = next.take() {
                    reach = reach.max(w.through);
                    files.extend(w.files);
                    if files.len() < SYNC_MAX_FILES {
                        let left = deadline.saturating_duration_since(Instant::now());
                        next = rx.recv_timeout(left).ok();
                    }
                }
                if let Err(e) = files::sync_all(&root, &files) {
                    tracing::error!(error = %e, "quarantine: file sync failed; retrying later");
                    continue;
                }
                files.clear();
                let Some(w) = writer.upgrade() else { return };
                if w.blocking_send(writer::Job::Synced(reach)).is_err() {
                    return;
                }
            }
        });
    spawned.ok().map(|_| tx)
}
