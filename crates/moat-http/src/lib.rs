//! Moat's HTTP shield: the reverse proxy that sits in front of a web app.
//!
//! Each request passes the phases of [`pipeline`]: client address resolution, the guard's ban
//! check, rules, rate limits, then an action (forward, block, decoy, tarpit, challenge). Bodies
//! stream both ways; only a rule that needs a JSON field makes Moat read (a capped) body first.

pub mod acme;
pub mod app;
pub mod body;
pub mod client_addr;
pub mod decoy;
pub mod fast;
pub mod feed_files;
pub mod forward;
pub mod framing;
pub mod inject_body;
pub mod io;
pub mod live;
pub mod metrics;
pub mod pool;
pub mod proof;
/// The PROXY protocol lives with the listener component; kept under its old name for the
/// HTTP code and tests that use it.
pub use moat_listen::proxy as proxy_protocol;
pub mod request_view;
pub mod server;
pub mod shield;
pub mod sightings;
pub mod state_file;
pub mod tls;
