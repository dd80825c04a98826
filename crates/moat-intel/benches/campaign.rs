//! Clustering cost, so that grouping a whole quarantine stays cheap, including the adversarial
//! case: a flood of messages under one subject with random bodies, which a naive pairwise
//! comparison would make quadratic. `cargo bench -p moat-intel --bench campaign`

use std::hint::black_box;

use divan::counter::ItemsCount;
use divan::Bencher;
use moat_intel::{cluster, Fingerprint};

fn main() {
    divan::main();
}

const N: usize = 10_000;

/// 200 runs of 50 messages, interleaved: each run has its own URL set half the time and a body
/// SimHash with up to 6 bits flipped per copy.
fn runs() -> Vec<(String, Fingerprint)> {
    let mut rng = fastrand::Rng::with_seed(1);
    let centres: Vec<u64> = (0..200).map(|_| rng.u64(..)).collect();
    (0..N)
        .map(|i| {
            let run = i % 200;
            let mut body = centres[run];
            for _ in 0..rng.usize(..=6) {
                body ^= 1 << rng.u32(..64);
            }
            let fp = Fingerprint {
                url_set: (run % 2 == 0).then_some(run as u64),
                subject_skeleton: format!("offer number {run}"),
                body: Some(body),
            };
            (format!("m{i}"), fp)
        })
        .collect()
}

/// One subject, random bodies, no links: nothing links, everything must still be looked at.
fn flood() -> Vec<(String, Fingerprint)> {
    let mut rng = fastrand::Rng::with_seed(2);
    (0..N)
        .map(|i| {
            let fp = Fingerprint {
                url_set: None,
                subject_skeleton: "your account".into(),
                body: Some(rng.u64(..)),
            };
            (format!("m{i}"), fp)
        })
        .collect()
}

#[divan::bench]
fn runs_10k(bencher: Bencher) {
    let items = runs();
    bencher
        .counter(ItemsCount::new(items.len()))
        .bench(|| cluster(black_box(&items)));
}

#[divan::bench]
fn flood_10k(bencher: Bencher) {
    let items = flood();
    bencher
        .counter(ItemsCount::new(items.len()))
        .bench(|| cluster(black_box(&items)));
}
