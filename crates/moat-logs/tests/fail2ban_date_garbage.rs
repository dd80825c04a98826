//! The body of the `fail2ban_date` fuzz target (`fuzz/fuzz_targets/fail2ban_date.rs`) on
//! stable, so CI runs it without nightly or cargo-fuzz: the committed seeds (checked to be
//! what the target's `seeds()` makes), then a bounded number of mutated seeds and random inputs
//! built from its dictionary. Every check is the target's; see `fuzz/stable.rs` for rewriting
//! the seeds.

#[path = "../../../fuzz/fuzz_targets/fail2ban_date.rs"]
mod fail2ban_date;
#[path = "../../../fuzz/stable.rs"]
mod stable;

use jiff::tz::TimeZone;
use moat_logs::fail2ban::date::DateDetector;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn fail2ban_date_seeds_and_garbage() {
    let generated = fail2ban_date::seeds();
    let seeds = stable::seeds(DIR, "fail2ban_date", &generated);
    let run = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        fail2ban_date::run(d)
    };
    let s = run("-defaults");
    assert_eq!((s.located, s.timed), (15, 14), "{s:?}");
    assert!(s.recent >= 10, "{s:?}");
    assert!(run("-bad-code").error && run("-bad-regex").error);
    assert!(run("-untamed").untamed);
    let s = run("-iso");
    assert_eq!(
        (s.located, s.timed),
        (2, 1),
        "anchored; no 30 February: {s:?}"
    );
    let s = run("-none");
    assert_eq!(s.located, 0, "{s:?}");
    // Found with the target's checks (fixed in date.rs): a span that split a character, a
    // two-digit year or a 12-hour clock's hour that overflowed, a year or day that wrapped
    // around to another date.
    let s = run("-found-split-character");
    assert_eq!(
        s.located, 1,
        "only in the line that starts with a whole character: {s:?}"
    );
    for name in ["-found-year-overflow", "-found-hour-overflow"] {
        let s = run(name);
        assert_eq!((s.located, s.timed), (1, 0), "{name}: {s:?}");
    }
    let s = run("-found-year-wraps");
    assert_eq!((s.located, s.timed), (2, 1), "{s:?}");
    let s = run("-found-day-wraps");
    assert_eq!((s.located, s.timed), (2, 1), "{s:?}");
    let mut d = DateDetector::from_pattern(r"%Y-%m-(?P<d>\d+)").unwrap();
    let (now, tz) = ("2005-08-14T10:00:00Z".parse().unwrap(), TimeZone::UTC);
    assert_eq!(d.find("2005-01-257", now, &tz).unwrap().time, None);
    let mut d = DateDetector::from_pattern("{UNB}.").unwrap();
    assert_eq!(
        d.find("\u{e9}x", now, &tz),
        None,
        "no date in half a character"
    );
    assert_eq!(
        d.find("x\u{e9}", now, &tz).map(|f| (f.start, f.end)),
        Some((0, 1))
    );
    for (_, d) in &seeds {
        fail2ban_date::run(d);
    }
    let tokens = stable::dict(DIR, "fail2ban_date");
    let mut rng = stable::Rng::new(0x6461_7465);
    let rounds = if cfg!(debug_assertions) {
        1_500
    } else {
        12_000
    };
    for i in 0..rounds {
        let input = if i % 3 == 2 {
            stable::random(&mut rng, &tokens, 16)
        } else {
            let seed = &seeds[rng.below(seeds.len())].1;
            stable::mutate(&mut rng, seed, &tokens)
        };
        stable::reporting(&input, fail2ban_date::run);
    }
}
