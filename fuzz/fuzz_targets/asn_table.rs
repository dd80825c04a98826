//! The IP-to-ASN table's parser (`moat_core::AsnTable::parse`) on arbitrary text: a table the
//! operator downloaded may be truncated, mangled or not a table at all. Beyond "never panics":
//!
//! - an error names a line that exists in the text;
//! - what parses answers every address it was given as a range start or end with that range's
//!   AS (ranges that overlap are an error), and an address outside every range with none;
//! - it survives Moat's compact form (`to_pack`, `from_pack`) with the same answers and names;
//! - the same bytes read as a compact table never panic (`from_pack` refuses damage).
//!
//! The same file runs on stable as a plain test (`crates/moat-core/tests/asn_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_core::AsnTable;
use std::net::IpAddr;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// Rows the checks look at, so a huge input stays quick.
const CHECKED_ROWS: usize = 64;

/// Parses `data` (lossily as UTF-8) and checks the table against its own rows; returns the
/// number of rows kept, or None for an error.
pub fn run(data: &[u8]) -> Option<usize> {
    let _ = AsnTable::from_pack(data);
    let mut packed = b"MOATASN1".to_vec();
    packed.extend_from_slice(data);
    let _ = AsnTable::from_pack(&packed);
    let text = String::from_utf8_lossy(data);
    let t = match AsnTable::parse(&text) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                e.line >= 1 && e.line <= text.lines().count(),
                "error on line {} of {}",
                e.line,
                text.lines().count()
            );
            return None;
        }
    };
    let rows: Vec<(IpAddr, IpAddr, u32)> = text
        .lines()
        .filter_map(|l| {
            let mut c = l.trim_end_matches('\r').split('\t');
            let (s, e, a) = (c.next()?, c.next()?, c.next()?);
            Some((
                s.trim().parse().ok()?,
                e.trim().parse().ok()?,
                a.trim().parse().ok()?,
            ))
        })
        .filter(|r| r.2 != 0)
        .take(CHECKED_ROWS)
        .collect();
    let covered = |ip: IpAddr| rows.iter().any(|(s, e, _)| within(ip, *s, *e));
    let back = AsnTable::from_pack(&t.to_pack()).expect("a parsed table reads back");
    assert_eq!(back.len(), t.len());
    for (s, e, a) in &rows {
        for ip in [*s, *e] {
            let got = t.lookup(ip);
            assert_eq!(got, Some(*a), "{ip} in {s}-{e}");
            assert_eq!(back.lookup(ip), got, "{ip} after packing");
            assert_eq!(back.name(*a), t.name(*a));
        }
    }
    for probe in ["0.0.0.0", "255.255.255.255", "::", "ffff::1", "203.0.113.9"] {
        let ip: IpAddr = probe.parse().unwrap();
        if !covered(ip) && rows.len() == t.len() {
            assert_eq!(t.lookup(ip), None, "{ip}");
        }
    }
    Some(t.len())
}

fn within(ip: IpAddr, s: IpAddr, e: IpAddr) -> bool {
    match (ip.to_canonical(), s.to_canonical(), e.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(s), IpAddr::V4(e)) => s <= a && a <= e,
        (IpAddr::V6(a), IpAddr::V6(s), IpAddr::V6(e)) => s <= a && a <= e,
        _ => false,
    }
}

/// The seeds: iptoasn's shapes (IPv4, IPv6, unrouted rows, comments), and broken tables.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    [
        (
            "combined",
            "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM-AUSTRALIA Gtelecom Pty Ltd\n2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE-BB WIDE Project\n",
        ),
        ("comments", "# ip2asn\n\n127.64.0.0\t127.66.255.255\t64500\tZZ\tEXAMPLE-HOSTING\r\n::ffff:10.0.0.0\t::ffff:10.0.0.255\t64501\tZZ\tMAPPED\n"),
        ("overlap", "10.0.0.0\t10.255.255.255\t1\tZZ\tA\n10.1.0.0\t10.1.255.255\t2\tZZ\tB\n"),
        ("truncated", "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.4.0\t1.0."),
        ("reversed", "1.0.0.9\t1.0.0.1\t3\tUS\tX\n"),
        ("mixed", "1.0.0.0\t::1\t3\tUS\tX\n"),
        ("not-a-table", "<html><body>502 Bad Gateway</body></html>\n"),
    ]
    .into_iter()
    .map(|(n, t)| (format!("asn-{n}"), t.as_bytes().to_vec()))
    .collect()
}
