//! Per-action proofs: a proof of work bound to one action, such as one sign-in mail to one
//! address, so that under pressure a clearance cookie alone no longer authorises a send.
//!
//! A clearance costs a script one solve for as many sends as it likes; a per-action proof costs
//! it one solve per victim. The challenge is bound, like a clearance challenge, to the user
//! agent and network, and also to the action's route (the rule that asked for it) and target
//! (the normalised email), so a proof cannot be spent on another address; it is redeemed once
//! (the same [`Spent`](crate::challenge::Spent) set). Layout, then base64url:
//!
//! ```text
//! version(1)=2 key_id(1) difficulty(1) family(1) expires_unix(8) ua_hash(8) net_hash(8)
//!   target_hash(8) random(16) | mac(16)
//! ```
//!
//! The client sends it back as `Moat-Proof: CHALLENGE.NONCE`.

use crate::binding::Net;
use crate::challenge::{check_head, solves, write_head, ChallengeError, Solved};
use crate::keys::KeyRing;
use crate::seal::{seal, unseal, TAG};
use ring::digest::{Context, SHA256};

const VERSION: u8 = 2;
const PAYLOAD: usize = 52;
const LEN: usize = PAYLOAD + TAG;

/// The action a proof is for: the route (the rule's id) and its target (the normalised key,
/// such as the email), hashed so the proof does not carry the address.
pub fn target_hash(route: &str, target: &[u8]) -> [u8; 8] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(route.as_bytes());
    ctx.update(&[0]);
    ctx.update(target);
    let mut out = [0u8; 8];
    out.copy_from_slice(&ctx.finish().as_ref()[..8]);
    out
}

pub fn issue(
    ring: &KeyRing,
    expires: u64,
    difficulty: u8,
    ua: [u8; 8],
    net: Net,
    target: [u8; 8],
    random: [u8; 16],
) -> String {
    let mut buf = [0u8; LEN];
    write_head(&mut buf, VERSION, expires, difficulty, ua, net);
    buf[28..36].copy_from_slice(&target);
    buf[36..52].copy_from_slice(&random);
    seal(ring, &mut buf, PAYLOAD)
}

/// Checks a `CHALLENGE.NONCE` proof for this client and action, except whether it was
/// redeemed before. The work is checked last: it is the only step that hashes
/// attacker-chosen input.
pub fn check(
    ring: &KeyRing,
    proof: &str,
    now: u64,
    ua: [u8; 8],
    net: Net,
    target: [u8; 8],
) -> Result<Solved, ChallengeError> {
    let (challenge, nonce) = proof.split_once('.').ok_or(ChallengeError::Malformed)?;
    let mut buf = [0u8; LEN];
    unseal(ring, challenge, VERSION, &mut buf)?;
    let (expires, difficulty) = check_head(&buf, now, ua, net)?;
    if buf[28..36] != target {
        return Err(ChallengeError::WrongTarget);
    }
    if !solves(challenge, nonce, difficulty) {
        return Err(ChallengeError::Unsolved);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&buf[36..52]);
    Ok(Solved {
        id,
        expires,
        difficulty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::ua_hash;
    use crate::challenge::tests::solve;
    use crate::challenge::Spent;

    #[test]
    fn a_proof_buys_one_send_to_the_target_it_was_issued_for() {
        let ring = KeyRing::generate(0).unwrap();
        let ua = ua_hash(b"Mozilla/5.0");
        let net = Net::of("192.0.2.4".parse().unwrap(), 24, 64);
        let mine = target_hash("ghost-no-clearance", b"reader@example.com");
        let c = issue(&ring, 120, 8, ua, net, mine, [3; 16]);
        assert_eq!(c.len(), 91);
        let proof = format!("{c}.{}", solve(&c, 8));
        let s = check(&ring, &proof, 100, ua, net, mine).unwrap();
        assert_eq!(s.difficulty, 8);
        let mut spent = Spent::new(10);
        spent.redeem(&s, 100).unwrap();
        assert_eq!(spent.redeem(&s, 100), Err(ChallengeError::Spent));

        let other = target_hash("ghost-no-clearance", b"victim@example.org");
        assert_eq!(
            check(&ring, &proof, 100, ua, net, other),
            Err(ChallengeError::WrongTarget)
        );
        let other_route = target_hash("other-rule", b"reader@example.com");
        assert_eq!(
            check(&ring, &proof, 100, ua, net, other_route),
            Err(ChallengeError::WrongTarget)
        );
        assert_eq!(
            check(&ring, &proof, 120, ua, net, mine),
            Err(ChallengeError::Expired)
        );
        let elsewhere = Net::of("198.51.100.4".parse().unwrap(), 24, 64);
        assert_eq!(
            check(&ring, &proof, 100, ua, elsewhere, mine),
            Err(ChallengeError::WrongClient)
        );
        // A clearance challenge is not an action proof, and garbage is refused unhashed.
        let clearance = crate::challenge::issue(&ring, 120, 0, ua, net, [3; 16]);
        assert_eq!(
            check(&ring, &format!("{clearance}.1"), 100, ua, net, mine),
            Err(ChallengeError::Malformed)
        );
        for bad in ["", ".", "x.1", &c, &format!("{c}.x")] {
            assert!(check(&ring, bad, 100, ua, net, mine).is_err(), "{bad:?}");
        }
    }
}
