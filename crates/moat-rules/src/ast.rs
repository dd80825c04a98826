//! The compiled form of a rule: a small tree built once at parse time.
//!
//! Everything that can be decided without a request is decided here (field lookups resolved to
//! enums, header names parsed, literals lowercased, regexes and substring finders built, sets
//! sorted), so that evaluation is only comparisons and never allocates for plain tests.

use crate::fields::{BoolField, StrField};
use crate::pattern::Pattern;
use crate::wildcard::Wildcard;
use http::HeaderName;
use memchr::memmem::Finder;

/// A byte range of the source, kept so `explain` can quote the rule as it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    /// n-ary (true when an odd number of operands are), so a long chain stays flat instead of
    /// nesting one level per `xor`.
    Xor(Vec<Node>),
    Not(Box<Node>, Span),
    Cmp(Box<Cmp>),
}

/// One leaf: a value read from the request, tested against a literal.
#[derive(Debug, Clone)]
pub(crate) struct Cmp {
    pub lhs: Operand,
    pub quant: Quant,
    /// `ne` is `eq` negated per element, so lists and explanations need no separate variants.
    pub negate: bool,
    pub test: Test,
    /// The whole leaf as written.
    pub span: Span,
    /// Just the value side as written (`lower(http.user_agent)`).
    pub lhs_span: Span,
}

/// How a test over a list combines: a list compared directly means "any element".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quant {
    Any,
    All,
}

/// ASCII case mapping from `lower()` / `upper()`; the outermost call wins, because for ASCII
/// `lower(upper(x))` is `lower(x)`, which keeps nesting out of the evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Str {
        base: StrBase,
        case: Case,
    },
    List {
        base: ListBase,
        case: Case,
    },
    /// `len(...)`: case mapping never changes an ASCII-mapped length, so only the base is kept.
    Len(LenOf),
    Bool(BoolField),
    Ip,
}

#[derive(Debug, Clone)]
pub(crate) enum StrBase {
    Field(StrField),
    /// `http.request.headers["x"][0]`.
    Index(ListBase, usize),
    /// `http.request.body.json["a"][0]`.
    Json(Box<[JsonStep]>),
}

#[derive(Debug, Clone)]
pub(crate) enum ListBase {
    Header(HeaderName),
    HeaderNames,
}

#[derive(Debug, Clone)]
pub(crate) enum LenOf {
    Str(StrBase),
    List(ListBase),
}

#[derive(Debug, Clone)]
pub(crate) enum JsonStep {
    Key(Box<str>),
    Index(usize),
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    Str(StrTest),
    Int(IntTest),
    Bool(bool),
    Ip(IpSet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrdOp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl OrdOp {
    pub fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            OrdOp::Lt => o == Less,
            OrdOp::Le => o != Greater,
            OrdOp::Gt => o == Greater,
            OrdOp::Ge => o != Less,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum StrTest {
    Eq(Box<[u8]>),
    Ord(OrdOp, Box<[u8]>),
    Contains(Box<Finder<'static>>),
    Matches(Box<Pattern>),
    Wildcard(Wildcard),
    /// Sorted, for binary search.
    In(Box<[Box<[u8]>]>),
    StartsWith(Box<[u8]>),
    EndsWith(Box<[u8]>),
}

#[derive(Debug, Clone)]
pub(crate) enum IntTest {
    Eq(i64),
    Ord(OrdOp, i64),
    /// Inclusive ranges; a single member is a range of one.
    In(Box<[(i64, i64)]>),
}

/// Networks as (address, mask) integers, split by family so a lookup is a few AND-compares.
#[derive(Debug, Clone, Default)]
pub(crate) struct IpSet {
    pub v4: Vec<(u32, u32)>,
    pub v6: Vec<(u128, u128)>,
}

impl IpSet {
    pub fn insert(&mut self, net: ipnet::IpNet) {
        match net {
            ipnet::IpNet::V4(n) => {
                let mask = u32::from(n.netmask());
                self.v4.push((u32::from(n.network()) & mask, mask));
            }
            ipnet::IpNet::V6(n) => {
                let mask = u128::from(n.netmask());
                self.v6.push((u128::from(n.network()) & mask, mask));
            }
        }
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let hit = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(n, m)| a & m == n)
            }
            std::net::IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|&(n, m)| a & m == n)
            }
        };
        // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; rules are written with
        // the IPv4 form, so both are tried.
        hit(ip) || (ip.to_canonical() != ip && hit(ip.to_canonical()))
    }
}
