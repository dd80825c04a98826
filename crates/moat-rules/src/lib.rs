//! Rule expressions in the Cloudflare Rules language, parsed once and evaluated per request.
//!
//! Operators already know this syntax from Cloudflare's WAF, so Moat reuses it rather than
//! inventing one:
//!
//! ```text
//! http.request.uri.path contains "/api/send-magic-link" and http.user_agent contains "python"
//! http.user_agent matches r"Chrome/(9[0-9]|[1-9][0-9]{2})\." and len(http.request.headers["sec-ch-ua"]) eq 0
//! ip.src in {10.0.0.0/8 2001:db8::/32} and not moat.banned
//! ```
//!
//! [`Expr::parse`] resolves fields, checks types and compiles regexes up front, reporting any
//! problem as a [`ParseError`] with line, column and a caret ([`ParseError::render`]).
//! [`Expr::matches`] then only compares, without allocating for plain tests, because it runs for
//! every rule on every request: the checked tree is turned into closures specialised per field
//! and test, so a typical leaf costs one indirect call plus the comparison itself. The crate does no I/O: the caller reads the request (and, when
//! [`Expr::needs_body`] says so, its JSON body) and hands over a borrowed [`Request`].
//!
//! Semantics worth knowing:
//! - Missing headers read as `""`; `http.request.headers["x"]` is the list of all its values.
//! - A list compared directly (`http.request.headers["x"] eq "1"`) matches if any element does,
//!   and `ne` matches if no element is equal (so also when the header is absent);
//!   `all(...)` over an empty list is true.
//! - `lower()` / `upper()` map ASCII only, as in Cloudflare; `wildcard` ignores ASCII case.
//! - `http.request.body.json["k"]` reads strings as their content and other JSON values as
//!   their JSON text (`42`, `true`, `null`); nested paths (`["a"][0]`) are allowed.
//! - `ip.src` matches IPv4-mapped IPv6 clients (`::ffff:10.0.0.1`) against IPv4 networks.

mod ast;
mod bitset;
mod closures;
mod compile;
mod error;
mod eval;
mod explain;
mod fields;
mod lexer;
mod operand;
mod parser;
mod pattern;
mod prefilter;
mod wildcard;

pub use bitset::Candidates;
pub use error::ParseError;
pub use prefilter::Prefilter;

use std::net::IpAddr;

/// One request as a rule sees it. Everything is borrowed so building it per request is free.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path + "?" + query as received (origin-form).
    pub uri: &'a str,
    pub path: &'a str,
    /// Without the leading '?', "" if none.
    pub query: &'a str,
    pub host: &'a str,
    pub headers: &'a http::HeaderMap,
    pub ip: IpAddr,
    /// The lengths `ip.src.prefix` groups addresses by.
    pub prefix_lens: moat_core::PrefixLens,
    /// The parsed JSON body; None when no body was read or it is not JSON.
    pub json: Option<&'a serde_json::Value>,
    /// The client connection (or a trusted proxy's) used TLS.
    pub ssl: bool,
    /// `ssl`, or the host is localhost/127.x/[::1]: where browsers send Sec-Fetch-* / sec-ch-ua.
    pub secure_context: bool,
    /// An active ban covers this client.
    pub banned: bool,
    /// What the browser proof found; all false/empty where no proof runs.
    pub proof: ProofFields<'a>,
}

/// What Moat learned of the client itself: the browser proof's view (`moat.clearance`,
/// `moat.good_bot`, `moat.fingerprint`, `moat.fingerprint.consistent`) and its cohort's
/// standing (`moat.cohort`).
#[derive(Clone, Copy)]
pub struct ProofFields<'a> {
    /// A valid clearance cookie for this user agent and network.
    pub clearance: bool,
    /// A crawler verified by forward-confirmed reverse DNS.
    pub good_bot: bool,
    /// The header-shape fingerprint and whether the headers agree with the user agent.
    pub shape: &'a dyn ShapeSource,
    /// The standing of the client's cohort with the app's confirmations.
    pub cohort: &'a dyn CohortSource,
}

impl Default for ProofFields<'_> {
    fn default() -> Self {
        ProofFields {
            clearance: false,
            good_bot: false,
            shape: &NO_SHAPE,
            cohort: &UNKNOWN_COHORT,
        }
    }
}

/// Where `moat.cohort` comes from: the proxy looks the client's cohort up only when a rule or
/// limit first asks.
pub trait CohortSource: Sync {
    /// `confirmed`, `unknown` or `silent`.
    fn standing(&self) -> &str;
    /// The cohort's key, which rate limits with `key = "cohort"` count by; none where no
    /// cohorts are tracked.
    fn key(&self) -> Option<u64> {
        None
    }
}

/// A cohort with no history.
struct UnknownCohort;

static UNKNOWN_COHORT: UnknownCohort = UnknownCohort;

impl CohortSource for UnknownCohort {
    fn standing(&self) -> &str {
        "unknown"
    }
}

/// A standing known up front (`moat rules test --cohort`, tests).
impl CohortSource for &'static str {
    fn standing(&self) -> &str {
        self
    }
}

impl std::fmt::Debug for ProofFields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofFields")
            .field("clearance", &self.clearance)
            .field("good_bot", &self.good_bot)
            .field("fingerprint", &self.shape.text())
            .field("fingerprint_consistent", &self.shape.consistent())
            .field("cohort", &self.cohort.standing())
            .finish()
    }
}

/// Where the header-shape fingerprint comes from. The proxy computes it only when a rule
/// first reads it: building it walks every header, and most requests never meet a rule that
/// looks (the ghost preset's rules read it only on their write routes, after the path).
pub trait ShapeSource: Sync {
    /// The fingerprint text (`moat.fingerprint`).
    fn text(&self) -> &str;
    /// The headers do not contradict the user agent (`moat.fingerprint.consistent`).
    fn consistent(&self) -> bool;
}

/// A fingerprint known up front.
#[derive(Debug, Clone, Default)]
pub struct FixedShape {
    pub text: String,
    pub consistent: bool,
}

impl ShapeSource for FixedShape {
    fn text(&self) -> &str {
        &self.text
    }
    fn consistent(&self) -> bool {
        self.consistent
    }
}

/// No proof ran: an empty fingerprint that contradicts nothing.
struct NoShape;

static NO_SHAPE: NoShape = NoShape;

impl ShapeSource for NoShape {
    fn text(&self) -> &str {
        ""
    }
    fn consistent(&self) -> bool {
        true
    }
}

/// A compiled rule expression. Cheap to share across threads; evaluation takes `&self`.
#[derive(Clone)]
pub struct Expr {
    source: String,
    /// The checked tree, kept for `explain`.
    root: ast::Node,
    /// The same rule as closures, for `matches`.
    pred: closures::Pred,
    needs_body: bool,
    reads_cohort: bool,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Parses, type-checks and compiles `src`.
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        let parsed = parser::parse(src)?;
        Ok(Expr {
            source: src.to_string(),
            pred: closures::build(&parsed.root),
            root: parsed.root,
            needs_body: parsed.needs_body,
            reads_cohort: parsed.reads_cohort,
        })
    }

    /// Whether the rule matches `req`.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        (self.pred)(req)
    }

    /// Human-readable reasons why it matched/did not: the leaf comparisons that decided the
    /// result, in evaluation order, with their actual values, e.g.
    /// `http.user_agent contains "python" (http.user_agent = "python-requests/2.31") -> true`.
    /// A `not` adds a line with its inverted result.
    pub fn explain(&self, req: &Request<'_>) -> Vec<String> {
        explain::explain(&self.root, &self.source, req)
    }

    /// True if any field reads `http.request.body.json[...]`; the proxy reads the body only then.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// True if it reads `moat.cohort`, which needs a `[[confirm]]` route to mean anything.
    pub fn reads_cohort(&self) -> bool {
        self.reads_cohort
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::str::FromStr for Expr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expr::parse(s)
    }
}

#[cfg(test)]
mod tests;
