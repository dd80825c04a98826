//! Indicators and the immutable files that carry them: gzip'd JSON lines, a header line first.
//!
//! ```text
//! {"feed":"alice","number":41,"type":"delta"}
//! {"op":"add","kind":"ip","value":"203.0.113.7","detector":"jail:postfix-sasl","count":2,"first_seen":1764990000,"last_seen":1764993600,"expires":1765080000}
//! {"op":"del","kind":"prefix","value":"198.51.100.0/24"}
//! ```
//!
//! What may be published is only what the kinds below can hold: an address or prefix a
//! detector banned (with the detector's name, how many times, first and last seen), a domain
//! or the SHA-256 of a URL a honey account was asked to spam. Recipients, logins, passwords,
//! reasons (which may name them) and log lines have no field here, so they cannot leave.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::IpAddr;

/// A file larger than this once decompressed is refused (a snapshot of a million indicators
/// is about 150 MB; a feed that large is a hub's, which raises nothing here yet).
pub const MAX_FILE: u64 = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ip,
    Prefix,
    Domain,
    UrlSha256,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Prefix => "prefix",
            Kind::Domain => "domain",
            Kind::UrlSha256 => "url_sha256",
        }
    }
}

/// One published fact. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    pub kind: Kind,
    pub value: String,
    /// What found it: `jail:NAME`, `rule:ID`, `escalation`, `trap`.
    pub detector: String,
    /// How many times it was banned, or how many captured messages carried it.
    pub count: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    pub expires: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Add(Indicator),
    Del { kind: Kind, value: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    Snapshot,
    Delta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeader {
    pub feed: String,
    pub number: u64,
    #[serde(rename = "type")]
    pub file_type: FileType,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("not gzip, or cut short: {0}")]
    Gzip(String),
    #[error("larger than {MAX_FILE} bytes decompressed")]
    TooLarge,
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
}

/// The canonical form of an indicator's value, or why it is not one of its kind.
pub fn canonical(kind: Kind, value: &str) -> Result<String, String> {
    match kind {
        Kind::Ip => value
            .parse::<IpAddr>()
            .map(|a| a.to_canonical().to_string())
            .map_err(|_| format!("{value:?} is not an address")),
        Kind::Prefix => {
            let n: IpNet = value
                .parse()
                .map_err(|_| format!("{value:?} is not a prefix"))?;
            if n.prefix_len() == n.max_prefix_len() {
                return Err(format!("{value:?} is one address: kind ip"));
            }
            Ok(n.trunc().to_string())
        }
        Kind::Domain => {
            let d = value.trim_end_matches('.').to_ascii_lowercase();
            let ok = (3..=253).contains(&d.len())
                && d.contains('.')
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            ok.then_some(d)
                .ok_or_else(|| format!("{value:?} is not a domain name"))
        }
        Kind::UrlSha256 => {
            let ok = value.len() == 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            ok.then(|| value.to_string())
                .ok_or_else(|| format!("{value:?} is not a lowercase SHA-256"))
        }
    }
}

/// The hash a URL is published as (the URL itself may carry a victim's token).
pub fn url_hash(url: &str) -> String {
    crate::head::sha256_hex(url.as_bytes())
}

/// Writes one file: header, then one op per line, gzip'd.
pub fn encode(header: &FileHeader, ops: &[Op]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut line = serde_json::to_vec(header).expect("a header serialises");
    line.push(b'\n');
    let _ = gz.write_all(&line);
    for op in ops {
        line.clear();
        serde_json::to_writer(&mut line, op).expect("an op serialises");
        line.push(b'\n');
        let _ = gz.write_all(&line);
    }
    gz.finish().expect("writing to a Vec")
}

/// Reads one file, checking every line: a value that is not of its kind, or a detector name
/// that is not a short printable word, fails the whole file (a feed that writes junk is
/// broken, and half of a file is not what its publisher meant).
pub fn decode(bytes: &[u8]) -> Result<(FileHeader, Vec<Op>), FileError> {
    let mut text = Vec::new();
    GzDecoder::new(bytes)
        .take(MAX_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| FileError::Gzip(e.to_string()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(FileError::TooLarge);
    }
    let mut lines = text.split(|&b| b == b'\n');
    let at = |line: usize, why: String| FileError::Line { line, why };
    let header: FileHeader = serde_json::from_slice(lines.next().unwrap_or_default())
        .map_err(|e| at(1, format!("header: {e}")))?;
    let mut ops = Vec::new();
    for (i, l) in lines.enumerate() {
        if l.is_empty() {
            continue;
        }
        let mut op: Op = serde_json::from_slice(l).map_err(|e| at(i + 2, e.to_string()))?;
        match &mut op {
            Op::Add(ind) => {
                ind.value = canonical(ind.kind, &ind.value).map_err(|w| at(i + 2, w))?;
                if ind.detector.is_empty()
                    || ind.detector.len() > 64
                    || !ind.detector.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(at(i + 2, "detector: a short printable name".into()));
                }
            }
            Op::Del { kind, value } => {
                *value = canonical(*kind, value).map_err(|w| at(i + 2, w))?;
            }
        }
        ops.push(op);
    }
    Ok((header, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ind(kind: Kind, value: &str) -> Indicator {
        Indicator {
            kind,
            value: value.into(),
            detector: "jail:sshd".into(),
            count: 1,
            first_seen: 1,
            last_seen: 2,
            expires: 3,
        }
    }

    #[test]
    fn a_file_round_trips() {
        let h = FileHeader {
            feed: "a".into(),
            number: 7,
            file_type: FileType::Delta,
        };
        let ops = vec![
            Op::Add(ind(Kind::Ip, "203.0.113.7")),
            Op::Add(ind(Kind::Domain, "spam.example")),
            Op::Del {
                kind: Kind::Prefix,
                value: "198.51.100.0/24".into(),
            },
        ];
        assert_eq!(decode(&encode(&h, &ops)).unwrap(), (h, ops));
    }

    #[test]
    fn values_are_checked_and_canonical() {
        assert_eq!(
            canonical(Kind::Ip, "::ffff:203.0.113.7").unwrap(),
            "203.0.113.7"
        );
        assert_eq!(
            canonical(Kind::Prefix, "198.51.100.9/24").unwrap(),
            "198.51.100.0/24"
        );
        assert!(canonical(Kind::Prefix, "198.51.100.9/32").is_err());
        assert_eq!(
            canonical(Kind::Domain, "Spam.Example.").unwrap(),
            "spam.example"
        );
        assert!(canonical(Kind::Domain, "bad domain.example").is_err());
        assert!(canonical(Kind::UrlSha256, "abc").is_err());
        let h = FileHeader {
            feed: "a".into(),
            number: 1,
            file_type: FileType::Snapshot,
        };
        let bad = encode(&h, &[Op::Add(ind(Kind::Ip, "not-an-ip"))]);
        assert!(matches!(decode(&bad), Err(FileError::Line { line: 2, .. })));
        assert!(decode(b"not gzip").is_err());
    }
}
