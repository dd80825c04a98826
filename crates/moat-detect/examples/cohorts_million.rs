//! Issue 18's memory target for cohort tracking: one million cohorts (each a distinct network,
//! user agent and language, each with sends and some with clicks) in at most 100 MB; then two
//! million more one-off cohorts (a script varying its user agent per request) on a table capped
//! at one million, to show it stays capped and keeps the cohorts that tell something. Prints
//! RSS after each phase.
//!
//! `cargo run --release -p moat-detect --example cohorts_million`

use moat_config::CohortSettings;
use moat_detect::{Cohorts, Standing};
use std::net::{IpAddr, Ipv4Addr};

fn rss_mb() -> u64 {
    moat_core::metric::rss_kib() / 1024
}

fn main() {
    let before = rss_mb();
    let c = Cohorts::new(CohortSettings {
        lag: std::time::Duration::from_secs(60),
        ..CohortSettings::default()
    });
    let now = 1_000_000;
    // A million cohorts: 4,096 /16s × 256 user agents, three sends each, every fourth clicked.
    let mut keys = Vec::with_capacity(1_000_000);
    for i in 0..1_000_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(((i % 4096) << 16) | 1));
        let ua = format!("Mozilla/5.0 (X11; Linux x86_64) Chrome/{}.0.0.0", i / 4096);
        let k = c.key(ip, ua.as_bytes(), b"en-US,en;q=0.9");
        for _ in 0..3 {
            c.sent(k, now);
        }
        if i % 4 == 0 {
            c.clicked(k, now + 30);
        }
        keys.push(k);
    }
    let tracked = rss_mb();
    println!(
        "1,000,000 cohorts: {} tracked, RSS {} MB -> {} MB ({} MB for the table)",
        c.len(),
        before,
        tracked,
        tracked - before
    );
    let later = now + 120;
    let confirmed = keys
        .iter()
        .step_by(4)
        .filter(|k| c.standing(**k, later) == Standing::Confirmed)
        .count();
    // Two million one-off cohorts: one send each, a fresh user agent every time.
    for i in 0..2_000_000u32 {
        let ua = format!("Mozilla/5.0 Chrome/{i}");
        c.sent(
            c.key(
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                ua.as_bytes(),
                b"",
            ),
            later,
        );
    }
    let flooded = rss_mb();
    let kept = keys
        .iter()
        .step_by(4)
        .filter(|k| c.standing(**k, later) == Standing::Confirmed)
        .count();
    println!(
        "after 2,000,000 one-off cohorts: {} tracked (cap 1,000,000), RSS {} MB; confirmed cohorts kept: {} of {}",
        c.len(),
        flooded,
        kept,
        confirmed
    );
}
