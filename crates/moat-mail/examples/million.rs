//! Issue memory target for the mail shield: one million tracked logins and addresses in at most
//! 200 MB. One million distinct logins, each failing once from its own address (a farm that
//! never repeats either), go through the brute-force detector; then one million distinct client
//! addresses each probe an unknown recipient through the enumeration judge. Prints RSS before
//! and after each phase and what is tracked.
//!
//! `cargo run --release -p moat-mail --example million`

use moat_core::PrefixLens;
use moat_detect::bruteforce::{BruteConfig, BruteForce};
use moat_detect::enumeration::{EnumConfig, EnumJudge};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn rss_mb() -> f64 {
    moat_core::metric::rss_kib() as f64 / 1024.0
}

/// The i-th of a million distinct addresses: three in four IPv4, scattered over the whole space
/// (an odd multiplier is a bijection mod 2^32, so they stay distinct), one in four IPv6, each in
/// its own /64.
fn address(i: u32) -> IpAddr {
    if i % 4 == 3 {
        let x = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (x >> 32)))
    } else {
        IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
    }
}

fn hex64(i: u32) -> String {
    format!("{:064x}", (i as u128).wrapping_mul(0x2545_f491_4f6c_dd1d))
}

fn main() {
    // MILLION_N=900000 shows the step when the hash tables need one doubling fewer.
    let n: u32 = std::env::var("MILLION_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let now = 1_700_000_000u64;
    let start = rss_mb();

    // The shield's defaults (mail.brute_* in the config): a window of an hour, nothing expires
    // during the run, and room for exactly one million logins.
    let cfg = BruteConfig {
        max_logins: BruteConfig::default().max_logins.max(n as usize),
        ..Default::default()
    };
    let mut bf = BruteForce::new(cfg, PrefixLens::default());
    let before = rss_mb();
    let (mut attacked, mut nets) = (0u32, 0u32);
    for i in 0..n {
        // Logins as bots guess them: local parts of varying length at a few domains.
        let login = format!("u{i}.{}@example{}.test", i % 977, i % 13);
        let esc = bf.failure(&login, &hex64(i), address(i), now + (i / 1000) as u64);
        attacked += esc.login_attacked as u32;
        nets += esc.network.is_some() as u32;
    }
    let after = rss_mb();
    println!(
        "brute force: {} logins tracked (cap {}) after {n} failures from {n} addresses; \
         RSS {before:.0} -> {after:.0} MB (+{:.0} MB; process started at {start:.0} MB); \
         {attacked} logins judged attacked, {nets} networks escalated",
        bf.logins(),
        cfg.max_logins,
        after - before,
    );

    // The enumeration judge with its cap raised to a million keys per table (the shield uses
    // EnumConfig's default, 200,000 per table), so that every client address stays tracked.
    let mut j = EnumJudge::new(
        EnumConfig {
            max_keys: n as usize,
            ..Default::default()
        },
        PrefixLens::default(),
    );
    let before = rss_mb();
    let mut judged = 0u32;
    for i in 0..n {
        // A few thousand envelope senders, rotating as farms do.
        let sender = format!("bounce-{}@farm{}.example", i % 5000, i % 7);
        let r = j.unknown_recipient(address(i), &sender, now + (i / 1000) as u64);
        judged += (r.client || r.network.is_some() || r.sender) as u32;
    }
    let after = rss_mb();
    println!(
        "enumeration: {n} distinct client addresses, each one unknown recipient; \
         RSS {before:.0} -> {after:.0} MB (+{:.0} MB); {judged} probes newly judged something",
        after - before,
    );
    println!("total RSS {after:.0} MB for {n} logins and {n} addresses in each detector");
    // Keep both alive until the measurement is taken.
    drop((bf, j));
}
