//! Work at the scale of a large feed or a cluster's catch-up: every ban and lift is made, none is
//! counted as dropped, and the sensors' offences sent meanwhile still ban.

use moat_core::{ManualClock, Origin, PrefixLens, Scope};
use moat_engine::bulk::FeedBan;
use moat_engine::{Engine, GuardVerdict};
use moat_store::MemoryStore;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod common;

/// More than the decider's channel holds (65,536): sent as commands, the rest were dropped.
const N: u32 = 100_000;

fn feed_ban(i: u32) -> FeedBan {
    FeedBan {
        scope: Scope::Ip(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))),
        ttl: Duration::from_secs(3600),
        reason: "listed by peer".into(),
        origin: Origin::Feed("peer".into()),
    }
}

/// An engine on a memory store, at 1,000 s.
fn start() -> Arc<Engine> {
    let clock = Arc::new(ManualClock::new(1_000_000));
    Engine::start(
        Arc::new(MemoryStore::new()),
        clock,
        common::bans(),
        PrefixLens::default(),
    )
}

#[test]
fn a_large_feed_is_made_and_lifted_whole_and_offences_still_ban() {
    let e = start();
    e.reconcile_feeds((0..N).map(feed_ban).collect(), Vec::new());
    // Offences from a sensor while the feed's work is under way: three ban an address.
    let attacker: IpAddr = "203.0.113.9".parse().unwrap();
    for _ in 0..3 {
        e.offence(attacker, "signup-flood");
    }
    e.flush();
    assert_eq!(e.bulk_work_left(), 0, "a flush waits for the feeds' work");
    assert_eq!(e.snapshot().ban_count(), N as usize + 1);
    assert!(matches!(e.check(attacker), GuardVerdict::Banned(_)));
    assert_eq!(e.dropped.load(Ordering::Relaxed), 0);

    // The feed is dropped: its wish is now to lift them all, and a later wish replaces what
    // is left of an earlier one.
    let all: Vec<Scope> = (0..N).map(|i| feed_ban(i).scope).collect();
    e.reconcile_feeds(vec![feed_ban(0)], all[..10].to_vec());
    e.reconcile_feeds(Vec::new(), all);
    e.flush();
    assert_eq!(e.snapshot().ban_count(), 1, "only the sensor's ban is left");
    assert!(matches!(e.check(attacker), GuardVerdict::Banned(_)));
    assert_eq!(e.dropped.load(Ordering::Relaxed), 0);
    e.shutdown();
}

/// A cluster instance catching up on a storm's bans in Redis: all are taken, none dropped.
#[test]
fn a_catch_up_larger_than_the_channel_is_taken_whole() {
    let e = start();
    let theirs = |i: u32| moat_core::Decision {
        scope: Scope::Ip(IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + i))),
        verdict: moat_core::Verdict::Ban,
        created_ms: 999_000,
        expires_ms: Some(5_000_000),
        reason: "another instance".into(),
        origin: Origin::Rule("signup-flood".into()),
        offences: 1,
    };
    e.adopt_all((0..N).map(theirs).collect());
    e.flush();
    assert_eq!(e.bulk_work_left(), 0);
    assert_eq!(e.snapshot().ban_count(), N as usize);
    assert_eq!(e.dropped.load(Ordering::Relaxed), 0);
    e.shutdown();
}
