//! Moat's shared vocabulary.
//!
//! Every sensor (the HTTP proxy today; mail, logs and feeds later) describes what it saw as an
//! [`Event`] about a [`Subject`], and every enforcer acts on a [`Decision`]. Keeping these types in
//! one small crate with no I/O lets all other crates agree on them without depending on each other.

pub mod asn;
mod asn_pack;
mod clock;
mod decision;
pub mod metric;
mod prefix;
pub mod secret;
pub mod shared;
pub mod shared_honey;

pub use asn::{AsnTable, AsnTableError};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sensor {
    Http,
    /// The mail shield: Postfix policy, Dovecot auth policy, milter.
    Mail,
    Trap,
    /// The log watcher's jails.
    Logs,
}

impl Sensor {
    pub fn as_str(self) -> &'static str {
        match self {
            Sensor::Http => "http",
            Sensor::Mail => "mail",
            Sensor::Trap => "trap",
            Sensor::Logs => "logs",
        }
    }
}

/// What a sensor observed, in terms a detector can count. Each kind names what it is evidence
/// of; the engine's detectors (`moat_engine::detect`) say what each one counts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// An HTTP rule marked as an offence matched (a script user agent on a protected route, ...).
    RuleOffence { rule: String },
    /// An HTTP rate limit with `ban = true` was exceeded.
    RateLimited { limit: String },
    /// A mail client judged to be enumerating recipients (unknown recipients past the limit).
    Enumeration,
    /// A whole network judged to be enumerating, its addresses taken together.
    EnumerationNetwork { net: ipnet::IpNet },
    /// SASL failures from this address past the mail shield's limit.
    AuthFailures,
    /// SASL failures from this network past the mail shield's limit.
    AuthFailuresNetwork { net: ipnet::IpNet },
    /// The SMTP trap let a login in or refused it (the login is the subject's account; the
    /// password stays in the quarantine, never on the bus).
    TrapLogin { accepted: bool },
    /// A message captured into the quarantine (by the trap, or the capture listener behind
    /// Postfix), by its quarantine id.
    Captured { id: String },
    /// A log watcher jail's failures reached its `maxretry` within `findtime`.
    JailTripped {
        jail: String,
        /// The address, or its /64 for IPv6 when the jail groups them.
        scope: Scope,
        ttl: std::time::Duration,
        reason: String,
    },
}

/// One observation by a sensor, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub sensor: Sensor,
    pub subject: Subject,
    pub kind: EventKind,
}

/// What a detector concluded from an event, for the decider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Counts towards a ban of the address (`offences_to_ban` within `offence_window`, then
    /// escalation), under the detector's name.
    Offence { ip: IpAddr, detector: String },
    /// A detector's own judgement: ban this scope now.
    Ban {
        scope: Scope,
        ttl: Option<std::time::Duration>,
        reason: String,
        origin: Origin,
    },
}

/// `YYYY-MM-DD HH:MM:SS` in UTC from Unix milliseconds (the CLI's tables, the dashboard).
/// Civil from days: Howard Hinnant's algorithm, so no date crate for one format.
pub fn utc_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
