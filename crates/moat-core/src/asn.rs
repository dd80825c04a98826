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
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

impl AsnTable {
    /// Parses the TSV text. Blank lines and `#` comments are skipped; any other line that is not
    /// `START<TAB>END<TAB>ASN...` with both ends of one family and `START <= END` is an error
    /// naming its line, so a truncated download is noticed at start rather than silently
    /// grouping everyone by prefix. Ranges must not overlap (iptoasn's never do): a table
    /// where they do is not one Moat can answer from unambiguously.
    pub fn parse(text: &str) -> Result<AsnTable, AsnTableError> {
        let mut v4: Vec<((u32, u32, u32), usize)> = Vec::new();
        let mut v6: Vec<((u128, u128, u32), usize)> = Vec::new();
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
            let mut cols = line.split('\t');
            let (Some(start), Some(end), Some(asn)) = (cols.next(), cols.next(), cols.next())
            else {
                return Err(err("expected START, END and AS number separated by tabs"));
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
        }
        Ok(AsnTable {
            v4: disjoint(v4)?,
            v6: disjoint(v6)?,
        })
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

/// The rows sorted by start, or an error naming the later of two rows that overlap.
fn disjoint<T: Ord + Copy>(
    mut rows: Vec<((T, T, u32), usize)>,
) -> Result<Vec<(T, T, u32)>, AsnTableError> {
    rows.sort_unstable();
    for w in rows.windows(2) {
        if w[1].0 .0 <= w[0].0 .1 {
            let (a, b) = (w[0].1.min(w[1].1), w[0].1.max(w[1].1));
            return Err(AsnTableError {
                line: b,
                message: format!("the range overlaps the one on line {a}"),
            });
        }
    }
    Ok(rows.into_iter().map(|(r, _)| r).collect())
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
    fn a_broken_line_is_named() {
        for (bad, line) in [
            ("1.0.0.0\t1.0.0.255\n", 1),
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
