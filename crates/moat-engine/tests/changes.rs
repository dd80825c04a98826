//! Issue 17, the decider broadcasts every change to the decisions in force: a ban, a longer
//! ban, an allow, an unban and a ban by another process, an expiry.

use moat_config::Bans;
use moat_core::{ManualClock, Origin, PrefixLens, Scope};
use moat_engine::changes::Change;
use moat_engine::Engine;
use moat_store::{SqliteStore, Store};
use std::sync::Arc;
use std::time::Duration;

mod common;

/// Without prefix escalation: each change here is about one scope.
fn bans() -> Bans {
    Bans {
        prefix_threshold: 0,
        ..common::bans()
    }
}

/// The next change, waiting up to 3 s (the decider notices expiry on its 1 s tick).
fn next(rx: &mut tokio::sync::broadcast::Receiver<Change>) -> Change {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match rx.try_recv() {
            Ok(c) => return c,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no change: {e:?}"),
        }
    }
}

#[test]
fn bans_extensions_allows_expiries_and_other_writers_are_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.sqlite");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let e = Engine::start(store, clock.clone(), bans(), PrefixLens::default());
    let mut rx = e.subscribe();
    let a = Scope::Ip("192.0.2.7".parse().unwrap());

    e.ban(
        a.clone(),
        Some(Duration::from_secs(30)),
        "t",
        Origin::Jail("sshd".into()),
    );
    e.flush();
    match next(&mut rx) {
        Change::Added(d) => {
            assert_eq!(d.scope, a);
            assert_eq!(d.origin, Origin::Jail("sshd".into()));
            assert_eq!(d.expires_ms, Some(1_030_000));
        }
        c => panic!("{c:?}"),
    }
    e.ban(
        a.clone(),
        Some(Duration::from_secs(90)),
        "t",
        Origin::Manual,
    );
    e.flush();
    assert!(matches!(next(&mut rx), Change::Extended(d) if d.expires_ms == Some(1_090_000)));

    // An allow: the ban stays on record, the allowlist that wins over it is broadcast.
    e.allow("192.0.2.0/24".parse().unwrap());
    e.flush();
    assert!(matches!(next(&mut rx), Change::Allowlist(l) if l.len() == 1));
    // `moat bans rm` from another process lifts it.
    let other = SqliteStore::open(&path).unwrap();
    assert!(other.remove_decision(&a).unwrap());
    assert!(matches!(next(&mut rx), Change::Removed { scope, expired: false } if scope == a));

    // Expiry, seen by the decider's tick.
    let b = Scope::Ip("198.51.100.7".parse().unwrap());
    e.ban(b.clone(), Some(Duration::from_secs(5)), "t", Origin::Manual);
    e.flush();
    assert!(matches!(next(&mut rx), Change::Added(d) if d.scope == b));
    clock.advance_ms(6_000);
    assert!(matches!(next(&mut rx), Change::Removed { scope, expired: true } if scope == b));

    // Another process's ban (`moat bans add`) on the same store.
    let c = Scope::Ip("203.0.113.9".parse().unwrap());
    other
        .put_decision(&moat_core::Decision {
            scope: c.clone(),
            verdict: moat_core::Verdict::Ban,
            created_ms: 1_006_000,
            expires_ms: Some(2_000_000),
            reason: "cli".into(),
            origin: Origin::Manual,
            offences: 1,
        })
        .unwrap();
    assert!(matches!(next(&mut rx), Change::Added(d) if d.scope == c));

    // Lifts through the engine (the cluster's, a feed's consensus gone) leave the snapshot and
    // are broadcast as they are; a feed lift leaves another origin's ban alone.
    let p = Scope::parse("203.0.113.0/24").unwrap();
    e.ban(
        p.clone(),
        Some(Duration::from_secs(600)),
        "t",
        Origin::Feed("peers".into()),
    );
    e.flush();
    assert!(matches!(next(&mut rx), Change::Added(d) if d.scope == p));
    e.lift_feed(c.clone());
    e.lift_feed(p.clone());
    e.flush();
    assert!(matches!(next(&mut rx), Change::Removed { scope, expired: false } if scope == p));
    assert!(e.snapshot().decision(&p).is_none());
    e.lift(c.clone());
    e.flush();
    assert!(matches!(next(&mut rx), Change::Removed { scope, expired: false } if scope == c));
    assert!(e.snapshot().decision(&c).is_none());
    assert_eq!(
        e.check("203.0.113.9".parse().unwrap()),
        moat_engine::GuardVerdict::Clear
    );
    assert!(other.decision_page(0, &Default::default()).unwrap().total == 0);
    e.shutdown();
}

/// Issue 17, typed events: a sensor's event becomes the detector's finding (three rule offences
/// ban the address, a tripped jail bans its scope under the jail's name), every follower of the
/// event bus sees each event with its sensor and subject, and the change carries the origin.
#[test]
fn events_become_findings_and_reach_their_followers() {
    use moat_core::{EventKind, Sensor, Subject};
    let store: Arc<dyn Store> = Arc::new(moat_store::MemoryStore::new());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let e = Engine::start(store, clock, bans(), PrefixLens::default());
    let mut events = e.follow_events();
    let mut changes = e.subscribe();
    let ip: std::net::IpAddr = "198.51.100.4".parse().unwrap();
    for n in 0..3 {
        e.emit(
            Sensor::Http,
            Subject::ip(ip),
            EventKind::RuleOffence {
                rule: "scripts".into(),
            },
        );
        let got = events.try_recv().expect("the event reached its follower");
        assert_eq!(
            (got.sensor, got.subject.ip),
            (Sensor::Http, ip),
            "event {n}"
        );
    }
    e.flush();
    match next(&mut changes) {
        Change::Added(d) => {
            assert_eq!(d.scope, Scope::Ip(ip));
            assert_eq!(d.origin, Origin::Rule("scripts".into()));
        }
        c => panic!("{c:?}"),
    }
    let jailed = Scope::parse("2001:db8:1::/64").unwrap();
    e.emit(
        Sensor::Logs,
        Subject::ip("2001:db8:1::9".parse().unwrap()),
        EventKind::JailTripped {
            jail: "sshd".into(),
            scope: jailed.clone(),
            ttl: Duration::from_secs(120),
            reason: "sshd: 5 failures".into(),
        },
    );
    e.flush();
    match next(&mut changes) {
        Change::Added(d) => {
            assert_eq!(d.scope, jailed);
            assert_eq!(d.origin, Origin::Jail("sshd".into()));
            assert_eq!(d.expires_ms, Some(1_000_000 + 120_000));
        }
        c => panic!("{c:?}"),
    }
    assert_eq!(events.try_recv().unwrap().sensor, Sensor::Logs);
    e.shutdown();
}
