//! IANA's RDAP bootstrap registries (RFC 9224), free of I/O except [`Bootstrap::load`].
//!
//! Each file is `{"services": [[[entries…], [base URLs…]], …]}`. An address goes to the service
//! with the longest matching prefix, a domain to the one with the longest matching label
//! suffix, an AS number to the range that holds it. Base URLs end with `/`, and the query path
//! (`ip/…`, `domain/…`, `autnum/…`) is appended.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::Value;

use crate::ReportError;

pub const SHIPPED_IPV4: &str = include_str!("../../bootstrap/ipv4.json");
pub const SHIPPED_IPV6: &str = include_str!("../../bootstrap/ipv6.json");
pub const SHIPPED_DNS: &str = include_str!("../../bootstrap/dns.json");
pub const SHIPPED_ASN: &str = include_str!("../../bootstrap/asn.json");

#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    v4: Vec<(Ipv4Net, Vec<String>)>,
    v6: Vec<(Ipv6Net, Vec<String>)>,
    dns: HashMap<String, Vec<String>>,
    asn: Vec<(u32, u32, Vec<String>)>,
    /// The `publication` of each file, in the order ipv4, ipv6, dns, asn.
    pub publications: [String; 4],
}

type Services = Vec<(Vec<String>, Vec<String>)>;

/// The `services` of a bootstrap file, and its `publication`.
fn services(file: &str, text: &str) -> Result<(Services, String), ReportError> {
    let bad = |reason: &str| ReportError::Bootstrap {
        file: file.to_string(),
        reason: reason.to_string(),
    };
    let v: Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let list = v
        .get("services")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no services array"))?;
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for s in list {
        let entries = strings(s.get(0));
        let urls = strings(s.get(1));
        if !entries.is_empty() && !urls.is_empty() {
            out.push((entries, urls));
        }
    }
    let publication = v
        .get("publication")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((out, publication))
}

impl Bootstrap {
    /// The IANA files compiled into the crate.
    pub fn shipped() -> Bootstrap {
        Bootstrap::parse(SHIPPED_IPV4, SHIPPED_IPV6, SHIPPED_DNS, SHIPPED_ASN)
            .expect("the shipped bootstrap files parse (checked by tests)")
    }

    /// The shipped files, each replaced by the same-named file in `dir` when that exists.
    pub fn load(dir: Option<&Path>) -> Result<Bootstrap, ReportError> {
        let read = |name: &str, shipped: &'static str| -> Result<Cow<'static, str>, ReportError> {
            match dir.map(|d| d.join(name)) {
                Some(p) if p.exists() => std::fs::read_to_string(&p).map(Cow::Owned).map_err(|e| {
                    ReportError::Bootstrap {
                        file: p.display().to_string(),
                        reason: e.to_string(),
                    }
                }),
                _ => Ok(Cow::Borrowed(shipped)),
            }
        };
        Bootstrap::parse(
            &read("ipv4.json", SHIPPED_IPV4)?,
            &read("ipv6.json", SHIPPED_IPV6)?,
            &read("dns.json", SHIPPED_DNS)?,
            &read("asn.json", SHIPPED_ASN)?,
        )
    }

    /// The host of every RDAP base URL the bootstrap files name: the operator chose these (or
    /// IANA did), unlike a host an RDAP server redirects to.
    pub fn hosts(&self) -> std::collections::HashSet<String> {
        let lists = self
            .v4
            .iter()
            .map(|(_, u)| u)
            .chain(self.v6.iter().map(|(_, u)| u));
        let lists = lists
            .chain(self.dns.values())
            .chain(self.asn.iter().map(|(_, _, u)| u));
        lists
            .flatten()
            .filter_map(|u| crate::http::parse_url(u).ok())
            .filter_map(|u| u.host().map(crate::http::bare_host))
            .collect()
    }

    pub fn parse(ipv4: &str, ipv6: &str, dns: &str, asn: &str) -> Result<Bootstrap, ReportError> {
        let mut b = Bootstrap::default();
        let (s4, p4) = services("ipv4.json", ipv4)?;
        for (entries, urls) in s4 {
            for e in entries {
                if let Some(IpNet::V4(n)) = parse_prefix(&e) {
                    b.v4.push((n, urls.clone()));
                }
            }
        }
        let (s6, p6) = services("ipv6.json", ipv6)?;
        for (entries, urls) in s6 {
            for e in entries {
                if let Some(IpNet::V6(n)) = parse_prefix(&e) {
                    b.v6.push((n, urls.clone()));
                }
            }
        }
        let (sd, pd) = services("dns.json", dns)?;
        for (entries, urls) in sd {
            for e in entries {
                let label = e.trim_end_matches('.').to_ascii_lowercase();
                if !label.is_empty() {
                    b.dns.insert(label, urls.clone());
                }
            }
        }
        let (sa, pa) = services("asn.json", asn)?;
        for (entries, urls) in sa {
            for e in entries {
                let (lo, hi) = e.split_once('-').unwrap_or((&e, &e));
                if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
                    b.asn.push((lo, hi, urls.clone()));
                }
            }
        }
        b.publications = [p4, p6, pd, pa];
        Ok(b)
    }

    /// The base URLs of the server for an address (longest matching prefix).
    pub fn ip_servers(&self, ip: IpAddr) -> Option<&[String]> {
        match ip {
            IpAddr::V4(a) => self
                .v4
                .iter()
                .filter(|(n, _)| n.contains(&a))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, u)| u.as_slice()),
            IpAddr::V6(a) => {
                if let Some(v4) = a.to_ipv4_mapped() {
                    return self.ip_servers(IpAddr::V4(v4));
                }
                self.v6
                    .iter()
                    .filter(|(n, _)| n.contains(&a))
                    .max_by_key(|(n, _)| n.prefix_len())
                    .map(|(_, u)| u.as_slice())
            }
        }
    }

    /// The base URLs of the server for a domain (longest matching label suffix).
    pub fn domain_servers(&self, name: &str) -> Option<&[String]> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if let Some(u) = self.dns.get(rest) {
                return Some(u.as_slice());
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// The base URLs of the server for an AS number.
    pub fn asn_servers(&self, asn: u32) -> Option<&[String]> {
        self.asn
            .iter()
            .filter(|(lo, hi, _)| *lo <= asn && asn <= *hi)
            .min_by_key(|(lo, hi, _)| hi - lo)
            .map(|(_, _, u)| u.as_slice())
    }
}

fn parse_prefix(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// The base URL to use: HTTPS preferred (RFC 9224 §3), with the trailing `/` the path needs.
pub fn pick_base(urls: &[String]) -> Option<String> {
    let chosen = urls
        .iter()
        .find(|u| u.to_ascii_lowercase().starts_with("https://"))
        .or_else(|| {
            urls.iter()
                .find(|u| u.to_ascii_lowercase().starts_with("http://"))
        })?;
    let mut u = chosen.clone();
    if !u.ends_with('/') {
        u.push('/');
    }
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_parse_and_route_well_known_allocations() {
        let b = Bootstrap::shipped();
        let base = |ip: &str| pick_base(b.ip_servers(ip.parse().unwrap()).unwrap()).unwrap();
        assert_eq!(base("8.8.8.8"), "https://rdap.arin.net/registry/");
        assert_eq!(base("193.0.6.139"), "https://rdap.db.ripe.net/");
        assert_eq!(base("1.1.1.1"), "https://rdap.apnic.net/");
        assert_eq!(base("200.160.2.3"), "https://rdap.lacnic.net/rdap/");
        assert_eq!(base("41.1.1.1"), "https://rdap.afrinic.net/rdap/");
        assert_eq!(base("2001:4860::8888"), "https://rdap.arin.net/registry/");
        assert_eq!(base("::ffff:8.8.8.8"), "https://rdap.arin.net/registry/");
        let dom = |d: &str| pick_base(b.domain_servers(d).unwrap()).unwrap();
        assert_eq!(dom("example.com"), "https://rdap.verisign.com/com/v1/");
        assert_eq!(dom("www.Example.NET."), "https://rdap.verisign.com/net/v1/");
        assert!(b.domain_servers("example.invalid").is_none());
        assert!(b.ip_servers("10.0.0.1".parse().unwrap()).is_none());
        assert_eq!(
            pick_base(b.asn_servers(3333).unwrap()).unwrap(),
            "https://rdap.db.ripe.net/"
        );
        assert_eq!(b.publications[0], "2019-06-07T19:00:02Z");
        assert!(b.publications.iter().all(|p| p.len() == 20));
    }

    #[test]
    fn longest_prefix_and_suffix_win() {
        let v4 = r#"{"services":[
            [["10.0.0.0/8"],["https://wide.example/"]],
            [["10.1.0.0/16"],["http://narrow.example/rdap"]]]}"#;
        let dns = r#"{"services":[[["uk"],["https://uk.example/"]],[["co.uk"],["https://co-uk.example/"]]]}"#;
        let empty = r#"{"services":[]}"#;
        let b = Bootstrap::parse(v4, empty, dns, empty).unwrap();
        let base = |ip: &str| pick_base(b.ip_servers(ip.parse().unwrap()).unwrap()).unwrap();
        assert_eq!(base("10.1.2.3"), "http://narrow.example/rdap/");
        assert_eq!(base("10.2.2.3"), "https://wide.example/");
        assert_eq!(
            pick_base(b.domain_servers("a.b.co.uk").unwrap()).unwrap(),
            "https://co-uk.example/"
        );
        assert_eq!(
            pick_base(b.domain_servers("b.org.uk").unwrap()).unwrap(),
            "https://uk.example/"
        );
    }

    #[test]
    fn broken_files_are_errors_and_odd_entries_are_skipped() {
        assert!(Bootstrap::parse("nope", "{}", "{}", "{}").is_err());
        let odd = r#"{"services":[[["not-a-prefix", 7, "192.0.2.0/24"],["https://ok.example/"]],
                     ["short"], [[], []]]}"#;
        let empty = r#"{"services":[]}"#;
        let b = Bootstrap::parse(odd, empty, empty, empty).unwrap();
        assert!(b.ip_servers("192.0.2.9".parse().unwrap()).is_some());
    }

    #[test]
    fn a_directory_overrides_file_by_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("ipv4.json"),
            r#"{"services":[[["0.0.0.0/0"],["http://127.0.0.1:9/"]]]}"#,
        )
        .unwrap();
        let b = Bootstrap::load(Some(d.path())).unwrap();
        assert_eq!(
            b.ip_servers("8.8.8.8".parse().unwrap()).unwrap(),
            ["http://127.0.0.1:9/".to_string()]
        );
        // The shipped dns.json is still used.
        assert!(b.domain_servers("example.com").is_some());
    }
}
