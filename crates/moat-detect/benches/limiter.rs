//! Issue 2 speed targets for the local rate limiter (GCRA): at least 5 million checks per second
//! on one core, the check every request on a limited route does.

use moat_detect::Limiter;

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
