//! Issue 20's disk target: 30 days of per-minute series for every dashboard counter in
//! `series.sqlite`, each minute with every counter busy (numbers of six digits, the worst case
//! for SQLite's variable-length integers). Prints the rows and the file's size (with its WAL
//! checkpointed). Run by bench/dashboard.sh: `series_size PATH`.

use moat_web::dashboard::live::{Minute, KINDS};
use moat_web::dashboard::series::{Series, KEEP_MINUTES};

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "series.sqlite".into());
    let path = std::path::PathBuf::from(path);
    let start = 29_000_000u64;
    {
        let s = Series::open(&path).expect("opening the series");
        for i in 0..KEEP_MINUTES {
            let mut m = Minute {
                minute: start + i,
                ..Default::default()
            };
            for (k, c) in m.counts.iter_mut().enumerate() {
                *c = 100_000 + (i * 7 + k as u64) % 900_000;
            }
            s.put(&m).expect("writing a minute");
        }
        let rows = s.minutes(0, u64::MAX / 2).expect("reading").len();
        println!("series: {rows} minutes x {} counters", KINDS.len());
    }
    // Closing the last connection checkpoints the WAL into the file.
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let wal = std::fs::metadata(path.with_extension("sqlite-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "series.sqlite: {:.1} MB (+{:.1} MB WAL) for 30 days",
        size as f64 / 1e6,
        wal as f64 / 1e6
    );
}
