//! The body of the `cohort_table` fuzz target (`fuzz/fuzz_targets/`) on stable, so CI runs it
//! without nightly or cargo-fuzz: the committed seeds (checked to be what the target's
//! `seeds()` makes), then mutated seeds and random inputs built from its dictionary. Every
//! check is the target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/cohort_table.rs"]
mod cohort_table;
#[path = "../../../fuzz/stable.rs"]
mod stable;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn cohort_table_seeds_and_garbage() {
    // The seeds hold keys under a random hashing key, so they are made once (with
    // MOAT_WRITE_FUZZ_SEEDS=1) and committed; what is checked is what each kind of file does.
    let generated = if std::env::var_os("MOAT_WRITE_FUZZ_SEEDS").is_some() {
        cohort_table::seeds()
    } else {
        Vec::new()
    };
    let seeds = stable::seeds(DIR, "cohort_table", &generated);
    let kept = |name: &str| {
        let (_, d) = seeds.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        cohort_table::run(d)
    };
    assert_eq!(kept("-table"), Some(3));
    assert_eq!(kept("-empty"), Some(0));
    assert_eq!(
        kept("-nan"),
        Some(2),
        "the entry with a NaN count is dropped"
    );
    assert_eq!(kept("-cut"), None);
    assert_eq!(kept("-no-header"), None);
    stable::exercise(
        DIR,
        "cohort_table",
        &seeds,
        30_000,
        0x636f_686f,
        cohort_table::run,
    );
}
