//! Which autonomous system announces an address, from an IP-to-ASN table the operator supplies.
//!
//! A server farm rotates its addresses through many /24s, but they stay in one provider's
//! network; people come from their own providers' networks. Grouping clients by the network
//! that announces them (rather than by a fixed prefix length) is what lets Moat tell one
//! provider's rotation from many people. The table is iptoasn.com's TSV, which is public
//! domain and refreshed hourly upstream, one range a line, tab-separated (shown here with
//! `→` for the tabs):
//!
//! ```text
//! 1.0.0.0→1.0.0.255→13335→US→CLOUDFLARENET
//! 2001:200::→2001:200:ffff:ffff:ffff:ffff:ffff:ffff→2500→JP→WIDE-BB WIDE Project
//! ```
//!
//! `ip2asn-v4.tsv`, `ip2asn-v6.tsv` and `ip2asn-combined.tsv` all have this shape. AS 0 marks
//! space nobody announces; it is kept out of the table, so such addresses fall back to their
//! prefix like any address the table does not cover.

use std::net::IpAddr;
use std::sync::OnceLock;

/// What the shipped table was built from: ip-location-db's `asn` package (RouteViews, the five
/// RIRs via NRO, and DB-IP's IP to ASN Lite; CC BY 4.0, see `crates/moat-core/data/README.md`).
pub const SHIPPED_FROM: &str =
    "ip-location-db asn 2.3.2026061719 (RouteViews, NRO, DB-IP; CC BY 4.0)";

/// The table shipped inside the binary, decoded on first use (about 20 ms in a release build;
/// never at start, so a Moat that never shows autonomous systems never pays for it). Refreshed
/// copies (`moat asn refresh`) live in the state directory and are preferred.
pub fn shipped() -> &'static AsnTable {
    static TABLE: OnceLock<AsnTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        AsnTable::from_pack(include_bytes!("../data/asn-table.bin")).unwrap_or_else(|e| {
            tracing_free_warning(&e);
            AsnTable::default()
        })
    })
}

/// moat-core has no logger: a damaged shipped table (a broken build) is said on stderr once.
fn tracing_free_warning(e: &AsnTableError) {
    eprintln!("moat: the shipped IP-to-ASN table does not read ({e}); no autonomous systems");
}

/// A line of the table that is not a range and an AS number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AsnTableError {
    pub line: usize,
    pub message: String,
}

/// Address ranges and the AS announcing each, sorted for binary search. IPv4 ranges are kept
/// apart from IPv6 ones so the common table (about half a million IPv4 rows) costs 12 bytes a
/// row rather than 36.
#[derive(Default, Clone)]
pub struct AsnTable {
    pub(crate) v4: Vec<(u32, u32, u32)>,
    pub(crate) v6: Vec<(u128, u128, u32)>,
    /// Each AS's name where the table gives one (iptoasn's description column, the CSV's
    /// organisation), sorted by AS number.
    pub(crate) names: Vec<(u32, Box<str>)>,
}

impl AsnTable {
    /// Parses the TSV text. Blank lines and `#` comments are skipped; any other line that is not
    /// `START<TAB>END<TAB>ASN...` with both ends of one family and `START <= END` is an error
    /// naming its line, so a truncated download is noticed at start rather than silently
    /// grouping everyone by prefix. Ranges must not overlap (iptoasn's never do): a table
    /// where they do is not one Moat can answer from unambiguously.
    pub fn parse(text: &str) -> Result<AsnTable, AsnTableError> {
        Self::parse_with(text, true).map(|(t, _)| t)
    }

    /// Parses iptoasn's TSV or ip-location-db's CSV (`START,END,ASN,"NAME"`, told by the
    /// first data line having no tab). With `strict` off, a range overlapping an earlier one is
    /// dropped and counted rather than refused: a downloaded table with one bad row is still
    /// the best one there is (the count is reported).
    pub fn parse_with(text: &str, strict: bool) -> Result<(AsnTable, usize), AsnTableError> {
        let mut v4: Vec<((u32, u32, u32), usize)> = Vec::new();
        let mut v6: Vec<((u128, u128, u32), usize)> = Vec::new();
        let mut names: Vec<(u32, Box<str>)> = Vec::new();
        let mut csv: Option<bool> = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: &str| AsnTableError {
                line: line_no,
                message: message.to_string(),
            };
            let csv = *csv.get_or_insert(!line.contains('\t'));
            let (start, end, asn, name) = if csv {
                let mut cols = line.splitn(4, ',');
                let (Some(start), Some(end), Some(asn)) = (cols.next(), cols.next(), cols.next())
                else {
                    return Err(err("expected START, END and AS number separated by commas"));
                };
                (start, end, asn, cols.next().map(unquote))
            } else {
                let mut cols = line.split('\t');
                let (Some(start), Some(end), Some(asn)) = (cols.next(), cols.next(), cols.next())
                else {
                    return Err(err("expected START, END and AS number separated by tabs"));
                };
                (start, end, asn, cols.nth(1).map(str::to_string))
            };
            let asn: u32 = asn
                .trim()
                .parse()
                .map_err(|_| err("the AS number is not a number"))?;
            let (start, end): (IpAddr, IpAddr) = match (start.trim().parse(), end.trim().parse()) {
                (Ok(s), Ok(e)) => (s, e),
                _ => return Err(err("START and END must be IP addresses")),
            };
            if asn == 0 {
                continue;
            }
            // `::ffff:1.2.3.4` is an IPv4 address, as `lookup` sees it.
            match (start.to_canonical(), end.to_canonical()) {
                (IpAddr::V4(s), IpAddr::V4(e)) if u32::from(s) <= u32::from(e) => {
                    v4.push(((u32::from(s), u32::from(e), asn), line_no));
                }
                (IpAddr::V6(s), IpAddr::V6(e)) if u128::from(s) <= u128::from(e) => {
                    v6.push(((u128::from(s), u128::from(e), asn), line_no));
                }
                _ => return Err(err("START and END must be one family, START first")),
            }
            if let Some(n) = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) {
                names.push((asn, n.into()));
            }
        }
        names.sort_by_key(|(a, _)| *a);
        names.dedup_by_key(|(a, _)| *a);
        let (v4, d4) = disjoint(v4, strict)?;
        let (v6, d6) = disjoint(v6, strict)?;
        Ok((AsnTable { v4, v6, names }, d4 + d6))
    }

    /// The AS's name, if the table gave one.
    pub fn name(&self, asn: u32) -> Option<&str> {
        let i = self.names.binary_search_by_key(&asn, |(a, _)| *a).ok()?;
        Some(&self.names[i].1)
    }

    /// The AS announcing `ip`, if the table covers it.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Rows in the table.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Its size, not its half a million rows, in a config's debug output.
impl std::fmt::Debug for AsnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AsnTable({} IPv4 and {} IPv6 ranges)",
            self.v4.len(),
            self.v6.len()
        )
    }
}

/// A range's first and last address and the AS announcing it.
type Range<T> = (T, T, u32);

/// A CSV field without its quotes (`"Cloudflare, Inc."`, `""` for a quote inside).
fn unquote(field: &str) -> String {
    let f = field.trim();
    match f.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => f.to_string(),
    }
}

/// The rows sorted by start, and how many were dropped for overlapping an earlier one; with
/// `strict`, an overlap is an error naming the later of the two rows.
fn disjoint<T: Ord + Copy>(
    mut rows: Vec<((T, T, u32), usize)>,
    strict: bool,
) -> Result<(Vec<Range<T>>, usize), AsnTableError> {
    rows.sort_unstable();
    let mut out: Vec<((T, T, u32), usize)> = Vec::with_capacity(rows.len());
    let mut dropped = 0;
    for r in rows {
        if let Some(prev) = out.last() {
            if r.0 .0 <= prev.0 .1 {
                if strict {
                    let (a, b) = (prev.1.min(r.1), prev.1.max(r.1));
                    return Err(AsnTableError {
                        line: b,
                        message: format!("the range overlaps the one on line {a}"),
                    });
                }
                dropped += 1;
                continue;
            }
        }
        out.push(r);
    }
    Ok((out.into_iter().map(|(r, _)| r).collect(), dropped))
}

fn find<T: Ord + Copy>(rows: &[(T, T, u32)], a: T) -> Option<u32> {
    let i = rows.partition_point(|r| r.0 <= a);
    let (_, end, asn) = *rows.get(i.checked_sub(1)?)?;
    (a <= end).then_some(asn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
        # a comment\n\
        \n\
        1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
        1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM\n\
        2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE-BB\n";

    #[test]
    fn finds_the_announcing_as() {
        let t = AsnTable::parse(TABLE).unwrap();
        assert_eq!(t.len(), 3, "the unrouted row is left out");
        assert_eq!(t.lookup("1.0.0.7".parse().unwrap()), Some(13335));
        assert_eq!(t.lookup("1.0.0.255".parse().unwrap()), Some(13335));
        assert_eq!(t.lookup("1.0.2.1".parse().unwrap()), None, "not routed");
        assert_eq!(t.lookup("1.0.7.255".parse().unwrap()), Some(38803));
        assert_eq!(t.lookup("1.0.8.0".parse().unwrap()), None);
        assert_eq!(t.lookup("0.255.255.255".parse().unwrap()), None);
        assert_eq!(t.lookup("2001:200::1".parse().unwrap()), Some(2500));
        assert_eq!(
            t.lookup("::ffff:1.0.4.9".parse().unwrap()),
            Some(38803),
            "a mapped IPv4 address is its IPv4 self"
        );
        assert_eq!(t.lookup("2001:201::1".parse().unwrap()), None);
    }

    #[test]
    fn names_come_from_either_format_and_overlaps_can_be_dropped() {
        let t = AsnTable::parse(TABLE).unwrap();
        assert_eq!(t.name(13335), Some("CLOUDFLARENET"));
        assert_eq!(t.name(64500), None);
        let csv = "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
                   1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd\n\
                   1.0.5.0,1.0.5.9,7,\"The \"\"overlap\"\"\"\n\
                   2001::,2001::ffff,6939,Hurricane Electric LLC\n";
        assert_eq!(AsnTable::parse(csv).unwrap_err().line, 3);
        let (t, dropped) = AsnTable::parse_with(csv, false).unwrap();
        assert_eq!((t.len(), dropped), (3, 1));
        assert_eq!(t.name(13335), Some("Cloudflare, Inc."));
        assert_eq!(t.lookup("1.0.5.1".parse().unwrap()), Some(38803));
        assert_eq!(t.lookup("2001::1".parse().unwrap()), Some(6939));
        assert_eq!(t.name(6939), Some("Hurricane Electric LLC"));
    }

    #[test]
    fn a_broken_line_is_named() {
        for (bad, line) in [
            ("1.0.0.0\t1.0.0.255\n", 1),
            ("1.0.0.0,1.0.0.255\n", 1),
            ("1.0.0.0\t1.0.0.255\t1\n1.0.0.0\tx\t2\n", 2),
            ("1.0.0.9\t1.0.0.1\t3\n", 1),
            ("1.0.0.0\t::1\t3\n", 1),
            ("1.0.0.0\t1.0.0.1\tAS3\n", 1),
            (
                "10.1.0.0\t10.1.255.255\t2\n10.0.0.0\t10.255.255.255\t1\n",
                2,
            ),
        ] {
            assert_eq!(AsnTable::parse(bad).unwrap_err().line, line, "{bad:?}");
        }
    }
}
