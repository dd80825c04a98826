//! A feed's head: the one mutable file, a signed note naming every immutable file a
//! subscriber needs.
//!
//! ```text
//! moat-feed/1
//! origin alice.example
//! seq 1042
//! expires 1765003600
//! snapshot 40 9f86d081…(sha-256, hex) 18211
//! delta 41 3e23e816… 611
//! delta 42 2c26b46b… 587
//! ```
//!
//! `seq` counts signings: it grows at every new head, also when only `expires` moved, so a
//! subscriber that saw seq N refuses any head below N (a rollback) and a different head at N (a
//! fork). The files are numbered apart from it: the indicators at the head are the snapshot's
//! (number S) with the deltas S+1, S+2, … applied in order, contiguous. `expires` (Unix
//! seconds) bounds how long a head may be replayed: a publisher re-signs well before it, so a
//! head that stopped moving (a frozen feed) is noticed.

use std::fmt::Write as _;

pub const MAGIC: &str = "moat-feed/1";
/// More deltas than this and the publisher takes a new snapshot.
pub const MAX_DELTAS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("head: {0}")]
pub struct HeadError(pub String);

/// One immutable file: its number, SHA-256 (hex) and size. Served at `by-hash/SHA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub number: u64,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub origin: String,
    pub seq: u64,
    /// Unix seconds.
    pub expires: u64,
    pub snapshot: FileRef,
    pub deltas: Vec<FileRef>,
}

impl Head {
    /// The number of the newest file: what the indicators at this head are up to.
    pub fn content(&self) -> u64 {
        self.deltas
            .last()
            .map_or(self.snapshot.number, |d| d.number)
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{MAGIC}\norigin {}\nseq {}\nexpires {}\n",
            self.origin, self.seq, self.expires
        );
        let f = &self.snapshot;
        let _ = writeln!(s, "snapshot {} {} {}", f.number, f.sha256, f.size);
        for d in &self.deltas {
            let _ = writeln!(s, "delta {} {} {}", d.number, d.sha256, d.size);
        }
        s
    }

    /// Parses and checks a head's text (already verified as signed).
    pub fn parse(text: &str) -> Result<Head, HeadError> {
        let err = |m: &str| HeadError(m.to_string());
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(err("not a moat-feed/1 head"));
        }
        let mut field = |name: &str| -> Result<String, HeadError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| HeadError(format!("expected `{name}`")))
        };
        let origin = field("origin")?;
        crate::note::check_name(&origin).map_err(|e| HeadError(e.to_string()))?;
        let num = |v: String, what: &str| {
            v.parse::<u64>()
                .map_err(|_| HeadError(format!("{what} is not a number")))
        };
        let seq = num(field("seq")?, "seq")?;
        let expires = num(field("expires")?, "expires")?;
        let snapshot = file_ref(&field("snapshot")?)?;
        let mut deltas: Vec<FileRef> = Vec::new();
        for l in lines {
            let d = l
                .strip_prefix("delta ")
                .ok_or_else(|| err("only delta lines may follow the snapshot"))?;
            let d = file_ref(d)?;
            let want = deltas.last().map_or(snapshot.number, |p| p.number) + 1;
            if d.number != want {
                return Err(HeadError(format!(
                    "delta {} where {want} was due: deltas follow the snapshot without gaps",
                    d.number
                )));
            }
            deltas.push(d);
        }
        if deltas.len() > MAX_DELTAS {
            return Err(err("too many deltas"));
        }
        Ok(Head {
            origin,
            seq,
            expires,
            snapshot,
            deltas,
        })
    }
}

fn file_ref(s: &str) -> Result<FileRef, HeadError> {
    let mut it = s.split(' ');
    let (Some(n), Some(sha), Some(size), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(HeadError(format!("`{s}`: expected NUMBER SHA256 SIZE")));
    };
    if sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(HeadError(format!("`{sha}` is not a lowercase SHA-256")));
    }
    Ok(FileRef {
        number: n
            .parse()
            .map_err(|_| HeadError(format!("`{n}` is not a number")))?,
        sha256: sha.to_string(),
        size: size
            .parse()
            .map_err(|_| HeadError(format!("`{size}` is not a size")))?,
    })
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u64, c: char) -> FileRef {
        FileRef {
            number: n,
            sha256: std::iter::repeat_n(c, 64).collect(),
            size: 10 * n,
        }
    }

    #[test]
    fn a_head_round_trips() {
        let h = Head {
            origin: "alice".into(),
            seq: 9,
            expires: 1_765_000_000,
            snapshot: r(4, 'a'),
            deltas: vec![r(5, 'b'), r(6, 'c')],
        };
        assert_eq!(Head::parse(&h.to_text()).unwrap(), h);
        assert_eq!(h.content(), 6);
    }

    #[test]
    fn gaps_and_junk_are_refused() {
        let mut h = Head {
            origin: "alice".into(),
            seq: 9,
            expires: 1,
            snapshot: r(4, 'a'),
            deltas: vec![r(6, 'b')],
        };
        assert!(Head::parse(&h.to_text()).is_err());
        h.deltas.clear();
        let text = h.to_text();
        assert!(Head::parse(&text.replace("seq 9", "seq x")).is_err());
        assert!(Head::parse(&format!("{text}extra 1\n")).is_err());
        assert!(Head::parse(&text.replace(&"a".repeat(64), &"A".repeat(64))).is_err());
        assert!(Head::parse("").is_err());
    }
}
