//! What the engine's tests share: the ban settings they start from.

use moat_config::Bans;
use std::time::Duration;

/// Three offences within a minute ban for a minute (×4 per repeat, up to ten minutes); three
/// banned addresses of one network within ten minutes ban the network.
pub fn bans() -> Bans {
    Bans {
        base_ttl: Duration::from_secs(60),
        max_ttl: Duration::from_secs(600),
        factor: 4,
        offences_to_ban: 3,
        offence_window: Duration::from_secs(60),
        prefix_threshold: 3,
        prefix_window: Duration::from_secs(600),
        status: 403,
        body: String::new(),
        allow: vec![],
    }
}
