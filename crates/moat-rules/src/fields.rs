//! The request fields a rule can read, and how each is read from a [`Request`].
//!
//! Field names are resolved to enums at parse time so evaluation never looks up a name; values
//! are borrowed from the request wherever they already exist as bytes, and built (on the stack
//! where possible) only when they do not.

use crate::ast::{JsonStep, ListBase};
use crate::Request;
use http::header;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrField {
    Method,
    Uri,
    Path,
    Query,
    Host,
    UserAgent,
    Referer,
    Cookie,
    IpPrefix,
    Fingerprint,
    Cohort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoolField {
    Ssl,
    SecureContext,
    Banned,
    Clearance,
    GoodBot,
    FingerprintConsistent,
}

/// What a field name denotes before any `[...]` after it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldDef {
    Str(StrField),
    Bool(BoolField),
    Ip,
    /// `http.request.headers` — must be followed by `["name"]`.
    Headers,
    HeaderNames,
    /// `http.request.body.json` — must be followed by `["key"]`.
    Json,
}

const FIELDS: &[(&str, FieldDef)] = &[
    ("http.request.method", FieldDef::Str(StrField::Method)),
    ("http.request.uri", FieldDef::Str(StrField::Uri)),
    ("http.request.uri.path", FieldDef::Str(StrField::Path)),
    ("http.request.uri.query", FieldDef::Str(StrField::Query)),
    ("http.host", FieldDef::Str(StrField::Host)),
    ("http.user_agent", FieldDef::Str(StrField::UserAgent)),
    ("http.referer", FieldDef::Str(StrField::Referer)),
    ("http.cookie", FieldDef::Str(StrField::Cookie)),
    ("ip.src.prefix", FieldDef::Str(StrField::IpPrefix)),
    ("ip.src", FieldDef::Ip),
    ("ssl", FieldDef::Bool(BoolField::Ssl)),
    (
        "moat.secure_context",
        FieldDef::Bool(BoolField::SecureContext),
    ),
    ("moat.banned", FieldDef::Bool(BoolField::Banned)),
    ("moat.clearance", FieldDef::Bool(BoolField::Clearance)),
    ("moat.good_bot", FieldDef::Bool(BoolField::GoodBot)),
    ("moat.fingerprint", FieldDef::Str(StrField::Fingerprint)),
    (
        "moat.fingerprint.consistent",
        FieldDef::Bool(BoolField::FingerprintConsistent),
    ),
    ("moat.cohort", FieldDef::Str(StrField::Cohort)),
    ("http.request.headers", FieldDef::Headers),
    ("http.request.headers.names", FieldDef::HeaderNames),
    ("http.request.body.json", FieldDef::Json),
];

pub(crate) fn lookup(name: &str) -> Option<FieldDef> {
    FIELDS.iter().find(|(n, _)| *n == name).map(|&(_, d)| d)
}

/// Room for the longest CIDR text (`ffff:…:ffff/128` is 43 bytes) without touching the heap.
struct Inline {
    buf: [u8; 48],
    len: usize,
}

impl std::fmt::Write for Inline {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

// Values are handed to a closure rather than returned: a returned enum of borrowed, owned and
// inline bytes is too big for registers, and moving it through memory on every comparison cost
// more than the comparison itself. With a closure the common case is just a slice.
impl StrField {
    #[inline]
    pub fn with<R>(self, req: &Request<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            StrField::Method => f(req.method.as_bytes()),
            StrField::Uri => f(req.uri.as_bytes()),
            StrField::Path => f(req.path.as_bytes()),
            StrField::Query => f(req.query.as_bytes()),
            StrField::Host => f(req.host.as_bytes()),
            StrField::UserAgent => f(first_header(req, &header::USER_AGENT)),
            StrField::Referer => f(first_header(req, &header::REFERER)),
            StrField::Cookie => cookie(req, f),
            StrField::Fingerprint => f(req.proof.shape.text().as_bytes()),
            StrField::Cohort => f(req.proof.cohort.standing().as_bytes()),
            StrField::IpPrefix => {
                let mut out = Inline {
                    buf: [0; 48],
                    len: 0,
                };
                match write!(out, "{}", moat_core::prefix_of(req.ip, req.prefix_lens)) {
                    Ok(()) => f(&out.buf[..out.len]),
                    Err(_) => f(b""),
                }
            }
        }
    }
}

impl BoolField {
    pub fn read(self, req: &Request<'_>) -> bool {
        match self {
            BoolField::Ssl => req.ssl,
            BoolField::SecureContext => req.secure_context,
            BoolField::Banned => req.banned,
            BoolField::Clearance => req.proof.clearance,
            BoolField::GoodBot => req.proof.good_bot,
            BoolField::FingerprintConsistent => req.proof.shape.consistent(),
        }
    }
}

fn first_header<'a>(req: &Request<'a>, name: &header::HeaderName) -> &'a [u8] {
    req.headers.get(name).map_or(&b""[..], |v| v.as_bytes())
}

/// HTTP/2 clients may split cookies over several `cookie` fields; Cloudflare's `http.cookie` is
/// the whole jar, so they are joined the way HTTP/1 would have sent them.
fn cookie<R>(req: &Request<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut all = req.headers.get_all(header::COOKIE).iter();
    let Some(first) = all.next() else {
        return f(b"");
    };
    let Some(second) = all.next() else {
        return f(first.as_bytes());
    };
    let mut v = first.as_bytes().to_vec();
    for h in std::iter::once(second).chain(all) {
        v.extend_from_slice(b"; ");
        v.extend_from_slice(h.as_bytes());
    }
    f(&v)
}

/// The elements of a list field, borrowed from the header map.
pub(crate) enum ListIter<'a> {
    Values(http::header::ValueIter<'a, http::HeaderValue>),
    Names(http::header::Keys<'a, http::HeaderValue>),
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            ListIter::Values(it) => it.next().map(|v| v.as_bytes()),
            ListIter::Names(it) => it.next().map(|n| n.as_str().as_bytes()),
        }
    }
}

impl ListBase {
    pub fn iter<'a>(&self, req: &Request<'a>) -> ListIter<'a> {
        match self {
            ListBase::Header(name) => ListIter::Values(req.headers.get_all(name).iter()),
            ListBase::HeaderNames => ListIter::Names(req.headers.keys()),
        }
    }
}

/// Strings are their content; other JSON values are their JSON text (`42`, `true`, `null`),
/// so a rule can still compare them; an absent path is "".
pub(crate) fn json<R>(req: &Request<'_>, steps: &[JsonStep], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut cur = match req.json {
        Some(v) => v,
        None => return f(b""),
    };
    for step in steps {
        let next = match step {
            JsonStep::Key(k) => cur.get(&**k),
            JsonStep::Index(i) => cur.get(*i),
        };
        match next {
            Some(v) => cur = v,
            None => return f(b""),
        }
    }
    match cur {
        serde_json::Value::String(s) => f(s.as_bytes()),
        other => f(other.to_string().as_bytes()),
    }
}
