//! The bodies of the `policy` and `auth_policy` fuzz targets (`fuzz/fuzz_targets/`) on stable,
//! so CI runs them without nightly or cargo-fuzz: the committed seeds (checked to be what each
//! target's `seeds()` makes), then mutated seeds and random inputs built from the target's
//! dictionary. Every check is the target's; see `fuzz/stable.rs` for rewriting the seeds.

#[path = "../../../fuzz/fuzz_targets/auth_policy.rs"]
mod auth_policy;
#[path = "../../../fuzz/fuzz_targets/policy.rs"]
mod policy;
#[path = "../../../fuzz/stable.rs"]
mod stable;

use moat_mail::authpolicy::{Command, FailType};
use moat_mail::policy::PolicyError;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `run` over `rounds` mutated seeds and random inputs.
fn exercise<T>(target: &str, seeds: &[(String, Vec<u8>)], rounds: usize, run: impl Fn(&[u8]) -> T) {
    let tokens = stable::dict(DIR, target);
    let mut rng = stable::Rng::new(0x6d61_696c ^ target.len() as u64);
    for i in 0..rounds {
        let input = if i % 3 == 2 {
            stable::random(&mut rng, &tokens, 32)
        } else {
            {
                let seed = &seeds[rng.below(seeds.len())].1;
                stable::mutate(&mut rng, seed, &tokens)
            }
        };
        stable::reporting(&input, &run);
    }
}

fn find<'a>(seeds: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &seeds.iter().find(|(n, _)| n.ends_with(name)).unwrap().1
}

#[test]
fn policy_seeds_and_garbage() {
    let generated = policy::seeds();
    let seeds = stable::seeds(DIR, "policy", &generated);
    let run = |name: &str| policy::run(find(&generated, name));
    assert_eq!(run("-rcpt").requests, 1);
    assert_eq!(run("-two-requests").requests, 2);
    assert_eq!(run("-crlf").requests, 1);
    assert_eq!(run("-repeated-name").requests, 2);
    assert_eq!(run("-empty-request").error, Some(PolicyError::Empty));
    assert_eq!(run("-no-equals").error, Some(PolicyError::NoEquals));
    assert_eq!(run("-nul").error, Some(PolicyError::Nul));
    assert_eq!(run("-line-limit").error, Some(PolicyError::LineTooLong(12)));
    assert_eq!(
        run("-attr-limit").error,
        Some(PolicyError::TooManyAttributes(2))
    );
    assert_eq!(run("-unterminated"), policy::Seen::default());
    for (_, d) in &seeds {
        policy::run(d);
    }
    exercise("policy", &seeds, 100_000, policy::run);
}

#[test]
fn auth_policy_seeds_and_garbage() {
    use auth_policy::Seen;
    let generated = auth_policy::seeds();
    let seeds = stable::seeds(DIR, "auth_policy", &generated);
    let run = |name: &str| auth_policy::run(find(&generated, name));
    let Seen::Request(r) = run("-after-auth-account") else {
        panic!("not a request")
    };
    assert_eq!(
        (r.login.as_str(), r.fail_type, r.success),
        ("info@moat.test", FailType::Account, Some(false))
    );
    let Seen::Request(r) = run("-mapped-v4") else {
        panic!("not a request")
    };
    assert_eq!(r.remote, Some("192.0.2.1".parse().unwrap()));
    let Seen::Request(r) = run("-wrong-types") else {
        panic!("not a request")
    };
    assert_eq!(
        (r.login.as_str(), r.remote, r.success),
        ("", None, Some(false))
    );
    for refused in ["-array", "-garbage", "-deep"] {
        assert_eq!(run(refused), Seen::Refused, "{refused}");
    }
    assert_eq!(run("-query-allow"), Seen::Command(Some(Command::Allow)));
    assert_eq!(
        run("-query-report-later"),
        Seen::Command(Some(Command::Report))
    );
    assert_eq!(run("-query-unknown"), Seen::Command(None));
    for (_, d) in &seeds {
        auth_policy::run(d);
    }
    exercise("auth_policy", &seeds, 100_000, auth_policy::run);
}
