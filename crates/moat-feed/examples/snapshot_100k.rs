//! Verifying and applying a 100,000-indicator snapshot, as a subscriber does on its first poll
//! of a big feed: how long it takes and how much RSS it adds (issue 19's target: ≤ 2 s,
//! ≤ 50 MB). Also what the snapshot weighs on the wire.
//!
//! `cargo run --release -p moat-feed --example snapshot_100k`

use moat_feed::{Indicator, Kind, PeerView, Publisher, SignerKey};
use std::time::Instant;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    const N: u32 = 100_000;
    let now = 1_765_000_000u64;
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "verify" {
        return verify(std::path::Path::new(&args[2]), now, N as usize);
    }
    let indicators: Vec<Indicator> = (0..N)
        .map(|i| {
            let [_, b, c, d] = (0x2c00_0000u32 + i * 7).to_be_bytes();
            Indicator {
                kind: Kind::Ip,
                value: format!("44.{b}.{c}.{d}"),
                detector: "jail:postfix-sasl".into(),
                count: u64::from(i % 5 + 1),
                first_seen: now - 3600,
                last_seen: now - 60,
                expires: now + 86_400,
            }
        })
        .collect();
    let key = SignerKey::generate("bench").unwrap();
    let vkey = key.verifier();
    let mut p = Publisher::new(key, None, 3600);
    let t = Instant::now();
    let out = p.update(indicators, now).unwrap();
    let publish = t.elapsed();
    let snapshot_bytes: usize = out.files.iter().map(|(_, b)| b.len()).sum();
    println!(
        "publish {N} indicators: {publish:?}; snapshot {:.2} MB gzip'd",
        snapshot_bytes as f64 / 1e6
    );
    // The subscriber's side in a process of its own, so its RSS is its own.
    let dir = std::env::temp_dir().join(format!("moat-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("head"), &out.head).unwrap();
    std::fs::write(dir.join("vkey"), vkey.to_string()).unwrap();
    std::fs::write(dir.join("file"), &out.files[0].1).unwrap();
    let status = std::process::Command::new(&args[0])
        .arg("verify")
        .arg(&dir)
        .status()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success());
}

fn verify(dir: &std::path::Path, now: u64, n: usize) {
    let head = std::fs::read_to_string(dir.join("head")).unwrap();
    let vkey: moat_feed::VerifierKey = std::fs::read_to_string(dir.join("vkey"))
        .unwrap()
        .parse()
        .unwrap();
    let files = vec![std::fs::read(dir.join("file")).unwrap()];
    let rss0 = rss_kb();
    let t = Instant::now();
    let mut view = PeerView::default();
    let plan = view.check_head(&vkey, &head, now).unwrap().unwrap();
    view.apply(plan, &files).unwrap();
    let apply = t.elapsed();
    let (rss1, hwm1) = (rss_kb(), hwm_kb());
    assert_eq!(view.live(now).count(), n);
    println!("verify and apply: {apply:?}");
    println!(
        "RSS: +{:.1} MB kept (the view), +{:.1} MB at the peak",
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        hwm1.saturating_sub(rss0) as f64 / 1024.0
    );
}
