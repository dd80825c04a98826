//! Join forces: this instance's signed feed ([`publish`]) and the peers' it follows
//! ([`subscribe`]), on the formats and checks of `moat-feed`. What they keep on disk is in
//! [`state`], shared with `moat keys` and `moat feeds`.

pub mod publish;
pub mod state;
pub mod subscribe;

use moat_config::Config;
use moat_engine::Engine;
use moat_listen::Shutdown;
use std::path::PathBuf;
use std::sync::Arc;

/// Starts the publisher (unless `[feed] publish = false`) and the subscriber, under
/// `shutdown`. `quarantine`: where captured mail is indexed, for the domains it carried.
pub fn start(
    cfg: &Arc<Config>,
    engine: &Arc<Engine>,
    quarantine: Option<PathBuf>,
    shutdown: &Shutdown,
) {
    let dir = &cfg.server.state_dir;
    if cfg.feed.enabled {
        // The feed serves others: without its key (a damaged file, a full disk) the shields
        // still run, and the error says what to fix.
        match state::load_or_create_key(dir, cfg.feed.name.as_deref()) {
            Ok(key) => {
                let p = publish::FeedPublisher::new(
                    dir,
                    key,
                    cfg.feed.lifetime,
                    quarantine,
                    cfg.feed.republish,
                );
                shutdown.spawn(publish::run(
                    p,
                    engine.clone(),
                    cfg.feed.interval,
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "not publishing a feed: no key ([feed] publish = false turns it off)")
            }
        }
    }
    let s = subscribe::Subscriber::new(cfg.clone(), engine.clone());
    shutdown.spawn(subscribe::run(s, shutdown.clone()));
}
