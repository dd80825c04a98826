//! A small, forgiving HTML scanner: tags and their attributes, text nodes, `<style>` blocks.
//!
//! A full HTML parser would be heavier than the job needs: spam HTML is often malformed on
//! purpose, and all that matters here is which attribute a URL sits in. This scanner never
//! fails; whatever it cannot make sense of is treated as text.

use std::borrow::Cow;

use crate::text::starts_ci;
use crate::Source;

/// What the scanner reports, in document order.
pub(crate) enum Item<'a> {
    /// A URL candidate from an attribute or CSS, with where it was found.
    Url(&'a str, Source),
    /// A text node (entities decoded), to be scanned like plain text.
    Text(&'a str),
    /// Text a reader does not see (a script body, a comment), scanned for links like text but
    /// kept out of the body fingerprint: spammers stuff it with random words to make every copy
    /// of a run look different.
    Hidden(&'a str),
}

/// Receives what the scanner finds.
pub(crate) type Sink<'a> = dyn FnMut(Item<'_>) + 'a;

/// Named entities worth knowing: the XML five, `nbsp`, and those spammers use to spell URL
/// punctuation (`&sol;&sol;`, `&period;`) so that naive scanners miss the link.
const NAMED: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{A0}'),
    ("sol", '/'),
    ("colon", ':'),
    ("period", '.'),
    ("equals", '='),
    ("quest", '?'),
    ("num", '#'),
    ("percnt", '%'),
    ("commat", '@'),
    ("lpar", '('),
    ("rpar", ')'),
    ("lowbar", '_'),
    ("hyphen", '-'),
    ("dash", '-'),
    ("plus", '+'),
    ("semi", ';'),
    ("comma", ','),
    ("excl", '!'),
    ("tilde", '~'),
];

/// Decodes character references. Numeric ones are decoded whether or not they end in `;` (as
/// browsers do); named ones need the `;`, except the legacy four, which browsers also accept
/// bare when no letter, digit or `=` follows.
fn decode_entities(s: &str) -> Cow<'_, str> {
    if memchr::memchr(b'&', s.as_bytes()).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        match decode_one(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes one reference at the start of `s` (which starts with `&`): the character and the
/// number of bytes consumed.
fn decode_one(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let (hex, start) = match b.get(2) {
            Some(b'x' | b'X') => (true, 3),
            _ => (false, 2),
        };
        let digits = b[start..]
            .iter()
            .take_while(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let text = &s[start..start + digits];
        let value = u32::from_str_radix(text, if hex { 16 } else { 10 }).unwrap_or(u32::MAX);
        let c = char::from_u32(value)
            .filter(|&c| c != '\0')
            .unwrap_or('\u{FFFD}');
        let mut used = start + digits;
        if b.get(used) == Some(&b';') {
            used += 1;
        }
        return Some((c, used));
    }
    let name_len = b[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    let name = &s[1..1 + name_len];
    let with_semi = b.get(1 + name_len) == Some(&b';');
    let c = NAMED
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, c)| c)?;
    if with_semi {
        return Some((c, name_len + 2));
    }
    if matches!(
        name.to_ascii_lowercase().as_str(),
        "amp" | "lt" | "gt" | "quot"
    ) {
        return Some((c, name_len + 1));
    }
    None
}

/// Scans HTML, reporting URL candidates and text nodes to `sink` in document order. Text nodes
/// go back to the caller so that they get the same de-obfuscation as plain-text parts.
pub(crate) fn scan(html: &str, sink: &mut Sink<'_>) {
    let b = html.as_bytes();
    let mut text_start = 0;
    let mut i = 0;
    let mut in_comment = false;
    // Reused for every tag: most tags carry no attribute of interest.
    let mut attrs = Vec::new();
    let text = |t: &str, in_comment: bool, sink: &mut Sink<'_>| {
        let t = decode_entities(t);
        sink(if in_comment {
            Item::Hidden(&t)
        } else {
            Item::Text(&t)
        });
    };
    // Only `<` and `-` can start markup; jump between them.
    while let Some(off) = memchr::memchr2(b'<', b'-', &b[i..]) {
        i += off;
        match b[i] {
            // Comments are scanned through rather than skipped: Outlook conditional comments
            // (`<!--[if mso]><v:roundrect href=...>`) carry real links. `<!-->` is an empty
            // comment (browsers end it there): what follows is visible.
            b'<' if html[i..].starts_with("<!--") => {
                text(&html[text_start..i], in_comment, sink);
                in_comment = b.get(i + 4) != Some(&b'>');
                i += 4;
                text_start = i;
            }
            b'-' if html[i..].starts_with("-->") => {
                text(&html[text_start..i], in_comment, sink);
                in_comment = false;
                i += 3;
                text_start = i;
            }
            b'<' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?')) =>
            {
                text(&html[text_start..i], in_comment, sink);
                let (name, end) = parse_tag(html, i, &mut attrs);
                tag(name, &attrs, sink);
                i = end;
                let style = name.eq_ignore_ascii_case("style");
                if style || name.eq_ignore_ascii_case("script") {
                    let close = find_close(html, i, name);
                    let body = &html[i..close];
                    if style {
                        css(body, sink);
                    } else {
                        sink(Item::Hidden(body));
                    }
                    i = close;
                }
                text_start = i;
            }
            _ => i += 1,
        }
    }
    text(&html[text_start..], in_comment, sink);
}

/// Where the raw-text element `name` that started before `from` closes (or the end of input).
fn find_close(html: &str, from: usize, name: &str) -> usize {
    let b = html.as_bytes();
    let mut j = from;
    while let Some(off) = memchr::memmem::find(&b[j..], b"</") {
        j += off;
        if starts_ci(&html[j + 2..], name) {
            return j;
        }
        j += 2;
    }
    b.len()
}

/// The attributes the scanner reads; the rest are skipped without being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    Href,
    /// `src` and the attributes that load an image like it: `background` (body, table, td),
    /// `poster`, `lowsrc` and the lazy-loading `data-src`.
    Src,
    /// `srcset`, `imagesrcset`, `data-srcset`.
    Srcset,
    /// A form's `action` or a button's `formaction`.
    Action,
    Style,
    HttpEquiv,
    Content,
}

const ATTRS: &[(&str, Attr)] = &[
    ("href", Attr::Href),
    ("src", Attr::Src),
    ("background", Attr::Src),
    ("poster", Attr::Src),
    ("lowsrc", Attr::Src),
    ("data-src", Attr::Src),
    ("srcset", Attr::Srcset),
    ("imagesrcset", Attr::Srcset),
    ("data-srcset", Attr::Srcset),
    ("action", Attr::Action),
    ("formaction", Attr::Action),
    ("style", Attr::Style),
    ("http-equiv", Attr::HttpEquiv),
    ("content", Attr::Content),
];

/// Which attribute `name` is, ASCII case-insensitively (names with other bytes never match).
fn attr_kind(name: &str) -> Option<Attr> {
    ATTRS
        .iter()
        .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .map(|&(_, a)| a)
}

/// Parses a tag starting at `start` (`<`): its name as written (empty for end tags, doctypes
/// and processing instructions), the index just past the tag, and into `attrs` (cleared first)
/// the entity-decoded values of the attributes in [`ATTRS`], in document order.
fn parse_tag<'a>(
    html: &'a str,
    start: usize,
    attrs: &mut Vec<(Attr, Cow<'a, str>)>,
) -> (&'a str, usize) {
    attrs.clear();
    let b = html.as_bytes();
    let len = b.len();
    let mut j = start + 1;
    if matches!(b.get(j), Some(b'/' | b'!' | b'?')) {
        let end = memchr::memchr(b'>', &b[j..]).map_or(len, |k| j + k + 1);
        return ("", end);
    }
    while j < len && (b[j].is_ascii_alphanumeric() || matches!(b[j], b':' | b'-' | b'_')) {
        j += 1;
    }
    let name = &html[start + 1..j];
    let skip_blank = |j: &mut usize| {
        while *j < len && (b[*j].is_ascii_whitespace() || b[*j] == b'/') {
            *j += 1;
        }
    };
    loop {
        skip_blank(&mut j);
        if j >= len {
            break;
        }
        if b[j] == b'>' {
            j += 1;
            break;
        }
        let name_start = j;
        while j < len && !b[j].is_ascii_whitespace() && !matches!(b[j], b'=' | b'>' | b'/') {
            j += 1;
        }
        if j == name_start {
            // A stray `=`: skip it.
            j += 1;
            continue;
        }
        let kind = html.get(name_start..j).and_then(attr_kind);
        let mut k = j;
        while k < len && b[k].is_ascii_whitespace() {
            k += 1;
        }
        let mut value = Cow::Borrowed("");
        if k < len && b[k] == b'=' {
            k += 1;
            while k < len && b[k].is_ascii_whitespace() {
                k += 1;
            }
            let raw = if k < len && matches!(b[k], b'"' | b'\'') {
                let v_end = memchr::memchr(b[k], &b[k + 1..]).map_or(len, |e| k + 1 + e);
                let raw = &html[k + 1..v_end];
                k = (v_end + 1).min(len);
                raw
            } else {
                let v_start = k;
                while k < len && !b[k].is_ascii_whitespace() && b[k] != b'>' {
                    k += 1;
                }
                html.get(v_start..k).unwrap_or_default()
            };
            if kind.is_some() {
                value = decode_entities(raw);
            }
            j = k;
        }
        if let Some(kind) = kind {
            attrs.push((kind, value));
        }
    }
    (name, j.min(len))
}

/// Emits the URLs carried by one tag's attributes.
fn tag(name: &str, attrs: &[(Attr, Cow<'_, str>)], sink: &mut Sink<'_>) {
    let get = |n: Attr| attrs.iter().find(|(a, _)| *a == n).map(|(_, v)| v.as_ref());
    for (attr, value) in attrs {
        match attr {
            Attr::Href => sink(Item::Url(value, Source::HtmlHref)),
            Attr::Src => sink(Item::Url(value, Source::HtmlSrc)),
            Attr::Srcset => {
                for c in srcset(value) {
                    sink(Item::Url(c, Source::HtmlSrcset));
                }
            }
            Attr::Action => sink(Item::Url(value, Source::HtmlAction)),
            Attr::Style => css(value, sink),
            Attr::HttpEquiv | Attr::Content => {}
        }
    }
    if name.eq_ignore_ascii_case("meta")
        && get(Attr::HttpEquiv).is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"))
    {
        if let Some(url) = get(Attr::Content).and_then(refresh_url) {
            sink(Item::Url(url, Source::MetaRefresh));
        }
    }
}

/// The URL candidates of a `srcset`, following the HTML standard's algorithm: a URL runs to the
/// next blank (trailing commas belong to the separator), then descriptors run to the next comma
/// outside parentheses.
fn srcset(value: &str) -> Vec<&str> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let url = &value[start..i];
        let trimmed = url.trim_end_matches(',');
        if !trimmed.is_empty() {
            out.push(trimmed);
        }
        if trimmed.len() == url.len() {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    b',' if depth == 0 => break,
                    _ => {}
                }
                i += 1;
            }
        }
    }
    out
}

/// The target of `<meta http-equiv=refresh content="5; url='...'">`.
fn refresh_url(content: &str) -> Option<&str> {
    let s = content.trim_start();
    let s = s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let s = s.trim_start();
    let s = s.strip_prefix([';', ',']).unwrap_or(s).trim_start();
    let s = if starts_ci(s, "url") {
        let after = s[3..].trim_start();
        match after.strip_prefix('=') {
            Some(v) => v.trim_start(),
            None => s,
        }
    } else {
        s
    };
    let s = match s.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let inner = &s[1..];
            inner.find(q).map_or(inner, |e| &inner[..e])
        }
        _ => s,
    };
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

/// URLs in CSS: `url(...)` (quoted or not) and `@import "..."`.
fn css(style: &str, sink: &mut Sink<'_>) {
    let b = style.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let is_url = matches!(b[i], b'u' | b'U') && starts_ci(&style[i..], "url(");
        let is_import = b[i] == b'@' && starts_ci(&style[i..], "@import");
        if !is_url && !is_import {
            i += 1;
            continue;
        }
        let mut j = i + if is_url { 4 } else { 7 };
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let (start, end) = match b.get(j) {
            Some(&q @ (b'"' | b'\'')) => {
                let e = style[j + 1..]
                    .find(q as char)
                    .map_or(b.len(), |e| j + 1 + e);
                (j + 1, e)
            }
            _ if is_url => (j, style[j..].find(')').map_or(b.len(), |e| j + e)),
            _ => (j, j),
        };
        if end > start {
            sink(Item::Url(style[start..end].trim(), Source::Css));
        }
        i = end.max(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a&amp;b&#x2F;&#47;&sol;&lt"), "a&b///<");
        assert_eq!(decode_entities("&ampx &bogus; &#;"), "&ampx &bogus; &#;");
        assert_eq!(decode_entities("&#xFFFFFFFFFF;&#0;"), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn srcset_candidates() {
        assert_eq!(
            srcset("a.png 1x, b.png 2x,c.png, d(1,2).png 3w"),
            vec!["a.png", "b.png", "c.png", "d(1,2).png"]
        );
    }

    #[test]
    fn refresh() {
        assert_eq!(
            refresh_url("0;url=http://a.example/"),
            Some("http://a.example/")
        );
        assert_eq!(
            refresh_url(" 5 , URL = 'http://b.example/x' "),
            Some("http://b.example/x")
        );
        assert_eq!(refresh_url("0; http://c.example"), Some("http://c.example"));
    }
}
