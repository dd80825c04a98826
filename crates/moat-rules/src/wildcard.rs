//! Cloudflare's `wildcard` / `strict wildcard` operators.
//!
//! A pattern matches the whole value; `*` matches any run (including none) and `\*` / `\\` are a
//! literal star / backslash. With only `*` as a metacharacter, matching the pieces between stars
//! greedily left to right is exact, so no backtracking or regex is needed, and the
//! case-insensitive form compares ASCII case-folded bytes without allocating.

#[derive(Debug, Clone)]
pub(crate) struct Wildcard {
    /// The literal pieces between stars; `pieces.len() - 1` stars in all. Lowercased when
    /// matching is case-insensitive.
    pieces: Vec<Box<[u8]>>,
    case_sensitive: bool,
}

impl Wildcard {
    pub fn new(pattern: &[u8], case_sensitive: bool) -> Self {
        let mut pieces = Vec::new();
        let mut cur = Vec::new();
        let mut it = pattern.iter().copied();
        while let Some(b) = it.next() {
            match b {
                b'\\' => cur.push(it.next().unwrap_or(b'\\')),
                b'*' => pieces.push(std::mem::take(&mut cur).into_boxed_slice()),
                b => cur.push(b),
            }
        }
        pieces.push(cur.into_boxed_slice());
        if !case_sensitive {
            for p in &mut pieces {
                p.make_ascii_lowercase();
            }
        }
        Wildcard {
            pieces,
            case_sensitive,
        }
    }

    fn eq(&self, a: &[u8], b: &[u8]) -> bool {
        if self.case_sensitive {
            a == b
        } else {
            a.eq_ignore_ascii_case(b)
        }
    }

    fn find(&self, hay: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() {
            return Some(0);
        }
        if self.case_sensitive {
            return memchr::memmem::find(hay, needle);
        }
        let first = needle[0];
        let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
        let last_start = hay.len().checked_sub(needle.len())?;
        let mut from = 0;
        while from <= last_start {
            let at = from + memchr::memchr2(lo, up, &hay[from..=last_start])?;
            if self.eq(&hay[at..at + needle.len()], needle) {
                return Some(at);
            }
            from = at + 1;
        }
        None
    }

    pub fn matches(&self, text: &[u8]) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(x) => x,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text.len() == first.len() && self.eq(text, first);
        };
        if text.len() < first.len() + last.len() {
            return false;
        }
        let (head, tail) = (&text[..first.len()], &text[text.len() - last.len()..]);
        if !self.eq(head, first) || !self.eq(tail, last) {
            return false;
        }
        let mut window = &text[first.len()..text.len() - last.len()];
        for piece in middle {
            match self.find(window, piece) {
                Some(at) => window = &window[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Wildcard;

    fn m(p: &str, t: &str) -> bool {
        Wildcard::new(p.as_bytes(), false).matches(t.as_bytes())
    }

    #[test]
    fn whole_string_and_case_insensitive() {
        assert!(m("*.example.com", "WWW.Example.com"));
        assert!(!m("*.example.com", "www.example.com.evil"));
        assert!(m("/api/*/send", "/API/v1/send"));
        assert!(!m("/api/*/send", "/api/v1/sendx"));
        assert!(m("abc", "ABC"));
        assert!(!m("abc", "abcd"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "ac"));
        // The two ends may not overlap: "aba" needs at least "ab" + "ba" = 4 bytes.
        assert!(!m("ab*ba", "aba"));
        assert!(m("*mid*", "xxMIDyy"));
    }

    #[test]
    fn strict_is_case_sensitive_and_escapes_work() {
        let w = Wildcard::new(b"/Admin/*", true);
        assert!(w.matches(b"/Admin/x"));
        assert!(!w.matches(b"/admin/x"));
        let lit = Wildcard::new(br"a\*b", true);
        assert!(lit.matches(b"a*b"));
        assert!(!lit.matches(b"axb"));
    }
}
