//! The browser proof's parsers on arbitrary text from a client: the clearance cookie
//! (`token::open` and `token::verify`), a clearance challenge and its nonce
//! (`challenge::check`, what `/.moat/verify` gets) and a per-action proof (`action::check`, the
//! `Moat-Proof` header). Beyond "never panics":
//!
//! - what verifies was signed by the ring: the same text with one byte of its signed part
//!   changed (which one, the control byte says) is refused;
//! - a per-action proof is bound to its target: the text that verifies for one email is
//!   refused for another.
//!
//! Input: a control byte, then the text (a challenge and its nonce are separated by a space).
//! The same file runs on stable as a plain test (`crates/moat-proof/tests/proof_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_proof::keys::Key;
use moat_proof::{action, challenge, token, ua_hash, KeyRing, Net};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// The time the checks run at; seeds expire long after.
const NOW: u64 = 1_000_000;
const EXPIRES: u64 = 4_000_000_000;
const UA: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0";
const ROUTE: &str = "ghost-no-clearance";

/// A fixed key, so the committed seeds verify.
fn ring() -> KeyRing {
    KeyRing::from_keys(Key::from_secret(3, 0, [0x5a; 32]), None)
}

fn net() -> Net {
    Net::of("192.0.2.4".parse().unwrap(), 24, 64)
}

fn target(email: &[u8]) -> [u8; 8] {
    action::target_hash(ROUTE, email)
}

/// What a run found, for the stable test to check that the seeds go where they should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Refused,
    Token,
    Challenge,
    Action,
}

fn verdict(text: &str) -> Seen {
    let ring = ring();
    let ua = ua_hash(UA);
    let _ = token::open(&ring, text);
    if token::verify(&ring, text, NOW, ua, net()).is_ok() {
        return Seen::Token;
    }
    if let Some((c, nonce)) = text.split_once(' ') {
        if challenge::check(&ring, c, nonce, NOW, ua, net()).is_ok() {
            return Seen::Challenge;
        }
    }
    if action::check(&ring, text, NOW, ua, net(), target(b"reader@example.com")).is_ok() {
        assert!(
            action::check(&ring, text, NOW, ua, net(), target(b"victim@example.org")).is_err(),
            "a per-action proof verified for another target"
        );
        return Seen::Action;
    }
    Seen::Refused
}

pub fn run(data: &[u8]) -> Seen {
    let Some((&ctl, rest)) = data.split_first() else {
        return Seen::Refused;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        // The proxy reads these from headers as text; other bytes never get this far.
        return Seen::Refused;
    };
    let seen = verdict(text);
    if seen != Seen::Refused {
        // The signed part: up to the nonce's separator.
        let signed = text.find([' ', '.']).unwrap_or(text.len());
        if signed > 0 {
            let i = usize::from(ctl) % signed;
            let mut b = text.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(b).unwrap();
            assert_eq!(
                verdict(&changed),
                Seen::Refused,
                "{changed:?} still verifies"
            );
        }
    }
    seen
}

/// Every kind, valid and broken: the seeds in `fuzz/seeds/proof_tokens`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let ring = ring();
    let ua = ua_hash(UA);
    let solve = |c: &str, bits: u8| {
        (0u64..)
            .map(|n| n.to_string())
            .find(|n| challenge::solves(c, n, bits))
            .unwrap()
    };
    let tok = token::mint(
        &ring,
        &token::Clearance::new(token::Kind::Work, EXPIRES, ua, net(), None),
    );
    let c = challenge::issue(&ring, EXPIRES, 10, ua, net(), [9; 16]);
    let solved = format!("{c} {}", solve(&c, 10));
    let a = action::issue(
        &ring,
        EXPIRES,
        10,
        ua,
        net(),
        target(b"reader@example.com"),
        [8; 16],
    );
    let proof = format!("{a}.{}", solve(&a, 10));
    let other_ua = token::mint(
        &ring,
        &token::Clearance::new(token::Kind::Work, EXPIRES, ua_hash(b"curl"), net(), None),
    );
    let cases: Vec<(&str, u8, String)> = vec![
        ("token", 5, tok.clone()),
        ("challenge", 7, solved),
        ("action", 11, proof.clone()),
        ("token-other-ua", 0, other_ua),
        ("token-truncated", 0, tok[..tok.len() - 1].to_string()),
        ("action-no-nonce", 0, a.clone()),
        ("action-empty-nonce", 0, format!("{a}.")),
        ("action-as-challenge", 0, format!("{a} 1")),
        ("challenge-as-action", 0, format!("{c}.1")),
        ("two-dots", 0, format!("{proof}.1")),
        ("empty", 0, String::new()),
        ("dot", 0, ".".into()),
        ("long-nonce", 0, format!("{a}.{}", "9".repeat(40))),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, ctl, text))| {
            let mut d = vec![ctl];
            d.extend_from_slice(text.as_bytes());
            (format!("{i:02}-{name}"), d)
        })
        .collect()
}
