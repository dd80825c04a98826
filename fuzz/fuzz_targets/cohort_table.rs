//! The cohort table Moat keeps in its state directory (`moat_detect::Cohorts::import`) on
//! arbitrary bytes: the file may be cut short by a full disk or damaged on it. Beyond "never
//! panics":
//!
//! - every entry kept has counts that make sense, so no standing is computed from a NaN;
//! - what is imported exports and imports again to the same entries (a restart after a
//!   restart loses nothing more).
//!
//! The same file runs on stable as a plain test (`crates/moat-detect/tests/cohort_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_config::CohortSettings;
use moat_detect::Cohorts;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// The time the table is read at.
const NOW: u64 = 2_000_000;

fn settings() -> CohortSettings {
    CohortSettings {
        max_cohorts: 4096,
        ..CohortSettings::default()
    }
}

/// Imports `data`; returns how many entries were kept, or None if it was refused or cut short.
pub fn run(data: &[u8]) -> Option<usize> {
    let (c, read) = Cohorts::import(settings(), data, NOW);
    let again = c.export(NOW);
    let (d, reread) = Cohorts::import(settings(), &again, NOW);
    assert!(reread.is_ok(), "an export does not import: {reread:?}");
    assert_eq!(
        records(&d.export(NOW)),
        records(&again),
        "an export changed by a round trip"
    );
    read.ok()
}

/// An export's header and its records in order (the table's own order is its hash map's).
fn records(export: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    const RECORD: usize = 28;
    let (head, rest) = export.split_at(24.min(export.len()));
    let mut r: Vec<Vec<u8>> = rest.chunks(RECORD).map(<[u8]>::to_vec).collect();
    r.sort();
    (head.to_vec(), r)
}

/// Tables as Moat writes them, and damaged ones.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let c = Cohorts::new(settings());
    let ip = "203.0.113.5".parse().unwrap();
    let (people, farm) = (c.key(ip, b"Chrome", b"en"), c.key(ip, b"farm", b"en"));
    c.sent(people, NOW - 5000);
    c.clicked(people, NOW - 4000);
    for _ in 0..20 {
        c.sent(farm, NOW - 5000);
    }
    c.sent(c.key(ip, b"once", b""), NOW - 10);
    let table = c.export(NOW);
    let mut nan = table.clone();
    nan[24 + 8..24 + 12].copy_from_slice(&f32::NAN.to_le_bytes());
    vec![
        ("cohorts-table".into(), table.clone()),
        ("cohorts-empty".into(), table[..24].to_vec()),
        ("cohorts-cut".into(), table[..table.len() - 3].to_vec()),
        ("cohorts-nan".into(), nan),
        ("cohorts-no-header".into(), b"MOATCOH0".to_vec()),
    ]
}
