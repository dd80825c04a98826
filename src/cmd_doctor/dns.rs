//! `moat doctor dns NAME...`: how Moat resolves host names on this machine, and what it gets.
//!
//! Moat resolves names itself (moat-dns), not through libc, so `getent hosts` or `dig` can
//! answer differently from what Moat sees, and in a static binary's chroot or a `FROM scratch`
//! image they are not there at all. This prints where the nameservers came from (the file,
//! the fallback, or neither) and each name's addresses as Moat's outbound connections would
//! get them (upstream by name, reports, ACME), through the very same code. Exit status 1 when
//! a name does not resolve.

use moat_dns::host::{self, DnsSource, HostResolver};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// Parses the `--fallback` value: an address, with port 53 unless one is given.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("`{s}` is not an IP address or address:port"))
}

pub fn run(names: &[String], fallback: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let dns = host::init(fallback);
    println!("nameservers: {dns}");
    if let Some(note) = &dns.note {
        println!("  ({note})");
    }
    if dns.source == DnsSource::Loopback {
        println!(
            "  hint: without /etc/resolv.conf Moat asks 127.0.0.1:53; give it a nameserver \
             (write /etc/resolv.conf, or a DNS fallback such as `--fallback 9.9.9.9`)"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let failed = rt.block_on(async {
        let resolver = HostResolver::new(dns)?;
        // Every attempt on every server, and a little more.
        let budget =
            dns.timeout * (dns.attempts * dns.nameservers.len()) as u32 + Duration::from_secs(1);
        let mut failed = 0;
        for name in names {
            match tokio::time::timeout(budget, resolver.lookup(name)).await {
                Ok(Ok(addrs)) => {
                    let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
                    println!("ok: {name}: {}", list.join(" "));
                }
                Ok(Err(e)) => {
                    failed += 1;
                    println!("problem: {e}");
                }
                Err(_) => {
                    failed += 1;
                    println!("problem: {name}: no answer within {budget:?}");
                }
            }
        }
        anyhow::Ok(failed)
    })?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_takes_an_address_with_or_without_port() {
        assert_eq!(parse_server("9.9.9.9"), Ok("9.9.9.9:53".parse().unwrap()));
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_server("2001:db8::53"),
            Ok("[2001:db8::53]:53".parse().unwrap())
        );
        assert!(parse_server("dns.example").is_err());
    }
}
