//! The browser proof: evidence, at a price negligible for one person and ruinous for a script
//! sending thousands of requests, that a client runs a real browser.
//!
//! This crate holds the protocol and the data shapes, free of I/O (except [`keyfile`], which keeps
//! the keys in the state directory); the proxy in `moat-http` serves the endpoints and decides
//! when to ask for a proof.
//!
//! - [`challenge`]: signed, stateless proof-of-work challenges, redeemed once;
//! - [`action`]: per-action proofs, bound to one route and target (one sign-in mail to one
//!   address), asked for when a route is under pressure;
//! - [`token`]: the clearance cookie, bound to the user agent and the client's network;
//! - [`keys`], [`keyfile`]: the MAC keys, rotated with overlap;
//! - [`pressure`]: adaptive difficulty from the rate of requests that lacked clearance;
//! - [`fingerprint`]: the header-shape fingerprint rules can read;
//! - [`inject`]: streaming insertion of the page script into HTML;
//! - [`assets`]: the page script, its worker and the challenge page.

pub mod action;
pub mod assets;
pub mod binding;
pub mod challenge;
pub mod fingerprint;
pub mod inject;
pub mod keyfile;
pub mod keys;
pub mod pressure;
mod seal;
pub mod token;

pub use binding::{ua_hash, Net};
pub use keys::KeyRing;
