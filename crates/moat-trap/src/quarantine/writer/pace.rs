//! How the index writer groups its commits: one per job while traffic is light, at most one
//! per [`LINGER`] while busy.

use super::{Job, MAX_BATCH};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The shortest time between two commits while the writer is busy. Nobody waits on the
/// writer's commits (the replies went with the journal's sync), so under a flood it gathers
/// what arrives into large ones: a commit writes each index page it touches once, however many
/// rows it adds there, where small commits rewrote the same few pages for every couple of
/// messages (measured with bench/trap.sh: half the writer's CPU and disk writes per message).
const LINGER: Duration = Duration::from_millis(50);

/// Jobs per second from which the writer counts as busy. Below it, each job is committed as
/// it comes, so that a lone delivery or login is in the index at once.
const BUSY_JOBS_PER_SEC: usize = 200;

/// The writer's recent pace: jobs committed in the current second, and whether the last whole
/// second was busy.
pub(super) struct Pace {
    since: Instant,
    jobs: usize,
    pub(super) busy: bool,
}

impl Pace {
    pub(super) fn new() -> Self {
        Pace {
            since: Instant::now(),
            jobs: 0,
            busy: false,
        }
    }

    pub(super) fn committed(&mut self, jobs: usize) {
        self.jobs += jobs;
        if self.since.elapsed() >= Duration::from_secs(1) {
            self.busy = self.jobs >= BUSY_JOBS_PER_SEC;
            self.jobs = 0;
            self.since = Instant::now();
        }
    }
}

/// The jobs for one commit: `first` and what is waiting, and, while the writer is busy, what
/// else arrives until [`LINGER`] after the last commit, up to [`MAX_BATCH`]. A flush (someone
/// waits on it) or intake stopping ends the wait.
pub(super) fn gather(
    rx: &mut mpsc::Receiver<Job>,
    first: Job,
    last_commit: Instant,
    busy: bool,
) -> Vec<Job> {
    let deadline = last_commit + LINGER;
    let mut batch = vec![first];
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return batch,
            }
        }
        let urgent = batch.iter().any(|j| matches!(j, Job::Flush(_)));
        if !busy || urgent || batch.len() >= MAX_BATCH || Instant::now() >= deadline {
            return batch;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
