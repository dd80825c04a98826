//! Free-text URL discovery: de-obfuscation, then a scanner for `http(s)://` and `www.` links.
//!
//! Spam written for humans often defangs its links (`hxxp://evil[.]example`) to slip past
//! filters that only look for well-formed URLs, so the defanged spellings are undone first. The
//! rewriting is deliberately narrow: each pattern is a bracketed or misspelled-scheme form that
//! ordinary prose does not use, so normal text is never turned into URLs.

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

/// Undoes common link defanging. See the module docs for why it is conservative.
pub(crate) fn deobfuscate(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    'outer: while i < s.len() {
        let rest = &s[i..];
        // `hxxp` / `hXXps` only directly before what a scheme is followed by.
        if starts_ci(rest, "hxxp") {
            let after = &rest[4..];
            let (scheme, after) = if starts_ci(after, "s") {
                ("https", &after[1..])
            } else {
                ("http", after)
            };
            if after.starts_with([':', '[', '(']) {
                out.push_str(scheme);
                i = s.len() - after.len();
                continue;
            }
        }
        if rest.starts_with(['[', '(', '{']) {
            for (pat, rep, absorb) in BRACKETED {
                if starts_ci(rest, pat) {
                    let mut next = i + pat.len();
                    if *absorb {
                        let trimmed = out.trim_end_matches(' ').len();
                        out.truncate(trimmed);
                        while s.as_bytes().get(next) == Some(&b' ') {
                            next += 1;
                        }
                    }
                    out.push_str(rep);
                    i = next;
                    continue 'outer;
                }
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        i += c.len_utf8();
    }
    close_scheme_gaps(&out)
}

/// Removes blanks inside a scheme separator (`http :// example.com`, `https: //x`), but only when
/// the text really spells `http`/`https`, a colon and two slashes in that order.
fn close_scheme_gaps(s: &str) -> String {
    let b = s.as_bytes();
    let blank = |j: usize| matches!(b.get(j), Some(b' ' | b'\t'));
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if (b[i] == b'h' || b[i] == b'H') && starts_ci(&s[i..], "http") {
            let mut j = i + 4;
            let secure = matches!(b.get(j), Some(b's' | b'S'));
            if secure {
                j += 1;
            }
            let mut k = j;
            while blank(k) {
                k += 1;
            }
            if b.get(k) == Some(&b':') {
                k += 1;
                while blank(k) {
                    k += 1;
                }
                if b.get(k) == Some(&b'/') && b.get(k + 1) == Some(&b'/') {
                    k += 2;
                    while blank(k) {
                        k += 1;
                    }
                    if k - j > 3 {
                        out.push_str(&s[copied..j]);
                        out.push_str("://");
                        copied = k;
                    }
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    out
}

/// Characters that end a URL in free text.
fn is_terminator(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`' | '\u{FFFD}')
}

/// Finds URL candidates in (already de-obfuscated) text. Candidates still need
/// [`crate::norm::normalise`]; a `www.` link is given an `http://` scheme, as mail clients do.
pub(crate) fn candidates(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let start_kind = match b[i] {
            b'h' | b'H'
                if starts_ci(&text[i..], "http://") || starts_ci(&text[i..], "https://") =>
            {
                Some(false)
            }
            b'w' | b'W'
                if starts_ci(&text[i..], "www.")
                    && rest.get(4).is_some_and(u8::is_ascii_alphanumeric)
                    && (i == 0
                        || !matches!(b[i - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'/' | b'@' | b':')) =>
            {
                Some(true)
            }
            _ => None,
        };
        let Some(needs_scheme) = start_kind else {
            i += 1;
            continue;
        };
        let end = text[i..]
            .char_indices()
            .find(|&(_, c)| is_terminator(c))
            .map_or(text.len(), |(k, _)| i + k);
        let raw = crate::norm::trim_trailing(&text[i..end]);
        if needs_scheme {
            found.push(format!("http://{raw}"));
        } else {
            found.push(raw.to_string());
        }
        i = end.max(i + 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(candidates(&deobfuscate(s)).is_empty(), "{s}");
        }
    }

    #[test]
    fn finds_and_trims() {
        assert_eq!(
            candidates("Go to <http://a.example/x>, or (www.b.example). Thanks"),
            vec!["http://a.example/x", "http://www.b.example"]
        );
        assert_eq!(candidates("mail@www.example.com"), Vec::<String>::new());
    }
}
