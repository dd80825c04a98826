//! Issue 18: what cohort tracking costs a request on a `[[confirm]]` route: finding its cohort
//! (hashing network, user agent and language) and its standing, and counting a send.

use moat_config::CohortSettings;
use moat_detect::Cohorts;
use std::net::IpAddr;

fn main() {
    divan::main();
}

const UA: &[u8] = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A table of 100,000 cohorts, as under a long attack.
fn filled() -> (Cohorts, Vec<u64>) {
    let c = Cohorts::new(CohortSettings::default());
    let keys: Vec<u64> = (0..100_000u32)
        .map(|i| {
            let ip = IpAddr::from((i << 12).to_be_bytes());
            let k = c.key(ip, UA, b"en-US,en;q=0.9");
            c.sent(k, 1_000);
            k
        })
        .collect();
    (c, keys)
}

/// The key of a request's cohort (the ASN table absent: its /16).
#[divan::bench]
fn key(b: divan::Bencher) {
    let c = Cohorts::new(CohortSettings::default());
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    b.bench_local(|| {
        c.key(
            divan::black_box(ip),
            divan::black_box(UA),
            b"en-US,en;q=0.9",
        )
    });
}

/// The standing of a known cohort, among 100,000.
#[divan::bench]
fn standing(b: divan::Bencher) {
    let (c, keys) = filled();
    let mut i = 0;
    b.bench_local(|| {
        i = (i + 1) % keys.len();
        c.standing(divan::black_box(keys[i]), 2_000)
    });
}

/// Counting a send the app accepted.
#[divan::bench]
fn sent(b: divan::Bencher) {
    let (c, keys) = filled();
    let mut i = 0;
    b.bench_local(|| {
        i = (i + 1) % keys.len();
        c.sent(divan::black_box(keys[i]), 2_000)
    });
}
