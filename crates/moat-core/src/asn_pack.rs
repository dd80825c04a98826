//! The IP-to-ASN table in Moat's own compact form, for the table shipped inside the binary and
//! the one `moat asn refresh` writes to the state directory. iptoasn's TSV is 34 MB for half a
//! million ranges; this is about 2.6 MB: each range as LEB128 varints (the gap from the last
//! range's end, the length, the AS number), the names once per AS, all deflated.
//!
//! ```text
//! "MOATASN1"  then deflate of:
//!   n4, n4 × (gap, len, asn)          IPv4, sorted, disjoint
//!   n6, n6 × (gap, len, asn)          IPv6, the same with 128-bit values
//!   names, names × (asn gap, bytes, UTF-8)
//! ```
//!
//! Written here rather than with a serialisation crate because the format is the point: the
//! varint gaps are what make it small, and the reader must refuse anything truncated or
//! overlapping instead of trusting the file.

use crate::asn::{AsnTable, AsnTableError};
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"MOATASN1";
/// A bound on what a pack may inflate to: the real table is about 7.6 MB.
const MAX_INFLATED: u64 = 256 * 1024 * 1024;

fn bad(message: &str) -> AsnTableError {
    AsnTableError {
        line: 0,
        message: message.to_string(),
    }
}

fn put(out: &mut Vec<u8>, mut n: u128) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn get(&mut self) -> Result<u128, AsnTableError> {
        let mut n: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = *self
                .b
                .get(self.at)
                .ok_or_else(|| bad("the table is cut short"))?;
            self.at += 1;
            n |= u128::from(b & 0x7f)
                .checked_shl(shift)
                .filter(|v| v >> shift == u128::from(b & 0x7f))
                .ok_or_else(|| bad("a number is too large"))?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(bad("a number is too large"))
    }

    fn count(&mut self) -> Result<usize, AsnTableError> {
        let n = self.get()?;
        // Every entry takes at least a byte: a count past what is left is a lie.
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.b.len() - self.at)
            .ok_or_else(|| bad("a count is larger than the table"))
    }
}

fn ranges<T: Copy + Into<u128>>(out: &mut Vec<u8>, rows: &[(T, T, u32)]) {
    put(out, rows.len() as u128);
    let mut next: u128 = 0;
    for &(s, e, asn) in rows {
        let (s, e) = (s.into(), e.into());
        put(out, s - next);
        put(out, e - s);
        put(out, u128::from(asn));
        // Only the last range can end at the top of the space (rows are disjoint).
        next = e.saturating_add(1);
    }
}

fn read_ranges<T: TryFrom<u128>>(r: &mut Reader<'_>) -> Result<Vec<(T, T, u32)>, AsnTableError> {
    let n = r.count()?;
    let mut rows = Vec::with_capacity(n);
    let mut next: Option<u128> = Some(0);
    for _ in 0..n {
        // `None`: the last range ended at the top of the space, and nothing can follow it.
        let s = next
            .ok_or_else(|| bad("a range is out of bounds"))?
            .checked_add(r.get()?)
            .ok_or_else(|| bad("a range is out of bounds"))?;
        let e = s
            .checked_add(r.get()?)
            .ok_or_else(|| bad("a range is out of bounds"))?;
        let asn = u32::try_from(r.get()?).map_err(|_| bad("an AS number is too large"))?;
        let (Ok(s2), Ok(e2)) = (T::try_from(s), T::try_from(e)) else {
            return Err(bad("a range is out of bounds"));
        };
        rows.push((s2, e2, asn));
        next = e.checked_add(1);
    }
    Ok(rows)
}

impl AsnTable {
    /// The table in the compact form.
    pub fn to_pack(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(8 * self.len() + 32 * self.names.len());
        ranges(&mut raw, &self.v4);
        ranges(&mut raw, &self.v6);
        put(&mut raw, self.names.len() as u128);
        let mut last = 0u32;
        for (asn, name) in &self.names {
            put(&mut raw, u128::from(asn - last));
            last = *asn;
            put(&mut raw, name.len() as u128);
            raw.extend_from_slice(name.as_bytes());
        }
        let mut z = flate2::write::DeflateEncoder::new(MAGIC.to_vec(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let _ = z.write_all(&raw);
        z.finish().unwrap_or_default()
    }

    /// Reads the compact form; anything truncated, oversized or out of order is an error.
    pub fn from_pack(pack: &[u8]) -> Result<AsnTable, AsnTableError> {
        let body = pack
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a Moat ASN table (no MOATASN1 mark)"))?;
        let mut raw = Vec::new();
        flate2::read::DeflateDecoder::new(body)
            .take(MAX_INFLATED)
            .read_to_end(&mut raw)
            .map_err(|e| bad(&format!("the table does not inflate: {e}")))?;
        let mut r = Reader { b: &raw, at: 0 };
        let v4 = read_ranges::<u32>(&mut r)?;
        let v6 = read_ranges::<u128>(&mut r)?;
        let n = r.count()?;
        let mut names = Vec::with_capacity(n);
        let mut asn = 0u32;
        for i in 0..n {
            let gap = u32::try_from(r.get()?).map_err(|_| bad("an AS number is too large"))?;
            if i > 0 && gap == 0 {
                return Err(bad("the names are out of order"));
            }
            asn = asn
                .checked_add(gap)
                .ok_or_else(|| bad("an AS number is too large"))?;
            let len = r.count()?;
            let bytes = &raw[r.at..r.at + len];
            r.at += len;
            let name = std::str::from_utf8(bytes).map_err(|_| bad("a name is not UTF-8"))?;
            names.push((asn, name.into()));
        }
        if r.at != raw.len() {
            return Err(bad("bytes after the table"));
        }
        Ok(AsnTable { v4, v6, names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "0.0.0.0\t0.0.0.255\t1\tZZ\tFIRST\n\
        1.0.0.0\t1.0.0.255\t13335\tUS\tCloudflare, Inc.\n\
        1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM\n\
        255.255.255.0\t255.255.255.255\t4294967295\tZZ\tLAST\n\
        2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE-BB\n\
        ffff::\tffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\t7\tZZ\t\n";

    #[test]
    fn a_table_round_trips() {
        let t = AsnTable::parse(TABLE).unwrap();
        let back = AsnTable::from_pack(&t.to_pack()).unwrap();
        assert_eq!(
            (back.v4.clone(), back.v6.clone()),
            (t.v4.clone(), t.v6.clone())
        );
        assert_eq!(back.names, t.names);
        assert_eq!(back.lookup("1.0.5.5".parse().unwrap()), Some(38803));
        assert_eq!(
            back.lookup("255.255.255.255".parse().unwrap()),
            Some(u32::MAX)
        );
        assert_eq!(back.name(13335), Some("Cloudflare, Inc."));
        assert_eq!(back.name(7), None);
    }

    /// The table in the binary reads, is the size it was built at, and answers for a
    /// well-known network.
    #[test]
    fn the_shipped_table_reads() {
        let t = crate::asn::shipped();
        assert!(t.len() > 400_000, "{}", t.len());
        assert_eq!(t.lookup("1.1.1.1".parse().unwrap()), Some(13335));
        assert_eq!(t.name(13335), Some("Cloudflare, Inc."));
        assert_eq!(t.lookup("127.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn a_damaged_pack_is_refused_not_trusted() {
        let pack = AsnTable::parse(TABLE).unwrap().to_pack();
        assert!(AsnTable::from_pack(b"MOATASN2").is_err());
        assert!(AsnTable::from_pack(&pack[..pack.len() / 2]).is_err());
        // Every single-byte change is refused or still reads a table (never a panic).
        for i in 8..pack.len() {
            let mut p = pack.clone();
            p[i] ^= 0x5a;
            let _ = AsnTable::from_pack(&p);
        }
        // A raw body whose count claims more than there is.
        let mut raw = Vec::new();
        put(&mut raw, 1_000_000);
        let mut z = flate2::write::DeflateEncoder::new(MAGIC.to_vec(), flate2::Compression::fast());
        z.write_all(&raw).unwrap();
        assert!(AsnTable::from_pack(&z.finish().unwrap()).is_err());
    }
}
