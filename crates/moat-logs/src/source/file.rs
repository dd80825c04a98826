//! Following one log path across rotations, synchronously: the thread in [`super::run`]
//! decides when to poll, this decides what to read.

use super::identity::{find_rotated, FileMark};
use super::lines::{to_text, LineSplitter, DEFAULT_MAX_LINE};
use super::{Line, Position, SourceError};
use std::cell::Cell;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest we keep reading a renamed file that is still being written to before moving on to
/// the new one. A daemon usually reopens its log within milliseconds of logrotate's signal;
/// one that never does would otherwise hold the new file back forever.
const ROTATE_WAIT: Duration = Duration::from_secs(10);

/// Where to start in a file that has no checkpoint and exists when the tail is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At its end, as fail2ban's `tail` option: old lines were already acted upon, or not
    /// worth banning for now.
    End,
    /// At its first byte.
    Beginning,
}

#[derive(Debug, Clone)]
pub struct TailConfig {
    pub start: StartAt,
    /// Bytes kept of a longer line; the rest of it is skipped.
    pub max_line: usize,
    /// Size of one read: large, so that a busy log costs few system calls.
    pub chunk_size: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            start: StartAt::End,
            max_line: DEFAULT_MAX_LINE,
            chunk_size: 32 * 1024,
        }
    }
}

/// What a poll left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// All there was has been read: wait before polling again.
    Idle,
    /// The byte budget ran out with more to read: poll again soon.
    More,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    /// The file currently at the path.
    Live,
    /// No longer at the path: renamed away while being read, or a rotated generation found by
    /// search (after a restart or a copytruncate). Read until a poll finds it quiet, its writer
    /// having moved to the new file, then left for the file at the path, from its start.
    Leaving { since: Instant },
}

impl Role {
    fn leaving() -> Role {
        Role::Leaving {
            since: Instant::now(),
        }
    }
}

#[derive(Debug)]
struct Open {
    file: File,
    /// Identity, and in `offset` the end of the last emitted line.
    mark: FileMark,
    /// Its offset is how far the file has been read.
    splitter: LineSplitter,
    last_size: u64,
    role: Role,
}

/// Follows one path: reads what is appended, finishes a file renamed away, starts over after a
/// truncation, and resumes from a checkpoint.
///
/// It keeps one file at a time, so it bridges one rotation between what it has read and the
/// file at the path, not two: a generation rotated in and out again before the tail opened it
/// (two rotations within one poll interval, or while Moat was stopped) is not read. logrotate
/// rotates daily or by size, far apart from each other at any real poll interval.
#[derive(Debug)]
pub struct FileTail {
    path: PathBuf,
    name: Arc<str>,
    cfg: TailConfig,
    open: Option<Open>,
    /// The checkpoint, until it has been matched against a file (the path may not exist yet).
    resume: Option<FileMark>,
}

thread_local! {
    /// One read buffer per polling thread rather than one per file: the tails on a thread
    /// read in turn, and lines are split out of the buffer before the next read. With 20 logs
    /// that is 32 KiB where it was 640.
    static READ_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl FileTail {
    /// Opens `path` if it exists, resuming at `resume` (from [`super::Checkpoints::file`]).
    /// A missing path is not an error: it is waited for. One that exists but cannot be read
    /// is, so that a wrong path or permission shows at startup rather than as silence.
    pub fn new(
        path: impl Into<PathBuf>,
        cfg: TailConfig,
        resume: Option<FileMark>,
    ) -> Result<Self, SourceError> {
        let path = path.into();
        let mut tail = FileTail {
            name: Arc::from(path.to_string_lossy()),
            path,
            cfg,
            open: None,
            resume,
        };
        if !tail.open_path(true).map_err(|e| tail.io_err(e))? {
            if let Some(mark) = tail.resume {
                // Rotated while we were stopped, and not recreated yet.
                let found = find_rotated(&tail.path, &mark).map_err(|e| tail.io_err(e))?;
                if let Some((file, _, _)) = found {
                    tail.open = Some(tail.opened(file, mark, Role::leaving()));
                    tail.resume = None;
                }
            }
        }
        Ok(tail)
    }

    /// The source name lines carry and checkpoints are keyed by.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position after the last emitted line: what a checkpoint should hold before any line
    /// was read, so that a restart starts where this run started.
    pub fn position(&self) -> Option<Position> {
        match &self.open {
            Some(open) => Some(Position::File(open.mark)),
            None => self.resume.map(Position::File),
        }
    }

    /// Reads up to about `max_bytes` of new data, appending complete lines to `out`.
    pub fn poll(&mut self, out: &mut Vec<Line>, max_bytes: usize) -> Result<Poll, SourceError> {
        let mut buf = READ_BUF.take();
        let size = self.cfg.chunk_size.max(4096);
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let polled = self.poll_inner(out, max_bytes, &mut buf[..size]);
        READ_BUF.set(buf);
        polled.map_err(|e| self.io_err(e))
    }

    fn poll_inner(
        &mut self,
        out: &mut Vec<Line>,
        max_bytes: usize,
        buf: &mut [u8],
    ) -> io::Result<Poll> {
        let mut budget = max_bytes.max(1);
        loop {
            if self.open.is_none() && !self.open_path(false)? {
                return Ok(Poll::Idle);
            }
            let Some(open) = self.open.as_mut() else {
                return Ok(Poll::Idle);
            };
            let meta = open.file.metadata()?;
            let size = meta.len();
            // A file no longer at the path is only read to its end: if it shrinks, that end
            // came sooner.
            if matches!(open.role, Role::Live) {
                let rewritten = size < open.splitter.offset()
                    || (size != open.last_size
                        && !open.mark.verify_and_extend(&open.file, size)?);
                if rewritten {
                    self.restart_rewritten(&meta)?;
                    continue;
                }
            }
            open.last_size = size;
            let mut grew = false;
            while open.splitter.offset() < size {
                if budget == 0 {
                    return Ok(Poll::More);
                }
                let at = open.splitter.offset();
                let want = (size - at).min(budget as u64).min(buf.len() as u64) as usize;
                let n = match open.file.read_at(&mut buf[..want], at) {
                    Ok(0) => break, // shrunk under us: the next poll sees the truncation
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                budget -= n;
                grew = true;
                let Open { splitter, mark, .. } = open;
                splitter.push(&buf[..n], |bytes, end| {
                    mark.offset = end;
                    out.push(line(&self.name, bytes, mark));
                });
            }
            match open.role {
                Role::Live => {
                    if path_moved(&self.path, &meta)? {
                        open.role = Role::leaving();
                    }
                    return Ok(Poll::Idle);
                }
                Role::Leaving { since } => {
                    // Quiet for one whole poll interval: the writer has moved to the new file.
                    if grew && since.elapsed() < ROTATE_WAIT {
                        return Ok(Poll::Idle);
                    }
                    self.finish(out);
                }
            }
        }
    }

    /// Emits the last line even without its newline (nothing more will be appended) and lets
    /// the next poll open whatever is at the path, from its start.
    fn finish(&mut self, out: &mut Vec<Line>) {
        if let Some(mut open) = self.open.take() {
            let Open { splitter, mark, .. } = &mut open;
            splitter.finish(|bytes, end| {
                mark.offset = end;
                out.push(line(&self.name, bytes, mark));
            });
        }
    }

    /// The file at the path is shorter than what was read, or its head changed: it was
    /// truncated (copytruncate, `> log`). A copy made just before holds the lines not read yet.
    fn restart_rewritten(&mut self, meta: &Metadata) -> io::Result<()> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let mark = open.mark;
        if let Some((file, _, found)) = find_rotated(&self.path, &mark)? {
            // A hard link to the truncated file itself would match by name, not by content.
            if file.metadata()?.ino() != meta.ino() {
                tracing::info!(path = %self.path.display(), copy = %found.display(),
                    "log truncated; finishing its copy first");
                self.open = Some(self.opened(file, mark, Role::leaving()));
                return Ok(());
            }
        }
        tracing::info!(path = %self.path.display(), "log truncated; reading it from the start");
        open.mark = FileMark::at_start(&open.file, meta)?;
        open.splitter.reset(0);
        open.last_size = meta.len();
        Ok(())
    }

    /// Opens the file at the path; false if there is none yet.
    fn open_path(&mut self, at_creation: bool) -> io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let size = meta.len();
        let had_checkpoint = self.resume.is_some();
        if let Some(resume) = self.resume.take() {
            if resume.same_inode(&meta) && resume.content_matches(&file, size)? {
                self.open = Some(self.opened(file, resume, Role::Live));
                return Ok(true);
            }
            if let Some((old, _, found)) = find_rotated(&self.path, &resume)? {
                tracing::info!(path = %self.path.display(), rotated = %found.display(),
                    "log rotated while stopped; finishing the old file first");
                self.open = Some(self.opened(old, resume, Role::leaving()));
                return Ok(true);
            }
            // Neither the checkpointed file nor a copy of it is left: all of this one is new.
        }
        let mut mark = FileMark::at_start(&file, &meta)?;
        // StartAt only applies to a file never seen: one that replaced a checkpointed file
        // was written since, so all of it is new.
        let from_end = at_creation && !had_checkpoint && self.cfg.start == StartAt::End;
        if from_end {
            mark.offset = size;
        }
        let mut open = self.opened(file, mark, Role::Live);
        open.last_size = size;
        if from_end && size > 0 && last_byte(&open.file, size)? != Some(b'\n') {
            open.splitter.discard_first_line();
        }
        self.open = Some(open);
        Ok(true)
    }

    /// An open file read from `mark.offset` on. `last_size` starts unknown so that the first
    /// poll checks the fingerprint.
    fn opened(&self, file: File, mark: FileMark, role: Role) -> Open {
        Open {
            file,
            mark,
            splitter: LineSplitter::new(self.cfg.max_line, mark.offset),
            last_size: u64::MAX,
            role,
        }
    }

    fn io_err(&self, source: io::Error) -> SourceError {
        SourceError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn line(name: &Arc<str>, bytes: &[u8], mark: &FileMark) -> Line {
    Line {
        source: Arc::clone(name),
        text: to_text(bytes),
        time: None,
        position: Position::File(*mark),
    }
}

/// Whether the path no longer leads to the open file: renamed and replaced, or deleted.
/// A path that is merely missing while the file lives on under another name (renamed, the new
/// one not created yet) keeps the file: its writer may still be appending.
fn path_moved(path: &Path, open: &Metadata) -> io::Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.dev() != open.dev() || m.ino() != open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(open.nlink() == 0),
        Err(e) => Err(e),
    }
}

fn last_byte(file: &File, size: u64) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    match file.read_at(&mut b, size - 1)? {
        0 => Ok(None),
        _ => Ok(Some(b[0])),
    }
}
