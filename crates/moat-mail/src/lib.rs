//! Moat's mail shield: deception for a Postfix + Dovecot server, without patching either.
//!
//! - [`policy`]: Postfix's policy delegation protocol; [`recipients`]: which recipients exist,
//!   so that probes for the others are answered as if they did and learn nothing;
//! - [`authpolicy`]: Dovecot's auth-policy protocol;
//! - the detectors the shield feeds (SASL brute force seen per login across rotating
//!   addresses, recipient enumeration) are `moat-detect`'s `bruteforce` and `enumeration`;
//! - [`honey`]: honey accounts created for the logins bots try;
//! - [`milter`]: Moat as a Postfix milter, on every SMTP service: honey mail captured, unknown
//!   recipients hidden at RCPT and dropped at the end ([`dsn`] to authentic senders, checked
//!   by [`sender_auth`]);
//! - the capture listener Postfix hands honey accounts' mail to is `moat-trap`'s server in
//!   capture mode, writing to the same quarantine as the trap;
//! - [`shield`]: the decisions, sharing the engine (bans, escalation, the allowlist) with the
//!   HTTP shield; [`server`]: the listeners.
//!
//! Protocol modules are free of I/O; `server` does the I/O.

pub mod authpolicy;
pub mod dovecot_audit;
pub mod dsn;
pub mod honey;
pub mod milter;
pub mod policy;
pub mod postfix_audit;
pub mod postfix_probe;
pub mod recipients;
pub mod sender_auth;
pub mod server;
pub mod shield;
