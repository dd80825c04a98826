//! The clearance token: proof that this browser solved a challenge (or waited out the no-JS
//! delay), carried in a cookie and checked on every protected request.
//!
//! Stateless on purpose: verifying is one HMAC over 36 bytes and a few comparisons, with no store
//! lookup, so it costs microseconds and scales with the proxy. Layout, then base64url without
//! padding:
//!
//! ```text
//! version(1)=1 key_id(1) kind(1) flags(1) expires_unix(8, BE) ua_hash(8) net4(8) net6(8) | mac(16)
//! ```
//!
//! `flags` says which of `net4`/`net6` are set. A token may hold both: when a client presents a
//! valid token from one family and solves again from the other (a phone moving between IPv4
//! and IPv6), the new token keeps the old binding, so the next switch back does not cost
//! another proof.

use crate::binding::Net;
use crate::keys::KeyRing;
use crate::seal::{seal, unseal, SealError, TAG};

const VERSION: u8 = 1;
const PAYLOAD: usize = 36;
const LEN: usize = PAYLOAD + TAG;
const HAS4: u8 = 1;
const HAS6: u8 = 2;

/// How the clearance was earned. Routes may refuse the weaker kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A proof of work solved by the page script.
    Work,
    /// The no-JavaScript path: a delay waited out. Costs a script time, not CPU.
    NoScript,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clearance {
    pub kind: Kind,
    pub expires: u64,
    pub ua: [u8; 8],
    pub net4: Option<[u8; 8]>,
    pub net6: Option<[u8; 8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a clearance token")]
    Malformed,
    #[error("signed by an unknown or retired key")]
    UnknownKey,
    #[error("bad signature")]
    BadMac,
    #[error("expired")]
    Expired,
    #[error("issued to another user agent")]
    WrongUserAgent,
    #[error("issued to another network")]
    WrongNetwork,
}

impl From<SealError> for TokenError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Malformed => TokenError::Malformed,
            SealError::UnknownKey => TokenError::UnknownKey,
            SealError::BadMac => TokenError::BadMac,
        }
    }
}

impl Clearance {
    /// A clearance for `net`, keeping the other family's binding from `previous` when that
    /// token was valid for the same user agent.
    pub fn new(
        kind: Kind,
        expires: u64,
        ua: [u8; 8],
        net: Net,
        previous: Option<&Clearance>,
    ) -> Self {
        let carried = previous.filter(|p| p.ua == ua);
        let (mut net4, mut net6) = (carried.and_then(|p| p.net4), carried.and_then(|p| p.net6));
        match net {
            Net::V4(b) => net4 = Some(b),
            Net::V6(b) => net6 = Some(b),
        }
        Clearance {
            kind,
            expires,
            ua,
            net4,
            net6,
        }
    }

    pub fn binds(&self, net: Net) -> bool {
        match net {
            Net::V4(b) => self.net4 == Some(b),
            Net::V6(b) => self.net6 == Some(b),
        }
    }
}

pub fn mint(ring: &KeyRing, c: &Clearance) -> String {
    let mut buf = [0u8; LEN];
    buf[0] = VERSION;
    buf[2] = match c.kind {
        Kind::Work => 0,
        Kind::NoScript => 1,
    };
    buf[3] = if c.net4.is_some() { HAS4 } else { 0 } | if c.net6.is_some() { HAS6 } else { 0 };
    buf[4..12].copy_from_slice(&c.expires.to_be_bytes());
    buf[12..20].copy_from_slice(&c.ua);
    buf[20..28].copy_from_slice(&c.net4.unwrap_or_default());
    buf[28..36].copy_from_slice(&c.net6.unwrap_or_default());
    seal(ring, &mut buf, PAYLOAD)
}

/// Checks the signature only, whatever the binding and expiry: used to carry a binding over
/// to a new token and to tell "expired" from "forged" in logs.
pub fn open(ring: &KeyRing, token: &str) -> Result<Clearance, TokenError> {
    let mut buf = [0u8; LEN];
    unseal(ring, token, VERSION, &mut buf)?;
    let kind = match buf[2] {
        0 => Kind::Work,
        1 => Kind::NoScript,
        _ => return Err(TokenError::Malformed),
    };
    let eight = |r: std::ops::Range<usize>| {
        let mut o = [0u8; 8];
        o.copy_from_slice(&buf[r]);
        o
    };
    Ok(Clearance {
        kind,
        expires: u64::from_be_bytes(eight(4..12)),
        ua: eight(12..20),
        net4: (buf[3] & HAS4 != 0).then(|| eight(20..28)),
        net6: (buf[3] & HAS6 != 0).then(|| eight(28..36)),
    })
}

/// The full check for a request: signature, expiry, user agent and network.
pub fn verify(
    ring: &KeyRing,
    token: &str,
    now: u64,
    ua: [u8; 8],
    net: Net,
) -> Result<Clearance, TokenError> {
    let c = open(ring, token)?;
    if now >= c.expires {
        return Err(TokenError::Expired);
    }
    if c.ua != ua {
        return Err(TokenError::WrongUserAgent);
    }
    if !c.binds(net) {
        return Err(TokenError::WrongNetwork);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::ua_hash;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn net(ip: &str) -> Net {
        Net::of(ip.parse().unwrap(), 24, 64)
    }

    #[test]
    fn a_token_verifies_only_for_its_holder() {
        let ring = KeyRing::generate(0).unwrap();
        let ua = ua_hash(b"Mozilla/5.0 Chrome/156");
        let c = Clearance::new(Kind::Work, 1000, ua, net("198.51.100.7"), None);
        let t = mint(&ring, &c);
        assert_eq!(t.len(), 70);
        assert_eq!(verify(&ring, &t, 999, ua, net("198.51.100.99")), Ok(c));
        assert_eq!(
            verify(&ring, &t, 1000, ua, net("198.51.100.7")),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(
                &ring,
                &t,
                5,
                ua_hash(b"python-requests"),
                net("198.51.100.7")
            ),
            Err(TokenError::WrongUserAgent)
        );
        assert_eq!(
            verify(&ring, &t, 5, ua, net("198.51.101.7")),
            Err(TokenError::WrongNetwork)
        );
        assert_eq!(
            verify(&ring, &t, 5, ua, net("2001:db8::1")),
            Err(TokenError::WrongNetwork)
        );
    }

    #[test]
    fn forged_or_foreign_tokens_fail() {
        let ring = KeyRing::generate(0).unwrap();
        let other = KeyRing::generate(0).unwrap();
        let ua = ua_hash(b"x");
        let c = Clearance::new(Kind::NoScript, 99, ua, net("10.0.0.1"), None);
        let t = mint(&ring, &c);
        assert_eq!(open(&other, &t), Err(TokenError::BadMac));
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[5] ^= 0x40; // push the expiry out
        assert_eq!(
            open(&ring, &URL_SAFE_NO_PAD.encode(&raw)),
            Err(TokenError::BadMac)
        );
        raw[5] ^= 0x40;
        raw[1] = 7;
        assert_eq!(
            open(&ring, &URL_SAFE_NO_PAD.encode(&raw)),
            Err(TokenError::UnknownKey)
        );
        for bad in ["", "x", &"A".repeat(70), &"!".repeat(70), &t[..69]] {
            assert!(open(&ring, bad).is_err(), "{bad:?}");
        }
        assert_eq!(open(&ring, &t).unwrap().kind, Kind::NoScript);
    }

    #[test]
    fn a_dual_stack_client_keeps_both_bindings() {
        let ring = KeyRing::generate(0).unwrap();
        let ua = ua_hash(b"phone");
        let v4 = Clearance::new(Kind::Work, 100, ua, net("192.0.2.1"), None);
        let both = Clearance::new(Kind::Work, 100, ua, net("2001:db8:5::1"), Some(&v4));
        let t = mint(&ring, &both);
        assert!(verify(&ring, &t, 1, ua, net("192.0.2.77")).is_ok());
        assert!(verify(&ring, &t, 1, ua, net("2001:db8:5::99")).is_ok());
        let stranger = Clearance::new(Kind::Work, 100, ua_hash(b"other"), net("::1"), Some(&v4));
        assert_eq!(stranger.net4, None, "no binding carried across user agents");
    }

    #[test]
    fn a_rotated_ring_still_accepts_yesterdays_token() {
        let ring = KeyRing::generate(0).unwrap();
        let ua = ua_hash(b"x");
        let t = mint(
            &ring,
            &Clearance::new(Kind::Work, 50, ua, net("10.0.0.1"), None),
        );
        let next = ring.rotated(10).unwrap();
        assert!(verify(&next, &t, 20, ua, net("10.0.0.1")).is_ok());
        assert_eq!(
            verify(&next.rotated(30).unwrap(), &t, 20, ua, net("10.0.0.1")),
            Err(TokenError::UnknownKey)
        );
    }
}
