//! Issue 15, item 6: an allowlisted address inside a banned prefix is let through while the
//! prefix stays banned for everyone else (so `moat allow ADDR` need not lift the prefix ban),
//! and a ban written or lifted through the engine's own store handle (the admin API) reaches
//! the guard.

use moat_core::{ManualClock, PrefixLens, Scope};
use moat_engine::{Engine, GuardSnapshot, GuardVerdict};
use moat_store::{add_manual_ban, allow_and_lift, SqliteStore, Store};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

mod common;
use common::bans;

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_allowlist_wins_over_a_prefix_ban_in_the_guard() {
    let store = moat_store::MemoryStore::new();
    add_manual_ban(
        &store,
        Scope::parse("203.0.113.0/24").unwrap(),
        None,
        "t",
        1,
    )
    .unwrap();
    add_manual_ban(&store, Scope::parse("203.0.113.5").unwrap(), None, "t", 1).unwrap();
    allow_and_lift(&store, "203.0.113.5/32".parse().unwrap(), "me", 2).unwrap();
    let g = GuardSnapshot::new(store.allowlist().unwrap(), store.decisions(3).unwrap());
    assert_eq!(g.check(ip("203.0.113.5"), 3), GuardVerdict::Allowlisted);
    assert!(matches!(
        g.check(ip("203.0.113.6"), 3),
        GuardVerdict::Banned(_)
    ));
    // Also as an IPv4-mapped IPv6 address (a dual-stack listener).
    assert_eq!(
        g.check(ip("::ffff:203.0.113.5"), 3),
        GuardVerdict::Allowlisted
    );
}

#[test]
fn bans_added_and_lifted_through_the_engines_own_store_reach_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5_000));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let e = Engine::start(store, clock, bans(), PrefixLens::default());
    add_manual_ban(
        &**e.store(),
        Scope::parse("10.7.7.0/24").unwrap(),
        None,
        "api",
        e.now_ms(),
    )
    .unwrap();
    wait_for(
        "a ban added through the engine's store was not enforced",
        || matches!(e.check(ip("10.7.7.7")), GuardVerdict::Banned(_)),
    );
    assert!(e
        .store()
        .remove_decision(&Scope::parse("10.7.7.0/24").unwrap())
        .unwrap());
    wait_for(
        "a ban lifted through the engine's store was still enforced",
        || e.check(ip("10.7.7.7")) == GuardVerdict::Clear,
    );
    e.shutdown();
}
