//! Type-checks one comparison and prepares its literal for fast evaluation.
//!
//! Rules are type-checked when loaded rather than when a request arrives, so a rule such as
//! `ip.src contains "x"` is refused at startup with a caret under the operator instead of
//! silently never matching.

use crate::ast::{IntTest, IpSet, Operand, OrdOp, StrBase, StrTest, Test};
use crate::error::ParseError;
use crate::fields::StrField;
use crate::wildcard::Wildcard;
use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Ord(OrdOp),
    Contains,
    Matches,
    Wildcard { strict: bool },
    In,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Ord(OrdOp::Lt) => "lt",
            Op::Ord(OrdOp::Le) => "le",
            Op::Ord(OrdOp::Gt) => "gt",
            Op::Ord(OrdOp::Ge) => "ge",
            Op::Contains => "contains",
            Op::Matches => "matches",
            Op::Wildcard { strict: false } => "wildcard",
            Op::Wildcard { strict: true } => "strict wildcard",
            Op::In => "in",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LitKind {
    Str(String),
    Int(i64),
    Range(i64, i64),
    Ip { net: IpNet, prefixed: bool },
    Bool(bool),
}

#[derive(Debug, Clone)]
pub(crate) struct Lit {
    pub kind: LitKind,
    /// Byte offset where the literal starts, for errors.
    pub at: usize,
}

pub(crate) enum Rhs {
    One(Lit),
    Set(Vec<Lit>),
}

/// "a string", "an integer", ... for messages about `op`.
pub(crate) fn describe(op: &Operand) -> &'static str {
    match op {
        Operand::Str { .. } => "a string",
        Operand::List { .. } => "a list of strings",
        Operand::Len(_) => "an integer",
        Operand::Bool(_) => "a bool",
        Operand::Ip => "an IP address",
    }
}

fn describe_lit(k: &LitKind) -> &'static str {
    match k {
        LitKind::Str(_) => "a string",
        LitKind::Int(_) => "an integer",
        LitKind::Range(..) => "an integer range",
        LitKind::Ip {
            prefixed: false, ..
        } => "an IP address",
        LitKind::Ip { prefixed: true, .. } => "a CIDR network",
        LitKind::Bool(_) => "a bool",
    }
}

struct Ctx<'a> {
    src: &'a str,
    lhs: &'a Operand,
    lhs_text: &'a str,
}

impl Ctx<'_> {
    fn wrong_lit(&self, lit: &Lit, wanted: &str) -> ParseError {
        let msg = format!(
            "expected {wanted} to compare with `{}` ({}), found {}",
            self.lhs_text,
            describe(self.lhs),
            describe_lit(&lit.kind)
        );
        ParseError::at(self.src, lit.at, msg)
    }

    /// The literal as bytes for a string test. `ip.src.prefix` is a string, but it reads
    /// naturally with a bare network (`ip.src.prefix eq 10.1.2.0/24`), so those are accepted
    /// there in their canonical text form.
    fn bytes(&self, lit: Lit) -> Result<Vec<u8>, ParseError> {
        let prefix = matches!(
            self.lhs,
            Operand::Str {
                base: StrBase::Field(StrField::IpPrefix),
                ..
            }
        );
        match lit.kind {
            LitKind::Str(s) => Ok(s.into_bytes()),
            LitKind::Ip { net, .. } if prefix => Ok(net.to_string().into_bytes()),
            _ => Err(self.wrong_lit(&lit, "a string")),
        }
    }

    fn one(&self, rhs: Rhs, op: Op) -> Result<Lit, ParseError> {
        match rhs {
            Rhs::One(l) => Ok(l),
            // The parser only builds sets after `in`; kept as an error rather than a panic.
            Rhs::Set(v) => Err(ParseError::at(
                self.src,
                v.first().map_or(0, |l| l.at),
                format!("`{}` takes a single value, not a set", op.name()),
            )),
        }
    }

    fn set(&self, rhs: Rhs) -> Vec<Lit> {
        match rhs {
            Rhs::One(l) => vec![l],
            Rhs::Set(v) => v,
        }
    }
}

/// Builds the test for `lhs op rhs`; the bool is whether the result is negated (`ne`).
pub(crate) fn test(
    src: &str,
    lhs: &Operand,
    lhs_text: &str,
    op: Op,
    op_at: usize,
    rhs: Rhs,
) -> Result<(Test, bool), ParseError> {
    let cx = Ctx { src, lhs, lhs_text };
    let negate = op == Op::Ne;
    let bad_op = |allowed: &str| {
        let msg = format!(
            "`{}` does not apply to `{lhs_text}` ({}); use {allowed}",
            op.name(),
            describe(lhs)
        );
        ParseError::at(src, op_at, msg)
    };
    let test = match lhs {
        Operand::Str { .. } | Operand::List { .. } => Test::Str(match op {
            Op::Eq | Op::Ne => StrTest::Eq(cx.bytes(cx.one(rhs, op)?)?.into()),
            Op::Ord(o) => StrTest::Ord(o, cx.bytes(cx.one(rhs, op)?)?.into()),
            Op::Contains => {
                let b = cx.bytes(cx.one(rhs, op)?)?;
                StrTest::Contains(Box::new(memchr::memmem::Finder::new(&b).into_owned()))
            }
            Op::Matches => {
                let lit = cx.one(rhs, op)?;
                let at = lit.at;
                let pat = String::from_utf8(cx.bytes(lit)?).unwrap_or_default();
                crate::pattern::plan(&pat, regex(src, at, &pat)?)
            }
            Op::Wildcard { strict } => {
                StrTest::Wildcard(Wildcard::new(&cx.bytes(cx.one(rhs, op)?)?, strict))
            }
            Op::In => {
                let mut v = Vec::new();
                for lit in cx.set(rhs) {
                    v.push(cx.bytes(lit)?.into_boxed_slice());
                }
                v.sort();
                v.dedup();
                StrTest::In(v.into())
            }
        }),
        Operand::Len(_) => {
            let int = |lit: Lit| match lit.kind {
                LitKind::Int(n) => Ok(n),
                _ => Err(cx.wrong_lit(&lit, "an integer")),
            };
            Test::Int(match op {
                Op::Eq | Op::Ne => IntTest::Eq(int(cx.one(rhs, op)?)?),
                Op::Ord(o) => IntTest::Ord(o, int(cx.one(rhs, op)?)?),
                Op::In => {
                    let mut v = Vec::new();
                    for lit in cx.set(rhs) {
                        match lit.kind {
                            LitKind::Int(n) => v.push((n, n)),
                            LitKind::Range(a, b) => v.push((a.min(b), a.max(b))),
                            _ => return Err(cx.wrong_lit(&lit, "an integer")),
                        }
                    }
                    IntTest::In(v.into())
                }
                _ => return Err(bad_op("eq, ne, lt, le, gt, ge or in")),
            })
        }
        Operand::Bool(_) => match op {
            Op::Eq | Op::Ne => {
                let lit = cx.one(rhs, op)?;
                match lit.kind {
                    LitKind::Bool(b) => Test::Bool(b),
                    _ => return Err(cx.wrong_lit(&lit, "true or false")),
                }
            }
            _ => return Err(bad_op("it alone, or eq / ne with true or false")),
        },
        Operand::Ip => {
            let mut set = IpSet::default();
            match op {
                Op::Eq | Op::Ne => {
                    let lit = cx.one(rhs, op)?;
                    match lit.kind {
                        LitKind::Ip {
                            net,
                            prefixed: false,
                        } => set.insert(net),
                        LitKind::Ip { .. } => {
                            let msg = format!(
                                "`{}` takes one address; test a network with `{lhs_text} in {{...}}`",
                                op.name()
                            );
                            return Err(ParseError::at(src, lit.at, msg));
                        }
                        _ => return Err(cx.wrong_lit(&lit, "an IP address")),
                    }
                }
                Op::In => {
                    for lit in cx.set(rhs) {
                        match lit.kind {
                            LitKind::Ip { net, .. } => set.insert(net),
                            _ => return Err(cx.wrong_lit(&lit, "an IP address or CIDR network")),
                        }
                    }
                }
                _ => return Err(bad_op("eq, ne or in")),
            }
            Test::Ip(set)
        }
    };
    Ok((test, negate))
}

/// The largest compiled program a rule's regex may become, and the most memory its lazy DFA
/// may use per thread. The regex crate matches in time linear in the input whatever the
/// pattern, so these two bound what a rule costs: a pattern like `(a{1000}){1000}` is refused
/// at load instead of taking megabytes and slowing every request. Far above what real rules
/// need (a 500-word alternation compiles to about 100 KB).
pub const MAX_REGEX_PROGRAM: usize = 1 << 20;
/// See [`MAX_REGEX_PROGRAM`].
pub const MAX_REGEX_DFA: usize = 1 << 20;

/// Compiles at load time so a bad pattern is reported at the literal, with the regex crate's
/// own one-line reason rather than its multi-line report.
fn regex(src: &str, at: usize, pat: &str) -> Result<regex::bytes::Regex, ParseError> {
    bounded_regex(pat).map_err(|e| {
        let full = e.to_string();
        let reason = full
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(full.as_str())
            .to_string();
        ParseError::at(src, at, format!("invalid regex: {reason}"))
    })
}

/// A regex under Moat's size bounds ([`MAX_REGEX_PROGRAM`], [`MAX_REGEX_DFA`]).
pub(crate) fn bounded_regex(pat: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pat)
        .size_limit(MAX_REGEX_PROGRAM)
        .dfa_size_limit(MAX_REGEX_DFA)
        .build()
}
