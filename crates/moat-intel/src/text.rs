//! Free-text URL discovery: de-obfuscation, then a scanner for `http(s)://` and `www.` links.
//!
//! Spam written for humans often defangs its links (`hxxp://evil[.]example`) to slip past
//! filters that only look for well-formed URLs, so the defanged spellings are undone first. The
//! rewriting is deliberately narrow: each pattern is a bracketed or misspelled-scheme form that
//! ordinary prose does not use, so normal text is never turned into URLs.

use std::borrow::Cow;

/// ASCII case-insensitive `starts_with` that never slices (so never panics on UTF-8 boundaries).
pub(crate) fn starts_ci(hay: &str, pat: &str) -> bool {
    hay.as_bytes()
        .get(..pat.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(pat.as_bytes()))
}

/// Bracketed replacements: (pattern, replacement, whether spaces around it are absorbed).
/// Spaces are absorbed only around the spelled-out `dot` forms (`example [dot] com`), where the
/// writer clearly meant one token.
const BRACKETED: &[(&str, &str, bool)] = &[
    ("[.]", ".", false),
    ("(.)", ".", false),
    ("{.}", ".", false),
    ("[dot]", ".", true),
    ("(dot)", ".", true),
    ("{dot}", ".", true),
    ("[:]", ":", false),
    ("(:)", ":", false),
    ("[://]", "://", false),
    ("[/]", "/", false),
];

/// Undoes common link defanging. See the module docs for why it is conservative. This runs on
/// every text node of every message, so only the places a defanged form can start are visited
/// (brackets, and an `x` preceded by `h`: vectorised searches), and text without any is returned
/// as is, without copying.
pub(crate) fn deobfuscate(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut triggers: Vec<usize> = memchr::memchr3_iter(b'[', b'(', b'{', b).collect();
    triggers.extend(
        memchr::memchr2_iter(b'x', b'X', b)
            .filter(|&i| i > 0 && matches!(b[i - 1], b'h' | b'H'))
            .map(|i| i - 1),
    );
    triggers.sort_unstable();
    // Allocated at the first rewrite; `copied` is how much of `s` is already in it.
    let mut out: Option<String> = None;
    let mut copied = 0;
    for i in triggers {
        if i < copied {
            continue;
        }
        let Some((rep, next, absorb)) = defanged_at(s, i) else {
            continue;
        };
        let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
        o.push_str(&s[copied..i]);
        if absorb {
            let trimmed = o.trim_end_matches(' ').len();
            o.truncate(trimmed);
        }
        o.push_str(rep);
        copied = next;
    }
    let d = match out {
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s),
    };
    match close_scheme_gaps(&d) {
        Some(closed) => Cow::Owned(closed),
        None => d,
    }
}

/// The defanged form starting at byte `i`, if any: its replacement, where it ends (spaces
/// absorbed included), and whether spaces before it are absorbed too.
fn defanged_at(s: &str, i: usize) -> Option<(&'static str, usize, bool)> {
    let b = s.as_bytes();
    let rest = &s[i..];
    if matches!(b[i], b'h' | b'H') {
        // `hxxp` / `hXXps` only directly before what a scheme is followed by.
        if !starts_ci(rest, "hxxp") {
            return None;
        }
        let secure = matches!(b.get(i + 4), Some(b's' | b'S'));
        let after = i + 4 + usize::from(secure);
        return matches!(b.get(after), Some(b':' | b'[' | b'(')).then_some((
            if secure { "https" } else { "http" },
            after,
            false,
        ));
    }
    let (pat, rep, absorb) = BRACKETED.iter().find(|(pat, _, _)| starts_ci(rest, pat))?;
    let mut next = i + pat.len();
    if *absorb {
        while b.get(next) == Some(&b' ') {
            next += 1;
        }
    }
    Some((rep, next, *absorb))
}

/// Removes blanks inside a scheme separator (`http :// example.com`, `https: //x`), but only when
/// the text really spells `http`/`https`, a colon and two slashes in that order. Anchored on
/// colons, which are rare in prose. `None` when there was nothing to remove.
fn close_scheme_gaps(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let blank = |j: usize| matches!(b.get(j), Some(b' ' | b'\t'));
    let mut out: Option<String> = None;
    let mut copied = 0;
    for colon in memchr::memchr_iter(b':', b) {
        if colon < copied {
            continue;
        }
        // `j`: where the scheme ends, blanks before the colon skipped.
        let mut j = colon;
        while j > copied && blank(j - 1) {
            j -= 1;
        }
        let scheme = (j >= 5 && b[j - 5..j].eq_ignore_ascii_case(b"https"))
            || (j >= 4 && b[j - 4..j].eq_ignore_ascii_case(b"http"));
        if !scheme {
            continue;
        }
        let mut k = colon + 1;
        while blank(k) {
            k += 1;
        }
        if b.get(k) != Some(&b'/') || b.get(k + 1) != Some(&b'/') {
            continue;
        }
        k += 2;
        while blank(k) {
            k += 1;
        }
        if k - j > 3 {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[copied..j]);
            o.push_str("://");
            copied = k;
        }
    }
    let mut o = out?;
    o.push_str(&s[copied..]);
    Some(o)
}

/// Characters that end a URL in free text.
fn is_terminator(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`' | '\u{FFFD}')
}

/// Finds URL candidates in (already de-obfuscated) text and hands each to `found`. Candidates
/// still need [`crate::norm::normalise`]; a `www.` link is given an `http://` scheme, as mail
/// clients do.
///
/// Every candidate contains `://` or `www.`, so the scan jumps between `:` and `.` bytes (a
/// vectorised search) and looks back for the scheme or `www`, instead of testing every byte.
pub(crate) fn candidates(text: &str, found: &mut dyn FnMut(&str)) {
    let b = text.as_bytes();
    // Candidates never overlap: one may not start before the previous one ended.
    let mut end = 0;
    let mut with_scheme = String::new();
    for p in memchr::memchr2_iter(b':', b'.', b) {
        let (start, needs_scheme) = if b[p] == b':' {
            if b.get(p + 1..p + 3) != Some(b"//") {
                continue;
            }
            if p >= 5 && b[p - 5..p].eq_ignore_ascii_case(b"https") {
                (p - 5, false)
            } else if p >= 4 && b[p - 4..p].eq_ignore_ascii_case(b"http") {
                (p - 4, false)
            } else {
                continue;
            }
        } else {
            let start = match p.checked_sub(3) {
                Some(s) if b[s..p].eq_ignore_ascii_case(b"www") => s,
                _ => continue,
            };
            // `www.` must be followed by a host and not be the tail of a longer name or an
            // address (`mail@www.example.com`, `awww.x`).
            if !b.get(p + 1).is_some_and(u8::is_ascii_alphanumeric)
                || (start > 0
                    && matches!(b[start - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'/' | b'@' | b':'))
            {
                continue;
            }
            (start, true)
        };
        if start < end {
            continue;
        }
        // `start` is an ASCII byte, so a character boundary.
        let stop = text[start..]
            .char_indices()
            .find(|&(_, c)| is_terminator(c))
            .map_or(text.len(), |(k, _)| start + k);
        let raw = crate::norm::trim_trailing(&text[start..stop]);
        if needs_scheme {
            with_scheme.clear();
            with_scheme.push_str("http://");
            with_scheme.push_str(raw);
            found(&with_scheme);
        } else {
            found(raw);
        }
        end = stop.max(start + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        let mut v = Vec::new();
        candidates(text, &mut |c| v.push(c.to_string()));
        v
    }

    #[test]
    fn undoes_defanging() {
        assert_eq!(
            deobfuscate("hxxps://evil[.]example/x"),
            "https://evil.example/x"
        );
        assert_eq!(deobfuscate("hXXp[:]//a(.)b(dot)c"), "http://a.b.c");
        assert_eq!(deobfuscate("evil [dot] example"), "evil.example");
        assert_eq!(
            deobfuscate("see http :// evil.example/"),
            "see http://evil.example/"
        );
        assert_eq!(deobfuscate("https: //a.example"), "https://a.example");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for s in [
            "The http protocol: // comments are fine",
            "a (b) [c] {d} hxxx dot com. Done.",
            "Price: 5 (.5 off) — naïve café",
            "http: then //",
        ] {
            assert_eq!(deobfuscate(s), s);
            assert!(all(&deobfuscate(s)).is_empty(), "{s}");
        }
    }

    #[test]
    fn finds_and_trims() {
        assert_eq!(
            all("Go to <http://a.example/x>, or (www.b.example). Thanks"),
            vec!["http://a.example/x", "http://www.b.example"]
        );
        assert_eq!(all("mail@www.example.com"), Vec::<String>::new());
        assert_eq!(all("wwww.example.com awww.x"), Vec::<String>::new());
        assert_eq!(
            all("HTTPS://a.example/http://b.example x https://c.example"),
            vec!["HTTPS://a.example/http://b.example", "https://c.example"]
        );
        assert_eq!(all("(www.a.example)"), vec!["http://www.a.example"]);
    }
}
