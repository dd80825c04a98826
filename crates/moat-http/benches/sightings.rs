//! Issue 20: what the dashboard's Who and People pages add to every decision under attack
//! (`Sightings::decision`: a user agent and a header shape counted, a stopped client
//! remembered), beside what every decision already paid (`DecisionLog::admit`). A flood from
//! rotating addresses with rotating made-up user agents is the worst case: every key new.

use moat_engine::decision_log::DecisionLog;
use moat_http::sightings::Sightings;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};

fn main() {
    divan::main();
}

fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc633_6400u32.wrapping_add(i)))
}

/// One script: one address, one user agent (a flood from one client, or a cohort).
#[divan::bench]
fn sightings_one_script(b: divan::Bencher) {
    let s = Sightings::default();
    b.bench_local(|| {
        s.decision(
            60_000,
            client(1),
            "ghost-script-user-agent",
            "decoy",
            "python-requests/2.32.3",
            "1p04_a-e--------_-_3c9a0f1e2b7d4a66",
        )
    });
}

/// Rotating addresses and a new made-up user agent each time (bounded at 5,000 a minute).
#[divan::bench]
fn sightings_rotating(b: divan::Bencher) {
    let s = Sightings::default();
    let n = AtomicU32::new(0);
    b.bench_local(|| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let ua = format!("Mozilla/5.0 (bot {i}) AppleWebKit/537.36");
        s.decision(
            60_000,
            client(i),
            "limit",
            "block",
            &ua,
            "1p09_alecsmd----_y_0f1e2b7d4a663c9a",
        )
    });
}

/// What every decision paid before: the decision log's admission, rotating addresses.
#[divan::bench]
fn decision_log_rotating(b: divan::Bencher) {
    let log = DecisionLog::default();
    let n = AtomicU32::new(0);
    b.bench_local(|| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        log.admit(60_000, "limit", "block", client(i), 400)
    });
}
