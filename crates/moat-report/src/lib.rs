//! Abuse reports for messages the SMTP trap captured.
//!
//! A captured [`Incident`] becomes one report per target and indicator: an ARF message (RFC 5965)
//! to each abuse contact RDAP names for the bot's address and the promoted domains, an X-ARF v3
//! JSON document, an AbuseIPDB report, Spamhaus submissions and a webhook call.
//!
//! Nothing leaves the machine unless `send = true` *and* the target is configured: otherwise the
//! [`Reporter`] writes what it would send to the outbox and records `dry-run`. Reports are
//! deduplicated per (target, indicator) within a window, rate limited per target (over the limit a
//! report waits in the queue), retried with capped exponential backoff on network errors, 5xx and
//! 429, and every outcome is kept in SQLite ([`Reporter::history`]).
//!
//! Details worth knowing:
//! - Indicators are `ip:…` (the bot, if it is a public address), `domain:…` (promoted
//!   domains, at most ten), `url:…`, `message:…` (the webhook, and X-ARF without an address).
//!   Dedupe marks are set when a report is planned, dry runs included (so switching `send` on
//!   does not resend what a dry run covered within the window); a report that ends `rejected`
//!   or `failed`, or that could not be addressed, leaves no mark, so the next incident tries again.
//! - ARF: one report per abuse contact; a contact that is the abuse desk for several indicators
//!   gets one report listing them. Without RDAP (a dry run with `rdap_in_dry_run = false`) one
//!   report covers every indicator and is addressed to `abuse@<unknown>`.
//! - Queued reports live in the database; call [`Reporter::pump`] regularly (for example at
//!   [`Reporter::next_due_ms`]) so retries and rate-limited reports go out. A pump sends only
//!   for targets that are live at that moment.
//! - Secrets (API key, bearer token, SMTP password, configured headers) are added at send time
//!   and are redacted in dry-run files; they are never stored in the database.
//!
//! Layout: the formats are pure builders free of I/O ([`arf`], [`xarf`], [`abuseipdb`],
//! [`spamhaus`], [`webhook`], [`rdap::bootstrap`], [`rdap::contacts`], [`policy`]); I/O lives in
//! small modules ([`http`], [`smtp`], [`rdap::client`], [`store`], [`outbox`]); `plan` decides
//! which reports an incident calls for and [`Reporter`] records and delivers them.

pub mod abuseipdb;
pub mod arf;
pub mod config;
mod error;
pub mod http;
mod incident;
pub mod outbox;
pub mod owner_mail;
mod plan;
pub mod policy;
pub mod rdap;
mod record;
mod reporter;
pub mod sanitize;
pub mod smtp;
pub mod spamhaus;
pub mod store;
pub mod webhook;
pub mod xarf;

pub use config::{
    AbuseIpdbConfig, ArfConfig, RdapConfig, ReportConfig, ReporterIdentity, RetryConfig,
    SmtpConfig, SmtpTls, SpamhausConfig, WebhookConfig, XarfConfig,
};
pub use error::ReportError;
pub use incident::Incident;
pub use record::{Record, Status, Target};
pub use reporter::Reporter;
