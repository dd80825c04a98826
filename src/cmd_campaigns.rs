//! `moat quarantine campaigns`: captured messages grouped into spam runs (shared link set,
//! subject skeleton, near-identical body), computed from the fingerprints in the index.

use moat_intel::{cluster, Fingerprint};
use moat_trap::quarantine::index;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Serialize)]
struct CampaignOut {
    id: String,
    messages: usize,
    /// Distinct contents (a run sent to many victims is often byte-identical).
    contents: usize,
    subject_skeleton: String,
    first_ms: i64,
    last_ms: i64,
    domains: Vec<String>,
    clients: Vec<String>,
    message_ids: Vec<String>,
}

pub fn print(db: &rusqlite::Connection, json: bool) -> anyhow::Result<()> {
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
        out.push(CampaignOut {
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
    // Biggest runs first.
    out.sort_by(|a, b| {
        b.messages
            .cmp(&a.messages)
            .then(a.first_ms.cmp(&b.first_ms))
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<16}  {:>8}  {:>8}  {:<20}  {:<30}  SUBJECT SKELETON",
        "CAMPAIGN", "MESSAGES", "CLIENTS", "LAST SEEN (UTC)", "DOMAINS"
    );
    for c in out {
        println!(
            "{:<16}  {:>8}  {:>8}  {:<20}  {:<30}  {}",
            c.id,
            c.messages,
            c.clients.len(),
            crate::cmd_quarantine::utc(c.last_ms),
            c.domains.join(","),
            c.subject_skeleton
        );
    }
    Ok(())
}
