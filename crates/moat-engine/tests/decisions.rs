//! Issue 2, decisions: bans with escalation, prefix aggregation, the allowlist winning, and bans
//! surviving a restart of the engine on the same SQLite store.

use moat_config::Bans;
use moat_core::{ManualClock, Origin, PrefixLens, Scope};
use moat_engine::{Engine, GuardVerdict};
use moat_store::{SqliteStore, Store};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

mod common;

fn bans() -> Bans {
    Bans {
        allow: vec!["10.9.9.9/32".parse().unwrap()],
        ..common::bans()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn start(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Arc<Engine> {
    Engine::start(store, clock, bans(), PrefixLens::default())
}

/// A ban as `moat bans add` writes it from another process.
fn cli_ban(scope: &str) -> moat_core::Decision {
    moat_core::Decision {
        scope: Scope::parse(scope).unwrap(),
        verdict: moat_core::Verdict::Ban,
        created_ms: 1,
        expires_ms: None,
        reason: "cli".into(),
        origin: Origin::Manual,
        offences: 1,
    }
}

fn banned_until(e: &Engine, a: &str) -> Option<u64> {
    match e.check(ip(a)) {
        GuardVerdict::Banned(d) => d.expires_ms,
        _ => None,
    }
}

#[test]
fn offences_ban_and_repeat_offenders_wait_longer_up_to_the_max() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let e = start(Arc::new(moat_store::MemoryStore::new()), clock.clone());
    for _ in 0..2 {
        e.offence(ip("10.0.0.1"), "r");
    }
    e.flush();
    assert_eq!(
        e.check(ip("10.0.0.1")),
        GuardVerdict::Clear,
        "two offences are not enough"
    );
    e.offence(ip("10.0.0.1"), "r");
    e.flush();
    assert_eq!(banned_until(&e, "10.0.0.1"), Some(1_000_000 + 60_000));

    let mut expected = [240_000u64, 600_000, 600_000].into_iter();
    for _ in 0..3 {
        clock.advance_ms(700_000);
        e.flush();
        assert_eq!(
            e.check(ip("10.0.0.1")),
            GuardVerdict::Clear,
            "the ban expired"
        );
        for _ in 0..3 {
            e.offence(ip("10.0.0.1"), "r");
        }
        e.flush();
        let now = clock.now_ms_for_test();
        assert_eq!(
            banned_until(&e, "10.0.0.1"),
            Some(now + expected.next().unwrap())
        );
    }
}

trait NowForTest {
    fn now_ms_for_test(&self) -> u64;
}
impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> u64 {
        moat_core::Clock::now_ms(self)
    }
}

#[test]
fn enough_banned_addresses_in_one_prefix_ban_the_prefix_but_not_the_allowlist() {
    let clock = Arc::new(ManualClock::new(5_000));
    let e = start(Arc::new(moat_store::MemoryStore::new()), clock);
    for a in ["10.9.9.1", "10.9.9.2"] {
        e.ban(
            Scope::parse(a).unwrap(),
            None,
            "t",
            Origin::Rule("t".into()),
        );
    }
    e.flush();
    assert_eq!(e.check(ip("10.9.9.77")), GuardVerdict::Clear);
    e.ban(
        Scope::parse("10.9.9.3").unwrap(),
        None,
        "t",
        Origin::Rule("t".into()),
    );
    e.flush();
    assert!(
        matches!(e.check(ip("10.9.9.77")), GuardVerdict::Banned(d) if d.scope.to_string() == "10.9.9.0/24")
    );
    assert_eq!(
        e.check(ip("10.9.9.9")),
        GuardVerdict::Allowlisted,
        "the allowlist always wins"
    );
    assert_eq!(e.check(ip("10.9.8.1")), GuardVerdict::Clear);
}

#[test]
fn allowlisted_addresses_are_never_banned_and_moat_allow_unbans() {
    let clock = Arc::new(ManualClock::new(5_000));
    let e = start(Arc::new(moat_store::MemoryStore::new()), clock);
    e.ban(Scope::parse("10.1.1.1").unwrap(), None, "t", Origin::Manual);
    e.flush();
    assert!(matches!(e.check(ip("10.1.1.1")), GuardVerdict::Banned(_)));
    e.allow("10.1.1.1/32".parse().unwrap());
    e.flush();
    assert_eq!(e.check(ip("10.1.1.1")), GuardVerdict::Allowlisted);
    for _ in 0..10 {
        e.offence(ip("10.9.9.9"), "r");
    }
    e.flush();
    assert_eq!(e.check(ip("10.9.9.9")), GuardVerdict::Allowlisted);
}

#[test]
fn bans_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5_000));
    {
        let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
        let e = start(store, clock.clone());
        e.ban(
            Scope::parse("2001:db8::1").unwrap(),
            None,
            "t",
            Origin::Rule("x".into()),
        );
        e.flush();
        // No shutdown: the process may die at any point after a flush.
        std::mem::forget(e);
    }
    let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let e = start(store, clock);
    assert!(matches!(
        e.check(ip("2001:db8::1")),
        GuardVerdict::Banned(_)
    ));
}

#[test]
fn a_ban_written_by_another_process_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5_000));
    let e = start(Arc::new(SqliteStore::open_dir(dir.path()).unwrap()), clock);
    let other = SqliteStore::open_dir(dir.path()).unwrap();
    other.put_decision(&cli_ban("10.2.2.2")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while e.check(ip("10.2.2.2")) == GuardVerdict::Clear {
        assert!(
            std::time::Instant::now() < deadline,
            "ban from another process not seen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_burst_of_offences_bans_once_without_escalating() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let e = start(Arc::new(moat_store::MemoryStore::new()), clock);
    for _ in 0..20 {
        e.offence(ip("10.4.4.4"), "r");
    }
    e.flush();
    match e.check(ip("10.4.4.4")) {
        GuardVerdict::Banned(d) => {
            assert_eq!(d.offences, 1, "one incident is one ban");
            assert_eq!(
                d.expires_ms,
                Some(1_000_000 + 60_000),
                "the base TTL, not an escalated one"
            );
        }
        other => panic!("not banned: {other:?}"),
    }
}

#[test]
fn another_process_allow_is_seen_while_offences_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5_000));
    let e = start(Arc::new(SqliteStore::open_dir(dir.path()).unwrap()), clock);
    e.ban(Scope::parse("10.5.5.5").unwrap(), None, "t", Origin::Manual);
    e.flush();
    let other = SqliteStore::open_dir(dir.path()).unwrap();
    other
        .allow("10.5.5.5/32".parse().unwrap(), "cli", 1)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while e.check(ip("10.5.5.5")) != GuardVerdict::Allowlisted {
        assert!(
            std::time::Instant::now() < deadline,
            "allow not seen under a stream of offences"
        );
        // An attacked site: offences every 100 ms from elsewhere keep the decider busy.
        e.offence(ip("10.6.6.6"), "r");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bans that are over leave the store and the guard within a minute, without the decider
/// reading the ones in force back (it prunes), while a ban another process writes meanwhile
/// is still picked up.
#[test]
fn expired_bans_leave_the_store_and_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5_000));
    let e = start(
        Arc::new(SqliteStore::open_dir(dir.path()).unwrap()),
        clock.clone(),
    );
    e.ban(
        Scope::parse("10.7.7.1").unwrap(),
        Some(Duration::from_secs(10)),
        "short",
        Origin::Manual,
    );
    e.ban(
        Scope::parse("10.7.7.0/24").unwrap(),
        Some(Duration::from_secs(10)),
        "short",
        Origin::Manual,
    );
    e.ban(
        Scope::parse("10.7.8.1").unwrap(),
        None,
        "long",
        Origin::Manual,
    );
    e.flush();
    assert_eq!(e.snapshot().ban_count(), 3);
    let other = SqliteStore::open_dir(dir.path()).unwrap();
    let rows = || {
        other
            .decision_page(
                0,
                &moat_store::DecisionQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap()
            .total
    };
    assert_eq!(rows(), 3);
    clock.advance_ms(11_000);
    assert_eq!(
        e.check(ip("10.7.7.1")),
        GuardVerdict::Clear,
        "over, so not enforced"
    );
    clock.advance_ms(60_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rows() != 1 || e.snapshot().ban_count() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "expired bans still held: {} rows, {} in the guard",
            rows(),
            e.snapshot().ban_count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(matches!(e.check(ip("10.7.8.1")), GuardVerdict::Banned(_)));
    other.put_decision(&cli_ban("10.7.9.9")).unwrap();
    while !matches!(e.check(ip("10.7.9.9")), GuardVerdict::Banned(_)) {
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(5),
            "the other writer's ban"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ipv6_offences_count_against_the_whole_64() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let e = start(Arc::new(moat_store::MemoryStore::new()), clock);
    // A host rotating through its own /64: each address offends once.
    for i in 1..=3 {
        e.offence(ip(&format!("2001:db8:7:7::{i}")), "r");
    }
    e.flush();
    match e.check(ip("2001:db8:7:7::ffff")) {
        GuardVerdict::Banned(d) => assert_eq!(d.scope.to_string(), "2001:db8:7:7::/64"),
        other => panic!("the /64 is not banned: {other:?}"),
    }
    assert_eq!(
        e.check(ip("2001:db8:7:8::1")),
        GuardVerdict::Clear,
        "the next /64 is someone else"
    );
}
