//! Issue 2 speed targets for the local rate limiter (GCRA): at least 5 million checks per second
//! on one core, and the guard lookup that every request does.

use moat_engine::{GuardSnapshot, Limiter};
use std::net::{IpAddr, Ipv4Addr};

fn main() {
    divan::main();
}

const S: u64 = 1_000_000_000;

/// One check for a key that is already tracked (the common case under attack).
#[divan::bench]
fn check_hot_key(b: divan::Bencher) {
    let l = Limiter::new(100, 60 * S, 100, 1_000_000);
    let mut now = 0u64;
    b.bench_local(|| {
        now += 1_000;
        l.check(divan::black_box(b"203.0.113.7"), now)
    });
}

/// Checks spread over 100 000 distinct addresses.
#[divan::bench]
fn check_many_keys(b: divan::Bencher) {
    let l = Limiter::new(100, 60 * S, 100, 1_000_000);
    let keys: Vec<[u8; 4]> = (0..100_000u32).map(|i| i.to_be_bytes()).collect();
    let mut i = 0usize;
    let mut now = 0u64;
    b.bench_local(|| {
        i = (i + 1) % keys.len();
        now += 1_000;
        l.check(divan::black_box(&keys[i]), now)
    });
}

/// The guard check every request does: allowlist, exact and prefix bans.
#[divan::bench]
fn guard_check(b: divan::Bencher) {
    let decisions = (0..10_000u32).map(|i| moat_core::Decision {
        scope: moat_core::Scope::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
        verdict: moat_core::Verdict::Ban,
        created_ms: 0,
        expires_ms: None,
        reason: String::new(),
        origin: moat_core::Origin::Manual,
        offences: 1,
    });
    let g = GuardSnapshot::new(vec!["192.168.0.0/16".parse().unwrap()], decisions);
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    b.bench_local(|| g.check(divan::black_box(ip), 1));
}
