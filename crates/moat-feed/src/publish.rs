//! The publishing side: given what this instance would publish now, the files and the signed
//! head that bring subscribers there. I/O-free: the caller writes the files and serves them.

use crate::head::{sha256_hex, FileRef, Head, MAX_DELTAS};
use crate::indicator::{encode, FileHeader, FileType, Indicator, Kind, Op};
use crate::note::SignerKey;
use std::collections::BTreeMap;

/// What to write: new immutable files (by SHA-256) and the new head (a signed note).
#[derive(Debug)]
pub struct Output {
    pub files: Vec<(String, Vec<u8>)>,
    pub head: String,
    /// Every file the head names: the caller may delete older ones (after a grace period,
    /// for subscribers that read the previous head a moment ago).
    pub referenced: Vec<String>,
}

pub struct Publisher {
    key: SignerKey,
    /// Seconds a head is valid for; re-signed after half of it.
    lifetime: u64,
    head: Option<Head>,
    published: BTreeMap<(Kind, String), Indicator>,
    delta_bytes: u64,
    /// Whether this process published a snapshot yet (after a restart the first is one).
    started: bool,
}

impl Publisher {
    /// `previous`: this instance's last head (read back from disk, verified), so that the
    /// sequence and the file numbers go on growing across restarts. Its indicators are not
    /// known any more: the first update publishes a fresh snapshot.
    pub fn new(key: SignerKey, previous: Option<Head>, lifetime_secs: u64) -> Publisher {
        let head = previous.filter(|h| h.origin == key.name());
        Publisher {
            key,
            lifetime: lifetime_secs.max(60),
            head,
            published: BTreeMap::new(),
            delta_bytes: 0,
            started: false,
        }
    }

    pub fn key(&self) -> &SignerKey {
        &self.key
    }

    /// Whether [`Self::update`] would write a head at `now` even with nothing changed: the
    /// first since start, or one due for re-signing. A caller whose inputs did not change
    /// skips building them otherwise.
    pub fn due(&self, now: u64) -> bool {
        !self.started
            || self
                .head
                .as_ref()
                .is_none_or(|h| h.expires <= now + self.lifetime / 2)
    }

    /// Publishes `current` (all that should be in the feed now) at `now` (Unix seconds):
    /// `None` when nothing changed and the head is not due for re-signing.
    pub fn update(&mut self, current: Vec<Indicator>, now: u64) -> Option<Output> {
        let current: BTreeMap<(Kind, String), Indicator> = current
            .into_iter()
            .map(|i| ((i.kind, i.value.clone()), i))
            .collect();
        let mut ops: Vec<Op> = current
            .iter()
            .filter(|(k, i)| self.published.get(k) != Some(i))
            .map(|(_, i)| Op::Add(i.clone()))
            .collect();
        ops.extend(
            self.published
                .keys()
                .filter(|k| !current.contains_key(k))
                .map(|(kind, value)| Op::Del {
                    kind: *kind,
                    value: value.clone(),
                }),
        );
        let seq = self.head.as_ref().map_or(1, |h| h.seq + 1);
        let next_number = self.head.as_ref().map_or(1, |h| h.content() + 1);
        let mut files = Vec::new();
        let needs_snapshot = match &self.head {
            // A restart: the last head's files say nothing about what is published now.
            _ if !self.started => true,
            None => true,
            Some(h) => {
                !ops.is_empty()
                    && (h.deltas.len() >= MAX_DELTAS
                        || self.delta_bytes > h.snapshot.size.max(4096))
            }
        };
        let (snapshot, deltas) = if needs_snapshot {
            let all: Vec<Op> = current.values().cloned().map(Op::Add).collect();
            let bytes = encode(
                &FileHeader {
                    feed: self.key.name().to_string(),
                    number: next_number,
                    file_type: FileType::Snapshot,
                },
                &all,
            );
            let r = file_ref(next_number, &bytes);
            files.push((r.sha256.clone(), bytes));
            self.delta_bytes = 0;
            (r, Vec::new())
        } else if !ops.is_empty() {
            let h = self.head.as_ref().expect("a head when no snapshot is due");
            let bytes = encode(
                &FileHeader {
                    feed: self.key.name().to_string(),
                    number: next_number,
                    file_type: FileType::Delta,
                },
                &ops,
            );
            let r = file_ref(next_number, &bytes);
            self.delta_bytes += r.size;
            files.push((r.sha256.clone(), bytes));
            let mut deltas = h.deltas.clone();
            deltas.push(r);
            (h.snapshot.clone(), deltas)
        } else {
            let h = self.head.as_ref().expect("checked above");
            if h.expires > now + self.lifetime / 2 {
                return None;
            }
            (h.snapshot.clone(), h.deltas.clone())
        };
        self.published = current;
        let head = Head {
            origin: self.key.name().to_string(),
            seq,
            expires: now + self.lifetime,
            snapshot,
            deltas,
        };
        let referenced = std::iter::once(head.snapshot.sha256.clone())
            .chain(head.deltas.iter().map(|d| d.sha256.clone()))
            .collect();
        let text = self.key.sign(&head.to_text());
        self.head = Some(head);
        self.started = true;
        Some(Output {
            files,
            head: text,
            referenced,
        })
    }
}

fn file_ref(number: u64, bytes: &[u8]) -> FileRef {
    FileRef {
        number,
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
    }
}
