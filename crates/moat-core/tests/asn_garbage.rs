//! The body of the `asn_table` fuzz target (`fuzz/fuzz_targets/`) on stable, so CI runs it
//! without nightly or cargo-fuzz: the committed seeds (checked to be what the target's
//! `seeds()` makes), then mutated seeds and random inputs built from its dictionary. Every
//! check is the target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/asn_table.rs"]
mod asn_table;
#[path = "../../../fuzz/stable.rs"]
mod stable;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn asn_table_seeds_and_garbage() {
    let generated = asn_table::seeds();
    let seeds = stable::seeds(DIR, "asn_table", &generated);
    let rows = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        asn_table::run(d)
    };
    assert_eq!(rows("-combined"), Some(3), "the unrouted row is left out");
    assert_eq!(rows("-comments"), Some(2));
    for broken in [
        "-overlap",
        "-truncated",
        "-reversed",
        "-mixed",
        "-not-a-table",
    ] {
        assert_eq!(rows(broken), None, "{broken}");
    }
    for (_, d) in &seeds {
        asn_table::run(d);
    }
    stable::exercise(
        DIR,
        "asn_table",
        &seeds,
        30_000,
        0x0061_736e,
        asn_table::run,
    );
}
