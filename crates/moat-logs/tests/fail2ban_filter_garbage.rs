//! The body of the `fail2ban_filter` fuzz target (`fuzz/fuzz_targets/fail2ban_filter.rs`) on
//! stable, so CI runs it without nightly or cargo-fuzz: the committed seeds (checked to be
//! what the target's `seeds()` makes), then a bounded number of mutated seeds and random inputs
//! built from its dictionary, each in a scratch directory. Every check is the target's; see
//! `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/fail2ban_filter.rs"]
mod fail2ban_filter;
#[path = "../../../fuzz/stable.rs"]
mod stable;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn fail2ban_filter_seeds_and_garbage() {
    let generated = fail2ban_filter::seeds();
    let seeds = stable::seeds(DIR, "fail2ban_filter", &generated);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("filter.d");
    let run = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        fail2ban_filter::run_in(&dir, d)
    };
    let failures = |name: &str| {
        let s = run(name);
        assert!(s.loaded && !s.untamed && !s.compile_error, "{name}: {s:?}");
        (s.failures, s.matched, s.ignored)
    };
    assert_eq!(failures("-sshd"), (4, 0, 1));
    assert_eq!(failures("-sshd-zurich-by-path"), (4, 0, 1));
    assert_eq!(failures("-postfix-modes"), (2, 0, 0), "aggressive: both");
    assert_eq!(failures("-postfix-replay-mode"), (2, 0, 0));
    assert_eq!(
        failures("-postfix-spec-quoted"),
        (1, 0, 0),
        "the spec's mode wins"
    );
    assert_eq!(failures("-dovecot-prefregex"), (2, 0, 1));
    assert_eq!(failures("-multiline-ids"), (3, 2, 0));
    assert_eq!(failures("-datepattern-and-local"), (2, 0, 0));
    assert_eq!(failures("-local-only"), (1, 0, 0));
    assert_eq!(failures("-epoch-subnet"), (3, 0, 0));
    assert_eq!(failures("-no-date"), (0, 2, 0), "no date, no time");
    assert_eq!(run("-no-date").dated_failures, 2);
    assert_eq!(failures("-include-loop"), (0, 1, 0));
    let error = |name: &str| run(name).load_error.unwrap_or_default();
    assert!(error("-no-filter-file").ends_with("f.conf:0: not found"));
    assert!(error("-load-error-in-include").contains("common.conf:3: `not an option`"));
    assert!(error("-load-error-value").contains("%(missing)s"));
    assert!(error("-load-error-maxlines").contains("maxlines"));
    assert!(error("-tag-loop").contains("refers to itself"));
    assert!(error("-not-utf8").contains("f.conf:0: "));
    assert_eq!(run("-ini-errors").ini_errors, 3);
    assert!(run("-ini-only").value_errors >= 2);
    assert!(run("-include-outside").outside);
    assert!(run("-untamed").untamed);
    assert!(run("-bad-regex").compile_error);
    // Found with the target's checks (fixed in ini.rs and tags.rs): references or tags that
    // multiply were expanded to 10^10 bytes, which hung and then ran out of memory.
    let s = run("-found-interpolation-bomb");
    assert_eq!((s.values, s.value_errors), (11, 7), "{s:?}");
    assert!(error("-found-interpolation-bomb-load").contains("more than 10000 %(…)s references"));
    assert!(
        error("-found-tag-bomb").contains("64 KiB"),
        "{}",
        error("-found-tag-bomb")
    );
    // Found with fail2ban_date's checks (fixed in date.rs): a date pattern that matched half a
    // character made `process_line` slice the line inside it.
    assert_eq!(failures("-found-date-splits-character"), (1, 0, 0));
    for (_, d) in &seeds {
        fail2ban_filter::run_in(&dir, d);
    }
    let tokens = stable::dict(DIR, "fail2ban_filter");
    let mut rng = stable::Rng::new(0x6632_6221);
    let rounds = if cfg!(debug_assertions) { 1_000 } else { 8_000 };
    for i in 0..rounds {
        let input = if i % 4 == 3 {
            stable::random(&mut rng, &tokens, 24)
        } else {
            let seed = &seeds[rng.below(seeds.len())].1;
            stable::mutate(&mut rng, seed, &tokens)
        };
        stable::reporting(&input, |d| fail2ban_filter::run_in(&dir, d));
    }
}
