//! Fills `DIR/moat.db` with N active decisions, as a ban storm would leave it: addresses from
//! many /24s, origins from rules, jails and feeds, a day to run. For `bench/dashboard_pages.sh`
//! (the dashboard's pages with a million decisions in the store).
//!
//! `cargo run --release -p moat-store --example fill_decisions -- DIR N`

use moat_core::{Decision, Origin, Scope, Verdict};
use moat_store::{SqliteStore, Store};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: fill_decisions DIR N");
        std::process::exit(2);
    };
    let store = SqliteStore::open_dir(std::path::Path::new(&dir)).expect("open the store");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let origins = [
        "rule:signup-flood",
        "jail:sshd",
        "feed:peers",
        "escalation",
        "manual",
    ];
    let started = std::time::Instant::now();
    let mut i = 0u32;
    while i < n {
        let end = (i + 50_000).min(n);
        store
            .batch(&mut || {
                for k in i..end {
                    // 198.18.0.0/15 and onwards: a spread of /24s, one address each few.
                    let ip = Ipv4Addr::from(0xC612_0000u32.wrapping_add(k.wrapping_mul(7)));
                    let d = Decision {
                        scope: Scope::Ip(IpAddr::V4(ip)),
                        verdict: Verdict::Ban,
                        // Spread over the last hour, newest last.
                        created_ms: now - 3_600_000 + u64::from(k) * 3_600_000 / u64::from(n),
                        expires_ms: Some(now + 86_400_000),
                        reason: format!("bench ban {k}"),
                        origin: Origin::parse(origins[k as usize % origins.len()]),
                        offences: 1,
                    };
                    store.put_decision(&d).expect("write a decision");
                }
            })
            .expect("commit");
        i = end;
    }
    eprintln!(
        "{n} decisions written to {dir} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
