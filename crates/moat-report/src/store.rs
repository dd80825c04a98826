//! The report database (SQLite): reports and their outcomes, the queue (queued reports keep
//! their payload until they are final), the dedupe marks, the attempt log behind the rate
//! limit, and the RDAP cache.
//!
//! Secrets never go in here: a queued report stores its body and endpoint, and the API key,
//! bearer token or SMTP password is added from the config when it is sent.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::record::{Record, Status, Target};
use crate::ReportError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    target TEXT NOT NULL,
    indicator TEXT NOT NULL,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    answer_code INTEGER,
    answer TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER,
    outbox_path TEXT,
    content_type TEXT,
    payload BLOB
);
CREATE INDEX IF NOT EXISTS reports_due ON reports (status, next_attempt_ms);
CREATE INDEX IF NOT EXISTS reports_message ON reports (message_id);
CREATE TABLE IF NOT EXISTS report_dedupe (
    target TEXT NOT NULL,
    indicator TEXT NOT NULL,
    marked_ms INTEGER NOT NULL,
    PRIMARY KEY (target, indicator)
);
CREATE TABLE IF NOT EXISTS report_attempts (
    target TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS report_attempts_target ON report_attempts (target, at_ms);
CREATE TABLE IF NOT EXISTS rdap_cache (
    key TEXT PRIMARY KEY,
    contacts TEXT NOT NULL,
    fetched_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

/// A report about to be stored.
#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    pub message_id: &'a str,
    pub target: Target,
    pub indicator: &'a str,
    pub recipient: &'a str,
    pub status: Status,
    pub answer: Option<&'a str>,
    pub now_ms: u64,
    /// For queued reports: what to send.
    pub content_type: Option<&'a str>,
    pub payload: Option<&'a [u8]>,
}

/// A queued report, as the sender needs it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub target: Target,
    pub indicator: String,
    pub recipient: String,
    pub attempts: u32,
    pub content_type: String,
    pub payload: Vec<u8>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub answer_code: Option<u16>,
    pub answer: String,
    pub attempts: u32,
    pub next_attempt_ms: Option<u64>,
}

pub struct Store {
    conn: Mutex<Connection>,
}

fn record(row: &Row<'_>) -> rusqlite::Result<Record> {
    let target: String = row.get("target")?;
    let status: String = row.get("status")?;
    Ok(Record {
        id: row.get("id")?,
        message_id: row.get("message_id")?,
        target: Target::parse(&target).unwrap_or(Target::Webhook),
        indicator: row.get("indicator")?,
        recipient: row.get("recipient")?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        answer_code: row.get::<_, Option<i64>>("answer_code")?.map(|c| c as u16),
        answer: row.get("answer")?,
        attempts: row.get::<_, i64>("attempts")? as u32,
        created_ms: row.get::<_, i64>("created_ms")? as u64,
        updated_ms: row.get::<_, i64>("updated_ms")? as u64,
        next_attempt_ms: row
            .get::<_, Option<i64>>("next_attempt_ms")?
            .map(|v| v as u64),
        outbox_path: row.get("outbox_path")?,
    })
}

const RECORD_COLUMNS: &str = "id, message_id, target, indicator, recipient, status, answer_code, \
     answer, attempts, created_ms, updated_ms, next_attempt_ms, outbox_path";

impl Store {
    pub fn open(path: &Path) -> Result<Store, ReportError> {
        let db = |source| ReportError::Db {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::Outbox {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, r: &NewReport<'_>) -> Result<i64, ReportError> {
        let c = self.conn();
        let queued = r.status == Status::Queued;
        c.execute(
            "INSERT INTO reports (message_id, target, indicator, recipient, status, answer, \
             attempts, created_ms, updated_ms, next_attempt_ms, content_type, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7, ?8, ?9, ?10)",
            params![
                r.message_id,
                r.target.as_str(),
                r.indicator,
                r.recipient,
                r.status.as_str(),
                r.answer,
                r.now_ms as i64,
                queued.then_some(r.now_ms as i64),
                r.content_type,
                r.payload,
            ],
        )?;
        Ok(c.last_insert_rowid())
    }

    pub fn set_outbox(&self, id: i64, path: &str) -> Result<(), ReportError> {
        self.conn().execute(
            "UPDATE reports SET outbox_path = ?2 WHERE id = ?1",
            params![id, path],
        )?;
        Ok(())
    }

    /// Queued reports due at `now`, oldest first. Reports left `sending` by a process that died
    /// more than `stale_ms` ago are queued again first.
    pub fn due(&self, now_ms: u64, stale_ms: u64, limit: usize) -> Result<Vec<Job>, ReportError> {
        let c = self.conn();
        c.execute(
            "UPDATE reports SET status = 'queued' WHERE status = 'sending' AND updated_ms < ?1",
            params![now_ms.saturating_sub(stale_ms) as i64],
        )?;
        let mut st = c.prepare(
            "SELECT id, target, indicator, recipient, attempts, content_type, payload FROM reports \
             WHERE status = 'queued' AND next_attempt_ms <= ?1 \
             ORDER BY next_attempt_ms, id LIMIT ?2",
        )?;
        let rows = st.query_map(params![now_ms as i64, limit as i64], |row| {
            let target: String = row.get(1)?;
            Ok(Job {
                id: row.get(0)?,
                target: Target::parse(&target).unwrap_or(Target::Webhook),
                indicator: row.get(2)?,
                recipient: row.get(3)?,
                attempts: row.get::<_, i64>(4)? as u32,
                content_type: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                payload: row.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the earliest queued report is due.
    pub fn next_due(&self) -> Result<Option<u64>, ReportError> {
        let v: Option<i64> = self.conn().query_row(
            "SELECT MIN(next_attempt_ms) FROM reports WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?;
        Ok(v.map(|v| v as u64))
    }

    /// Marks a queued report as being sent; false if someone else took it.
    pub fn claim(&self, id: i64, now_ms: u64) -> Result<bool, ReportError> {
        let n = self.conn().execute(
            "UPDATE reports SET status = 'sending', updated_ms = ?2 \
             WHERE id = ?1 AND status = 'queued'",
            params![id, now_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// Puts a claimed report back in the queue untouched, due at `at_ms` (rate limit).
    pub fn defer(&self, id: i64, at_ms: u64, now_ms: u64, why: &str) -> Result<(), ReportError> {
        self.conn().execute(
            "UPDATE reports SET status = 'queued', next_attempt_ms = ?2, updated_ms = ?3, \
             answer = ?4 WHERE id = ?1",
            params![id, at_ms as i64, now_ms as i64, why],
        )?;
        Ok(())
    }

    /// Records an attempt's outcome; a final report drops its payload.
    pub fn finish(&self, id: i64, o: &Outcome, now_ms: u64) -> Result<(), ReportError> {
        let c = self.conn();
        c.execute(
            "UPDATE reports SET status = ?2, answer_code = ?3, answer = ?4, attempts = ?5, \
             updated_ms = ?6, next_attempt_ms = ?7, \
             payload = CASE WHEN ?8 THEN NULL ELSE payload END WHERE id = ?1",
            params![
                id,
                o.status.as_str(),
                o.answer_code.map(i64::from),
                o.answer,
                o.attempts as i64,
                now_ms as i64,
                o.next_attempt_ms.map(|v| v as i64),
                o.status.is_final(),
            ],
        )?;
        Ok(())
    }

    /// Whether (target, indicator) was marked after `since_ms`.
    pub fn recently_reported(
        &self,
        target: Target,
        indicator: &str,
        since_ms: u64,
    ) -> Result<bool, ReportError> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT marked_ms FROM report_dedupe WHERE target = ?1 AND indicator = ?2 \
                 AND marked_ms > ?3",
                params![target.as_str(), indicator, since_ms as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    pub fn mark_reported(
        &self,
        target: Target,
        indicator: &str,
        now_ms: u64,
    ) -> Result<(), ReportError> {
        self.conn().execute(
            "INSERT INTO report_dedupe (target, indicator, marked_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (target, indicator) DO UPDATE SET marked_ms = excluded.marked_ms",
            params![target.as_str(), indicator, now_ms as i64],
        )?;
        Ok(())
    }

    /// Forgets a mark, so that a later incident may report the indicator again (after a report
    /// that never got through).
    pub fn unmark_reported(&self, target: Target, indicator: &str) -> Result<(), ReportError> {
        self.conn().execute(
            "DELETE FROM report_dedupe WHERE target = ?1 AND indicator = ?2",
            params![target.as_str(), indicator],
        )?;
        Ok(())
    }

    /// Logs an attempt for the rate limit, and prunes the log to the last two hours (the limit
    /// looks back one hour; the margin keeps a slow clock step from undercounting).
    pub fn log_attempt(&self, target: Target, now_ms: u64) -> Result<(), ReportError> {
        let c = self.conn();
        c.execute(
            "INSERT INTO report_attempts (target, at_ms) VALUES (?1, ?2)",
            params![target.as_str(), now_ms as i64],
        )?;
        c.execute(
            "DELETE FROM report_attempts WHERE at_ms < ?1",
            params![now_ms.saturating_sub(2 * crate::policy::HOUR_MS) as i64],
        )?;
        Ok(())
    }

    pub fn attempts_since(&self, target: Target, since_ms: u64) -> Result<Vec<u64>, ReportError> {
        let c = self.conn();
        let mut st =
            c.prepare("SELECT at_ms FROM report_attempts WHERE target = ?1 AND at_ms > ?2")?;
        let rows = st.query_map(params![target.as_str(), since_ms as i64], |r| {
            r.get::<_, i64>(0).map(|v| v as u64)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn rdap_get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<String>>, ReportError> {
        let found: Option<String> = self
            .conn()
            .query_row(
                "SELECT contacts FROM rdap_cache WHERE key = ?1 AND expires_ms > ?2",
                params![key, now_ms as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.map(|s| serde_json::from_str(&s).unwrap_or_default()))
    }

    pub fn rdap_put(
        &self,
        key: &str,
        contacts: &[String],
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), ReportError> {
        let json = serde_json::to_string(contacts).unwrap_or_else(|_| "[]".into());
        self.conn().execute(
            "INSERT INTO rdap_cache (key, contacts, fetched_ms, expires_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (key) DO UPDATE SET contacts = excluded.contacts, \
             fetched_ms = excluded.fetched_ms, expires_ms = excluded.expires_ms",
            params![key, json, now_ms as i64, now_ms.saturating_add(ttl_ms) as i64],
        )?;
        Ok(())
    }

    pub fn get(&self, id: i64) -> Result<Option<Record>, ReportError> {
        let c = self.conn();
        let sql = format!("SELECT {RECORD_COLUMNS} FROM reports WHERE id = ?1");
        Ok(c.query_row(&sql, params![id], record).optional()?)
    }

    /// The latest `limit` reports, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<Record>, ReportError> {
        let c = self.conn();
        let sql = format!("SELECT {RECORD_COLUMNS} FROM reports ORDER BY id DESC LIMIT ?1");
        let mut st = c.prepare(&sql)?;
        let rows = st.query_map(params![limit as i64], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every report about one incident, oldest first.
    pub fn for_message(&self, message_id: &str) -> Result<Vec<Record>, ReportError> {
        let c = self.conn();
        let sql = format!("SELECT {RECORD_COLUMNS} FROM reports WHERE message_id = ?1 ORDER BY id");
        let mut st = c.prepare(&sql)?;
        let rows = st.query_map(params![message_id], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("r.db")).unwrap();
        (d, s)
    }

    #[test]
    fn a_queued_report_is_due_claimed_and_finished() {
        let (_d, s) = store();
        let id = s
            .insert(&NewReport {
                message_id: "m",
                target: Target::Webhook,
                indicator: "message:m",
                recipient: "http://x/",
                status: Status::Queued,
                answer: None,
                now_ms: 100,
                content_type: Some("application/json"),
                payload: Some(b"{}"),
            })
            .unwrap();
        assert!(s.due(99, 1000, 10).unwrap().is_empty());
        let due = s.due(100, 1000, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].payload, b"{}");
        assert!(s.claim(id, 100).unwrap());
        assert!(
            !s.claim(id, 100).unwrap(),
            "a claimed report is not claimed twice"
        );
        s.finish(
            id,
            &Outcome {
                status: Status::Sent,
                answer_code: Some(200),
                answer: "ok".into(),
                attempts: 1,
                next_attempt_ms: None,
            },
            120,
        )
        .unwrap();
        let r = s.get(id).unwrap().unwrap();
        assert_eq!(r.status, Status::Sent);
        assert_eq!(r.answer_code, Some(200));
        assert!(s.due(10_000, 1000, 10).unwrap().is_empty());
    }

    #[test]
    fn a_report_left_sending_is_requeued_when_stale() {
        let (_d, s) = store();
        let id = s
            .insert(&NewReport {
                message_id: "m",
                target: Target::Webhook,
                indicator: "i",
                recipient: "r",
                status: Status::Queued,
                answer: None,
                now_ms: 0,
                content_type: None,
                payload: None,
            })
            .unwrap();
        assert!(s.claim(id, 10).unwrap());
        assert!(s.due(500, 1000, 10).unwrap().is_empty());
        assert_eq!(s.due(2000, 1000, 10).unwrap().len(), 1);
    }

    #[test]
    fn dedupe_marks_expire_with_the_window() {
        let (_d, s) = store();
        s.mark_reported(Target::Arf, "ip:1", 1000).unwrap();
        assert!(s.recently_reported(Target::Arf, "ip:1", 999).unwrap());
        assert!(!s.recently_reported(Target::Arf, "ip:1", 1000).unwrap());
        assert!(!s.recently_reported(Target::Spamhaus, "ip:1", 0).unwrap());
        s.unmark_reported(Target::Arf, "ip:1").unwrap();
        assert!(!s.recently_reported(Target::Arf, "ip:1", 0).unwrap());
    }

    #[test]
    fn the_rdap_cache_expires() {
        let (_d, s) = store();
        s.rdap_put("ip:1", &["abuse@x.example".into()], 100, 50)
            .unwrap();
        assert_eq!(
            s.rdap_get("ip:1", 149).unwrap(),
            Some(vec!["abuse@x.example".to_string()])
        );
        assert_eq!(s.rdap_get("ip:1", 150).unwrap(), None);
    }
}
