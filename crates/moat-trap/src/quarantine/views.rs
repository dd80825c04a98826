//! What the CLI (`moat quarantine show|campaigns`) and the admin API show of the quarantine:
//! one delivery in full, and the deliveries grouped into campaigns. One implementation, so
//! both say the same.

use super::{analyse, index, journal_find, journaled_row, read_message, QuarantineError};
use moat_intel::{cluster, Fingerprint};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// One delivery: its row (subject filled in), whether the index has it yet, its indicators.
pub struct Shown {
    pub message: index::MessageRow,
    pub indexed: bool,
    pub iocs: Vec<index::Ioc>,
    /// A delivery still only in the journal comes with its bytes.
    journaled: Option<Vec<u8>>,
}

impl Shown {
    /// The message as received.
    pub fn bytes(&self, dir: &Path) -> std::io::Result<Vec<u8>> {
        match &self.journaled {
            Some(d) => Ok(d.clone()),
            None => read_message(dir, &self.message),
        }
    }
}

/// Delivery `id` (checked with [`super::files::is_id`] by the caller): indexed, or answered
/// moments ago and still only in the journal. Not analysed yet (the analysis runs behind the
/// replies, at the lowest priority), it is extracted now, so what is shown does not depend on
/// when.
pub fn show(
    dir: &Path,
    db: &rusqlite::Connection,
    id: &str,
) -> Result<Option<Shown>, QuarantineError> {
    let index_err = |e| QuarantineError::Index(super::index_path(dir), e);
    let (row, journaled) = match index::get(db, id).map_err(index_err)? {
        Some(r) => (r, None),
        None => match journal_find(dir, |m, _| m.id == id)
            .map_err(|e| QuarantineError::Io(super::journal::dir(dir), e))?
        {
            Some((meta, data)) => (journaled_row(meta, &data), Some(data)),
            // Indexed between the two reads, its journal segment removed meanwhile.
            None => match index::get(db, id).map_err(index_err)? {
                Some(r) => (r, None),
                None => return Ok(None),
            },
        },
    };
    let indexed = journaled.is_none();
    let mut shown = Shown {
        iocs: match indexed {
            true => index::iocs_of(db, &row.sha256).map_err(index_err)?,
            false => Vec::new(),
        },
        message: row,
        indexed,
        journaled,
    };
    if shown.iocs.is_empty() || shown.message.subject.is_none() {
        if let Ok(b) = shown.bytes(dir) {
            let found = moat_intel::extract(&b);
            if shown.iocs.is_empty() {
                shown.iocs = analyse::iocs(&found);
            }
            if shown.message.subject.is_none() {
                shown.message.subject = Some(found.subject.clone());
            }
        }
    }
    Ok(Some(shown))
}

/// A spam run: deliveries that share a link set, a subject skeleton or a near-identical body.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub id: String,
    pub messages: usize,
    /// Distinct contents (a run sent to many victims is often byte-identical).
    pub contents: usize,
    pub subject_skeleton: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub domains: Vec<String>,
    pub clients: Vec<String>,
    pub message_ids: Vec<String>,
}

/// The campaigns, biggest first, from the fingerprints in the index.
pub fn campaigns(db: &rusqlite::Connection) -> rusqlite::Result<Vec<Campaign>> {
    // Content (one blob) is the unit clustered; its deliveries follow it.
    let blobs = index::fingerprints(db)?;
    let mut items = Vec::with_capacity(blobs.len());
    let mut deliveries: HashMap<String, Vec<String>> = HashMap::new();
    for (sha, fp, ids) in blobs {
        let fp: Fingerprint = serde_json::from_str(&fp).unwrap_or_default();
        deliveries.insert(sha.clone(), ids);
        items.push((sha, fp));
    }
    // Every delivery, read once (not one query per campaign member).
    let rows: HashMap<String, index::MessageRow> = index::list(db, i64::MAX as usize)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let mut out = Vec::new();
    for c in cluster(&items) {
        let mut ids: Vec<String> = c
            .members
            .iter()
            .flat_map(|sha| deliveries.get(sha).cloned().unwrap_or_default())
            .collect();
        ids.sort();
        let rows: Vec<&index::MessageRow> = ids.iter().filter_map(|id| rows.get(id)).collect();
        let mut domains: Vec<String> = Vec::new();
        for sha in &c.members {
            for i in index::iocs_of(db, sha)? {
                if i.kind == "domain" && !domains.contains(&i.value) {
                    domains.push(i.value);
                }
            }
        }
        let mut clients: Vec<String> = rows.iter().map(|r| r.client_ip.clone()).collect();
        clients.sort();
        clients.dedup();
        out.push(Campaign {
            id: c.id,
            messages: ids.len(),
            contents: c.members.len(),
            subject_skeleton: c.subject_skeleton,
            first_ms: rows.iter().map(|r| r.received_ms).min().unwrap_or(0),
            last_ms: rows.iter().map(|r| r.received_ms).max().unwrap_or(0),
            domains,
            clients,
            message_ids: ids,
        });
    }
    out.sort_by(|a, b| {
        b.messages
            .cmp(&a.messages)
            .then(a.first_ms.cmp(&b.first_ms))
    });
    Ok(out)
}
