//! Feeds what the trap captured to the reporter (`moat-report`): new deliveries, in arrival
//! order, once their indicators are extracted. A cursor file in the state directory remembers
//! the last one handed over, so a restart neither skips nor repeats (the reporter's own
//! per-indicator dedupe covers the overlap a crash could leave).
//!
//! Kept in the binary on purpose: the trap crate has no outbound network code at all.

use anyhow::Context;
use moat_core::{Clock, SystemClock};
use moat_report::{Incident, Record, Reporter};
use moat_trap::quarantine::{index, index_path, read_message};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ReportFeed {
    reporter: Reporter,
    quarantine: PathBuf,
    cursor: PathBuf,
}

/// The reporter's database in a state directory.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("reports.sqlite")
}

impl ReportFeed {
    pub fn open(
        state_dir: &Path,
        quarantine: &Path,
        cfg: moat_report::ReportConfig,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let reporter = Reporter::open(&db_path(state_dir), cfg)?;
        Ok(ReportFeed {
            reporter,
            quarantine: quarantine.to_path_buf(),
            cursor: state_dir.join("reports.cursor"),
        })
    }

    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    fn read_cursor(&self) -> (i64, String) {
        let text = std::fs::read_to_string(&self.cursor).unwrap_or_default();
        let mut it = text.split_whitespace();
        let ms = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        (ms, it.next().unwrap_or("").to_string())
    }

    fn write_cursor(&self, ms: i64, id: &str) -> std::io::Result<()> {
        let tmp = self.cursor.with_extension("tmp");
        std::fs::write(&tmp, format!("{ms} {id}\n"))?;
        std::fs::rename(&tmp, &self.cursor)
    }

    /// Hands every new analysed delivery to the reporter, then lets it work off its queue.
    /// Returns the records produced.
    pub async fn run_once(&self) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        let ipath = index_path(&self.quarantine);
        if ipath.is_file() {
            let db = index::open_read(&ipath)?;
            let (mut ms, mut id) = self.read_cursor();
            loop {
                let batch = index::after(&db, ms, &id, 200)?;
                if batch.is_empty() {
                    break;
                }
                // The cursor is written once per batch: after a crash inside one, its
                // deliveries are submitted again and the reporter's dedupe absorbs them.
                let mut done = false;
                for (row, analysed) in batch {
                    if !analysed {
                        done = true;
                        break;
                    }
                    let inc = incident(&db, &self.quarantine, &row)?;
                    out.extend(self.reporter.submit(&inc).await?);
                    (ms, id) = (row.received_ms, row.id);
                }
                self.write_cursor(ms, &id)?;
                if done {
                    break;
                }
            }
        }
        out.extend(self.reporter.pump(SystemClock.now_ms()).await?);
        Ok(out)
    }

    /// Runs [`run_once`](Self::run_once) every `every`, logging failures, until aborted.
    pub async fn run_forever(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match self.run_once().await {
                Ok(records) => {
                    for r in records {
                        tracing::info!(target: "moat::report", message = %r.message_id,
                            target_kind = ?r.target, indicator = %r.indicator, status = ?r.status,
                            answer = r.answer_code, "report");
                    }
                }
                Err(e) => {
                    tracing::error!(target: "moat::report", error = %format!("{e:#}"), "reporting failed")
                }
            }
        }
    }
}

fn incident(
    db: &rusqlite::Connection,
    dir: &Path,
    row: &index::MessageRow,
) -> anyhow::Result<Incident> {
    let iocs = index::iocs_of(db, &row.sha256)?;
    let pick = |kind: &str| -> Vec<String> {
        iocs.iter()
            .filter(|i| i.kind == kind)
            .map(|i| i.value.clone())
            .collect()
    };
    Ok(Incident {
        message_id: row.id.clone(),
        received_ms: row.received_ms.max(0) as u64,
        source_ip: row.client_ip.parse().ok(),
        helo: row.helo.clone(),
        mail_from: row.mail_from.clone(),
        rcpt_to: row.rcpt_to.clone(),
        auth_user: row.auth_user.clone(),
        urls: pick("url"),
        domains: pick("domain"),
        // The file may have been evicted since; report without the sample then.
        raw: read_message(dir, row).unwrap_or_default(),
    })
}
