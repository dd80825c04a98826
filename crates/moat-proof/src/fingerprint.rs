//! A header-shape fingerprint of our own (JA4H's licence forbids commercial use, so Moat does not
//! implement it).
//!
//! Scripts that copy a browser's user agent rarely copy the rest of what that browser sends:
//! which headers, in which order, and whether the client hints agree with the user agent. The
//! fingerprint puts that shape in one string rules can match, plus a verdict on whether the
//! headers contradict the user agent:
//!
//! ```text
//! 1g12_alecsmd-o-k_y_3c9a0f1e2b7d4a66
//! │││  │          │ └ FNV-1a of the lowercased header names in order (values never enter)
//! │││  │          └ y: consistent, n: a contradiction, -: not a browser we know
//! │││  └ presence, in this order, "-" when absent: accept, accept-language (l),
//! │││    accept-encoding (e), sec-ch-ua (c), sec-fetch-site (s), -mode (m), -dest (d),
//! │││    upgrade-insecure-requests (u), origin (o), referer (r), cookie (k)
//! ││└ number of header fields (two digits, capped at 99)
//! │└ first letter of the method, lowercased
//! └ HTTP major version (1 or 2)
//! ```
//!
//! Contradictions are judged conservatively, because a false one decoys a person:
//! - Chromium 90+ (not Android WebView, not Chrome on iOS, which is WebKit) always sends
//!   `sec-ch-ua` and Sec-Fetch-* to secure contexts (HTTPS or localhost), and its `Chromium`
//!   brand version equals the `Chrome/` major version;
//! - Firefox 90+ sends Sec-Fetch-* to secure contexts and never sends `sec-ch-ua`;
//! - every mainstream browser sends `Accept-Language` on every request.
//!
//! Older versions and unknown clients are never called inconsistent.

use http::HeaderMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub text: String,
    pub consistent: bool,
}

const PRESENCE: [(&str, u8); 11] = [
    ("accept", b'a'),
    ("accept-language", b'l'),
    ("accept-encoding", b'e'),
    ("sec-ch-ua", b'c'),
    ("sec-fetch-site", b's'),
    ("sec-fetch-mode", b'm'),
    ("sec-fetch-dest", b'd'),
    ("upgrade-insecure-requests", b'u'),
    ("origin", b'o'),
    ("referer", b'r'),
    ("cookie", b'k'),
];

pub fn shape(http2: bool, method: &str, headers: &HeaderMap, secure_context: bool) -> Shape {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in headers.keys() {
        // Names from `http` are already lowercase.
        for &b in name.as_str().as_bytes().iter().chain(b",") {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let verdict = judge(headers, secure_context);
    let mut text = String::with_capacity(40);
    text.push(if http2 { '2' } else { '1' });
    text.push(
        method
            .bytes()
            .next()
            .map_or('-', |b| b.to_ascii_lowercase() as char),
    );
    let n = headers.keys_len().min(99);
    text.push(char::from(b'0' + (n / 10) as u8));
    text.push(char::from(b'0' + (n % 10) as u8));
    text.push('_');
    for (name, letter) in PRESENCE {
        text.push(if headers.contains_key(name) {
            letter as char
        } else {
            '-'
        });
    }
    text.push('_');
    text.push(match verdict {
        Some(true) => 'y',
        Some(false) => 'n',
        None => '-',
    });
    text.push('_');
    text.push_str(&format!("{hash:016x}"));
    Shape {
        text,
        consistent: verdict != Some(false),
    }
}

/// `Some(consistent)` for a browser we know, `None` otherwise.
fn judge(h: &HeaderMap, secure: bool) -> Option<bool> {
    let ua = h.get(http::header::USER_AGENT)?.to_str().ok()?;
    if !ua.starts_with("Mozilla/5.0") {
        return None;
    }
    let has = |n: &str| h.contains_key(n);
    let chrome = version_after(ua, "Chrome/");
    let firefox = version_after(ua, "Firefox/");
    let webkit_shell = ua.contains("CriOS/") || ua.contains("FxiOS/") || ua.contains("; wv)");
    if chrome.is_none() && firefox.is_none() {
        // Safari and others: only the one thing every browser does.
        return if ua.contains("Safari/") {
            Some(has("accept-language"))
        } else {
            None
        };
    }
    if !has("accept-language") {
        return Some(false);
    }
    if webkit_shell {
        return Some(true);
    }
    if let Some(v) = chrome {
        if let Some(brand) = h
            .get("sec-ch-ua")
            .and_then(|v| v.to_str().ok())
            .and_then(chromium_brand_version)
        {
            if brand != v {
                return Some(false);
            }
        }
        if secure && v >= 90 && (!has("sec-ch-ua") || !has("sec-fetch-mode")) {
            return Some(false);
        }
        return Some(true);
    }
    let v = firefox.unwrap_or(0);
    if has("sec-ch-ua") {
        return Some(false);
    }
    Some(!(secure && v >= 90 && !has("sec-fetch-mode")))
}

/// The major version after `token`, e.g. 156 in `Chrome/156.0.0.0` (also `HeadlessChrome/`).
fn version_after(ua: &str, token: &str) -> Option<u32> {
    let at = ua.find(token)? + token.len();
    let digits: &str = &ua[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The version of the `"Chromium"` brand in a `sec-ch-ua` list such as
/// `"Chromium";v="156", "Not;A=Brand";v="24", "Google Chrome";v="156"`.
fn chromium_brand_version(list: &str) -> Option<u32> {
    list.split(',').find_map(|item| {
        let (brand, v) = item.trim().split_once(';')?;
        if brand.trim().trim_matches('"') != "Chromium" {
            return None;
        }
        v.trim().strip_prefix("v=")?.trim_matches('"').parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

    fn chrome_post() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "blog.example"),
            ("content-type", "application/json"),
            (
                "sec-ch-ua",
                "\"Chromium\";v=\"156\", \"Not-A.Brand\";v=\"24\"",
            ),
            ("sec-ch-ua-mobile", "?0"),
            ("user-agent", CHROME),
            ("accept", "*/*"),
            ("origin", "https://blog.example"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("accept-language", "en-US,en;q=0.9"),
        ]
    }

    #[test]
    fn a_real_chrome_is_consistent() {
        let s = shape(false, "POST", &map(&chrome_post()), true);
        assert!(s.consistent, "{s:?}");
        assert!(s.text.starts_with("1p12_alecsmd-o--_y_"), "{}", s.text);
    }

    #[test]
    fn a_script_with_chromes_user_agent_is_not() {
        let h = map(&[("user-agent", CHROME), ("accept", "*/*")]);
        let s = shape(false, "POST", &h, true);
        assert!(!s.consistent);
        assert!(s.text.contains("_n_"));
        // Outside a secure context Chrome sends no client hints, but still Accept-Language.
        let h = map(&[
            ("user-agent", CHROME),
            ("accept", "*/*"),
            ("accept-language", "de"),
        ]);
        assert!(shape(false, "POST", &h, false).consistent);
    }

    #[test]
    fn client_hints_must_agree_with_the_user_agent() {
        let mut pairs = chrome_post();
        pairs[2] = ("sec-ch-ua", "\"Chromium\";v=\"120\"");
        assert!(!shape(false, "POST", &map(&pairs), true).consistent);
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
        let mut pairs = chrome_post();
        pairs[4] = ("user-agent", firefox);
        assert!(
            !shape(false, "POST", &map(&pairs), true).consistent,
            "Firefox never sends sec-ch-ua"
        );
        pairs.remove(2);
        assert!(shape(false, "POST", &map(&pairs), true).consistent);
    }

    #[test]
    fn old_and_unknown_clients_are_never_called_inconsistent() {
        let old = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36";
        let h = map(&[("user-agent", old), ("accept-language", "en")]);
        assert!(shape(false, "GET", &h, true).consistent);
        let h = map(&[("user-agent", "curl/8.5.0")]);
        let s = shape(true, "GET", &h, true);
        assert!(s.consistent && s.text.starts_with("2g01_") && s.text.contains("_-_"));
        assert!(shape(false, "GET", &HeaderMap::new(), true).consistent);
    }

    #[test]
    fn order_changes_the_hash_but_not_the_presence() {
        let a = shape(false, "GET", &map(&[("a", "1"), ("b", "2")]), false);
        let b = shape(false, "GET", &map(&[("b", "2"), ("a", "1")]), false);
        assert_ne!(a.text, b.text);
        assert_eq!(a.text[..18], b.text[..18]);
    }
}
