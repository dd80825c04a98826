//! The body of the `log_lines` fuzz target (`fuzz/fuzz_targets/log_lines.rs`) on stable, so CI
//! runs it without nightly or cargo-fuzz: the committed seeds (checked to be what the target's
//! `seeds()` makes), then a bounded number of mutated seeds and random inputs built from its
//! dictionary. Every check is the target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/log_lines.rs"]
mod log_lines;
#[path = "../../../fuzz/stable.rs"]
mod stable;

use moat_logs::source::journal::parse_record;
use moat_logs::source::DEFAULT_MAX_LINE;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn log_lines_seeds_and_garbage() {
    let generated = log_lines::seeds();
    let seeds = stable::seeds(DIR, "log_lines", &generated);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let run = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        log_lines::run_in(&dir, d)
    };
    let s = run("-split-plain");
    assert_eq!((s.lines, s.finished), (4, true), "{s:?}");
    assert_eq!(run("-split-discard").lines, 2);
    let s = run("-split-discard-no-newline");
    assert_eq!((s.lines, s.finished), (0, false), "{s:?}");
    assert_eq!(run("-split-long").lines, 3);
    assert_eq!(run("-checkpoint").positions, Some(3));
    assert_eq!(run("-checkpoint-empty-positions").positions, Some(0));
    assert_eq!(
        run("-checkpoint-duplicate-key").positions,
        Some(1),
        "the last wins"
    );
    assert_eq!(run("-checkpoint-unicode-keys").positions, Some(2));
    let error = |name: &str| run(name).checkpoint_error.unwrap_or_default();
    assert!(error("-checkpoint-version-2").contains("format version 2"));
    for bad in ["-garbage", "-empty-file", "-no-positions", "-bad-mark"] {
        assert!(
            error(&format!("-checkpoint{bad}")).contains("is not valid"),
            "{bad}"
        );
    }
    assert_eq!(run("-journal-sshd").lines, 1);
    assert_eq!(run("-journal-bytes-and-many").lines, 3);
    assert_eq!(run("-journal-kernel").lines, 1);
    assert_eq!(run("-journal-cut-multibyte").lines, 2);
    let s = run("-journal-odd");
    assert_eq!((s.lines, s.bad_records), (3, 5), "{s:?}");
    // What the journal's lines look like, for the record.
    let source: std::sync::Arc<str> = "journal:sshd".into();
    let (_, sshd) = generated
        .iter()
        .find(|(n, _)| n.ends_with("-journal-sshd"))
        .unwrap();
    let line = parse_record(&sshd[1..], &source, DEFAULT_MAX_LINE).unwrap();
    assert_eq!(
        line.text,
        "host sshd[1234]: Failed password for root from 192.0.2.10 port 22 ssh2"
    );
    assert_eq!(line.time.map(|t| t.as_second()), Some(1_123_977_599));
    let (_, kernel) = generated
        .iter()
        .find(|(n, _)| n.ends_with("-journal-kernel"))
        .unwrap();
    let line = parse_record(&kernel[1..], &source, DEFAULT_MAX_LINE).unwrap();
    assert_eq!(line.text, "kernel: [  123.456789] x");
    for (_, d) in &seeds {
        log_lines::run_in(&dir, d);
    }
    let tokens = stable::dict(DIR, "log_lines");
    let mut rng = stable::Rng::new(0x6c69_6e65);
    let rounds = if cfg!(debug_assertions) {
        12_000
    } else {
        60_000
    };
    for i in 0..rounds {
        let input = if i % 4 == 3 {
            stable::random(&mut rng, &tokens, 24)
        } else {
            let seed = &seeds[rng.below(seeds.len())].1;
            stable::mutate(&mut rng, seed, &tokens)
        };
        stable::reporting(&input, |d| log_lines::run_in(&dir, d));
    }
}
