//! Evaluating one comparison of the tree against a request, for every shape of leaf.
//!
//! The closures in `closures.rs` handle the common leaves themselves and call in here for the
//! rest, and `explain` uses it for all leaves. Values are borrowed from the request and
//! literals were prepared at parse time; the only allocations are the ones a rule asks for
//! explicitly (`lower()`/`upper()` of a value whose case changes, JSON non-strings, split
//! cookies).

#[cfg(test)]
use crate::ast::Node;
use crate::ast::{Case, Cmp, IntTest, LenOf, Operand, Quant, StrBase, StrTest, Test};
use crate::fields;
use crate::Request;

/// The tree-walking form of `Expr::matches`, kept to cross-check the closures in tests.
#[cfg(test)]
pub(crate) fn node(n: &Node, req: &Request<'_>) -> bool {
    match n {
        Node::And(xs) => xs.iter().all(|x| node(x, req)),
        Node::Or(xs) => xs.iter().any(|x| node(x, req)),
        Node::Xor(xs) => xs.iter().fold(false, |acc, x| acc != node(x, req)),
        Node::Not(x, _) => !node(x, req),
        Node::Cmp(c) => cmp(c, req),
    }
}

pub(crate) fn cmp(c: &Cmp, req: &Request<'_>) -> bool {
    match &c.lhs {
        Operand::Str { base, case } => {
            with_str(base, *case, req, |v| test_str(&c.test, v)) != c.negate
        }
        Operand::List { base, case } => {
            let one = |e: &[u8]| with_case(e, *case, |v| test_str(&c.test, v)) != c.negate;
            let mut it = base.iter(req);
            match c.quant {
                Quant::Any => it.any(one),
                Quant::All => it.all(one),
            }
        }
        Operand::Len(of) => match &c.test {
            Test::Int(t) => test_int(t, len(of, req)) != c.negate,
            _ => false,
        },
        Operand::Bool(f) => match c.test {
            Test::Bool(want) => (f.read(req) == want) != c.negate,
            _ => false,
        },
        Operand::Ip => match &c.test {
            Test::Ip(set) => set.contains(req.ip) != c.negate,
            _ => false,
        },
    }
}

/// Calls `f` with the string value of `base` after case mapping.
#[inline]
pub(crate) fn with_str<R>(
    base: &StrBase,
    case: Case,
    req: &Request<'_>,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let g = |v: &[u8]| with_case(v, case, f);
    match base {
        StrBase::Field(field) => field.with(req, g),
        StrBase::Index(list, i) => g(list.iter(req).nth(*i).unwrap_or(b"")),
        StrBase::Json(steps) => fields::json(req, steps, g),
    }
}

#[inline]
pub(crate) fn with_case<R>(v: &[u8], case: Case, f: impl FnOnce(&[u8]) -> R) -> R {
    // Only copy when the mapping would change something: most values are already in the case a
    // rule asks for, and then the borrowed bytes are used as they are.
    match case {
        Case::Keep => f(v),
        Case::Lower if v.iter().any(u8::is_ascii_uppercase) => f(&v.to_ascii_lowercase()),
        Case::Upper if v.iter().any(u8::is_ascii_lowercase) => f(&v.to_ascii_uppercase()),
        Case::Lower | Case::Upper => f(v),
    }
}

pub(crate) fn len(of: &LenOf, req: &Request<'_>) -> i64 {
    let n = match of {
        LenOf::Str(base) => with_str(base, Case::Keep, req, <[u8]>::len),
        LenOf::List(list) => list.iter(req).count(),
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn test_str(t: &Test, v: &[u8]) -> bool {
    match t {
        Test::Str(t) => test_str_one(t, v),
        _ => false,
    }
}

pub(crate) fn test_str_one(t: &StrTest, v: &[u8]) -> bool {
    match t {
        StrTest::Eq(lit) => v == &**lit,
        StrTest::Ord(op, lit) => op.holds(v.cmp(lit)),
        StrTest::Contains(f) => f.find(v).is_some(),
        StrTest::Matches(re) => re.is_match(v),
        StrTest::Wildcard(w) => w.matches(v),
        // Typical sets are a handful of paths or methods: a length check first skips most
        // members without a memcmp call, and beats binary search at that size.
        StrTest::In(set) if set.len() <= 8 => set.iter().any(|m| m.len() == v.len() && **m == *v),
        StrTest::In(set) => set.binary_search_by(|m| (**m).cmp(v)).is_ok(),
        StrTest::StartsWith(p) => v.starts_with(p),
        StrTest::EndsWith(s) => v.ends_with(s),
    }
}

pub(crate) fn test_int(t: &IntTest, v: i64) -> bool {
    match t {
        IntTest::Eq(n) => v == *n,
        IntTest::Ord(op, n) => op.holds(v.cmp(n)),
        IntTest::In(ranges) => ranges.iter().any(|&(lo, hi)| lo <= v && v <= hi),
    }
}
