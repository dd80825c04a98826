//! The dashboard's counters kept for 30 days: one row per minute in `state_dir/series.sqlite`
//! (the minute and its counts, [`super::live::KINDS`] in order). 43,200 rows of thirteen
//! integers: about 3 MB, whatever the attack's rate. The live recorder writes each minute once
//! it is over (and the current one when Moat stops); reading sums them by hour for the month.

use super::live::{Minute, KINDS};
use rusqlite::{params, Connection};
use std::path::Path;

/// How long minutes are kept.
pub const KEEP_MINUTES: u64 = 30 * 24 * 60;

pub struct Series {
    db: Connection,
}

#[derive(Debug, thiserror::Error)]
#[error("the dashboard's series ({0}): {1}")]
pub struct SeriesError(String, rusqlite::Error);

impl Series {
    pub fn open(path: &Path) -> Result<Series, SeriesError> {
        let err = |e| SeriesError(path.display().to_string(), e);
        let db = Connection::open(path).map_err(err)?;
        let cols: String = (0..KINDS.len())
            .map(|k| format!(", c{k} INTEGER NOT NULL DEFAULT 0"))
            .collect();
        db.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS minutes (minute INTEGER PRIMARY KEY{cols}) WITHOUT ROWID;"
        ))
        .map_err(err)?;
        // A file from a version that counted fewer kinds gains the new ones' columns (their
        // past minutes read 0).
        let have: usize = db
            .query_row(
                "SELECT count(*) FROM pragma_table_info('minutes') WHERE name LIKE 'c%'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        for k in have..KINDS.len() {
            db.execute_batch(&format!(
                "ALTER TABLE minutes ADD COLUMN c{k} INTEGER NOT NULL DEFAULT 0"
            ))
            .map_err(err)?;
        }
        Ok(Series { db })
    }

    /// Writes (or replaces) `m`, and forgets what is older than 30 days before it.
    pub fn put(&self, m: &Minute) -> rusqlite::Result<()> {
        let names: String = (0..KINDS.len()).map(|k| format!(", c{k}")).collect();
        let marks: String = (0..KINDS.len()).map(|k| format!(", ?{}", k + 2)).collect();
        let mut st = self.db.prepare_cached(&format!(
            "INSERT OR REPLACE INTO minutes (minute{names}) VALUES (?1{marks})"
        ))?;
        let mut values: Vec<i64> = vec![m.minute as i64];
        values.extend(m.counts.iter().map(|c| *c as i64));
        st.execute(rusqlite::params_from_iter(values))?;
        self.db.execute(
            "DELETE FROM minutes WHERE minute < ?1",
            params![m.minute.saturating_sub(KEEP_MINUTES) as i64],
        )?;
        Ok(())
    }

    /// The minutes from `from` to `to` (inclusive) that have counts, oldest first.
    pub fn minutes(&self, from: u64, to: u64) -> rusqlite::Result<Vec<Minute>> {
        let names: String = (0..KINDS.len()).map(|k| format!(", c{k}")).collect();
        let mut st = self.db.prepare_cached(&format!(
            "SELECT minute{names} FROM minutes WHERE minute BETWEEN ?1 AND ?2 ORDER BY minute"
        ))?;
        let rows = st.query_map(params![from as i64, to as i64], |r| {
            let mut m = Minute {
                minute: r.get::<_, i64>(0)? as u64,
                ..Default::default()
            };
            for (k, c) in m.counts.iter_mut().enumerate() {
                *c = r.get::<_, i64>(k + 1)?.max(0) as u64;
            }
            Ok(m)
        })?;
        rows.collect()
    }

    /// The last 30 days up to `now_minute`, summed by hour: 720 points, oldest first, `minute`
    /// being each hour's first.
    pub fn month_by_hour(&self, now_minute: u64) -> rusqlite::Result<Vec<Minute>> {
        let end_hour = now_minute / 60;
        let first_hour = end_hour.saturating_sub(KEEP_MINUTES / 60 - 1);
        let mut out: Vec<Minute> = (first_hour..=end_hour)
            .map(|h| Minute {
                minute: h * 60,
                ..Default::default()
            })
            .collect();
        for m in self.minutes(first_hour * 60, now_minute)? {
            let i = (m.minute / 60 - first_hour) as usize;
            if let Some(slot) = out.get_mut(i) {
                for (t, c) in slot.counts.iter_mut().zip(m.counts) {
                    *t += c;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(minute: u64, n: u64) -> Minute {
        let mut m = Minute {
            minute,
            ..Default::default()
        };
        m.counts[0] = n;
        m.counts[3] = 1;
        m
    }

    /// A file written when a minute had seven counters opens, keeps its minutes, and takes
    /// the new counters.
    #[test]
    fn an_older_file_gains_the_new_counters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.sqlite");
        {
            let db = Connection::open(&path).unwrap();
            let cols: String = (0..7)
                .map(|k| format!(", c{k} INTEGER NOT NULL DEFAULT 0"))
                .collect();
            db.execute_batch(&format!(
                "CREATE TABLE minutes (minute INTEGER PRIMARY KEY{cols}) WITHOUT ROWID;
                 INSERT INTO minutes (minute, c0, c6) VALUES (100, 9, 2);"
            ))
            .unwrap();
        }
        let s = Series::open(&path).unwrap();
        let old = s.minutes(100, 100).unwrap();
        assert_eq!(
            (old[0].counts[0], old[0].counts[6], old[0].counts[7]),
            (9, 2, 0)
        );
        let mut m = minute(101, 1);
        m.counts[KINDS.len() - 1] = 4;
        s.put(&m).unwrap();
        assert_eq!(s.minutes(101, 101).unwrap()[0].counts[KINDS.len() - 1], 4);
        drop(s);
        Series::open(&path).unwrap();
    }

    #[test]
    fn minutes_survive_a_reopen_and_the_month_sums_by_hour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.sqlite");
        let start = 29_000_000; // a minute in 2025
        {
            let s = Series::open(&path).unwrap();
            for i in 0..120 {
                s.put(&minute(start + i, 10)).unwrap();
            }
            // Replaced, not added to: the recorder writes a minute again when Moat stops.
            s.put(&minute(start + 119, 5)).unwrap();
        }
        let s = Series::open(&path).unwrap();
        let back = s.minutes(start, start + 200).unwrap();
        assert_eq!(back.len(), 120);
        assert_eq!(back[119].counts[0], 5);
        let month = s.month_by_hour(start + 119).unwrap();
        assert_eq!(month.len(), 720);
        let total: u64 = month.iter().map(|m| m.counts[0]).sum();
        assert_eq!(total, 119 * 10 + 5);
        assert_eq!(month.iter().map(|m| m.counts[3]).sum::<u64>(), 120);
        // 30 days later the first ones are gone.
        s.put(&minute(start + KEEP_MINUTES + 10, 1)).unwrap();
        assert_eq!(s.minutes(0, start + 9).unwrap().len(), 0);
        assert_eq!(s.minutes(start + 10, start + 200).unwrap().len(), 110);
    }
}
