//! The subscribing side: what one peer's feed says, and the checks that keep a hostile or
//! broken peer (or whoever sits between) from making it say anything else.
//!
//! A head is taken only if it is signed by the pinned key, names that key's origin, has not
//! expired, and does not go back: a lower `seq` than one already seen is a rollback, a
//! different head at the same `seq` a fork, and both are refused. A file is taken only if its
//! SHA-256 and size are the head's and its own header names the feed and number the head
//! gives it. A poll applies all of its files or none.

use crate::head::{sha256_hex, FileRef, Head, HeadError};
use crate::indicator::{decode, FileError, FileType, Indicator, Kind, Op};
use crate::note::{NoteError, VerifierKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("{0}")]
    Signature(#[from] NoteError),
    #[error("{0}")]
    Head(#[from] HeadError),
    #[error("the head is signed for origin {got}, not {want}")]
    Origin { want: String, got: String },
    #[error("rollback: head seq {got} is older than seq {seen} already seen")]
    Rollback { seen: u64, got: u64 },
    #[error("fork: a different head with seq {seq} than the one already seen")]
    Fork { seq: u64 },
    #[error("the head expired at {expires} (now {now}): the feed stopped being re-signed")]
    Expired { expires: u64, now: u64 },
    #[error("tampered file {sha256}: {why}")]
    Tampered { sha256: String, why: String },
    #[error("file {sha256}: {error}")]
    File { sha256: String, error: FileError },
}

/// What a poll must fetch to reach a new head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub head: Head,
    head_sha: String,
    /// In order; the first is the snapshot when `from_snapshot`.
    pub fetch: Vec<FileRef>,
    pub from_snapshot: bool,
}

/// One peer's feed as last verified. Kept on disk between restarts, so a restarted Moat still
/// refuses a rollback below what it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub seq: u64,
    pub head_sha: String,
    /// The number of the newest file applied.
    pub content: u64,
    /// When the head seen last expires (Unix seconds).
    pub expires: u64,
    #[serde(with = "as_list")]
    pub indicators: BTreeMap<(Kind, String), Indicator>,
}

mod as_list {
    use super::*;
    pub fn serialize<S: serde::Serializer>(
        m: &BTreeMap<(Kind, String), Indicator>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.values())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(Kind, String), Indicator>, D::Error> {
        let v: Vec<Indicator> = Vec::deserialize(d)?;
        Ok(v.into_iter()
            .map(|i| ((i.kind, i.value.clone()), i))
            .collect())
    }
}

impl PeerView {
    /// Checks a fetched head (a signed note) against the pinned key and what was seen before:
    /// `None` when it is the head already applied.
    pub fn check_head(
        &self,
        key: &VerifierKey,
        note: &str,
        now: u64,
    ) -> Result<Option<Plan>, Refusal> {
        let text = key.open(note)?;
        let head = Head::parse(text)?;
        if head.origin != key.name() {
            return Err(Refusal::Origin {
                want: key.name().to_string(),
                got: head.origin,
            });
        }
        let head_sha = sha256_hex(note.as_bytes());
        if head.seq < self.seq || head.content() < self.content {
            return Err(Refusal::Rollback {
                seen: self.seq,
                got: head.seq,
            });
        }
        if head.seq == self.seq && self.seq > 0 {
            return if head_sha == self.head_sha {
                Ok(None)
            } else {
                Err(Refusal::Fork { seq: head.seq })
            };
        }
        if head.expires <= now {
            return Err(Refusal::Expired {
                expires: head.expires,
                now,
            });
        }
        let incremental = self.seq > 0 && self.content >= head.snapshot.number;
        let fetch = if incremental {
            head.deltas
                .iter()
                .filter(|d| d.number > self.content)
                .cloned()
                .collect()
        } else {
            std::iter::once(head.snapshot.clone())
                .chain(head.deltas.iter().cloned())
                .collect()
        };
        Ok(Some(Plan {
            head,
            head_sha,
            fetch,
            from_snapshot: !incremental,
        }))
    }

    /// Applies a plan's files (`files[i]` is `plan.fetch[i]`'s bytes): all or nothing.
    pub fn apply(&mut self, plan: Plan, files: &[Vec<u8>]) -> Result<(), Refusal> {
        let mut next = if plan.from_snapshot {
            BTreeMap::new()
        } else {
            self.indicators.clone()
        };
        for (i, r) in plan.fetch.iter().enumerate() {
            let bytes = files.get(i).ok_or_else(|| Refusal::Tampered {
                sha256: r.sha256.clone(),
                why: "missing".into(),
            })?;
            let tampered = |why: String| Refusal::Tampered {
                sha256: r.sha256.clone(),
                why,
            };
            if bytes.len() as u64 != r.size {
                return Err(tampered(format!(
                    "{} bytes, the head says {}",
                    bytes.len(),
                    r.size
                )));
            }
            if sha256_hex(bytes) != r.sha256 {
                return Err(tampered("its SHA-256 is not the head's".into()));
            }
            let (header, ops) = decode(bytes).map_err(|error| Refusal::File {
                sha256: r.sha256.clone(),
                error,
            })?;
            let want_type = if plan.from_snapshot && i == 0 {
                FileType::Snapshot
            } else {
                FileType::Delta
            };
            if header.feed != plan.head.origin
                || header.number != r.number
                || header.file_type != want_type
            {
                return Err(tampered(format!(
                    "its header says {} {:?} {}, the head {} {:?} {}",
                    header.feed,
                    header.file_type,
                    header.number,
                    plan.head.origin,
                    want_type,
                    r.number
                )));
            }
            for op in ops {
                match op {
                    Op::Add(ind) => {
                        next.insert((ind.kind, ind.value.clone()), ind);
                    }
                    Op::Del { kind, value } => {
                        next.remove(&(kind, value));
                    }
                }
            }
        }
        self.indicators = next;
        self.seq = plan.head.seq;
        self.head_sha = plan.head_sha;
        self.content = plan.head.content();
        self.expires = plan.head.expires;
        Ok(())
    }

    /// A head seen but past its expiry: the peer stopped re-signing, or someone replays an
    /// old answer. Its indicators no longer count.
    pub fn is_frozen(&self, now: u64) -> bool {
        self.seq > 0 && self.expires <= now
    }

    /// The indicators that count now.
    pub fn live(&self, now: u64) -> impl Iterator<Item = &Indicator> {
        let frozen = self.is_frozen(now);
        self.indicators
            .values()
            .filter(move |i| !frozen && i.expires > now)
    }
}
