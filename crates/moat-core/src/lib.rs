//! Moat's shared vocabulary.
//!
//! Every sensor (the HTTP proxy today; mail, logs and feeds later) describes what it saw as an
//! [`Event`] about a [`Subject`], and every enforcer acts on a [`Decision`]. Keeping these types in
//! one small crate with no I/O lets all other crates agree on them without depending on each other.

mod clock;
mod decision;
pub mod metric;
mod prefix;
pub mod secret;

pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::{Decision, Origin, Scope, ScopeParseError, Verdict};
pub use prefix::{prefix_of, PrefixLens};

use std::net::IpAddr;

/// The 10,000 most common passwords, most common first (zxcvbn, MIT; see data/README.md). Both
/// the honey accounts (which password did a bot try?) and the SMTP trap (let a bot in when it
/// tries one of the top N) read it.
pub const COMMON_PASSWORDS: &str = include_str!("../../../data/common-passwords.txt");

/// Who an event or decision is about. The address is always known; the rest only when a
/// sensor can tell (a JSON body's email, a SASL login, an SMTP recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub ip: IpAddr,
    pub account: Option<String>,
    pub email: Option<String>,
}

impl Subject {
    pub fn ip(ip: IpAddr) -> Self {
        Subject {
            ip,
            account: None,
            email: None,
        }
    }
}

/// Which front door saw something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensor {
    Http,
}

/// What happened, in terms the engine can count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A rule marked as an offence matched (a script user agent on a protected route, ...).
    RuleOffence { rule: String },
    /// A rate limit was exceeded.
    RateLimited { limit: String, key: String },
}

/// One observation by a sensor, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub sensor: Sensor,
    pub subject: Subject,
    pub kind: EventKind,
}
