//! Helpers for the ACME integration tests: a real pebble ACME server, a DNS responder that
//! sends every name to 127.0.0.1, challenge-answering listeners and a TLS client.

pub mod dns;
pub mod pebble;
pub mod pki;
pub mod servers;
pub mod units;

pub use pki::test_pki;
