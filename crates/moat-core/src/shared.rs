//! Rate limits counted in a store several instances share (Redis or Valkey, `moat-cluster`),
//! so three machines behind one load balancer count one email's sends once. The detectors say
//! which limits apply; the store checks them all in one atomic round trip.

use std::future::Future;
use std::pin::Pin;

/// One limit to check for one request, with its GCRA parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCheck {
    /// The limit's id, part of the shared key (two limits never share a counter).
    pub limit: String,
    /// What the limit counts by (an address, an email, …) for this request.
    pub key: Vec<u8>,
    /// One request per this many microseconds on average.
    pub interval_us: u64,
    /// How far ahead of now the theoretical arrival time may run: (burst - 1) intervals.
    pub tau_us: u64,
    /// False for a `log` limit: exceeding it is noted and the request goes on.
    pub stops: bool,
}

/// The limits a request exceeded, by index into the checks, with how long until each would
/// have room (µs): every exceeded `log` limit, then the first stopping one if any. When none
/// stopped, every conforming limit has been counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedOutcome {
    pub exceeded: Vec<(usize, u64)>,
}

/// What to do when the shared store cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnreachable {
    /// Count with this instance's own limiters, as a single machine would.
    Local,
    /// Treat every stopping limit as exceeded: nothing limited passes until the store is back.
    Closed,
}

#[derive(Debug, thiserror::Error)]
#[error("shared limits: {0}")]
pub struct SharedError(pub String);

pub type SharedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SharedOutcome, SharedError>> + Send + 'a>>;

pub trait SharedLimits: Send + Sync {
    fn check(&self, checks: Vec<SharedCheck>) -> SharedFuture<'_>;
    fn when_unreachable(&self) -> WhenUnreachable;
}
