//! Moat's configuration: TOML as written (`raw`), checked and compiled into the typed runtime
//! model (`model`). Loading never stops at the first problem it can get past: every semantic
//! error is collected and reported at once, each with its file, line, column and field, so an
//! operator fixes a config in one round instead of ten.

mod compile;
mod compile_cohorts;
mod compile_feeds;
mod compile_logs;
mod compile_mail;
mod compile_nftables;
mod compile_policy;
mod compile_proof;
mod compile_trap;
mod duration;
mod errors;
pub mod model;
pub mod model_join;
mod parse;
pub mod presets;
pub mod raw;

pub use compile::{load, load_text, Overrides, FLY_PROXY_NETS};
pub use duration::parse_duration;
pub use errors::{ConfigError, ConfigErrors};
pub use model::*;
