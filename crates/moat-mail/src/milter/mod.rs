//! Moat as a Postfix milter (`smtpd_milters = inet:127.0.0.1:PORT`).
//!
//! A milter is attached to the Postfix instance, not to one `master.cf` service, so it sees
//! every SMTP service (25, submission, submissions) whatever their `-o` overrides, with the
//! SASL login (`{auth_authen}`), the client, the envelope and the whole message. That is what
//! makes honey accounts safe: their mail can be captured on every port, where the policy
//! service in `main.cf` is bypassed by the stock submission services.
//!
//! - [`codec`]: the wire protocol, I/O-free and fuzzed;
//! - [`session`]: per-connection decisions, I/O-free;
//! - [`server`]: the listener, the quarantine writes and the DSNs.

pub mod codec;
pub mod server;
pub mod session;
