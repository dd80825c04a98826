//! Moat's front doors share one listener component: where a connection is accepted, capped,
//! checked against the guard, unwrapped from a PROXY header, and tracked for shutdown. Every
//! protocol (the HTTP proxy, the SMTP trap, the Postfix policy and milter, the Dovecot auth
//! policy, the admin API) starts from what this crate hands it, so the rules for accepting a
//! connection are written once.
//!
//! The TLS handshake stays with each protocol, through [`tls::handshake`]: HTTP runs it on its
//! worker threads (its CPU belongs there) and answers ACME's TLS-ALPN-01; SMTP starts it after
//! STARTTLS, in the middle of the conversation.

pub mod listener;
pub mod proxy;
pub mod shutdown;
pub mod stream;
pub mod tls;

pub use listener::{
    Accepted, AtCap, BindError, Caps, Conn, Gate, ListenStats, Listener, Peer, ProxySettings,
    Settings, Slot,
};
pub use shutdown::Shutdown;
pub use stream::Stream;
