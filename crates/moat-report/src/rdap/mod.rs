//! RDAP (RFC 7480–7484, 9082–9083, bootstrap RFC 9224): finding the abuse contact of an
//! address or a domain.
//!
//! [`bootstrap`] picks the server from IANA's registries (shipped in the crate), [`contacts`]
//! reads the abuse e-mail addresses out of an answer, and [`client`] does the HTTP, following
//! redirects and caching answers in the report database.

pub mod bootstrap;
pub mod client;
pub mod contacts;

pub use bootstrap::Bootstrap;
pub use client::{Query, RdapClient};
