//! A small, forgiving HTML scanner: tags and their attributes, text nodes, `<style>` blocks.
//!
//! A full HTML parser would be heavier than the job needs: spam HTML is often malformed on
//! purpose, and all that matters here is which attribute a URL sits in. This scanner never
//! fails; whatever it cannot make sense of is treated as text.

use crate::text::starts_ci;
use crate::Source;

/// What the scanner reports, in document order.
pub(crate) enum Item<'a> {
    /// A URL candidate from an attribute or CSS, with where it was found.
    Url(&'a str, Source),
    /// A text node (entities decoded) or script body, to be scanned like plain text.
    Text(&'a str),
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
pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
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
    out
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
    let mut i = 0;
    let mut text_start = 0;
    while i < b.len() {
        match b[i] {
            // Comments are scanned through rather than skipped: Outlook conditional comments
            // (`<!--[if mso]><v:roundrect href=...>`) carry real links.
            b'<' if html[i..].starts_with("<!--") => {
                sink(Item::Text(&decode_entities(&html[text_start..i])));
                i += 4;
                text_start = i;
            }
            b'-' if html[i..].starts_with("-->") => {
                sink(Item::Text(&decode_entities(&html[text_start..i])));
                i += 3;
                text_start = i;
            }
            b'<' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?')) =>
            {
                sink(Item::Text(&decode_entities(&html[text_start..i])));
                let (name, attrs, end) = parse_tag(html, i);
                tag(&name, &attrs, sink);
                i = end;
                if matches!(name.as_str(), "style" | "script") {
                    let close = find_close(html, i, &name);
                    let body = &html[i..close];
                    if name == "style" {
                        css(body, sink);
                    } else {
                        sink(Item::Text(body));
                    }
                    i = close;
                }
                text_start = i;
            }
            _ => i += 1,
        }
    }
    sink(Item::Text(&decode_entities(&html[text_start..])));
}

/// Where the raw-text element `name` that started before `from` closes (or the end of input).
fn find_close(html: &str, from: usize, name: &str) -> usize {
    let b = html.as_bytes();
    let mut j = from;
    while j < b.len() {
        if b[j] == b'<' && b.get(j + 1) == Some(&b'/') && starts_ci(&html[j + 2..], name) {
            return j;
        }
        j += 1;
    }
    b.len()
}

/// Parses a tag starting at `start` (`<`): lowercase name (empty for end tags, doctypes and
/// processing instructions), entity-decoded attributes, and the index just past the tag.
fn parse_tag(html: &str, start: usize) -> (String, Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let len = b.len();
    let mut j = start + 1;
    if matches!(b.get(j), Some(b'/' | b'!' | b'?')) {
        let end = html[j..].find('>').map_or(len, |k| j + k + 1);
        return (String::new(), Vec::new(), end);
    }
    while j < len && (b[j].is_ascii_alphanumeric() || matches!(b[j], b':' | b'-' | b'_')) {
        j += 1;
    }
    let name = html[start + 1..j].to_ascii_lowercase();
    let mut attrs = Vec::new();
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
        // Attribute names are ASCII in practice; a name with other bytes just never matches.
        let attr = html
            .get(name_start..j)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut k = j;
        while k < len && b[k].is_ascii_whitespace() {
            k += 1;
        }
        let mut value = String::new();
        if k < len && b[k] == b'=' {
            k += 1;
            while k < len && b[k].is_ascii_whitespace() {
                k += 1;
            }
            if k < len && matches!(b[k], b'"' | b'\'') {
                let q = b[k] as char;
                let v_end = html[k + 1..].find(q).map_or(len, |e| k + 1 + e);
                value = decode_entities(&html[k + 1..v_end]);
                k = (v_end + 1).min(len);
            } else {
                let v_start = k;
                while k < len && !b[k].is_ascii_whitespace() && b[k] != b'>' {
                    k += 1;
                }
                value = decode_entities(html.get(v_start..k).unwrap_or_default());
            }
            j = k;
        }
        attrs.push((attr, value));
    }
    (name, attrs, j.min(len))
}

/// Emits the URLs carried by one tag's attributes.
fn tag(name: &str, attrs: &[(String, String)], sink: &mut Sink<'_>) {
    let get = |n: &str| attrs.iter().find(|(a, _)| a == n).map(|(_, v)| v.as_str());
    for (attr, value) in attrs {
        match attr.as_str() {
            "href" => sink(Item::Url(value, Source::HtmlHref)),
            // `background` (body/table/td) and the lazy-loading variants load images like `src`.
            "src" | "background" | "poster" | "lowsrc" | "data-src" => {
                sink(Item::Url(value, Source::HtmlSrc))
            }
            "srcset" | "imagesrcset" | "data-srcset" => {
                for c in srcset(value) {
                    sink(Item::Url(c, Source::HtmlSrcset));
                }
            }
            "action" | "formaction" => sink(Item::Url(value, Source::HtmlAction)),
            "style" => css(value, sink),
            _ => {}
        }
    }
    if name == "meta" && get("http-equiv").is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"))
    {
        if let Some(url) = get("content").and_then(refresh_url) {
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
pub(crate) fn css(style: &str, sink: &mut Sink<'_>) {
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
