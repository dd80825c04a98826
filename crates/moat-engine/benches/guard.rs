//! The guard: the lookup every request and every accepted connection does (issue 2), and what
//! publishing a burst of bans costs the decider while many are already in force (a ban storm).

use moat_core::{Decision, Origin, Scope, Verdict};
use moat_engine::GuardSnapshot;
use std::net::{IpAddr, Ipv4Addr};

fn main() {
    divan::main();
}

/// `n` address bans from 10.0.0.0 up, and one prefix ban per thousand.
fn bans(n: u32) -> impl Iterator<Item = Decision> {
    (0..n).map(|i| Decision {
        scope: match i % 1000 {
            999 => Scope::Prefix(
                format!("172.{}.{}.0/24", 16 + (i >> 16) % 16, (i >> 8) & 255)
                    .parse()
                    .unwrap(),
            ),
            _ => Scope::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
        },
        verdict: Verdict::Ban,
        created_ms: 0,
        expires_ms: None,
        reason: String::new(),
        origin: Origin::Manual,
        offences: 1,
    })
}

fn snapshot(n: u32) -> GuardSnapshot {
    GuardSnapshot::new(vec!["192.168.0.0/16".parse().unwrap()], bans(n))
}

/// The guard check every request does (allowlist, exact and prefix bans), for an address
/// none of them covers: what a person pays while a storm's bans are in force.
#[divan::bench(args = [10_000, 1_000_000])]
fn guard_check(b: divan::Bencher, n: u32) {
    let g = snapshot(n);
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    b.bench_local(|| g.check(divan::black_box(ip), 1));
}

/// A banned address's check: what each of a storm's requests pays before it is refused.
#[divan::bench(args = [10_000, 1_000_000])]
fn guard_check_banned(b: divan::Bencher, n: u32) {
    let g = snapshot(n);
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n / 2));
    b.bench_local(|| g.check(divan::black_box(ip), 1));
}

/// The next snapshot after a burst of 16 new bans, and a snapshot dropped as the old one is
/// (the decider's path for every burst of a storm).
#[divan::bench(args = [10_000, 1_000_000], sample_count = 20)]
fn publish_burst_of_16(b: divan::Bencher, n: u32) {
    let g = snapshot(n);
    let burst: Vec<Decision> = bans(n + 16).skip(n as usize).collect();
    b.with_inputs(|| burst.clone())
        .bench_local_values(|burst| drop(g.with(burst, &[])));
}

/// A snapshot built from every decision in the store: at start, and when another process
/// wrote (`moat bans add`) or an operator allowed an address.
#[divan::bench(args = [10_000, 1_000_000], sample_count = 10)]
fn build_from_the_store(b: divan::Bencher, n: u32) {
    let all: Vec<Decision> = bans(n).collect();
    b.with_inputs(|| all.clone())
        .bench_local_values(|all| drop(GuardSnapshot::new(Vec::new(), all)));
}
