//! The cohort table in the state directory (`cohorts.bin`, mode 0600: it holds the key cohorts
//! are hashed under): read at start, written every few minutes and at shutdown, so a restart
//! or a deploy does not forget which networks confirm their sign-ups and which never do. A
//! missing, unreadable or damaged file costs the history, never the start.

use super::Shield;
use moat_config::{Config, StoreKind};
use moat_detect::Cohorts;
use std::path::PathBuf;

/// How often the table is written while Moat runs (a crash loses at most this much).
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Where the table is kept, if it is kept: a policy with `[[confirm]]` routes and a store that
/// persists (`store = "memory"` asks for nothing on disk).
pub fn path(cfg: &Config) -> Option<PathBuf> {
    (!cfg.policy.confirms.is_empty() && cfg.server.store != StoreKind::Memory)
        .then(|| cfg.server.state_dir.join("cohorts.bin"))
}

/// The table kept in the state directory, or an empty one.
pub fn load(cfg: &Config, now: u64) -> Cohorts {
    let settings = cfg.cohorts.clone();
    let Some(path) = path(cfg) else {
        return Cohorts::new(settings);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Cohorts::new(settings),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the cohort table; starting without its history");
            return Cohorts::new(settings);
        }
    };
    let (c, read) = Cohorts::import(settings, &bytes, now);
    match read {
        Ok(n) => tracing::info!(file = %path.display(), cohorts = n, "cohort history restored"),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, kept = c.len(), "the cohort table is damaged; kept what was whole")
        }
    }
    c
}

impl Shield {
    /// Starts from the cohort history in the state directory (at start, not on reloads, which
    /// carry the running table over).
    pub(crate) fn restore_cohorts(&mut self) {
        self.cohorts = std::sync::Arc::new(load(&self.cfg, crate::proof::now_secs()));
    }

    /// Writes the cohort table to the state directory, if it is kept there.
    pub fn save_cohorts(&self) {
        let Some(path) = path(&self.cfg) else {
            return;
        };
        let bytes = self.cohorts.export(crate::proof::now_secs());
        if let Err(e) = crate::state_file::write_atomic(&path, &bytes, 0o600) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the cohort table");
        }
    }
}
