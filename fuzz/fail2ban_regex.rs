//! What the `fail2ban_filter` and `fail2ban_date` fuzz targets share (both include this file
//! by path, and so do their stable twins through them): the small regex grammar a fuzzed
//! filter's regexes must keep to before the targets match lines with them.
//!
//! Why: a fuzzed regex can backtrack catastrophically (`^(a+)+$`). PCRE2's compiled-in match
//! limit (10 million steps; the `pcre2` crate has no setter for a lower one) turns that into an
//! error after some 20 ms, which is no Moat bug, but a few hundred such matches per input reach
//! libFuzzer's 10 s timeout and hide everything else. So a filter's regexes are always read,
//! tag-expanded and compiled, and lines are matched only when every regex is [`tame`]: built
//! from the tokens of the targets' dictionaries (literals, escapes, classes, groups that are
//! never repeated, fail2ban's tags) with a few unbounded repeats at most. The targets then fuzz
//! Moat's reader and matcher, not PCRE2's backtracking.
#![allow(dead_code)]

/// The longest tame regex.
pub const MAX_LEN: usize = 512;
/// The most unbounded repeats (`*`, `+`, `{n,}`, `{n,m}`) a tame regex may hold: with lines
/// of at most a few hundred bytes, a match costs at most about n³ steps.
pub const MAX_UNBOUNDED: usize = 3;

/// fail2ban's regex tags (`tags::resolve_regex_tags`) and how many unbounded repeats each
/// expands to.
const TAGS: &[(&str, usize)] = &[
    ("<HOST>", 0),
    ("<ADDR>", 0),
    ("<IP4>", 0),
    ("<IP6>", 0),
    ("<DNS>", 1),
    ("<CIDR>", 1),
    ("<SUBNET>", 1),
    ("<F-ADDR/>", 0),
    ("<F-IP4/>", 0),
    ("<F-IP6/>", 0),
    ("<F-DNS/>", 1),
    ("<F-CIDR/>", 1),
    ("<F-SUBNET/>", 1),
    ("<F-ID/>", 1),
    ("<F-PORT/>", 1),
];

/// The date patterns' words in braces (`date::DateDetector::from_pattern`).
const DATE_WORDS: &[&str] = &["{^LN-BEG}", "{UNB}", "{DATE}", "{DEFAULT}", "{NONE}"];

/// `<F-NAME>` or `</F-NAME>`: its length.
fn custom_tag(s: &str) -> Option<usize> {
    let body = s.strip_prefix("</F-").or_else(|| s.strip_prefix("<F-"))?;
    let name = body
        .bytes()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
        .count();
    (name > 0 && body.as_bytes().get(name) == Some(&b'>')).then(|| s.len() - body.len() + name + 1)
}

/// A strptime code (`%b`, `%ExY`, `%%`): its length.
fn date_code(s: &str) -> Option<usize> {
    let r = s.strip_prefix('%')?;
    if r.starts_with("Ex") && r.as_bytes().get(2).is_some_and(u8::is_ascii_alphabetic) {
        return Some(4);
    }
    r.as_bytes()
        .first()
        .filter(|b| b.is_ascii_alphabetic() || **b == b'%')
        .map(|_| 2)
}

/// A group's opening (`(`, `(?:`, look-arounds, named groups): its length.
fn group_open(s: &str) -> Option<usize> {
    if !s[1..].starts_with('?') {
        return Some(1);
    }
    for fixed in ["(?:", "(?=", "(?!", "(?<=", "(?<!"] {
        if s.starts_with(fixed) {
            return Some(fixed.len());
        }
    }
    let body = s.strip_prefix("(?P<").or_else(|| s.strip_prefix("(?<"))?;
    let name = body
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    (name > 0 && body.as_bytes().get(name) == Some(&b'>')).then(|| s.len() - body.len() + name + 1)
}

/// A repeat (`*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`, each optionally lazy or possessive): its
/// length, and whether it is unbounded (counting `{n,m}` as such: it costs as much).
fn quantifier(s: &str) -> Option<(usize, bool)> {
    let b = s.as_bytes();
    let (len, unbounded) = match b[0] {
        b'*' | b'+' => (1, true),
        b'?' => (1, false),
        b'{' => {
            let close = s.find('}')?;
            let inner = &s[1..close];
            let ok =
                |n: &str| !n.is_empty() && n.len() <= 3 && n.bytes().all(|c| c.is_ascii_digit());
            match inner.split_once(',') {
                None if ok(inner) => (close + 1, false),
                Some((n, m)) if ok(n) && (m.is_empty() || ok(m)) => (close + 1, true),
                _ => return None,
            }
        }
        _ => return None,
    };
    let lazy = matches!(b.get(len), Some(b'?' | b'+'));
    Some((len + usize::from(lazy), unbounded))
}

/// A character class `[...]` (no nested `[`): its length.
fn class(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    if b.get(i) == Some(&b'^') {
        i += 1;
    }
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    while i < b.len() {
        match b[i] {
            b']' => return Some(i + 1),
            b'[' => return None,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Whether `re` keeps to the grammar (see the header); `date` also allows strptime codes and
/// the date patterns' words in braces.
pub fn tame(re: &str, date: bool) -> bool {
    if re.len() > MAX_LEN {
        return false;
    }
    let mut unbounded = 0;
    // Whether what came last may be repeated: a literal, an escape or a class, never a group,
    // a tag or a code (those expand to groups).
    let mut atom = false;
    let mut i = 0;
    while i < re.len() {
        let rest = &re[i..];
        if let Some((tag, n)) = TAGS.iter().find(|(t, _)| rest.starts_with(t)) {
            i += tag.len();
            unbounded += n;
            atom = false;
            continue;
        }
        if let Some(len) = custom_tag(rest) {
            i += len;
            atom = false;
            continue;
        }
        if date {
            if let Some(w) = DATE_WORDS.iter().find(|w| rest.starts_with(*w)) {
                i += w.len();
                atom = false;
                continue;
            }
            if let Some(len) = date_code(rest) {
                i += len;
                atom = false;
                continue;
            }
        }
        let c = rest.chars().next().unwrap();
        match c {
            '(' => {
                let Some(len) = group_open(rest) else {
                    return false;
                };
                i += len;
                atom = false;
            }
            ')' | '^' | '$' | '|' => {
                i += 1;
                atom = false;
            }
            '*' | '+' | '?' | '{' => {
                let Some((len, unb)) = quantifier(rest).filter(|_| atom) else {
                    return false;
                };
                unbounded += usize::from(unb);
                i += len;
                atom = false;
            }
            '\\' => {
                let Some(&e) = rest.as_bytes().get(1) else {
                    return false;
                };
                if !b"dDsSwWbB.[](){}|^$*+?-/:<>%\\ =,@#&!\"'".contains(&e) {
                    return false;
                }
                i += 2;
                atom = !matches!(e, b'b' | b'B');
            }
            '[' => {
                let Some(len) = class(rest) else {
                    return false;
                };
                i += len;
                atom = true;
            }
            _ => {
                i += c.len_utf8();
                atom = true;
            }
        }
    }
    unbounded <= MAX_UNBOUNDED
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cap(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod grammar {
    use super::tame;

    #[test]
    fn tame_and_not() {
        for ok in [
            r"^\S+ sshd\[\d+\]: Failed password for <F-USER>\S+</F-USER> from <HOST>",
            r"^<F-CONTENT>.+</F-CONTENT>$",
            r"(?:a|b)x{2}[^\]]*?",
            r"(?P<Y>\d+)-%m-%d",
        ] {
            assert!(tame(ok, true), "{ok}");
        }
        for bad in [
            r"^(a+)+$",
            r"(?:\S+\s?)*x",
            r"\S+\S+\S+\S+",
            r"(a)\1",
            "<HOST>*",
            r"[[:alpha:]]",
            r"(?R)",
        ] {
            assert!(!tame(bad, true), "{bad}");
        }
    }
}
