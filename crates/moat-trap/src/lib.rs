//! The SMTP trap: a fake MTA that lets spam bots "log in", accepts everything they send into a
//! durable quarantine, and delivers nothing.
//!
//! Protocol code ([`session`], [`sasl`], [`login`]) does no I/O; [`quarantine`] owns the disk;
//! [`server`] owns sockets, TLS, timeouts and caps. No module here opens an outbound connection:
//! the trap never relays.

pub mod login;
pub mod quarantine;
pub mod run;
pub mod sasl;
pub mod server;
pub mod session;
pub mod tls;
