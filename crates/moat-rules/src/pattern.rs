//! `matches` patterns, with shortcuts around the regex engine where the pattern allows.
//!
//! A regex call has a fixed cost several times that of a substring check, and rule authors
//! often write patterns that are mostly literal (`^Mozilla/5\.0 `, `Chrome/(9\d|1\d\d)\.`). The
//! pattern's syntax tree (from `regex-syntax`, which the `regex` crate is built on, so both
//! read a pattern identically) tells when a pattern is only a literal, which turns it into a
//! plain test, or when every match must begin with a literal, which lets a substring search
//! reject most values and locate the few places worth running the regex.

use crate::ast::StrTest;
use memchr::memmem::Finder;
use regex::bytes::Regex;
use regex_syntax::hir::{Hir, HirKind, Look};

/// Shorter prefixes find too many candidates to be worth the extra step.
const MIN_PREFIX: usize = 3;
/// After this many candidate positions fail, the plain regex scan takes over, so a value
/// crafted to repeat the prefix cannot make evaluation quadratic.
const MAX_CANDIDATES: usize = 8;

/// A compiled regex plus, when the pattern starts with a literal, a faster route to it.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    full: Regex,
    prefix: Option<Prefix>,
}

#[derive(Debug, Clone)]
enum Prefix {
    /// `^lit...`: a value not starting with `lit` cannot match.
    AtStart(Box<[u8]>),
    /// `lit...`: a match starts at an occurrence of `lit`; `anchored` is the pattern pinned to
    /// the start of its input, run from each occurrence.
    Anywhere {
        finder: Box<Finder<'static>>,
        anchored: Regex,
    },
}

impl Pattern {
    pub fn is_match(&self, v: &[u8]) -> bool {
        match &self.prefix {
            None => self.full.is_match(v),
            Some(Prefix::AtStart(lit)) => v.starts_with(lit) && self.full.is_match(v),
            Some(Prefix::Anywhere { finder, anchored }) => {
                let mut from = 0;
                for _ in 0..MAX_CANDIDATES {
                    let Some(at) = v.get(from..).and_then(|rest| finder.find(rest)) else {
                        return false;
                    };
                    // Any look-around after the literal only inspects bytes from `at` on, so
                    // matching on the slice is the same as matching in place.
                    if anchored.is_match(&v[from + at..]) {
                        return true;
                    }
                    from += at + 1;
                }
                self.full.is_match(&v[from.min(v.len())..])
            }
        }
    }
}

/// The test for `matches pat`, given the already validated regex.
pub(crate) fn plan(pat: &str, full: Regex) -> StrTest {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pat)
    else {
        return StrTest::Matches(Box::new(Pattern { full, prefix: None }));
    };
    if let Some(t) = literal(&hir) {
        return t;
    }
    let parts: &[Hir] = match hir.kind() {
        HirKind::Concat(xs) => xs,
        _ => std::slice::from_ref(&hir),
    };
    let prefix = match parts {
        [first, second, ..] if *first.kind() == HirKind::Look(Look::Start) => match second.kind() {
            HirKind::Literal(l) if l.0.len() >= MIN_PREFIX => Some(Prefix::AtStart(l.0.clone())),
            _ => None,
        },
        [first, ..] => match first.kind() {
            HirKind::Literal(l) if l.0.len() >= MIN_PREFIX => {
                // `(?:...)` keeps any top-level alternation or flags inside the anchor's scope;
                // if that somehow does not compile, the plain regex is still correct.
                crate::compile::bounded_regex(&format!("^(?:{pat})"))
                    .ok()
                    .map(|anchored| Prefix::Anywhere {
                        finder: Box::new(Finder::new(&l.0).into_owned()),
                        anchored,
                    })
            }
            _ => None,
        },
        [] => None,
    };
    StrTest::Matches(Box::new(Pattern { full, prefix }))
}

/// A pattern that is literal text, perhaps anchored (`python`, `^/exact$`, `\.php$`), as the
/// equivalent plain test.
fn literal(hir: &Hir) -> Option<StrTest> {
    let parts: &[Hir] = match hir.kind() {
        HirKind::Concat(xs) => xs,
        HirKind::Empty => &[],
        _ => std::slice::from_ref(hir),
    };
    let (start, parts) = match parts {
        [first, rest @ ..] if *first.kind() == HirKind::Look(Look::Start) => (true, rest),
        _ => (false, parts),
    };
    let (end, parts) = match parts {
        [rest @ .., last] if *last.kind() == HirKind::Look(Look::End) => (true, rest),
        _ => (false, parts),
    };
    let lit: Box<[u8]> = match parts {
        [] => Box::default(),
        [one] => match one.kind() {
            HirKind::Literal(l) => l.0.clone(),
            _ => return None,
        },
        _ => return None,
    };
    Some(match (start, end) {
        (true, true) => StrTest::Eq(lit),
        (true, false) => StrTest::StartsWith(lit),
        (false, true) => StrTest::EndsWith(lit),
        (false, false) => StrTest::Contains(Box::new(Finder::new(&lit).into_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::test_str_one;

    fn planned(p: &str) -> StrTest {
        plan(p, Regex::new(p).unwrap())
    }

    const INPUTS: &[&str] = &[
        "Mozilla/5.0 X",
        "xpython",
        "index.php",
        "/exact",
        "",
        "a$b",
        "x",
        "<x",
        "axb",
        "b",
        "x-y",
        "café",
        "/exact/",
        "Mozilla/5x0 ",
        "Chrome/99.",
        "xChrome/1 Chrome/123.",
        "Chrome/12",
        "abcabcabcabcabcabcabcabcabcabcX",
        "abcabcabcabcabcabcabcabcabcabcZ",
        "ab\nc",
        "Chrome/ABC.",
    ];

    #[test]
    fn plain_literals_become_plain_tests() {
        let literal = [
            r"^Mozilla/5\.0 ",
            "python",
            r"\.php$",
            "^/exact$",
            "^$",
            "",
            r"a\$b",
            "é",
        ];
        for p in literal {
            assert!(
                !matches!(planned(p), StrTest::Matches(_)),
                "{p} should be literal"
            );
        }
        for p in [
            r"\<x", "a.b", "^a|b", r"\d", "(?i)abc", "a$b", "a+", r"\bx", "(abc)",
        ] {
            assert!(
                matches!(planned(p), StrTest::Matches(_)),
                "{p} should stay a regex"
            );
        }
    }

    #[test]
    fn every_plan_agrees_with_the_regex_engine() {
        let patterns = [
            r"^Mozilla/5\.0 ",
            "python",
            r"\.php$",
            "^/exact$",
            "^$",
            "",
            r"a\$b",
            "x-y",
            "é",
            r"Chrome/(9[0-9]|[1-9][0-9]{2})\.",
            r"^Mozilla/\d",
            r"abcX|Z",
            r"abc(?:abc)*Z",
            r"abc\b",
            r"Chrome/\w+\.",
            r"abc(?m)$",
            "(?i)chrome/",
            r"ab\nc",
            "a.b",
            r"\bx",
        ];
        for p in patterns {
            let t = planned(p);
            let re = Regex::new(p).unwrap();
            for i in INPUTS {
                assert_eq!(
                    test_str_one(&t, i.as_bytes()),
                    re.is_match(i.as_bytes()),
                    "{p:?} on {i:?}"
                );
            }
        }
    }

    #[test]
    fn repeated_prefixes_fall_back_to_one_scan() {
        let t = planned("abc(?:abc)*Z");
        let hay = "abc".repeat(1000) + "Z";
        assert!(test_str_one(&t, hay.as_bytes()));
        assert!(!test_str_one(&t, "abc".repeat(1000).as_bytes()));
    }
}
