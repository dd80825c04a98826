//! The body of the `journal_recovery` fuzz target (`fuzz/fuzz_targets/journal_recovery.rs`) on
//! stable, so CI runs it without nightly or cargo-fuzz: the committed seeds (checked to be what
//! the target's `seeds()` makes), then a bounded number of mutated seeds and random inputs
//! built from its dictionary, each recovered twice in a scratch directory. Every check is the
//! target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/journal_recovery.rs"]
mod journal_recovery;
#[path = "../../../fuzz/stable.rs"]
mod stable;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn scratch() -> tempfile::TempDir {
    // The recovery syncs; on tmpfs that costs nothing.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

#[test]
fn journal_recovery_seeds_and_garbage() {
    let generated = journal_recovery::seeds();
    let seeds = stable::seeds(DIR, "journal_recovery", &generated);
    let tmp = scratch();
    let root = tmp.path().join("q");
    let run = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        journal_recovery::run_in(&root, d)
    };
    let s = run("-two-and-preallocated");
    assert_eq!((s.frames, s.recovered, s.torn), (2, 2, false), "{s:?}");
    let s = run("-duplicate-content");
    assert_eq!((s.frames, s.recovered), (2, 2), "{s:?}");
    let s = run("-torn-tail");
    assert_eq!((s.recovered, s.torn), (1, true), "{s:?}");
    let s = run("-damaged-middle");
    assert_eq!(
        (s.frames, s.valid, s.recovered, s.damaged),
        (3, 2, 2, true),
        "{s:?}"
    );
    let s = run("-bad-checksum-last");
    assert_eq!(
        (s.recovered, s.damaged),
        (1, false),
        "a bad last frame is a torn tail: {s:?}"
    );
    let s = run("-huge-length");
    assert_eq!((s.frames, s.torn), (0, true), "{s:?}");
    let s = run("-s-same-id-other-content");
    assert_eq!(
        (s.valid, s.recovered),
        (2, 2),
        "both, the second under a derived id: {s:?}"
    );
    let s = run("-s-wrong-checksum");
    assert_eq!((s.valid, s.recovered), (1, 1), "{s:?}");
    let s = run("-s-old-header");
    assert_eq!(s.recovered, 1, "{s:?}");
    assert!(run("-s-slash-id").refused);
    let s = run("-s-damaged-and-unfileable");
    assert!(s.refused && !s.damaged, "kept as it is: {s:?}");
    for (_, d) in &seeds {
        journal_recovery::run_in(&root, d);
    }
    let tokens = stable::dict(DIR, "journal_recovery");
    let mut rng = stable::Rng::new(0x6a6f_7572);
    let rounds = if cfg!(debug_assertions) { 1_200 } else { 5_000 };
    for i in 0..rounds {
        let input = if i % 4 == 3 {
            stable::random(&mut rng, &tokens, 8)
        } else {
            {
                let seed = &seeds[rng.below(seeds.len())].1;
                stable::mutate(&mut rng, seed, &tokens)
            }
        };
        stable::reporting(&input, |d| journal_recovery::run_in(&root, d));
    }
}
