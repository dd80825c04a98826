//! The body of the `proof_tokens` fuzz target (`fuzz/fuzz_targets/`) on stable, so CI runs it
//! without nightly or cargo-fuzz: the committed seeds (checked to be what the target's
//! `seeds()` makes), then mutated seeds and random inputs built from its dictionary. Every
//! check is the target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/proof_tokens.rs"]
mod proof_tokens;
#[path = "../../../fuzz/stable.rs"]
mod stable;

use proof_tokens::Seen;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn proof_tokens_seeds_and_garbage() {
    let generated = proof_tokens::seeds();
    let seeds = stable::seeds(DIR, "proof_tokens", &generated);
    let seen = |name: &str| {
        let (_, d) = generated.iter().find(|(n, _)| n.ends_with(name)).unwrap();
        proof_tokens::run(d)
    };
    assert_eq!(seen("-token"), Seen::Token);
    assert_eq!(seen("-challenge"), Seen::Challenge);
    assert_eq!(seen("-action"), Seen::Action);
    for refused in [
        "-token-other-ua",
        "-token-truncated",
        "-action-no-nonce",
        "-action-empty-nonce",
        "-action-as-challenge",
        "-challenge-as-action",
        "-two-dots",
        "-empty",
        "-long-nonce",
    ] {
        assert_eq!(seen(refused), Seen::Refused, "{refused}");
    }
    for (_, d) in &seeds {
        proof_tokens::run(d);
    }
    stable::exercise(
        DIR,
        "proof_tokens",
        &seeds,
        30_000,
        0x0070_726f_6f66,
        proof_tokens::run,
    );
}
