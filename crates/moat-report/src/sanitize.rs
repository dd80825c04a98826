//! Making bot-supplied and server-supplied strings safe to put in headers, forms and logs.
//!
//! Every string that reaches a report came from a spam bot (HELO, MAIL FROM, URLs) or from a
//! remote server (RDAP contacts, API answers). A CR or LF in one of them would let the bot add
//! header fields to our ARF; an unbounded one would let it bloat every report. These functions
//! never fail: they return a clean value or `None`.

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Printable ASCII only (anything else becomes `?`, controls become spaces), whitespace
/// collapsed, trimmed, at most `max` bytes: fit for a header field value or a one-line summary.
pub fn text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut last_space = true;
    for c in s.chars() {
        let c = if c.is_ascii_graphic() {
            c
        } else if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            '?'
        };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        out.push(c);
        if out.len() >= max {
            break;
        }
    }
    let t = out.trim_end().len();
    out.truncate(t);
    out
}

/// A lowercased host name of plausible shape (letters, digits, `-`, `_`, at least two labels,
/// labels of 1–63 bytes, at most 253 bytes), or `None`.
pub fn domain(s: &str) -> Option<String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() || d.len() > 253 || !d.contains('.') {
        return None;
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
    }
    Some(d)
}

/// A URL as a single token of printable ASCII (other bytes percent-encoded), at most 2048 bytes,
/// with an http or https scheme; otherwise `None`.
pub fn url(s: &str) -> Option<String> {
    let s = s.trim();
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'<' && b != b'>' && b != b'"' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        if out.len() > 2048 {
            return None;
        }
    }
    Some(out)
}

/// An addr-spec of plain shape (`local@domain`, dot-atom local part of at most 64 bytes, a
/// [`domain`] or an address literal), or `None`. Quoted local parts are refused: no abuse desk
/// needs one and they are where header tricks hide.
pub fn email(s: &str) -> Option<String> {
    let s = s.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, dom) = s.rsplit_once('@')?;
    if local.is_empty() || local.len() > 64 || local.starts_with('.') || local.ends_with('.') {
        return None;
    }
    const SPECIAL: &[u8] = b"!#$%&'*+-/=?^_`{|}~.";
    if !local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || SPECIAL.contains(&b))
    {
        return None;
    }
    let dom = if dom.starts_with('[') && dom.ends_with(']') {
        let inner = &dom[1..dom.len() - 1];
        let inner_ip = inner.strip_prefix("IPv6:").unwrap_or(inner);
        inner_ip.parse::<std::net::IpAddr>().ok()?;
        dom.to_string()
    } else {
        domain(dom)?
    };
    Some(format!("{local}@{dom}"))
}

/// The first `max` bytes of an answer body as one line of text, for the outcome summary.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let head = &body[..body.len().min(max * 4)];
    text(&String::from_utf8_lossy(head), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_removes_line_breaks_and_non_ascii() {
        assert_eq!(
            text("evil\r\nBcc: x@y\tz é", 100),
            "evil Bcc: x@y z ?".to_string()
        );
        assert_eq!(text("  a  ", 10), "a");
        assert_eq!(text(&"x".repeat(50), 10).len(), 10);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn domains_must_look_like_host_names() {
        assert_eq!(domain("Spam.Example."), Some("spam.example".into()));
        assert_eq!(domain("localhost"), None);
        assert_eq!(domain("a..b"), None);
        assert_eq!(domain("a b.example"), None);
        assert_eq!(domain(&format!("{}.example", "a".repeat(64))), None);
    }

    #[test]
    fn urls_are_single_tokens() {
        assert_eq!(
            url("https://spam.example/a b"),
            Some("https://spam.example/a%20b".into())
        );
        assert_eq!(url("javascript:alert(1)"), None);
        assert!(!url("http://x.example/\r\nBcc: y").unwrap().contains('\n'));
        assert_eq!(url(&format!("http://x.example/{}", "a".repeat(3000))), None);
    }

    #[test]
    fn emails_are_plain_addr_specs() {
        assert_eq!(
            email("<Abuse@Example.NET>"),
            Some("Abuse@example.net".into())
        );
        assert_eq!(email("abuse@[192.0.2.1]"), Some("abuse@[192.0.2.1]".into()));
        assert_eq!(email("a\r\nb@example.net"), None);
        assert_eq!(email("\"quoted\"@example.net"), None);
        assert_eq!(email("nobody"), None);
        assert_eq!(email("x@localhost"), None);
    }
}
