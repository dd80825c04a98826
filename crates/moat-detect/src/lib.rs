//! Moat's detectors: where what the sensors saw is counted into conclusions.
//!
//! The pipeline is sensors → detectors → decider → enforcers. A sensor (the HTTP proxy, the
//! Postfix and Dovecot policy servers, the log watcher) parses its protocol, asks the guard,
//! and hands each observation to its detector here; the detector answers synchronously from
//! bounded in-memory state, and the sensor turns the answer into the reply its protocol needs
//! and into typed events for the engine (`moat_core::EventKind`), where `moat_engine::detect`
//! says what each counts for and the decider decides.
//!
//! Synchronous on purpose: a detector's verdict is part of the sensor's answer (a request is
//! refused before it is forwarded, a SASL attempt answered before Dovecot checks the password),
//! so it must cost well under a microsecond and never wait on a channel, the store or the
//! network. Every table is capped; a flood of one-off addresses evicts, never grows memory.
//!
//! - [`rules`]: the HTTP policy's rules and rate limits over a request ([`limiter`]: GCRA,
//!   [`limit_key`]: what a limit counts by);
//! - [`bruteforce`]: SASL failures per login across rotating addresses, per address, per
//!   network;
//! - [`cohort`]: which groups of clients confirm the mails they ask for (a magic link's click);
//! - [`enumeration`]: unknown recipients per client and per network;
//! - [`jail`]: a log filter's failures counted per offender into bans (fail2ban's jails);
//! - [`window`] and `history`: the bounded counters they share.
//!
//! Prefix escalation (enough banned addresses in one network ban the network) is the
//! decider's, because it counts decisions rather than observations.

pub mod bruteforce;
pub mod cohort;
pub mod enumeration;
mod history;
pub mod jail;
pub mod limit_key;
pub mod limiter;
pub mod rules;
mod sharded;
pub mod window;

pub use cohort::{Cohorts, Standing};
pub use limiter::{Limiter, LimiterSet};
pub use rules::{Hit, Judgement, Pending, RulesAndLimits};
