//! Issue 2 memory target, at the detector level: one million distinct client addresses tracked by
//! a per-address and a per-/64 limiter, then five million more random addresses (a flood) to show
//! the tables stay capped. Prints RSS after each phase.
//!
//! `cargo run --release -p moat-detect --example limiter_million`

use moat_core::{prefix_of, PrefixLens};
use moat_detect::Limiter;
use std::net::{IpAddr, Ipv6Addr};

fn rss_mb() -> u64 {
    moat_core::metric::rss_kib() / 1024
}

fn random_v6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(fastrand_u128()))
}

fn fastrand_u128() -> u128 {
    // A tiny xorshift keeps the example free of extra dependencies.
    use std::cell::Cell;
    thread_local!(static S: Cell<u128> = const { Cell::new(0x2001_0db8_dead_beef_0123_4567_89ab_cdef) });
    S.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

fn main() {
    const S: u64 = 1_000_000_000;
    let before = rss_mb();
    // 5 requests per 10 minutes: no entry expires during the run, so every address stays
    // tracked until the cap (2M keys per table) forces eviction.
    let per_ip = Limiter::new(5, 600 * S, 5, 2_000_000);
    let per_prefix = Limiter::new(5, 600 * S, 5, 2_000_000);
    let lens = PrefixLens::default();
    let mut now = 0u64;
    let feed = |n: usize, now: &mut u64| {
        for _ in 0..n {
            let ip = random_v6();
            *now += 1_000;
            per_ip.check(ip.to_string().as_bytes(), *now);
            per_prefix.check(prefix_of(ip, lens).to_string().as_bytes(), *now);
        }
    };
    feed(1_000_000, &mut now);
    let tracked = rss_mb();
    println!(
        "1,000,000 addresses: {} per-address keys, {} per-/64 keys, RSS {} MB (started at {} MB)",
        per_ip.len(),
        per_prefix.len(),
        tracked,
        before
    );
    for round in 1..=5 {
        feed(1_000_000, &mut now);
        println!(
            "flood +{round}M random addresses: {} per-address keys, RSS {} MB",
            per_ip.len(),
            rss_mb()
        );
    }
}
