//! What a challenge or a clearance is bound to: a hash of the user agent and of the client's
//! network.
//!
//! The network is a prefix (by default /24 or /64), not the address: a phone on a carrier network
//! or a home router with IPv6 privacy addresses changes its address within the prefix all the
//! time, and an address-bound cookie would send such people through the proof again and again.
//! IPv4 and IPv6 are bound separately (see [`crate::token`]) so a dual-stack client that moves
//! between them can carry both.
//!
//! Only hashes travel in the token: the cookie does not disclose the address it was issued to.

use ring::digest::{digest, SHA256};
use std::net::IpAddr;

/// A network binding: the address family and 8 bytes of a hash of the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    V4([u8; 8]),
    V6([u8; 8]),
}

impl Net {
    /// The binding for `ip`'s network, masking IPv4 to `v4_len` bits and IPv6 to `v6_len`.
    /// IPv4-mapped IPv6 addresses count as IPv4, as the rest of Moat treats them.
    pub fn of(ip: IpAddr, v4_len: u8, v6_len: u8) -> Net {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & mask32(v4_len);
                let mut m = [0u8; 6];
                m[0] = 4;
                m[1] = v4_len.min(32);
                m[2..].copy_from_slice(&bits.to_be_bytes());
                Net::V4(hash8(&m))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & mask128(v6_len);
                let mut m = [0u8; 18];
                m[0] = 6;
                m[1] = v6_len.min(128);
                m[2..].copy_from_slice(&bits.to_be_bytes());
                Net::V6(hash8(&m))
            }
        }
    }

    pub fn bytes(&self) -> [u8; 8] {
        match self {
            Net::V4(b) | Net::V6(b) => *b,
        }
    }

    pub fn is_v6(&self) -> bool {
        matches!(self, Net::V6(_))
    }
}

/// The user agent's hash. A token replayed by a script that presents another user agent fails.
pub fn ua_hash(user_agent: &[u8]) -> [u8; 8] {
    hash8(user_agent)
}

fn hash8(b: &[u8]) -> [u8; 8] {
    let d = digest(&SHA256, b);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d.as_ref()[..8]);
    out
}

fn mask32(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - l),
    }
}

fn mask128(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prefix_one_binding() {
        let a = Net::of("203.0.113.7".parse().unwrap(), 24, 64);
        let b = Net::of("203.0.113.200".parse().unwrap(), 24, 64);
        let c = Net::of("203.0.114.7".parse().unwrap(), 24, 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let m = Net::of("::ffff:203.0.113.9".parse().unwrap(), 24, 64);
        assert_eq!(a, m, "IPv4-mapped counts as IPv4");
        let x = Net::of("2001:db8:1:2::1".parse().unwrap(), 24, 64);
        let y = Net::of("2001:db8:1:2:ffff::9".parse().unwrap(), 24, 64);
        let z = Net::of("2001:db8:1:3::1".parse().unwrap(), 24, 64);
        assert!(x.is_v6());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_ne!(ua_hash(b"a"), ua_hash(b"b"));
    }
}
