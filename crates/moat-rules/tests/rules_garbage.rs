//! The body of the `rules` fuzz target (`fuzz/fuzz_targets/rules.rs`) on stable, so CI runs it
//! without nightly or cargo-fuzz: the committed seeds (checked to be what the target's
//! `seeds()` makes), then mutated seeds and random inputs built from its dictionary. Every
//! check is the target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/rules.rs"]
mod rules;
#[path = "../../../fuzz/stable.rs"]
mod stable;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn rules_seeds_and_garbage() {
    let generated = rules::seeds();
    let seeds = stable::seeds(DIR, "rules", &generated);
    let run =
        |name: &str| rules::run(&generated.iter().find(|(n, _)| n.ends_with(name)).unwrap().1);
    for ok in [
        "-magic-link",
        "-chrome-regex",
        "-networks",
        "-json",
        "-quantifiers",
        "-affixes",
        "-xor",
        "-sets-and-ranges",
        "-comparisons",
        "-fingerprint",
        "-prefix",
        "-multiline-comment",
        "-unicode",
    ] {
        if ok == "-unicode" {
            assert_eq!(run(ok).errors, 1, "{ok}");
            continue;
        }
        assert_eq!(run(ok).compiled, 1, "{ok}");
    }
    assert_eq!(run("-several").compiled, 4);
    assert_eq!(run("-errors").errors, 4);
    assert_eq!(run("-deep").errors, 1, "nested too deeply");
    let matched: usize = generated.iter().map(|(_, d)| rules::run(d).matched).sum();
    assert!(
        matched >= 10,
        "the seeds match some of the requests: {matched}"
    );
    for (_, d) in &seeds {
        rules::run(d);
    }
    let tokens = stable::dict(DIR, "rules");
    let mut rng = stable::Rng::new(0x7275_6c65);
    let rounds = if cfg!(debug_assertions) {
        40_000
    } else {
        200_000
    };
    for i in 0..rounds {
        let input = if i % 3 == 2 {
            // The control byte is just text here.
            stable::random(&mut rng, &tokens, 16)
        } else {
            {
                let seed = &seeds[rng.below(seeds.len())].1;
                stable::mutate(&mut rng, seed, &tokens)
            }
        };
        stable::reporting(&input, rules::run);
    }
}
