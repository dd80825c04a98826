//! The decider: the one owner of bans. It turns offences into bans (with escalation and prefix
//! aggregation), writes them to the store, and publishes a new guard snapshot. It runs on its
//! own thread, fed by a bounded channel the request path only ever `try_send`s to, so a flood
//! of offences can slow decisions down but never the proxy.

use crate::guard::GuardSnapshot;
use arc_swap::ArcSwap;
use ipnet::IpNet;
use moat_config::Bans;
use moat_core::{prefix_of, Clock, Decision, Origin, PrefixLens, Scope, Verdict};
use moat_store::Store;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub enum Command {
    /// Something that counts towards a ban of this address.
    Offence {
        ip: IpAddr,
        rule: String,
    },
    Ban {
        scope: Scope,
        ttl: Option<Duration>,
        reason: String,
        origin: Origin,
    },
    Allow {
        net: IpNet,
    },
    /// Another instance's decision, taken as it is.
    Adopt(Decision),
    /// Lifts the ban on exactly `scope`, whatever its origin.
    Lift {
        scope: Scope,
    },
    /// Lifts the ban on exactly `scope` if a feed made it (a ban of any other origin stays).
    LiftFeed {
        scope: Scope,
    },
    /// Bulk work is waiting ([`crate::bulk`]): wakes the decider, applies nothing.
    BulkWork,
    /// Answers once every command sent before it, and the bulk work queued, is applied.
    Flush(SyncSender<()>),
    Shutdown,
}

/// The most commands applied in one store transaction and published at once.
const BURST: usize = 1024;

pub struct Decider {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) guard: Arc<ArcSwap<GuardSnapshot>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) bans: Bans,
    pub(crate) lens: PrefixLens,
    /// Recent offence times per address, bounded.
    offences: HashMap<Scope, VecDeque<u64>>,
    /// Recent distinct banned addresses per prefix, for prefix escalation.
    prefix_bans: HashMap<IpNet, VecDeque<(IpAddr, u64)>>,
    /// Scopes banned since the last published snapshot: offences still queued for them must
    /// not ban (and escalate) them again before the guard shows the ban.
    banned_unpublished: std::collections::HashSet<Scope>,
    store_version: u64,
    last_tick: std::time::Instant,
    /// Bulk work (the feeds' reconciliation, a cluster's catch-up), taken a chunk at a time
    /// ([`crate::bulk`]).
    bulk_work: Arc<Mutex<crate::bulk::BulkWork>>,
    log: Arc<crate::decision_log::DecisionLog>,
    /// What followers were last told, and where changes go.
    published: crate::changes::Published,
    changes: Option<tokio::sync::broadcast::Sender<crate::changes::Change>>,
    /// Bans written since the last publication, published as they are when nothing else
    /// changed the store.
    pending: Vec<Decision>,
    /// Scopes lifted since the last publication, dropped from the next snapshot as they are.
    lifted: Vec<Scope>,
    /// Set when the next publication must read the store (an allow, a failed write).
    full_publish_due: bool,
    last_full: std::time::Instant,
    /// When (on the engine's clock) expired bans were last dropped from the store and guard.
    last_prune_ms: u64,
}

/// How often the guard is rebuilt from a full read of the store when nothing asked for it: a
/// safety net only (every change that matters is published as it happens), since the read
/// costs about a second at a million bans.
const FULL_EVERY: Duration = Duration::from_secs(600);
/// How often bans that are over leave the store and the guard (a check already ignores them).
const PRUNE_EVERY_MS: u64 = 60_000;

const MAX_TRACKED: usize = 200_000;

/// Who an offence is held against: an IPv4 address, or an IPv6 client's whole /64 (or the
/// configured length). One IPv6 host usually owns a /64, so counting single addresses would
/// give it 2^64 fresh identities and never a ban.
pub fn offender(ip: IpAddr, lens: PrefixLens) -> Scope {
    match ip.to_canonical() {
        IpAddr::V4(v4) => Scope::Ip(IpAddr::V4(v4)),
        v6 => Scope::Prefix(prefix_of(v6, lens)),
    }
}

impl Decider {
    pub fn new(
        store: Arc<dyn Store>,
        guard: Arc<ArcSwap<GuardSnapshot>>,
        clock: Arc<dyn Clock>,
        bans: Bans,
        lens: PrefixLens,
    ) -> Self {
        let store_version = store.changed().unwrap_or(0);
        let last_prune_ms = clock.now_ms();
        Decider {
            store,
            guard,
            clock,
            bans,
            lens,
            offences: HashMap::new(),
            prefix_bans: HashMap::new(),
            banned_unpublished: Default::default(),
            store_version,
            last_tick: std::time::Instant::now(),
            bulk_work: Arc::default(),
            log: Arc::default(),
            published: Default::default(),
            changes: None,
            pending: Vec::new(),
            lifted: Vec::new(),
            full_publish_due: false,
            last_full: std::time::Instant::now(),
            last_prune_ms,
        }
    }

    /// Takes bulk work from `work` (the engine's, which the feeds and a cluster fill).
    pub fn with_bulk_work(mut self, work: Arc<Mutex<crate::bulk::BulkWork>>) -> Self {
        self.bulk_work = work;
        self
    }

    /// Broadcasts every change to the decisions in force on `tx`.
    pub fn with_changes(
        mut self,
        tx: tokio::sync::broadcast::Sender<crate::changes::Change>,
    ) -> Self {
        self.changes = Some(tx);
        self
    }

    fn broadcast(&self, changes: Vec<crate::changes::Change>) {
        if let Some(tx) = &self.changes {
            for c in changes {
                // No follower is not an error.
                let _ = tx.send(c);
            }
        }
    }

    /// Ban lines go through the same bounded log as the sensors' decisions: a flood from
    /// rotating addresses bans each of them, and each ban must not cost a line.
    pub fn with_log(mut self, log: Arc<crate::decision_log::DecisionLog>) -> Self {
        self.log = log;
        self
    }

    pub fn run(mut self, rx: Receiver<Command>) {
        self.publish();
        loop {
            // With bulk work waiting the channel is not waited on: the work goes on.
            let first = match self.bulk_work_waiting() {
                true => match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                },
                false => match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => {
                        self.tick();
                        continue;
                    }
                },
            };
            if matches!(first, Some(Command::Shutdown)) {
                return;
            }
            // A burst of commands is applied in one store transaction and published once,
            // bounded so bans still get published under a constant stream of offences. A
            // flush or a shutdown ends the burst: what came before it is published first.
            let mut burst: Vec<Command> = first.into_iter().collect();
            let mut last = None;
            while !burst.is_empty() && burst.len() < BURST {
                match rx.try_recv() {
                    Ok(c @ (Command::Flush(_) | Command::Shutdown)) => {
                        last = Some(c);
                        break;
                    }
                    Ok(c) => burst.push(c),
                    Err(_) => break,
                }
            }
            // Bulk work fills the rest, and always has a quarter of a burst, so that a
            // busy channel slows it but never stops it.
            let room = (BURST - burst.len()).max(BURST / 4);
            burst.extend(self.take_bulk_work(room));
            let mut replies = self.apply_burst(burst);
            let shutdown = matches!(last, Some(Command::Shutdown));
            if let Some(Command::Flush(r)) = last {
                replies.push(r);
            }
            if !replies.is_empty() {
                // A flush also waits for the bulk work queued before it.
                loop {
                    let chunk = self.take_bulk_work(BURST);
                    if chunk.is_empty() {
                        break;
                    }
                    replies.extend(self.apply_burst(chunk));
                }
            }
            for r in replies {
                let _ = r.send(());
            }
            if shutdown {
                return;
            }
            // A busy channel must not starve the periodic work (an operator's `moat allow`
            // would otherwise wait for a quiet second).
            if self.last_tick.elapsed() >= Duration::from_secs(1) {
                self.tick();
            }
        }
    }

    fn bulk_work_waiting(&self) -> bool {
        !self
            .bulk_work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn take_bulk_work(&self, n: usize) -> Vec<Command> {
        self.bulk_work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(n)
    }

    /// Applies `burst` in one store transaction and publishes it; returns the flushes in it,
    /// to be answered.
    fn apply_burst(&mut self, mut burst: Vec<Command>) -> Vec<SyncSender<()>> {
        let before = self.store.changed().ok();
        let (mut dirty, mut replies) = (false, Vec::new());
        let store = self.store.clone();
        let batched = store.batch(&mut || {
            for c in burst.drain(..) {
                match c {
                    Command::Flush(reply) => replies.push(reply),
                    c => dirty |= self.apply(c),
                }
            }
        });
        if let Err(e) = batched {
            tracing::error!(error = %e, "cannot commit a burst of decisions");
            self.full_publish_due = true;
        }
        if dirty {
            self.publish_burst(before);
        }
        replies
    }

    /// After a burst: when it only added this decider's own bans, they go into the next
    /// snapshot and to the followers as they are, without reading every decision back from
    /// the store (at 100k bans that read took 130 ms, and every ban waited on it). Anything
    /// else (an allow, another writer, a failed commit) publishes from the store.
    fn publish_burst(&mut self, before: Option<u64>) {
        let own = std::mem::take(&mut self.pending);
        let lifted = std::mem::take(&mut self.lifted);
        let after = self.store.changed().ok();
        let writes = (own.len() + lifted.len()) as u64;
        let only_own = match (before, after) {
            (Some(b), Some(a)) => b == self.store_version && a == b.wrapping_add(writes),
            _ => false,
        };
        // A scope both banned and lifted in one burst: which came last is the store's to say.
        let both = !own.is_empty() && !lifted.is_empty() && {
            let l: std::collections::HashSet<&Scope> = lifted.iter().collect();
            own.iter().any(|d| l.contains(&d.scope))
        };
        if self.full_publish_due || !only_own || both {
            self.publish();
            return;
        }
        let now = self.clock.now_ms();
        let changes = match self.changes.is_some() {
            true => {
                let mut c = self.published.lift(&lifted);
                c.extend(self.published.record(&own, now));
                c
            }
            false => Vec::new(),
        };
        // The snapshot before the changes: a follower that subscribes between the two finds
        // them in [`crate::Engine::decisions`] (read from the snapshot), never neither.
        let next = self.guard.load().with(own, &lifted);
        self.guard.store(Arc::new(next));
        self.broadcast(changes);
        self.banned_unpublished.clear();
        self.store_version = after.unwrap_or(self.store_version);
    }

    /// Periodic work: pick up writes by other processes (`moat bans add`), drop expired bans.
    fn tick(&mut self) {
        self.last_tick = std::time::Instant::now();
        let v = self.store.changed().unwrap_or(self.store_version);
        let now = self.clock.now_ms();
        // Another writer, a failed write, or the safety net: the snapshot is read from the
        // store again (which also drops what expired from it).
        if v != self.store_version
            || self.full_publish_due
            || self.last_full.elapsed() >= FULL_EVERY
        {
            self.store_version = v;
            self.publish();
            self.last_prune_ms = now;
        } else if now.saturating_sub(self.last_prune_ms) >= PRUNE_EVERY_MS {
            self.prune(now);
        }
        let window = self.bans.offence_window.as_millis() as u64;
        self.offences
            .retain(|_, q| q.back().is_some_and(|t| t + window > now));
        let pwindow = self.bans.prefix_window.as_millis() as u64;
        self.prefix_bans
            .retain(|_, q| q.back().is_some_and(|(_, t)| t + pwindow > now));
        if self.changes.is_some() {
            let expired = self.published.expire(now);
            self.broadcast(expired);
        }
    }

    /// Drops the bans over at `now` from the store and the guard without reading the others
    /// back. Followers were told of them as they ended ([`crate::changes::Published::expire`]).
    /// If another writer wrote meanwhile, publishes from the store instead.
    fn prune(&mut self, now: u64) {
        self.last_prune_ms = now;
        let before = self.store.changed().ok();
        let purged = match self.store.purge_expired(now) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot drop expired decisions from the store");
                self.full_publish_due = true;
                return;
            }
        };
        let after = self.store.changed().ok();
        let only_ours = match (before, after) {
            (Some(b), Some(a)) => {
                b == self.store_version && a == b.wrapping_add(u64::from(purged > 0))
            }
            _ => false,
        };
        if !only_ours {
            self.publish();
            return;
        }
        self.store_version = after.unwrap_or(self.store_version);
        if let Some(next) = self.guard.load().without_expired(now) {
            self.guard.store(Arc::new(next));
        }
    }

    /// Publishes from the store: every decision in force and the allowlist.
    fn publish(&mut self) {
        self.pending.clear();
        self.lifted.clear();
        self.full_publish_due = false;
        self.last_full = std::time::Instant::now();
        let now = self.clock.now_ms();
        let mut allow = self.bans.allow.clone();
        match self.store.allowlist() {
            Ok(extra) => allow.extend(extra),
            Err(e) => tracing::error!(error = %e, "cannot read the allowlist from the store"),
        }
        match self.store.decisions(now) {
            Ok(d) => {
                let changes = match self.changes.is_some() {
                    true => self.published.update(&d, &allow, now),
                    false => Vec::new(),
                };
                self.guard.store(Arc::new(GuardSnapshot::new(allow, d)));
                self.broadcast(changes);
                self.banned_unpublished.clear();
            }
            Err(e) => tracing::error!(error = %e, "cannot read decisions from the store"),
        }
        // Our own writes bump nothing for us, but keep the version current anyway.
        self.store_version = self.store.changed().unwrap_or(self.store_version);
    }

    /// Returns whether the guard needs rebuilding.
    fn apply(&mut self, cmd: Command) -> bool {
        let now = self.clock.now_ms();
        match cmd {
            Command::Offence { ip, rule } => self.offence(ip, rule, now),
            Command::BulkWork => false,
            Command::Ban {
                scope,
                ttl,
                reason,
                origin,
            } => {
                self.ban(scope, ttl, reason, origin, now);
                true
            }
            Command::Allow { net } => {
                if let Err(e) = self.store.allow(net, "moat allow", now) {
                    tracing::error!(error = %e, "allow failed");
                }
                self.full_publish_due = true;
                true
            }
            Command::Adopt(d) => self.adopt(d, now),
            Command::Lift { scope } => {
                // A feed's ban is this instance's own policy's, not the cluster's to lift.
                let feed = self
                    .guard
                    .load()
                    .decision(&scope)
                    .is_some_and(|d| matches!(d.origin, Origin::Feed(_)));
                if feed {
                    return false;
                }
                match self.store.remove_decision(&scope) {
                    Ok(true) => self.lifted.push(scope),
                    Ok(false) => return false,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot lift a ban");
                        self.full_publish_due = true;
                    }
                }
                true
            }
            Command::LiftFeed { scope } => {
                let ours = self
                    .guard
                    .load()
                    .decision(&scope)
                    .is_some_and(|d| matches!(d.origin, Origin::Feed(_)));
                if !ours {
                    return false;
                }
                match self.store.remove_decision(&scope) {
                    Ok(true) => {
                        // Through the bounded log, as bans are: dropping a feed lifts its
                        // bans by the hundred thousand, and each must not cost a line.
                        let key_ip = match &scope {
                            Scope::Ip(ip) => *ip,
                            Scope::Prefix(net) => net.network(),
                        };
                        if self
                            .log
                            .admit(self.clock.now_ms(), "lift:feed", "lift", key_ip, 160)
                        {
                            tracing::info!(target: "moat::decision", scope = %scope, "feed ban lifted: no longer listed by enough peers");
                        }
                        self.lifted.push(scope);
                    }
                    // In the snapshot, not in the store: the snapshot is read again.
                    Ok(false) => self.full_publish_due = true,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot lift a feed ban");
                        self.full_publish_due = true;
                    }
                }
                true
            }
            Command::Flush(reply) => {
                let _ = reply.send(());
                false
            }
            Command::Shutdown => false,
        }
    }

    fn offence(&mut self, ip: IpAddr, rule: String, now: u64) -> bool {
        let who = offender(ip, self.lens);
        let g = self.guard.load();
        if g.is_allowlisted(ip)
            || !matches!(g.check(ip, now), crate::GuardVerdict::Clear)
            || self.banned_unpublished.contains(&who)
        {
            return false;
        }
        if self.offences.len() >= MAX_TRACKED && !self.offences.contains_key(&who) {
            self.tick();
            if self.offences.len() >= MAX_TRACKED {
                return false;
            }
        }
        let window = self.bans.offence_window.as_millis() as u64;
        let q = self.offences.entry(who.clone()).or_default();
        while q.front().is_some_and(|t| t + window <= now) {
            q.pop_front();
        }
        q.push_back(now);
        if q.len() < self.bans.offences_to_ban as usize {
            return false;
        }
        self.offences.remove(&who);
        let reason = format!(
            "{} offences within {:?} (last: {rule})",
            self.bans.offences_to_ban, self.bans.offence_window
        );
        self.ban(who, None, reason, Origin::Rule(rule), now);
        true
    }

    fn adopt(&mut self, d: Decision, now: u64) -> bool {
        if d.verdict != Verdict::Ban || !d.active_at(now) {
            return false;
        }
        let g = self.guard.load();
        let allowed = match &d.scope {
            Scope::Ip(ip) => g.is_allowlisted(*ip),
            Scope::Prefix(n) => g.allowlist().iter().any(|a| a.contains(n) || n.contains(a)),
        };
        let lasts =
            g.decision(&d.scope)
                .is_some_and(|have| match (have.expires_ms, d.expires_ms) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(a), Some(b)) => a >= b,
                });
        if allowed || lasts || self.banned_unpublished.contains(&d.scope) {
            return false;
        }
        self.banned_unpublished.insert(d.scope.clone());
        match self.store.put_decision(&d) {
            Ok(()) => self.pending.push(d),
            Err(e) => {
                tracing::error!(error = %e, "cannot store an adopted ban");
                self.full_publish_due = true;
            }
        }
        true
    }

    /// Bans with escalation: each repeat doubles (by `factor`) the last ban, up to `max_ttl`.
    fn ban(
        &mut self,
        scope: Scope,
        ttl: Option<Duration>,
        reason: String,
        origin: Origin,
        now: u64,
    ) {
        if let Scope::Ip(ip) = scope {
            if self.guard.load().is_allowlisted(ip) {
                tracing::info!(%ip, "not banning an allowlisted address");
                return;
            }
        }
        let feed = matches!(origin, Origin::Feed(_));
        if feed {
            // A feed never replaces this instance's own ban (or a hand's), and never counts
            // in the ban history that escalates its own next ban.
            let g = self.guard.load();
            let own = g
                .decision(&scope)
                .is_some_and(|d| d.active_at(now) && !matches!(d.origin, Origin::Feed(_)));
            if own || self.banned_unpublished.contains(&scope) {
                return;
            }
        }
        let forget = now.saturating_sub(30 * 86_400_000);
        let offences = match feed {
            true => Ok(0),
            false => self.store.record_ban(&scope, now, forget),
        };
        let offences = match offences {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot record ban history");
                self.store.ban_count(&scope, forget).unwrap_or(0) + 1
            }
        };
        let expires_ms = match ttl {
            Some(t) => Some(now + t.as_millis() as u64),
            None if origin == Origin::Manual => None,
            None => Some(now + self.escalated_ttl(offences).as_millis() as u64),
        };
        self.banned_unpublished.insert(scope.clone());
        let d = Decision {
            scope: scope.clone(),
            verdict: Verdict::Ban,
            created_ms: now,
            expires_ms,
            reason,
            origin,
            offences,
        };
        let (scope_text, origin_text) = (d.scope.to_string(), d.origin.to_string());
        let key_ip = match &d.scope {
            Scope::Ip(ip) => *ip,
            Scope::Prefix(net) => net.network(),
        };
        let rule = format!("ban:{origin_text}");
        let size = 200 + scope_text.len() + origin_text.len() + d.reason.len().min(256);
        if self.log.admit(now, &rule, "ban", key_ip, size) {
            // A manual ban without an end has no `expires_ms`.
            match d.expires_ms {
                Some(expires_ms) => {
                    tracing::info!(target: "moat::decision", scope = %scope_text, offences, expires_ms, origin = %origin_text, reason = %crate::decision_log::clip(&d.reason), "ban")
                }
                None => {
                    tracing::info!(target: "moat::decision", scope = %scope_text, offences, origin = %origin_text, reason = %crate::decision_log::clip(&d.reason), "ban")
                }
            }
        }
        match self.store.put_decision(&d) {
            Ok(()) => self.pending.push(d),
            Err(e) => {
                tracing::error!(error = %e, "cannot store ban");
                self.full_publish_due = true;
            }
        }
        if let (Scope::Ip(ip), false) = (scope, feed) {
            self.escalate_prefix(ip, now);
        }
    }

    pub(crate) fn escalated_ttl(&self, offences: u32) -> Duration {
        let mut ttl = self.bans.base_ttl;
        for _ in 1..offences {
            ttl = ttl.saturating_mul(self.bans.factor);
            if ttl >= self.bans.max_ttl {
                break;
            }
        }
        ttl.min(self.bans.max_ttl)
    }

    fn escalate_prefix(&mut self, ip: IpAddr, now: u64) {
        if self.bans.prefix_threshold == 0 {
            return;
        }
        let net = prefix_of(ip, self.lens);
        let window = self.bans.prefix_window.as_millis() as u64;
        let q = self.prefix_bans.entry(net).or_default();
        while q.front().is_some_and(|(_, t)| t + window <= now) {
            q.pop_front();
        }
        if !q.iter().any(|(a, _)| *a == ip) {
            q.push_back((ip, now));
        }
        if q.len() >= self.bans.prefix_threshold as usize {
            let n = q.len();
            self.prefix_bans.remove(&net);
            let reason = format!(
                "{n} addresses of {net} banned within {:?}",
                self.bans.prefix_window
            );
            self.ban(Scope::Prefix(net), None, reason, Origin::Escalation, now);
        }
    }
}
