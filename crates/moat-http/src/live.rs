//! The shield in force, replaced whole on reload (SIGHUP, `moat reload`, `POST /api/reload`).
//!
//! Every request takes the current shield when it starts, so a keep-alive connection meets a
//! new rule on its next request, and a request in flight finishes under the policy it began
//! with. What must outlive a reload (bans, the counters of unchanged limits, metrics, the
//! proof's keys) is shared by the old and the new shield, see [`Shield::reloaded`]. A config
//! with errors changes nothing.

use crate::shield::Shield;
use arc_swap::ArcSwap;
use moat_config::Config;
use std::sync::{Arc, Mutex, OnceLock};

/// Reads and compiles the config again, the way the process first did (same file, presets
/// and command-line overrides); the error lists every problem.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

pub struct LiveShield {
    cur: ArcSwap<Shield>,
    source: OnceLock<ConfigSource>,
    /// One reload at a time: two at once could each start from the same old shield.
    reloading: Mutex<()>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub rules: usize,
    pub rate_limits: usize,
    /// Sections that changed but take effect only after a restart (listeners, TLS, the store,
    /// the admin listener, the mail shield).
    pub need_restart: Vec<&'static str>,
}

impl LiveShield {
    pub fn new(shield: Shield) -> Self {
        LiveShield {
            cur: ArcSwap::from_pointee(shield),
            source: OnceLock::new(),
            reloading: Mutex::new(()),
        }
    }

    /// The shield for the next request.
    pub fn current(&self) -> Arc<Shield> {
        self.cur.load_full()
    }

    /// Where reloads read the config from; set once, by whoever loaded it first.
    pub fn set_source(&self, source: ConfigSource) {
        let _ = self.source.set(source);
    }

    /// Loads the config again and, if it has no errors, puts its policy in force.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let _one = self
            .reloading
            .lock()
            .map_err(|_| "a reload panicked".to_string())?;
        let source = self.source.get().ok_or_else(|| {
            "this instance was not started from a config it can re-read".to_string()
        })?;
        let cfg = source()?;
        let old = self.current();
        let need_restart = fixed_sections_changed(&old.cfg, &cfg);
        let next = old
            .reloaded(Arc::new(cfg))
            .map_err(|e| format!("browser proof: {e}"))?;
        let done = Reloaded {
            rules: next.cfg.policy.rules.len(),
            rate_limits: next.cfg.policy.rate_limits.len(),
            need_restart,
        };
        self.cur.store(Arc::new(next));
        Ok(done)
    }
}

/// Sections a running process cannot change in place. Compared by their debug form: they are
/// plain data, and a false "changed" only adds a line to the log.
fn fixed_sections_changed(old: &Config, new: &Config) -> Vec<&'static str> {
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let mut out = Vec::new();
    if !same(&old.server.listen, &new.server.listen)
        || !same(&old.server.workers, &new.server.workers)
        || !same(&old.server.proxy_protocol, &new.server.proxy_protocol)
    {
        out.push("server.listen/workers/proxy_protocol");
    }
    if !same(&old.server.state_dir, &new.server.state_dir)
        || !same(&old.server.store, &new.server.store)
    {
        out.push("server.state_dir/store");
    }
    if !same(&old.tls, &new.tls) || !same(&old.acme, &new.acme) {
        out.push("tls/acme");
    }
    if !same(&old.admin, &new.admin) {
        out.push("admin");
    }
    if !same(&old.mail, &new.mail) {
        out.push("mail");
    }
    if !same(&old.bans, &new.bans) {
        out.push("bans");
    }
    if !same(&old.trap, &new.trap) || !same(&old.report, &new.report) {
        out.push("trap/report");
    }
    out
}
