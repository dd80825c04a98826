//! The body of the `feed` fuzz target (`fuzz/fuzz_targets/`) on stable, so CI runs it without
//! nightly or cargo-fuzz: the committed seeds (checked to be what the target's `seeds()`
//! makes), then mutated seeds and random inputs built from its dictionary. Every check is the
//! target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/feed.rs"]
mod feed;
#[path = "../../../fuzz/stable.rs"]
mod stable;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn feed_seeds_and_garbage() {
    let generated = feed::seeds();
    let seeds = stable::seeds(DIR, "feed", &generated);
    let accepted = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n == name).unwrap();
        feed::run(d)
    };
    assert_eq!(accepted("feed-head"), 1, "a signed head opens");
    assert_eq!(
        accepted("feed-head-flipped"),
        0,
        "a changed byte breaks the signature"
    );
    assert_eq!(accepted("feed-head-unsigned"), 0);
    assert_eq!(accepted("feed-file"), 1);
    assert_eq!(accepted("feed-file-cut"), 0, "a cut file is refused whole");
    assert_eq!(accepted("feed-lines"), 1);
    assert_eq!(
        accepted("feed-lines-bad"),
        0,
        "an address that is not one fails the file"
    );
    for (_, d) in &seeds {
        feed::run(d);
    }
    stable::exercise(DIR, "feed", &seeds, 20_000, 0x6665_6564, feed::run);
}
