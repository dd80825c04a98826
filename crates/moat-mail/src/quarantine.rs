//! The quarantine: every captured message, durable before the sender hears `250`.
//!
//! One directory per UTC day; per message `<id>.eml` (the bytes exactly as received) and
//! `<id>.json` (envelope, client, size, SHA-256, and room for what later analysis adds: the
//! SMTP trap extends the JSON, never the `.eml`). Each file is written under a temporary name,
//! synced, renamed into place, and the directory synced, so a crash leaves either the whole
//! message or nothing, and never a `250` for a message that is not on disk.

use crate::smtp::Envelope;
use ring::digest::{digest, SHA256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub eml: PathBuf,
    pub meta: PathBuf,
}

impl Quarantine {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Quarantine {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores one message; returns only once it is on disk.
    pub fn store(&self, env: &Envelope, data: &[u8], now_ms: u64) -> std::io::Result<Stored> {
        let day = self.dir.join(day_name(now_ms / 1000));
        std::fs::create_dir_all(&day)?;
        let id = format!("{now_ms}-{:016x}", fastrand::u64(..));
        let eml = day.join(format!("{id}.eml"));
        let meta = day.join(format!("{id}.json"));
        let sha: String = digest(&SHA256, data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let xf = |k: &str| {
            env.xforward
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let json = serde_json::json!({
            "id": id,
            "received_ms": now_ms,
            "mail_from": env.mail_from,
            "rcpt_to": env.rcpt_to,
            "helo": env.helo,
            "client_address": xf("ADDR"),
            "client_name": xf("NAME"),
            "client_helo": xf("HELO"),
            "size": data.len(),
            "sha256": sha,
        });
        write_synced(&eml, data)?;
        write_synced(&meta, format!("{json:#}\n").as_bytes())?;
        std::fs::File::open(&day)?.sync_all()?;
        Ok(Stored { id, eml, meta })
    }

    /// Every stored message's metadata file, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut days: Vec<_> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        days.sort();
        for d in days {
            let mut files: Vec<_> = std::fs::read_dir(&d)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            out.extend(files);
        }
        Ok(out)
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("part");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `YYYY-MM-DD` for a Unix time (UTC), from the civil-from-days algorithm.
fn day_name(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(951_782_400), "2000-02-29");
        assert_eq!(day_name(1_795_392_000), "2026-11-23");
    }

    #[test]
    fn a_message_and_its_envelope_land_together() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(&dir.path().join("q")).unwrap();
        let env = Envelope {
            helo: "mx".into(),
            mail_from: "info@moat.test".into(),
            rcpt_to: vec!["v@example.org".into()],
            xforward: vec![("ADDR".into(), "127.10.0.5".into())],
        };
        let s = q
            .store(&env, b"Subject: x\r\n\r\nhi\r\n", 1_795_392_000_123)
            .unwrap();
        assert_eq!(std::fs::read(&s.eml).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&s.meta).unwrap()).unwrap();
        assert_eq!(meta["client_address"], "127.10.0.5");
        assert_eq!(meta["rcpt_to"][0], "v@example.org");
        assert_eq!(q.list().unwrap(), vec![s.meta.clone()]);
        assert!(s.eml.to_string_lossy().contains("2026-11-23"));
    }
}
