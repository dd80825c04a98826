//! Moat's mail shield: deception for a Postfix + Dovecot server, without patching either.
//!
//! - [`policy`]: Postfix's policy delegation protocol; [`recipients`] and [`enumeration`]:
//!   recipient-enumeration detection that answers probes so they learn nothing;
//! - [`authpolicy`]: Dovecot's auth-policy protocol; [`bruteforce`]: SASL brute force seen per
//!   login across rotating addresses;
//! - [`honey`]: honey accounts created for the logins bots try;
//! - [`smtp`] and [`quarantine`]: the capture listener Postfix hands honey accounts' mail to;
//! - [`shield`]: the decisions, sharing the engine (bans, escalation, the allowlist) with the
//!   HTTP shield; [`server`]: the listeners.
//!
//! Protocol modules are free of I/O; `quarantine` and `server` do the I/O.

pub mod authpolicy;
pub mod bruteforce;
pub mod enumeration;
pub mod honey;
pub mod policy;
pub mod quarantine;
pub mod recipients;
pub mod server;
pub mod shield;
pub mod smtp;
pub mod window;
