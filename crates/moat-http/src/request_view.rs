//! What the rules see of a request, computed once per request from the parts hyper parsed;
//! the JSON body is present only when a rule needs it. The keys rate limits count by are the
//! limits detector's (`moat_detect::limit_key`).

use serde_json::Value;
use std::net::IpAddr;

/// Browsers send Sec-Fetch-* and client hints only to "potentially trustworthy" origins: HTTPS,
/// localhost and loopback addresses. Rules comparing headers with the user agent need to know.
pub fn secure_context(ssl: bool, host: &str) -> bool {
    if ssl {
        return true;
    }
    let h = host_without_port(host);
    h.eq_ignore_ascii_case("localhost")
        || (h.len() > 10 && h.as_bytes()[h.len() - 10..].eq_ignore_ascii_case(b".localhost"))
        || h.trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

/// Parses a body for `http.request.body.json`: JSON whatever the content type claims (a script
/// may lie about it), or an urlencoded form turned into an object of strings.
pub fn parse_body(content_type: &str, body: &[u8]) -> Option<Value> {
    // A UTF-8 byte order mark is accepted by body parsers such as Express's, so it is here too.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &body[i..])?;
    if trimmed.starts_with(b"{") {
        return serde_json::from_slice(body).ok();
    }
    if content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        let text = std::str::from_utf8(body).ok()?;
        let mut map = serde_json::Map::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.entry(percent_decode(k))
                .or_insert(Value::String(percent_decode(v)));
        }
        return Some(Value::Object(map));
    }
    None
}

/// The byte a `%XX` escape at `b[i]` stands for, if `b[i..i + 3]` is one.
fn escaped_byte(b: &[u8], i: usize) -> Option<u8> {
    let hex = b.get(i + 1..i + 3)?;
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Decodes `%XX` escapes and `+` (form and query encoding); invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match escaped_byte(b, i) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_context_follows_browsers() {
        assert!(secure_context(true, "example.com"));
        assert!(secure_context(false, "localhost:8080"));
        assert!(secure_context(false, "127.0.0.1:80"));
        assert!(secure_context(false, "[::1]:8080"));
        assert!(!secure_context(false, "example.com"));
        assert!(!secure_context(false, "10.0.0.1:8080"));
    }

    #[test]
    fn bodies_parse_as_json_or_form() {
        let v = parse_body("text/plain", br#" {"email":"A@x.org"}"#).unwrap();
        assert_eq!(v["email"], "A@x.org");
        let v = parse_body(
            "application/x-www-form-urlencoded",
            b"email=a%40x.org&name=J+D",
        )
        .unwrap();
        assert_eq!(v["email"], "a@x.org");
        assert_eq!(v["name"], "J D");
        assert!(parse_body("text/plain", b"hello").is_none());
        let v = parse_body("application/json", b"\xEF\xBB\xBF{\"email\":\"b@x.org\"}").unwrap();
        assert_eq!(v["email"], "b@x.org", "a BOM does not hide the body");
        assert!(parse_body("application/x-www-form-urlencoded", b"a=%zz%4").is_some());
    }
}

/// The path rules see: percent-encoded unreserved characters decoded (`%2D` is `-`), runs of
/// slashes merged and `.`/`..` segments resolved, like Cloudflare's URL normalization. Without
/// it `/members/api/send%2Dmagic-link/` or `/members//api/./send-magic-link/` would slip past a
/// rule while the app routes them to the same handler. The upstream still gets the original.
pub fn normalize_path(raw: &str) -> std::borrow::Cow<'_, str> {
    // `http::Uri` only holds ASCII, so byte-wise work below is character-wise.
    let clean = !raw.contains('%') && !raw.contains("//") && !raw.contains("/.");
    if clean || !raw.is_ascii() {
        return std::borrow::Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = escaped_byte(b, i) {
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(v as char);
                } else {
                    decoded.push('%');
                    decoded.push_str(&raw[i + 1..i + 3].to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        decoded.push(b[i] as char);
        i += 1;
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || (decoded.ends_with('/') && !path.ends_with('/')) {
        path.push('/');
    }
    std::borrow::Cow::Owned(path)
}

#[cfg(test)]
mod normalize_tests {
    use super::normalize_path;

    #[test]
    fn evasions_normalize_to_the_route() {
        let want = "/members/api/send-magic-link/";
        for p in [
            "/members/api/send%2Dmagic-link/",
            "/members//api/send-magic-link/",
            "/members/./api/send-magic-link/",
            "/members/x/../api/send-magic-link/",
            "//members/api/send-magic-link/",
            "/members/api/send-m%61gic-link/",
        ] {
            assert_eq!(normalize_path(p), want, "{p}");
        }
        assert_eq!(
            normalize_path("/a%2fb"),
            "/a%2Fb",
            "reserved characters stay encoded"
        );
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path("/plain/path"), "/plain/path");
    }
}
