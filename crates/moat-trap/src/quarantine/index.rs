//! The SQLite index over the message files: what arrived, from whom, with which credentials,
//! and what it contained.
//!
//! Content lives in `blobs` (one row per distinct SHA-256, one file each: a spam run sent to a
//! thousand victims is stored once); each delivery is a row in `messages` pointing at its blob.
//! Indicators belong to the content, so `iocs` hangs off the blob. Rows refer to a blob by its
//! integer `id`, which grows with arrival: the indexes they maintain are appended to at their
//! right edge, where keying them by the hash would dirty one random page per message and
//! commit.
//!
//! The index is not what makes a delivery durable: the journal ([`super::journal`]) is, and
//! a journal segment goes only once the index rows of its deliveries are synced. So commits
//! here need no sync of their own.
//!
//! WAL mode: readers (the CLI) never block the trap, and the trap never blocks them.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;

/// The layout version in `PRAGMA user_version`. An index of another version is moved aside
/// at open and rebuilt from the files (each carries its envelope): see [`open`].
pub const VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    body_offset INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    analysed INTEGER NOT NULL DEFAULT 0,
    subject TEXT,
    fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS blobs_first ON blobs(first_ms);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    client_port INTEGER NOT NULL,
    helo TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL,
    auth_user TEXT,
    auth_password TEXT,
    tls INTEGER NOT NULL,
    listener TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    blob INTEGER NOT NULL REFERENCES blobs(id)
);
CREATE INDEX IF NOT EXISTS messages_blob ON messages(blob);
CREATE INDEX IF NOT EXISTS messages_time ON messages(received_ms);
CREATE TABLE IF NOT EXISTS iocs (
    blob INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS iocs_blob ON iocs(blob);
CREATE TABLE IF NOT EXISTS logins (
    at_ms INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    username TEXT NOT NULL,
    password TEXT NOT NULL,
    verdict TEXT NOT NULL,
    tls INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS logins_time ON logins(at_ms);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// Whether `open` refused an index of another layout version.
pub fn is_other_layout(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(m))
        if f.extended_code == rusqlite::ffi::SQLITE_MISMATCH && m.starts_with("index layout"))
}

/// Opens (creating if needed) the index for writing. An index of another layout version is
/// refused ([`is_other_layout`]); the writer moves it aside and rebuilds.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 = c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    if version != VERSION && tables > 0 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "index layout {version}, this Moat writes {VERSION}"
            )),
        ));
    }
    // Smaller pages for a new index (an existing one keeps its own): the log holds whole
    // pages, and a group commit dirties a few pages per table and index for a few small rows.
    // Measured with bench/trap.sh: 2 KiB pages write a third fewer bytes per message than
    // 4 KiB ones.
    c.pragma_update(None, "page_size", 2048)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    // An 8 MB page cache (the index's hot pages are its right edges) and fewer, larger
    // checkpoints: the trap writes small rows fast. A 32 MB cache measured no faster in
    // bench/trap.sh and cost 25 MB of RSS once the index had grown.
    c.pragma_update(None, "cache_size", -8_000)?;
    c.pragma_update(None, "wal_autocheckpoint", 4000)?;
    c.execute_batch(SCHEMA)?;
    c.pragma_update(None, "user_version", VERSION)?;
    Ok(c)
}

/// SQLite's write-ahead log next to the index at `index`.
pub fn wal_path(index: &Path) -> std::path::PathBuf {
    let mut p = index.as_os_str().to_owned();
    p.push("-wal");
    p.into()
}

/// Opens an existing index for reading only (the CLI, while the trap may be running).
pub fn open_read(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(c)
}

/// The content hash delivery `id` is indexed with, if it is.
pub fn message_sha(c: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT sha256 FROM messages WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

/// The blob holding content `sha` and its file, if any.
pub fn blob_file(c: &Connection, sha: &str) -> rusqlite::Result<Option<(i64, String)>> {
    c.prepare_cached("SELECT id, file FROM blobs WHERE sha256 = ?1")?
        .query_row([sha], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// The blob holding content `sha`, if any.
pub fn blob_id(c: &Connection, sha: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM blobs WHERE sha256 = ?1")?
        .query_row([sha], |r| r.get(0))
        .optional()
}

pub fn add_counter(c: &Connection, name: &str, by: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + ?2",
        params![name, by],
    )?;
    Ok(())
}

pub fn counter(c: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(
        c.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0),
    )
}

pub fn total_bytes(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT COALESCE(SUM(size), 0) FROM blobs", [], |r| r.get(0))
}

/// One delivery, as the CLI shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageRow {
    pub id: String,
    pub received_ms: i64,
    pub client_ip: String,
    pub client_port: i64,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    pub tls: bool,
    pub listener: String,
    pub size: i64,
    pub sha256: String,
    pub subject: Option<String>,
    pub file: String,
    pub body_offset: i64,
}

const MESSAGE_COLUMNS: &str = "m.id, m.received_ms, m.client_ip, m.client_port, m.helo, \
    m.mail_from, m.rcpt_to, m.auth_user, m.auth_password, m.tls, m.listener, m.size, m.sha256, \
    b.subject, b.file, b.body_offset";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    let rcpt: String = r.get(6)?;
    Ok(MessageRow {
        id: r.get(0)?,
        received_ms: r.get(1)?,
        client_ip: r.get(2)?,
        client_port: r.get(3)?,
        helo: r.get(4)?,
        mail_from: r.get(5)?,
        rcpt_to: serde_json::from_str(&rcpt).unwrap_or_default(),
        auth_user: r.get(7)?,
        auth_password: r.get(8)?,
        tls: r.get::<_, i64>(9)? != 0,
        listener: r.get(10)?,
        size: r.get(11)?,
        sha256: r.get(12)?,
        subject: r.get(13)?,
        file: r.get(14)?,
        body_offset: r.get(15)?,
    })
}

/// The newest `limit` deliveries, newest first.
pub fn list(c: &Connection, limit: usize) -> rusqlite::Result<Vec<MessageRow>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN blobs b ON b.id = m.blob
         ORDER BY m.received_ms DESC, m.id DESC LIMIT ?1"
    );
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map([limit as i64], message_row)?;
    rows.collect()
}

pub fn get(c: &Connection, id: &str) -> rusqlite::Result<Option<MessageRow>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.id = ?1"
    );
    c.query_row(&sql, [id], message_row).optional()
}

/// Deliveries after `(received_ms, id)` in arrival order, each with whether its content has
/// been analysed yet (a consumer such as the reporter stops at the first that has not).
pub fn after(
    c: &Connection,
    received_ms: i64,
    id: &str,
    limit: usize,
) -> rusqlite::Result<Vec<(MessageRow, bool)>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, b.analysed FROM messages m JOIN blobs b ON b.id = m.blob
          WHERE m.received_ms > ?1 OR (m.received_ms = ?1 AND m.id > ?2)
          ORDER BY m.received_ms, m.id LIMIT ?3"
    );
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map(params![received_ms, id, limit as i64], |r| {
        Ok((message_row(r)?, r.get::<_, i64>(16)? != 0))
    })?;
    rows.collect()
}

/// One indicator of one message's content.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ioc {
    pub kind: String,
    pub value: String,
    pub detail: Option<String>,
}

pub fn iocs_of(c: &Connection, sha: &str) -> rusqlite::Result<Vec<Ioc>> {
    let mut st = c.prepare(
        "SELECT i.kind, i.value, i.detail FROM iocs i JOIN blobs b ON b.id = i.blob
          WHERE b.sha256 = ?1 ORDER BY i.rowid",
    )?;
    let rows = st.query_map([sha], |r| {
        Ok(Ioc {
            kind: r.get(0)?,
            value: r.get(1)?,
            detail: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// The kinds of indicator [`ioc_summary`] knows (`moat quarantine iocs --kind`, the admin API).
pub const IOC_KINDS: [&str; 10] = [
    "url",
    "domain",
    "recipient",
    "sender",
    "received",
    "client-ip",
    "helo",
    "envelope-from",
    "envelope-rcpt",
    "login",
];

/// An indicator across the quarantine: how many deliveries carried it, first and last seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IocSummary {
    pub kind: String,
    pub value: String,
    pub messages: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Content indicators (urls, domains, ...) joined with the deliveries that carried them, plus
/// the envelope ones (client addresses, envelope recipients, logins) read off `messages`.
pub fn ioc_summary(c: &Connection, kind: Option<&str>) -> rusqlite::Result<Vec<IocSummary>> {
    let sql = "
        SELECT kind, value, COUNT(*), MIN(t), MAX(t) FROM (
            SELECT i.kind AS kind, i.value AS value, m.received_ms AS t
              FROM iocs i JOIN messages m ON m.blob = i.blob
            UNION ALL SELECT 'client-ip', client_ip, received_ms FROM messages
            UNION ALL SELECT 'helo', helo, received_ms FROM messages WHERE helo != ''
            UNION ALL SELECT 'envelope-from', mail_from, received_ms FROM messages WHERE mail_from != ''
            UNION ALL SELECT 'envelope-rcpt', j.value, m.received_ms FROM messages m, json_each(m.rcpt_to) j
            UNION ALL SELECT 'login', auth_user, received_ms FROM messages WHERE auth_user IS NOT NULL
        )
        WHERE ?1 IS NULL OR kind = ?1
        GROUP BY kind, value
        ORDER BY kind, COUNT(*) DESC, value";
    let mut st = c.prepare(sql)?;
    let rows = st.query_map([kind], |r| {
        Ok(IocSummary {
            kind: r.get(0)?,
            value: r.get(1)?,
            messages: r.get(2)?,
            first_ms: r.get(3)?,
            last_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub fn logins(c: &Connection, limit: usize) -> rusqlite::Result<Vec<super::Login>> {
    let mut st = c.prepare(
        "SELECT at_ms, client_ip, mechanism, username, password, verdict, tls FROM logins
         ORDER BY at_ms DESC, rowid DESC LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], |r| {
        Ok(super::Login {
            at_ms: r.get::<_, i64>(0)?.max(0) as u64,
            client_ip: r.get(1)?,
            mechanism: r.get(2)?,
            username: r.get(3)?,
            password: r.get(4)?,
            verdict: r.get(5)?,
            tls: r.get::<_, i64>(6)? != 0,
        })
    })?;
    rows.collect()
}

/// Every analysed blob's fingerprint, with the deliveries that carried it, oldest first.
pub fn fingerprints(c: &Connection) -> rusqlite::Result<Vec<(String, String, Vec<String>)>> {
    let mut st = c.prepare(
        "SELECT b.sha256, b.fingerprint, group_concat(m.id, ' ')
           FROM blobs b JOIN messages m ON m.blob = b.id
          WHERE b.fingerprint IS NOT NULL
          GROUP BY b.id ORDER BY b.first_ms, b.sha256",
    )?;
    let rows = st.query_map([], |r| {
        let ids: String = r.get(2)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            ids.split(' ').map(str::to_string).collect(),
        ))
    })?;
    rows.collect()
}
