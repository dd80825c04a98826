//! `moat quarantine campaigns`: captured messages grouped into spam runs (shared link set,
//! subject skeleton, near-identical body), computed from the fingerprints in the index.

pub fn print(db: &rusqlite::Connection, json: bool) -> anyhow::Result<()> {
    let out = moat_trap::quarantine::views::campaigns(db)?;
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
