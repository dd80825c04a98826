//! The SQLite store, in WAL mode: a committed write survives `kill -9` of the process, and other
//! processes (the `moat bans` command) can write while Moat runs.

use crate::{AllowEntry, DecisionPage, DecisionQuery, LearnedResponse, Result, Store, StoreError};
use ipnet::IpNet;
use moat_core::{Decision, Origin, Scope, Verdict};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// A second connection for the admin API's pages, opened on first use: in WAL mode it
    /// reads while the decider holds `conn` (its full read of a million decisions takes a
    /// second or more, and a page must not wait for it). `None` for an in-memory database,
    /// which has one connection only.
    reader: Mutex<Option<Connection>>,
    path: Option<PathBuf>,
    /// Changes made through this handle. SQLite's `data_version` only moves for other
    /// connections' commits, so [`Store::changed`] adds these: a ban written by the admin API
    /// is seen by the decider, which shares this handle.
    writes: AtomicU64,
    /// When `ban_history` was last pruned: a prune scans the table, so it runs at most once a
    /// minute rather than with every ban (at 100k rows a per-ban prune cost 1 ms a ban).
    pruned_ms: AtomicU64,
}

/// Matches of a filtered page at most this many are read and sorted; more, and the page walks
/// the decisions newest first until it has its rows.
const SORT_AT_MOST: i64 = 10_000;

/// How often old ban history is pruned.
const PRUNE_EVERY_MS: u64 = 60_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS decisions (
    scope TEXT PRIMARY KEY,
    verdict TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    reason TEXT NOT NULL,
    origin TEXT NOT NULL,
    offences INTEGER NOT NULL
);
-- Pages of the admin API, newest first, without sorting a million rows; with the expiry in
-- the index, skipping to a deep page walks the index alone. The origin index counts the bans
-- each feed or jail made.
CREATE INDEX IF NOT EXISTS decisions_by_created ON decisions (created_ms, expires_ms);
CREATE INDEX IF NOT EXISTS decisions_by_origin ON decisions (origin, expires_ms);
-- Counting the active ones (all minus the expired) and purging the expired, without a scan.
CREATE INDEX IF NOT EXISTS decisions_expires ON decisions (expires_ms);
CREATE TABLE IF NOT EXISTS ban_history (
    scope TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS allowlist (
    net TEXT PRIMARY KEY,
    note TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS learned_decoys (
    decoy TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
);
";

impl SqliteStore {
    /// The database file in a state directory.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join("moat.db")
    }

    /// Opens (creating if needed) `dir/moat.db`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        Self::open(&Self::path_in(dir))
    }

    /// Opens `dir/moat.db` only if it exists: commands that read state must not leave an empty
    /// database (and directory) behind where they were pointed by mistake.
    pub fn open_existing(dir: &Path) -> Result<Self> {
        let path = Self::path_in(dir);
        if !path.is_file() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Self::init(conn)
    }

    pub fn open(path: &Path) -> Result<Self> {
        Self::init(Connection::open(path)?)
    }

    fn init(conn: Connection) -> Result<Self> {
        let path = conn.path().filter(|p| !p.is_empty()).map(PathBuf::from);
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL + NORMAL: a commit is durable against a process crash (kill -9); only a power
        // loss may drop the last transactions, which for bans is an acceptable trade for speed.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            reader: Mutex::new(None),
            path,
            writes: AtomicU64::new(0),
            pruned_ms: AtomicU64::new(0),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a read on the readers' connection (opened read-only on first use), or on the main
    /// one when the database is in memory or the second connection cannot be opened.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if let Some(path) = &self.path {
            let mut r = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_none() {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                match Connection::open_with_flags(path, flags) {
                    Ok(c) => {
                        let _ = c.busy_timeout(Duration::from_secs(5));
                        *r = Some(c);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no second connection for reads; sharing the writer's")
                    }
                }
            }
            if let Some(c) = r.as_ref() {
                return f(c);
            }
        }
        f(&self.conn())
    }

    /// One page of decisions on `c`: the count and the rows for the filter
    /// [`Store::decision_page`] built (`args` binds its parameters in order).
    fn page_on(
        &self,
        c: &Connection,
        q: &DecisionQuery,
        filter: &str,
        mut args: Vec<rusqlite::types::Value>,
        now_ms: u64,
    ) -> Result<DecisionPage> {
        use rusqlite::types::Value as V;
        let total: i64 = if args.len() == 1 {
            // Two index walks (about 10 ms at a million rows) where the filter would read
            // every row (about 150 ms): what the People page asks, at every open.
            c.prepare_cached(
                "SELECT (SELECT count(*) FROM decisions) \
                 - (SELECT count(*) FROM decisions WHERE expires_ms <= ?1)",
            )?
            .query_row([now_ms.min(i64::MAX as u64) as i64], |r| r.get(0))?
        } else {
            c.prepare_cached(&format!("SELECT count(*) FROM decisions WHERE {filter}"))?
                .query_row(rusqlite::params_from_iter(&args), |r| r.get(0))?
        };
        let n = args.len();
        args.push(V::Integer(q.limit.min(i64::MAX as usize) as i64));
        args.push(V::Integer(q.offset.min(i64::MAX as usize) as i64));
        // Many matches: walk the decisions newest first and stop at the page (`+origin` keeps
        // the planner off the origin index, which would sort every match). Few: read the
        // matches and sort them (`+created_ms`), rather than walk a million rows to find them.
        let (filter, order) = if total > SORT_AT_MOST {
            (
                filter
                    .replace("origin >= ", "+origin >= ")
                    .replace("AND origin < ", "AND +origin < "),
                "created_ms",
            )
        } else {
            (filter.to_string(), "+created_ms")
        };
        let mut stmt = c.prepare_cached(&format!(
            "SELECT scope, verdict, created_ms, expires_ms, reason, origin, offences \
             FROM decisions WHERE {filter} ORDER BY {order} DESC LIMIT ?{} OFFSET ?{}",
            n + 1,
            n + 2
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(&args), row_to_decision)?;
        let mut decisions = Vec::new();
        for row in rows {
            decisions.extend(decision_of(row?));
        }
        Ok(DecisionPage {
            total: total as usize,
            decisions,
        })
    }

    /// Counts `rows` changed rows as one change.
    fn wrote(&self, rows: usize) -> usize {
        if rows > 0 {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        rows
    }
}

/// A decisions row as stored: scope, verdict, created, expires, reason, origin, offences.
type DecisionRow = (String, String, i64, Option<i64>, String, String, i64);

fn row_to_decision(r: &rusqlite::Row<'_>) -> rusqlite::Result<DecisionRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// A stored row as a decision. One bad row (a hand edit, a newer version's verdict) must not
/// drop every ban: it is skipped, and said so.
fn decision_of(row: DecisionRow) -> Option<Decision> {
    let (scope, verdict, created, expires, reason, origin, offences) = row;
    let (Ok(scope_v), Some(verdict_v)) = (Scope::parse(&scope), Verdict::parse(&verdict)) else {
        let e = StoreError::Corrupt {
            table: "decisions",
            detail: format!("scope {scope}, verdict {verdict}"),
        };
        tracing::warn!(error = %e, "skipping a corrupt decision row");
        return None;
    };
    Some(Decision {
        scope: scope_v,
        verdict: verdict_v,
        created_ms: created as u64,
        expires_ms: expires.map(|e| e as u64),
        reason,
        origin: Origin::parse(&origin),
        offences: offences as u32,
    })
}

impl Store for SqliteStore {
    fn put_decision(&self, d: &Decision) -> Result<()> {
        let n = self.conn().execute(
            "INSERT OR REPLACE INTO decisions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                d.scope.to_string(),
                d.verdict.as_str(),
                d.created_ms as i64,
                d.expires_ms.map(|e| e as i64),
                d.reason,
                d.origin.to_string(),
                d.offences as i64
            ],
        )?;
        self.wrote(n);
        Ok(())
    }

    fn remove_decision(&self, scope: &Scope) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM decisions WHERE scope = ?1",
            [scope.to_string()],
        )?;
        Ok(self.wrote(n) > 0)
    }

    fn purge_expired(&self, now_ms: u64) -> Result<usize> {
        let purged = self.conn().execute(
            "DELETE FROM decisions WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
            [now_ms.min(i64::MAX as u64) as i64],
        )?;
        Ok(self.wrote(purged))
    }

    fn decisions(&self, now_ms: u64) -> Result<Vec<Decision>> {
        self.purge_expired(now_ms)?;
        let c = self.conn();
        let mut stmt = c.prepare(
            "SELECT scope, verdict, created_ms, expires_ms, reason, origin, offences FROM decisions ORDER BY created_ms",
        )?;
        let rows = stmt.query_map([], row_to_decision)?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(decision_of(row?));
        }
        Ok(out)
    }

    fn decision_page(&self, now_ms: u64, q: &DecisionQuery) -> Result<DecisionPage> {
        use rusqlite::types::Value as V;
        // The filters as SQL, agreeing with `DecisionQuery::matches`, with only the conditions
        // asked for (so the planner sees which index serves): an origin prefix as a range on
        // the origin index plus an exact `substr` (no LIKE wildcards to escape), a scope
        // substring by `instr` (a scan: there is no index for "contains"). Expiry is written
        // with `coalesce` so it is one comparison the indexes carry, not an OR of two.
        let mut conds = vec!["coalesce(expires_ms, 9223372036854775807) > ?1".to_string()];
        let mut args: Vec<V> = vec![V::Integer(now_ms.min(i64::MAX as u64) as i64)];
        if let Some(o) = &q.origin {
            args.push(V::Text(o.clone()));
            let n = args.len();
            conds.push(format!(
                "origin >= ?{n} AND origin < ?{n} || char(1114111) \
                 AND substr(origin, 1, length(?{n})) = ?{n}"
            ));
        }
        if let Some(sc) = &q.scope {
            args.push(V::Text(sc.clone()));
            conds.push(format!("instr(scope, ?{}) > 0", args.len()));
        }
        if let Some(t) = q.since_ms {
            args.push(V::Integer(t.min(i64::MAX as u64) as i64));
            conds.push(format!("created_ms >= ?{}", args.len()));
        }
        let filter = conds.join(" AND ");
        self.read(|c| self.page_on(c, q, &filter, args, now_ms))
    }

    fn origin_counts(&self, now_ms: u64, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT origin, count(*) FROM decisions \
                 WHERE origin >= ?2 AND origin < ?2 || char(1114111) \
                 AND substr(origin, 1, length(?2)) = ?2 \
                 AND coalesce(expires_ms, 9223372036854775807) > ?1 GROUP BY origin",
            )?;
            let rows = stmt
                .query_map(params![now_ms.min(i64::MAX as u64) as i64, prefix], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
            let mut out = Vec::new();
            for row in rows {
                let (o, n) = row?;
                out.push((o, n as u64));
            }
            Ok(out)
        })
    }

    fn ban_count(&self, scope: &Scope, forget_before_ms: u64) -> Result<u32> {
        let n: Option<i64> = self
            .conn()
            .query_row(
                "SELECT count FROM ban_history WHERE scope = ?1 AND last_ms >= ?2",
                params![scope.to_string(), forget_before_ms as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.unwrap_or(0) as u32)
    }

    fn record_ban(&self, scope: &Scope, now_ms: u64, forget_before_ms: u64) -> Result<u32> {
        let c = self.conn();
        // Old history is pruned now and then, so the table stays about as small as the forget
        // window; a scope whose last ban is older than the window starts again at 1 either way.
        if now_ms.saturating_sub(self.pruned_ms.load(Ordering::Relaxed)) >= PRUNE_EVERY_MS {
            self.pruned_ms.store(now_ms, Ordering::Relaxed);
            c.execute(
                "DELETE FROM ban_history WHERE last_ms < ?1",
                [forget_before_ms as i64],
            )?;
        }
        let n: i64 = c.query_row(
            "INSERT INTO ban_history VALUES (?1, 1, ?2)
             ON CONFLICT(scope) DO UPDATE SET
                count = CASE WHEN last_ms < ?3 THEN 1 ELSE count + 1 END, last_ms = ?2
             RETURNING count",
            params![scope.to_string(), now_ms as i64, forget_before_ms as i64],
            |r| r.get(0),
        )?;
        Ok(n as u32)
    }

    fn allowlist(&self) -> Result<Vec<IpNet>> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT net FROM allowlist")?;
        let nets = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok())
            .filter_map(|s| s.parse().ok())
            .collect();
        Ok(nets)
    }

    fn allow_entries(&self) -> Result<Vec<AllowEntry>> {
        // The admin API's and the People page's read: beside the decider, like the pages.
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT net, note, created_ms FROM allowlist ORDER BY created_ms, net",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (net, note, created) = row?;
                match net.parse() {
                    Ok(net) => out.push(AllowEntry {
                        net,
                        note,
                        created_ms: created.max(0) as u64,
                    }),
                    Err(_) => tracing::warn!(net, "skipping a corrupt allowlist row"),
                }
            }
            Ok(out)
        })
    }

    fn allow(&self, net: IpNet, note: &str, now_ms: u64) -> Result<()> {
        let n = self.conn().execute(
            "INSERT OR REPLACE INTO allowlist VALUES (?1, ?2, ?3)",
            params![net.to_string(), note, now_ms as i64],
        )?;
        self.wrote(n);
        Ok(())
    }

    fn unallow(&self, net: IpNet) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM allowlist WHERE net = ?1", [net.to_string()])?;
        Ok(self.wrote(n) > 0)
    }

    fn learned(&self, decoy: &str) -> Result<Option<LearnedResponse>> {
        let row: Option<(i64, String, Vec<u8>)> = self
            .conn()
            .query_row(
                "SELECT status, headers, body FROM learned_decoys WHERE decoy = ?1",
                [decoy],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(status, headers, body)| {
            let headers: Vec<(String, String)> =
                serde_json::from_str(&headers).map_err(|e| StoreError::Corrupt {
                    table: "learned_decoys",
                    detail: e.to_string(),
                })?;
            Ok(LearnedResponse {
                status: status as u16,
                headers,
                body,
            })
        })
        .transpose()
    }

    fn learned_decoys(&self) -> Result<Vec<String>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT decoy FROM learned_decoys")?;
        let ids = st.query_map([], |r| r.get(0))?;
        Ok(ids.collect::<std::result::Result<_, _>>()?)
    }

    fn learn(&self, decoy: &str, r: &LearnedResponse) -> Result<bool> {
        let headers = serde_json::to_string(&r.headers).unwrap_or_else(|_| "[]".into());
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO learned_decoys VALUES (?1, ?2, ?3, ?4)",
            params![decoy, r.status as i64, headers, r.body],
        )?;
        Ok(self.wrote(n) > 0)
    }

    fn batch(&self, f: &mut dyn FnMut()) -> Result<()> {
        self.conn().execute_batch("BEGIN")?;
        /// Commits however `f` ends, so the connection is never left inside a transaction.
        struct Commit<'a>(&'a SqliteStore, bool);
        impl Drop for Commit<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    let _ = self.0.conn().execute_batch("COMMIT");
                }
            }
        }
        let mut guard = Commit(self, false);
        f();
        guard.1 = true;
        let r = self.conn().execute_batch("COMMIT");
        if r.is_err() {
            let _ = self.conn().execute_batch("ROLLBACK");
        }
        Ok(r?)
    }

    fn changed(&self) -> Result<u64> {
        let v: i64 = self
            .conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        // Both only grow, so their sum moves whenever either does.
        Ok((v as u64).wrapping_add(self.writes.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(scope: &str, expires: Option<u64>) -> Decision {
        Decision {
            scope: Scope::parse(scope).unwrap(),
            verdict: Verdict::Ban,
            created_ms: 1,
            expires_ms: expires,
            reason: "test".into(),
            origin: Origin::Manual,
            offences: 1,
        }
    }

    /// Escalation forgets a ban older than the window even between prunes (which run at most
    /// once a minute), and a batch commits what it wrote.
    #[test]
    fn history_is_forgotten_between_prunes_and_a_batch_commits() {
        for store in [
            Box::new(SqliteStore::open(std::path::Path::new(":memory:")).unwrap())
                as Box<dyn Store>,
            Box::new(crate::MemoryStore::new()),
        ] {
            let a = Scope::parse("10.0.0.1").unwrap();
            let b = Scope::parse("10.0.0.2").unwrap();
            assert_eq!(store.record_ban(&a, 100_000, 0).unwrap(), 1);
            assert_eq!(store.record_ban(&b, 100_001, 0).unwrap(), 1);
            assert_eq!(store.record_ban(&a, 100_002, 0).unwrap(), 2);
            // 10 s later, with a forget window that drops a's last ban: a new count, though no
            // prune ran (the last was 10 s ago).
            assert_eq!(store.record_ban(&a, 110_000, 100_005).unwrap(), 1);
            assert_eq!(store.record_ban(&b, 110_001, 0).unwrap(), 2);
            let mut wrote = false;
            store
                .batch(&mut || {
                    store.put_decision(&ban("10.0.0.9", None)).unwrap();
                    wrote = true;
                })
                .unwrap();
            assert!(wrote);
            assert_eq!(store.decisions(0).unwrap().len(), 1);
        }
    }

    /// The SQL page agrees with the filters every store shares (`DecisionQuery::matches`, the
    /// memory store's path): same total, same rows, same order, for each filter and bound.
    #[test]
    fn decision_pages_agree_with_the_shared_filter() {
        let sql = SqliteStore::open(std::path::Path::new(":memory:")).unwrap();
        let mem = crate::MemoryStore::new();
        for i in 0..60u64 {
            let mut d = ban(&format!("192.0.2.{i}"), (i % 7 == 0).then_some(50));
            d.created_ms = 10 + i;
            if i % 3 == 0 {
                d.scope = Scope::parse(&format!("10.{i}.0.0/16")).unwrap();
                d.origin = Origin::parse("rule:signup");
            }
            if i % 5 == 0 {
                d.origin = Origin::parse("feed:peers");
            }
            sql.put_decision(&d).unwrap();
            mem.put_decision(&d).unwrap();
        }
        let queries = [
            DecisionQuery {
                limit: 1000,
                ..Default::default()
            },
            DecisionQuery {
                limit: 7,
                offset: 3,
                ..Default::default()
            },
            DecisionQuery {
                origin: Some("rule:".into()),
                limit: 5,
                ..Default::default()
            },
            DecisionQuery {
                origin: Some("feed".into()),
                limit: 100,
                ..Default::default()
            },
            DecisionQuery {
                scope: Some("/16".into()),
                limit: 100,
                ..Default::default()
            },
            DecisionQuery {
                scope: Some("%".into()),
                limit: 100,
                ..Default::default()
            },
            DecisionQuery {
                since_ms: Some(40),
                limit: 100,
                ..Default::default()
            },
            DecisionQuery {
                limit: 10,
                offset: 1000,
                ..Default::default()
            },
        ];
        for q in &queries {
            let a = sql.decision_page(60, q).unwrap();
            let b = mem.decision_page(60, q).unwrap();
            let scopes = |p: &DecisionPage| {
                p.decisions
                    .iter()
                    .map(|d| d.scope.to_string())
                    .collect::<Vec<_>>()
            };
            assert_eq!((a.total, scopes(&a)), (b.total, scopes(&b)), "{q:?}");
            assert!(a.decisions.iter().all(|d| d.active_at(60)), "{q:?}");
        }
        for prefix in ["feed:", "rule:", "", "zzz"] {
            assert_eq!(
                sql.origin_counts(60, prefix).unwrap(),
                mem.origin_counts(60, prefix).unwrap(),
                "{prefix}"
            );
        }
        assert_eq!(
            sql.origin_counts(60, "feed:").unwrap(),
            vec![("feed:peers".to_string(), 10)]
        );
        // The expired ones (every 7th) are not counted; the filters do narrow.
        assert_eq!(sql.decision_page(60, &queries[0]).unwrap().total, 60 - 9);
        assert_eq!(
            sql.decision_page(60, &queries[2]).unwrap().decisions.len(),
            5
        );
        assert_eq!(sql.decision_page(60, &queries[5]).unwrap().total, 0);
        // Past SORT_AT_MOST matches the page walks the index instead of sorting: same rows.
        sql.batch(&mut || {
            for i in 0..(SORT_AT_MOST as u32 + 50) {
                let mut d = ban(&std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string(), None);
                d.created_ms = 1_000 + u64::from(i % 5_000);
                d.origin = Origin::parse("jail:sshd");
                sql.put_decision(&d).unwrap();
                mem.put_decision(&d).unwrap();
            }
        })
        .unwrap();
        for q in [
            DecisionQuery {
                origin: Some("jail:".into()),
                limit: 30,
                offset: 40,
                ..Default::default()
            },
            DecisionQuery {
                scope: Some("10.0.".into()),
                limit: 30,
                ..Default::default()
            },
            DecisionQuery {
                limit: 30,
                offset: 9_000,
                ..Default::default()
            },
        ] {
            let (a, b) = (
                sql.decision_page(60, &q).unwrap(),
                mem.decision_page(60, &q).unwrap(),
            );
            assert!(a.total as i64 > SORT_AT_MOST, "{q:?}");
            let created =
                |p: &DecisionPage| p.decisions.iter().map(|d| d.created_ms).collect::<Vec<_>>();
            assert_eq!((a.total, created(&a)), (b.total, created(&b)), "{q:?}");
        }
    }

    /// A page is read on the second connection: it neither waits for the writer's (held by the
    /// decider through a full read) nor misses what the writer committed.
    #[test]
    fn pages_are_read_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
        s.put_decision(&ban("192.0.2.1", None)).unwrap();
        let all = DecisionQuery {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(s.decision_page(5, &all).unwrap().total, 1);
        s.put_decision(&ban("192.0.2.2", None)).unwrap();
        assert_eq!(
            s.decision_page(5, &all).unwrap().total,
            2,
            "a commit after the reader opened"
        );
        let held = s.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = s.clone();
        std::thread::spawn(move || {
            let _ = tx.send(s2.decision_page(5, &all).map(|p| p.total).ok());
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(5));
        drop(held);
        assert_eq!(
            got,
            Ok(Some(2)),
            "the page waited for the writer's connection"
        );
    }

    #[test]
    fn decisions_persist_across_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open_dir(dir.path()).unwrap();
            s.put_decision(&ban("10.0.0.1", Some(1000))).unwrap();
            s.put_decision(&ban("10.1.0.0/24", None)).unwrap();
            assert_eq!(
                s.record_ban(&Scope::parse("10.0.0.1").unwrap(), 5, 0)
                    .unwrap(),
                1
            );
            assert_eq!(
                s.record_ban(&Scope::parse("10.0.0.1").unwrap(), 6, 0)
                    .unwrap(),
                2
            );
        }
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(s.decisions(500).unwrap().len(), 2);
        let left = s.decisions(1000).unwrap();
        assert_eq!(left, vec![ban("10.1.0.0/24", None)]);
        assert_eq!(
            s.ban_count(&Scope::parse("10.0.0.1").unwrap(), 0).unwrap(),
            2
        );
        assert_eq!(
            s.ban_count(&Scope::parse("10.0.0.1").unwrap(), 7).unwrap(),
            0
        );
    }

    #[test]
    fn a_corrupt_row_is_skipped_not_fatal() {
        let s = SqliteStore::open(Path::new(":memory:")).unwrap();
        s.put_decision(&ban("10.0.0.1", None)).unwrap();
        s.conn()
            .execute(
                "INSERT INTO decisions VALUES ('not-an-ip', 'ban', 1, NULL, '', 'manual', 1)",
                [],
            )
            .unwrap();
        assert_eq!(s.decisions(0).unwrap(), vec![ban("10.0.0.1", None)]);
    }

    #[test]
    fn learns_only_the_first_response() {
        let s = SqliteStore::open(Path::new(":memory:")).unwrap();
        let r = LearnedResponse {
            status: 201,
            headers: vec![("x-a".into(), "1".into())],
            body: b"Created.".to_vec(),
        };
        assert!(s.learn("d", &r).unwrap());
        let mut other = r.clone();
        other.status = 500;
        assert!(!s.learn("d", &other).unwrap());
        assert_eq!(s.learned("d").unwrap(), Some(r.clone()));
        assert!(s.learn("e", &r).unwrap());
        let mut ids = s.learned_decoys().unwrap();
        ids.sort();
        assert_eq!(ids, ["d", "e"]);
    }

    #[test]
    fn another_connection_write_changes_data_version() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open_dir(dir.path()).unwrap();
        let b = SqliteStore::open_dir(dir.path()).unwrap();
        let v0 = a.changed().unwrap();
        b.put_decision(&ban("10.0.0.9", None)).unwrap();
        assert_ne!(a.changed().unwrap(), v0);
    }
}
