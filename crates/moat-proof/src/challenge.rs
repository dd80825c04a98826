//! Proof-of-work challenges: issued signed and stateless, redeemed once.
//!
//! The browser must find a decimal `nonce` such that `SHA-256(challenge ":" nonce)` starts with
//! `difficulty` zero bits (bits rather than Anubis's hex digits, so adaptive difficulty can
//! double the work instead of multiplying it by 16). Expected work is `2^difficulty` hashes.
//!
//! A challenge is signed, short-lived and bound to the user agent and network it was issued
//! to, so nothing is stored when issuing (a flood of challenge requests costs no memory); a
//! [`Spent`] set remembers redeemed challenges until they expire, so one solution buys one
//! clearance. Layout, then base64url:
//!
//! ```text
//! version(1)=1 key_id(1) difficulty(1) family(1) expires_unix(8) ua_hash(8) net_hash(8) random(16) | mac(16)
//! ```

use crate::binding::Net;
use crate::keys::KeyRing;
use crate::seal::{seal, unseal, SealError, TAG};
use ring::digest::{Context, SHA256};
use std::collections::HashMap;

const VERSION: u8 = 1;
const PAYLOAD: usize = 44;
const LEN: usize = PAYLOAD + TAG;
/// Longest nonce accepted: 20 decimal digits is every u64.
const MAX_NONCE: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("not a challenge")]
    Malformed,
    #[error("signed by an unknown or retired key")]
    UnknownKey,
    #[error("bad signature")]
    BadMac,
    #[error("expired")]
    Expired,
    #[error("issued to another client")]
    WrongClient,
    #[error("issued for another action")]
    WrongTarget,
    #[error("the nonce does not solve it")]
    Unsolved,
    #[error("already redeemed")]
    Spent,
}

impl From<SealError> for ChallengeError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Malformed => ChallengeError::Malformed,
            SealError::UnknownKey => ChallengeError::UnknownKey,
            SealError::BadMac => ChallengeError::BadMac,
        }
    }
}

/// A verified challenge: its id (for the spent set) and when it stops mattering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solved {
    pub id: [u8; 16],
    pub expires: u64,
    pub difficulty: u8,
}

pub fn issue(
    ring: &KeyRing,
    expires: u64,
    difficulty: u8,
    ua: [u8; 8],
    net: Net,
    random: [u8; 16],
) -> String {
    let mut buf = [0u8; LEN];
    write_head(&mut buf, VERSION, expires, difficulty, ua, net);
    buf[28..44].copy_from_slice(&random);
    seal(ring, &mut buf, PAYLOAD)
}

/// The first 28 bytes every challenge shares (version, difficulty, expiry, client binding);
/// the key id is written by `seal`.
pub(crate) fn write_head(
    buf: &mut [u8],
    version: u8,
    expires: u64,
    difficulty: u8,
    ua: [u8; 8],
    net: Net,
) {
    buf[0] = version;
    buf[2] = difficulty;
    buf[3] = if net.is_v6() { 6 } else { 4 };
    buf[4..12].copy_from_slice(&expires.to_be_bytes());
    buf[12..20].copy_from_slice(&ua);
    buf[20..28].copy_from_slice(&net.bytes());
}

/// Checks an unsealed head's expiry and client binding; returns (expires, difficulty).
pub(crate) fn check_head(
    buf: &[u8],
    now: u64,
    ua: [u8; 8],
    net: Net,
) -> Result<(u64, u8), ChallengeError> {
    let expires = u64::from_be_bytes(buf[4..12].try_into().unwrap_or_default());
    if now >= expires {
        return Err(ChallengeError::Expired);
    }
    let family = if net.is_v6() { 6 } else { 4 };
    if buf[3] != family || buf[12..20] != ua || buf[20..28] != net.bytes() {
        return Err(ChallengeError::WrongClient);
    }
    Ok((expires, buf[2]))
}

/// Checks everything except whether it was redeemed before (see [`Spent`]). The proof of
/// work is checked last: it is the only step that hashes attacker-chosen input.
pub fn check(
    ring: &KeyRing,
    challenge: &str,
    nonce: &str,
    now: u64,
    ua: [u8; 8],
    net: Net,
) -> Result<Solved, ChallengeError> {
    let s = open(ring, challenge, now, ua, net)?;
    if !solves(challenge, nonce, s.difficulty) {
        return Err(ChallengeError::Unsolved);
    }
    Ok(s)
}

/// Signature, expiry and binding, without the proof of work: for tickets that are earned by
/// waiting rather than hashing (the no-JavaScript path).
pub fn open(
    ring: &KeyRing,
    challenge: &str,
    now: u64,
    ua: [u8; 8],
    net: Net,
) -> Result<Solved, ChallengeError> {
    let mut buf = [0u8; LEN];
    unseal(ring, challenge, VERSION, &mut buf)?;
    let (expires, difficulty) = check_head(&buf, now, ua, net)?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&buf[28..44]);
    Ok(Solved {
        id,
        expires,
        difficulty,
    })
}

/// Whether `SHA-256(challenge ":" nonce)` has at least `difficulty` leading zero bits.
pub fn solves(challenge: &str, nonce: &str, difficulty: u8) -> bool {
    if nonce.is_empty() || nonce.len() > MAX_NONCE || !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut ctx = Context::new(&SHA256);
    ctx.update(challenge.as_bytes());
    ctx.update(b":");
    ctx.update(nonce.as_bytes());
    leading_zero_bits(ctx.finish().as_ref()) >= u32::from(difficulty)
}

pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut n = 0;
    for &b in hash {
        if b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// How often [`Spent`] drops the ids of expired challenges, in seconds.
const PRUNE_EVERY_SECS: u64 = 60;

/// Redeemed challenge ids, kept until the challenge would have expired anyway: expired ones
/// are dropped once a minute. Bounded: when full, expired entries are pruned at once (at most
/// once a second, since it walks the whole set); if it is still full the redemption is
/// accepted without being recorded. A replay only buys a second cookie for the same user agent
/// and network, which the first cookie already covers, whereas refusing would let a flood of
/// cheap no-JS tickets lock real people out.
#[derive(Debug)]
pub struct Spent {
    ids: HashMap<[u8; 16], u64>,
    cap: usize,
    last_prune: u64,
}

impl Spent {
    pub fn new(cap: usize) -> Self {
        Spent {
            ids: HashMap::new(),
            cap: cap.max(1),
            last_prune: 0,
        }
    }

    /// Records the redemption; `Err(Spent)` if it was redeemed before.
    pub fn redeem(&mut self, s: &Solved, now: u64) -> Result<(), ChallengeError> {
        if self.ids.contains_key(&s.id) {
            return Err(ChallengeError::Spent);
        }
        // Expired ids are dropped once a minute, and at once when the set is full: an id is
        // useless once its challenge expired. Pruning only at the cap let a steady stream of
        // solves grow the set to its cap (a million ids, about 50 MB) over hours.
        let full = self.ids.len() >= self.cap && now > self.last_prune;
        if full || now >= self.last_prune.saturating_add(PRUNE_EVERY_SECS) {
            self.last_prune = now;
            self.ids.retain(|_, exp| *exp > now);
        }
        if self.ids.len() < self.cap {
            self.ids.insert(s.id, s.expires);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::binding::ua_hash;

    fn net(ip: &str) -> Net {
        Net::of(ip.parse().unwrap(), 24, 64)
    }

    /// The brute-force search the browser's worker does.
    pub(crate) fn solve(challenge: &str, difficulty: u8) -> String {
        (0u64..)
            .map(|n| n.to_string())
            .find(|n| solves(challenge, n, difficulty))
            .unwrap()
    }

    #[test]
    fn a_solution_redeems_once() {
        let ring = KeyRing::generate(0).unwrap();
        let ua = ua_hash(b"Mozilla/5.0");
        let c = issue(&ring, 120, 10, ua, net("192.0.2.4"), [7; 16]);
        assert_eq!(c.len(), 80);
        let nonce = solve(&c, 10);
        let s = check(&ring, &c, &nonce, 100, ua, net("192.0.2.99")).unwrap();
        assert_eq!(s.difficulty, 10);
        let mut spent = Spent::new(10);
        spent.redeem(&s, 100).unwrap();
        assert_eq!(spent.redeem(&s, 101), Err(ChallengeError::Spent));
    }

    #[test]
    fn wrong_answers_and_wrong_clients_fail() {
        let ring = KeyRing::generate(0).unwrap();
        let ua = ua_hash(b"Mozilla/5.0");
        let c = issue(&ring, 120, 12, ua, net("192.0.2.4"), [1; 16]);
        let nonce = solve(&c, 12);
        let wrong = (0u64..)
            .map(|n| n.to_string())
            .find(|n| !solves(&c, n, 12))
            .unwrap();
        let at = |nonce: &str, now, ua, n| check(&ring, &c, nonce, now, ua, n);
        assert_eq!(
            at(&wrong, 1, ua, net("192.0.2.4")),
            Err(ChallengeError::Unsolved)
        );
        assert_eq!(
            at(&nonce, 120, ua, net("192.0.2.4")),
            Err(ChallengeError::Expired)
        );
        assert_eq!(
            at(&nonce, 1, ua_hash(b"curl"), net("192.0.2.4")),
            Err(ChallengeError::WrongClient)
        );
        assert_eq!(
            at(&nonce, 1, ua, net("192.0.3.4")),
            Err(ChallengeError::WrongClient)
        );
        for bad in ["", "-1", "1e3", " 1", "123456789012345678901"] {
            assert!(!solves(&c, bad, 0), "{bad:?}");
        }
        assert_eq!(
            check(&ring, "short", &nonce, 1, ua, net("192.0.2.4")),
            Err(ChallengeError::Malformed)
        );
        let other = KeyRing::generate(0).unwrap();
        assert_eq!(
            check(&other, &c, &nonce, 1, ua, net("192.0.2.4")),
            Err(ChallengeError::BadMac)
        );
    }

    #[test]
    fn zero_bits_are_counted_across_bytes() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x10, 0xff]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0; 4]), 32);
    }

    #[test]
    fn the_spent_set_is_bounded() {
        let mut spent = Spent::new(2);
        let s = |b: u8, exp| Solved {
            id: [b; 16],
            expires: exp,
            difficulty: 1,
        };
        spent.redeem(&s(1, 10), 1).unwrap();
        spent.redeem(&s(2, 50), 1).unwrap();
        // Full and nothing expired: accepted, not recorded, nothing else forgotten.
        spent.redeem(&s(3, 60), 5).unwrap();
        assert_eq!(spent.len(), 2);
        assert_eq!(spent.redeem(&s(1, 10), 5), Err(ChallengeError::Spent));
        // Once the first has expired it makes room.
        spent.redeem(&s(4, 60), 11).unwrap();
        assert_eq!(spent.redeem(&s(4, 60), 12), Err(ChallengeError::Spent));
        assert_eq!(spent.len(), 2);
    }

    /// Far below its cap, the set still forgets expired ids: it holds about the ids of the
    /// last challenge lifetime, not every id ever redeemed.
    #[test]
    fn expired_ids_are_forgotten_without_waiting_for_the_cap() {
        let mut spent = Spent::new(1_000_000);
        let t0 = 1_700_000_000;
        for i in 0..100u8 {
            let s = Solved {
                id: [i; 16],
                expires: t0 + 300,
                difficulty: 1,
            };
            spent.redeem(&s, t0).unwrap();
        }
        assert_eq!(spent.len(), 100);
        let later = Solved {
            id: [200; 16],
            expires: t0 + 700,
            difficulty: 1,
        };
        spent.redeem(&later, t0 + 400).unwrap();
        assert_eq!(spent.len(), 1, "the 100 expired ids were kept");
    }
}
