//! Running sources: the file-polling thread, and stdin (or any byte stream) as a task.

use super::file::{FileTail, Poll};
use super::lines::{to_text, LineSplitter};
use super::{Line, Position};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// How often an idle file is looked at; see the module docs on polling.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Bytes read from one file before the others get their turn, so that one flooded log does
/// not starve the rest, and the lines held in memory at once stay bounded.
const BYTES_PER_TURN: usize = 256 * 1024;

/// The thread that polls a set of file tails and sends their lines down a channel.
///
/// A plain thread rather than tokio tasks: file reads block (there is no readiness for regular
/// files), and one thread for all files wakes once per interval whatever their number. A full
/// channel blocks the thread, so a slow consumer slows reading instead of growing memory.
#[derive(Debug)]
pub struct FileWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<FileTail>>>,
}

impl FileWatch {
    /// Starts polling `tails` every `interval`; lines go to `tx`. The thread ends when
    /// [`FileWatch::stop`] is called, the watch is dropped, or the receiver is dropped.
    pub fn spawn(
        tails: Vec<FileTail>,
        tx: mpsc::Sender<Line>,
        interval: Duration,
    ) -> std::io::Result<FileWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("moat-logs-files".into())
            .spawn(move || watch(tails, &tx, interval, &flag))?;
        Ok(FileWatch {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and gives the tails back, for their positions.
    pub fn stop(mut self) -> Vec<FileTail> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(tails)) => tails,
            _ => Vec::new(),
        }
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn watch(
    mut tails: Vec<FileTail>,
    tx: &mpsc::Sender<Line>,
    interval: Duration,
    stop: &AtomicBool,
) -> Vec<FileTail> {
    let mut out = Vec::new();
    // The last error of each tail, so that a file that stays unreadable is reported once and
    // not four times a second.
    let mut errors: Vec<Option<String>> = vec![None; tails.len()];
    while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
        let mut more = false;
        for (tail, last_error) in tails.iter_mut().zip(errors.iter_mut()) {
            match tail.poll(&mut out, BYTES_PER_TURN) {
                Ok(poll) => {
                    more |= poll == Poll::More;
                    if last_error.take().is_some() {
                        tracing::info!(path = %tail.path().display(), "log readable again");
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(error = %text, "cannot read log; retrying");
                        *last_error = Some(text);
                    }
                }
            }
            for line in out.drain(..) {
                if tx.blocking_send(line).is_err() {
                    return tails;
                }
            }
        }
        if !more {
            std::thread::sleep(interval);
        }
    }
    tails
}

/// Reads lines from stdin until it ends; the last line is emitted even without a newline.
pub fn spawn_stdin(
    tx: mpsc::Sender<Line>,
    max_line: usize,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    spawn_reader(tokio::io::stdin(), Arc::from("stdin"), max_line, tx)
}

/// Reads lines from any byte stream until it ends (stdin, a pipe from another program).
/// Nothing is resumable: lines carry [`Position::None`].
pub fn spawn_reader<R>(
    mut reader: R,
    name: Arc<str>,
    max_line: usize,
    tx: mpsc::Sender<Line>,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut splitter = LineSplitter::new(max_line, 0);
        let mut buf = vec![0u8; 64 * 1024];
        let mut lines = Vec::new();
        loop {
            let n = tokio::select! {
                n = reader.read(&mut buf) => n?,
                () = tx.closed() => return Ok(()),
            };
            let chunk = &buf[..n];
            let collect = |bytes: &[u8], _end: u64| {
                lines.push(Line {
                    source: Arc::clone(&name),
                    text: to_text(bytes),
                    time: None,
                    position: Position::None,
                })
            };
            if n == 0 {
                splitter.finish(collect);
            } else {
                splitter.push(chunk, collect);
            }
            for line in lines.drain(..) {
                if tx.send(line).await.is_err() {
                    return Ok(());
                }
            }
            if n == 0 {
                return Ok(());
            }
        }
    })
}
