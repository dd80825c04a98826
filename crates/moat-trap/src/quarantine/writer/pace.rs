//! How the index writer groups its commits: one per job while traffic is light; while busy,
//! one when the flood pauses.
//!
//! Nobody waits on the writer's commits (the replies went with the journal's sync), so under a
//! flood it holds what arrives and files it all when the flood ebbs (or a bound is reached).
//! A commit writes each index page it touches once, however many rows it adds there, and while
//! the flood lasts the two cores go to the sessions, intake and the journal's syncs rather than
//! to file creation, index pages and writeback competing with those syncs. Measured with
//! `bash bench/trap.sh`: committing at most every 50 ms while busy gave a median ratio to
//! smtp-sink of 0.43-0.56 over six runs; holding until the flood pauses, 0.62.

use super::{Job, MAX_BATCH};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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

/// How long the writer holds deliveries while busy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    /// Commit once no job came for this long: the flood paused.
    pub quiet: Duration,
    /// ...or once this many bytes of deliveries are held (intake stops answering at four
    /// times that, `intake::MAX_BACKLOG`),
    pub max_bytes: u64,
    /// ...or after this long, so that a flood that never pauses is still filed, indexed and
    /// reported as it goes.
    pub max_time: Duration,
}

impl Hold {
    pub(super) const DEFAULT: Hold = Hold {
        quiet: Duration::from_millis(200),
        max_bytes: 16 << 20,
        max_time: Duration::from_secs(10),
    };
}

/// The jobs for one commit: `first` and what is waiting, and, while the writer is busy, what
/// else arrives until the flood pauses (see [`Hold`]). A flush or a retry someone waits on, or
/// intake stopping, ends the wait.
pub(super) fn gather(rx: &mut mpsc::Receiver<Job>, first: Job, busy: bool, hold: Hold) -> Vec<Job> {
    let started = Instant::now();
    let mut last_job = started;
    let mut held = job_bytes(&first);
    let mut batch = vec![first];
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    held += job_bytes(&j);
                    last_job = Instant::now();
                    batch.push(j);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return batch,
            }
        }
        let urgent = batch
            .iter()
            .any(|j| matches!(j, Job::Flush(_) | Job::Retry(Some(_))));
        if !busy
            || urgent
            || batch.len() >= MAX_BATCH
            || held >= hold.max_bytes
            || last_job.elapsed() >= hold.quiet
            || started.elapsed() >= hold.max_time
        {
            return batch;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn job_bytes(j: &Job) -> u64 {
    match j {
        Job::Journaled(d) => d.bytes.len() as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Hold = Hold {
        quiet: Duration::from_secs(2),
        max_bytes: 1 << 30,
        max_time: Duration::from_secs(60),
    };

    #[test]
    fn light_traffic_is_committed_as_it_comes() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.try_send(Job::Rotated(2)).unwrap();
        let t = Instant::now();
        let batch = gather(&mut rx, Job::Rotated(1), false, LONG);
        assert_eq!(batch.len(), 2);
        assert!(t.elapsed() < LONG.quiet);
    }

    #[test]
    fn a_flood_is_held_until_it_pauses() {
        let (tx, mut rx) = mpsc::channel(1024);
        let sender = std::thread::spawn(move || {
            for i in 0..30 {
                tx.blocking_send(Job::Rotated(i)).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            tx
        });
        let batch = gather(&mut rx, Job::Rotated(100), true, LONG);
        let _tx = sender.join().unwrap();
        // Every job the flood sent, in one commit: none came 2 s apart.
        assert_eq!(batch.len(), 31);
    }

    #[test]
    fn a_flush_or_the_byte_bound_ends_the_hold() {
        let (tx, mut rx) = mpsc::channel(16);
        let (f, _wait) = tokio::sync::oneshot::channel();
        tx.try_send(Job::Flush(f)).unwrap();
        let t = Instant::now();
        assert_eq!(gather(&mut rx, Job::Rotated(1), true, LONG).len(), 2);
        assert!(t.elapsed() < LONG.quiet);
        let tiny = Hold {
            max_bytes: 0,
            ..LONG
        };
        let t = Instant::now();
        assert_eq!(gather(&mut rx, Job::Rotated(2), true, tiny).len(), 1);
        assert!(t.elapsed() < LONG.quiet);
        drop(tx);
    }
}
