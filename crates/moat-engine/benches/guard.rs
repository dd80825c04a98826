//! Issue 2 speed target for the guard lookup that every request and every accepted connection
//! does.

use moat_engine::GuardSnapshot;
use std::net::{IpAddr, Ipv4Addr};

fn main() {
    divan::main();
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
