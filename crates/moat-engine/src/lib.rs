//! Moat's decision engine, between the sensors and the enforcers.
//!
//! Sensors ask the [`Engine`] one thing inline: what the guard snapshot says about a client
//! (allowlisted, banned, clear), answered from memory in well under a microsecond. What the
//! sensors and their detectors (`moat-detect`) conclude reaches the engine as typed events
//! ([`Engine::emit`]); [`detect`] says what each counts for, and the [`decider`] thread owns
//! escalation, the store writes, the next snapshot and the broadcast of every change.

pub mod bulk;
pub mod changes;
pub mod decider;
pub mod decision_log;
pub mod detect;
pub mod guard;

pub use guard::{GuardSnapshot, GuardVerdict};

use arc_swap::ArcSwap;
use decider::{Command, Decider};
use ipnet::IpNet;
use moat_config::Bans;
use moat_core::{Clock, Event, EventKind, Finding, Origin, PrefixLens, Scope, Sensor, Subject};
use moat_store::Store;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Duration;

pub struct Engine {
    guard: Arc<ArcSwap<GuardSnapshot>>,
    tx: SyncSender<Command>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    /// Offences dropped because the decider was behind: a metric, never a stall.
    pub dropped: AtomicU64,
    /// Which decisions (the sensors' and the decider's bans) get a line of their own.
    decision_log: Arc<decision_log::DecisionLog>,
    changes: tokio::sync::broadcast::Sender<changes::Change>,
    /// Every event, for followers (a dashboard, a feed); sent only once one subscribed, so the
    /// request path pays nothing for a bus nobody reads.
    events: tokio::sync::broadcast::Sender<Arc<Event>>,
    events_followed: std::sync::atomic::AtomicBool,
    lens: PrefixLens,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Rate limits counted with the other instances of a cluster (`[cluster]`), when set.
    shared_limits: std::sync::OnceLock<Arc<dyn moat_core::shared::SharedLimits>>,
    /// The ids of decoys this instance just learned, for a cluster to share.
    learned: tokio::sync::broadcast::Sender<String>,
    /// Bulk work (the feeds' reconciliation, a cluster's catch-up), beside the channel ([`bulk`]).
    bulk_work: Arc<std::sync::Mutex<bulk::BulkWork>>,
}

/// Events a slow follower may fall behind by before it misses some (and is told so).
pub const EVENT_BACKLOG: usize = 4096;

impl Engine {
    /// Starts the decider thread.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        bans: Bans,
        lens: PrefixLens,
    ) -> Arc<Engine> {
        let guard = Arc::new(ArcSwap::from_pointee(GuardSnapshot::default()));
        let (tx, rx) = sync_channel(65_536);
        let decision_log = Arc::new(decision_log::DecisionLog::default());
        let (changes, _) = tokio::sync::broadcast::channel(changes::CAPACITY);
        let bulk_work = Arc::new(std::sync::Mutex::default());
        let decider = Decider::new(store.clone(), guard.clone(), clock.clone(), bans, lens)
            .with_log(decision_log.clone())
            .with_bulk_work(bulk_work.clone())
            .with_changes(changes.clone());
        let thread = std::thread::Builder::new()
            .name("moat-decider".into())
            .spawn(move || decider.run(rx))
            .expect("spawning the decider thread");
        let e = Arc::new(Engine {
            guard,
            tx,
            clock,
            store,
            dropped: AtomicU64::new(0),
            decision_log,
            changes,
            events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
            events_followed: std::sync::atomic::AtomicBool::new(false),
            lens,
            thread: std::sync::Mutex::new(Some(thread)),
            shared_limits: std::sync::OnceLock::new(),
            learned: tokio::sync::broadcast::channel(64).0,
            bulk_work,
        });
        e.flush();
        e
    }

    /// The store the config names (SQLite in the state directory, or memory) and the engine on
    /// it: what the composition root starts before any sensor.
    pub fn open(
        cfg: &moat_config::Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Engine>, moat_store::StoreError> {
        let dir = &cfg.server.state_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| moat_store::StoreError::Dir(dir.display().to_string(), e))?;
        let store: Arc<dyn Store> = match cfg.server.store {
            moat_config::StoreKind::Sqlite => Arc::new(moat_store::SqliteStore::open_dir(dir)?),
            moat_config::StoreKind::Memory => Arc::new(moat_store::MemoryStore::new()),
        };
        Ok(Engine::start(
            store,
            clock,
            cfg.bans.clone(),
            cfg.server.prefix_lens,
        ))
    }

    /// Every change to the decisions in force from now on; start from
    /// [`Engine::decisions`] (subscribe first, then read them, so nothing falls between).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<changes::Change> {
        self.changes.subscribe()
    }

    /// The bans in force and the allowlist (the configured one and `moat allow`'s), as a
    /// follower's starting point, oldest first. Read from the guard's snapshot, not the store:
    /// the feed publishes it every few seconds and bouncers poll it, and at a million bans a
    /// read of the store took a second and a half (and its purge of what expired made the
    /// decider read everything again). The decider stores a snapshot before it broadcasts its
    /// changes, so a follower that subscribed first misses nothing.
    pub fn decisions(&self) -> (Vec<moat_core::Decision>, Vec<IpNet>) {
        let now = self.clock.now_ms();
        let snapshot = self.guard.load();
        let mut bans: Vec<moat_core::Decision> = snapshot
            .bans()
            .filter(|d| d.active_at(now))
            .map(|d| (**d).clone())
            .collect();
        bans.sort_unstable_by(|a, b| (a.created_ms, &a.scope).cmp(&(b.created_ms, &b.scope)));
        (bans, snapshot.allowlist().to_vec())
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn check(&self, ip: IpAddr) -> GuardVerdict {
        self.guard.load().check(ip, self.clock.now_ms())
    }

    pub fn snapshot(&self) -> Arc<GuardSnapshot> {
        self.guard.load_full()
    }

    /// The bounded decision log every sensor writes its decisions through.
    pub fn decision_log(&self) -> &decision_log::DecisionLog {
        &self.decision_log
    }

    /// Now, as the rate limiters count time (the engine's clock, so tests that move it move
    /// the limits too).
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ms().saturating_mul(1_000_000)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn send(&self, c: Command) {
        if self.tx.try_send(c).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What a sensor saw: turned into a finding by [`detect`] and handed to the decider, and
    /// passed to the event followers. Never blocks (see [`Engine::ban`]).
    pub fn emit(&self, sensor: Sensor, subject: Subject, kind: EventKind) {
        let e = Event {
            at_ms: self.clock.now_ms(),
            sensor,
            subject,
            kind,
        };
        if let Some(f) = detect::finding(&e, self.lens) {
            self.find(f);
        }
        if self.events_followed.load(Ordering::Relaxed) {
            let _ = self.events.send(Arc::new(e));
        }
    }

    /// Every event from now on.
    pub fn follow_events(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        let rx = self.events.subscribe();
        self.events_followed.store(true, Ordering::Relaxed);
        rx
    }

    /// A detector's conclusion, to the decider.
    pub fn find(&self, f: Finding) {
        match f {
            Finding::Offence { ip, detector } => self.send(Command::Offence { ip, rule: detector }),
            Finding::Ban {
                scope,
                ttl,
                reason,
                origin,
            } => self.send(Command::Ban {
                scope,
                ttl,
                reason,
                origin,
            }),
        }
    }

    pub fn offence(&self, ip: IpAddr, rule: &str) {
        self.find(Finding::Offence {
            ip,
            detector: rule.to_string(),
        });
    }

    /// Never blocks: sensors call it from async request handlers, and a decider that is
    /// 65 536 commands behind is better served by a dropped (and counted) ban than by stalled
    /// workers.
    pub fn ban(&self, scope: Scope, ttl: Option<Duration>, reason: &str, origin: Origin) {
        self.find(Finding::Ban {
            scope,
            ttl,
            reason: reason.to_string(),
            origin,
        });
    }

    /// Counts the HTTP shield's rate limits in a store shared with other instances from now on
    /// (set once, by the composition root).
    pub fn set_shared_limits(&self, s: Arc<dyn moat_core::shared::SharedLimits>) {
        let _ = self.shared_limits.set(s);
    }

    pub fn shared_limits(&self) -> Option<&Arc<dyn moat_core::shared::SharedLimits>> {
        self.shared_limits.get()
    }

    /// A decoy learned its app's genuine answer here (written to the store): told to whoever
    /// follows [`Engine::follow_learned`] (a cluster shares it). Once per decoy.
    pub fn learned(&self, decoy: &str) {
        let _ = self.learned.send(decoy.to_string());
    }

    pub fn follow_learned(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.learned.subscribe()
    }

    /// A decision another instance of the cluster made, taken as it is: no escalation, no ban
    /// history, no prefix aggregation (the instance that made it did those). Ignored when a
    /// ban on the scope already lasts as long, or the scope is allowlisted.
    pub fn adopt(&self, d: moat_core::Decision) {
        self.send(Command::Adopt(d));
    }

    /// Lifts the ban on exactly `scope`, whatever made it (another instance's unban).
    pub fn lift(&self, scope: Scope) {
        self.send(Command::Lift { scope });
    }

    /// Lifts a ban a feed made on exactly `scope`; a ban of any other origin stays.
    pub fn lift_feed(&self, scope: Scope) {
        self.send(Command::LiftFeed { scope });
    }

    /// What the feeds' policy wants in force now, in place of what is left of its last wish:
    /// the decider makes and lifts these a chunk at a time after the sensors' commands, so a
    /// large feed neither overflows the channel nor crowds the sensors' offences out of it
    /// ([`bulk`]). [`Engine::flush`] waits for it too.
    pub fn reconcile_feeds(&self, bans: Vec<bulk::FeedBan>, lifts: Vec<Scope>) {
        let waiting = !bans.is_empty() || !lifts.is_empty();
        self.bulk(|w| w.replace_feeds(bans, lifts), waiting);
    }

    /// Other instances' bans by the thousand (a cluster's catch-up), taken as [`Engine::adopt`]
    /// takes one, after the sensors' commands ([`bulk`]).
    pub fn adopt_all(&self, decisions: Vec<moat_core::Decision>) {
        let waiting = !decisions.is_empty();
        self.bulk(|w| w.adopt(decisions), waiting);
    }

    fn bulk(&self, f: impl FnOnce(&mut bulk::BulkWork), wake: bool) {
        f(&mut self.bulk_work.lock().unwrap_or_else(|e| e.into_inner()));
        if wake {
            // A full channel means a busy decider, which takes the work after its burst.
            let _ = self.tx.try_send(Command::BulkWork);
        }
    }

    /// How many queued bans and lifts ([`bulk`]) are still to be made.
    pub fn bulk_work_left(&self) -> usize {
        self.bulk_work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn allow(&self, net: IpNet) {
        let _ = self.tx.send(Command::Allow { net });
    }

    /// Waits until every command sent so far is applied and published.
    pub fn flush(&self) {
        let (tx, rx) = sync_channel(1);
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}
