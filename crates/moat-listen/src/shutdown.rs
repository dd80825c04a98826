//! One shutdown for the whole process: a signal every long-lived task watches and a tracker of
//! those tasks, so SIGTERM stops the accept loops first, then waits (bounded) for the
//! connections they started to finish. mini-redis's pattern; tokio-util's `CancellationToken`
//! and `TaskTracker` are the well-kept pieces of it.
//!
//! Nothing is aborted: a trap session writing a message to the quarantine, a policy answer on
//! its way to Postfix, an HTTP response half sent all get their chance to end. What has not
//! ended when the grace runs out is left to the runtime's drop, and [`Shutdown::drain`] says
//! so.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{task_tracker::TaskTrackerToken, TaskTracker};

/// Cheap to clone: every component holds one.
#[derive(Clone)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    /// The same signal as a `watch`, for code that selects on `changed()` (hyper's graceful
    /// shutdown and the HTTP fast path already did): it turns true when the token is
    /// cancelled.
    flag: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (flag, _) = watch::channel(false);
        Shutdown {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            flag,
        }
    }

    /// Spawns a task the shutdown waits for.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// For work outside the tracker's tasks (a thread with its own runtime): the shutdown waits
    /// until the token is dropped.
    pub fn hold(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Resolves once shutdown has begun.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// A receiver that turns true at shutdown.
    pub fn watch(&self) -> watch::Receiver<bool> {
        let rx = self.flag.subscribe();
        if self.token.is_cancelled() {
            let _ = self.flag.send(true);
        }
        rx
    }

    /// Begins shutdown without waiting.
    pub fn begin(&self) {
        self.token.cancel();
        let _ = self.flag.send(true);
        self.tracker.close();
    }

    /// Begins shutdown and waits up to `grace` for every tracked task to end. True when all
    /// did; false names the stragglers' count in the log.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.begin();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(
            still_running = self.tracker.len(),
            grace_secs = grace.as_secs(),
            "shutdown: some connections did not finish in time"
        );
        false
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tasks_that_watch_the_signal() {
        let s = Shutdown::new();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, d2) = (s.clone(), done.clone());
        s.spawn(async move {
            s2.cancelled().await;
            // Work after the signal (a reply being written) still finishes.
            tokio::time::sleep(Duration::from_millis(20)).await;
            d2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut w = s.watch();
        assert!(s.drain(Duration::from_secs(5)).await);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        assert!(*w.borrow_and_update());
    }

    #[tokio::test]
    async fn drain_gives_up_after_the_grace() {
        let s = Shutdown::new();
        s.spawn(std::future::pending::<()>());
        assert!(!s.drain(Duration::from_millis(50)).await);
        assert_eq!(s.running(), 1);
    }

    #[tokio::test]
    async fn a_held_token_delays_the_drain() {
        let s = Shutdown::new();
        let held = s.hold();
        assert!(!s.drain(Duration::from_millis(30)).await);
        drop(held);
        assert!(s.drain(Duration::from_millis(30)).await);
    }
}
