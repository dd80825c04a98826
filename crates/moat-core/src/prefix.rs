//! Network prefixes: rotating attackers change addresses inside one provider's block, so limits
//! and escalations are kept per /24 (IPv4) or /64 (IPv6) as well as per address.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use std::net::IpAddr;

/// The prefix lengths that group addresses of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixLens {
    pub v4: u8,
    pub v6: u8,
}

impl Default for PrefixLens {
    fn default() -> Self {
        PrefixLens { v4: 24, v6: 64 }
    }
}

/// The network of `ip` at the given lengths, with host bits cleared.
pub fn prefix_of(ip: IpAddr, lens: PrefixLens) -> IpNet {
    match ip {
        IpAddr::V4(a) => IpNet::V4(
            Ipv4Net::new(a, lens.v4.min(32))
                .expect("length clamped to 32")
                .trunc(),
        ),
        IpAddr::V6(a) => {
            // An IPv4-mapped IPv6 address is an IPv4 client seen through a dual-stack socket.
            if let Some(v4) = a.to_ipv4_mapped() {
                return prefix_of(IpAddr::V4(v4), lens);
            }
            IpNet::V6(
                Ipv6Net::new(a, lens.v6.min(128))
                    .expect("length clamped to 128")
                    .trunc(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_v4_by_24_and_v6_by_64() {
        let l = PrefixLens::default();
        assert_eq!(
            prefix_of("10.1.2.3".parse().unwrap(), l).to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(
            prefix_of("2001:db8:1:2:3:4:5:6".parse().unwrap(), l).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            prefix_of("::ffff:10.1.2.3".parse().unwrap(), l).to_string(),
            "10.1.2.0/24"
        );
    }
}
