//! The rule language (`moat_rules`) on arbitrary text: up to four rules separated by NUL bytes,
//! parsed, and every one that compiles evaluated against a few fixed requests. Beyond "never
//! panics" (and "terminates": libFuzzer's timeout catches a slow rule):
//!
//! - an error points inside the source (a char boundary; line and column as an editor counts
//!   them) and renders with its message and a caret;
//! - a compiled rule keeps its source, and re-parses to an equivalent rule when written again
//!   inside parentheses (the same verdict on every request) or after `not` (the opposite), or
//!   else fails only for nesting too deep;
//! - a rule that does not read the JSON body gives the same verdict with or without one;
//! - `explain` gives at least one line, and (where no `xor` hides the deciding leaf) its last
//!   line ends with the rule's verdict;
//! - the prefilter never rules out a rule that matches.
//!
//! The same file runs on stable as a plain test (`crates/moat-rules/tests/rules_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use http::{HeaderMap, HeaderName, HeaderValue};
use moat_rules::{Expr, FixedShape, Prefilter, ProofFields, Request};
use std::net::IpAddr;
use std::sync::OnceLock;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// A request the rules are evaluated against, owned.
struct Owned {
    method: &'static str,
    uri: &'static str,
    path: &'static str,
    query: &'static str,
    host: &'static str,
    headers: HeaderMap,
    ip: IpAddr,
    json: Option<serde_json::Value>,
    ssl: bool,
    banned: bool,
    proof: (bool, bool, FixedShape),
}

impl Owned {
    fn view(&self, with_json: bool) -> Request<'_> {
        Request {
            method: self.method,
            uri: self.uri,
            path: self.path,
            query: self.query,
            host: self.host,
            headers: &self.headers,
            ip: self.ip,
            prefix_lens: Default::default(),
            json: self.json.as_ref().filter(|_| with_json),
            ssl: self.ssl,
            secure_context: self.ssl || self.host == "localhost",
            banned: self.banned,
            proof: ProofFields {
                clearance: self.proof.0,
                good_bot: self.proof.1,
                shape: &self.proof.2,
                ..Default::default()
            },
        }
    }
}

fn headers(list: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

fn requests() -> &'static [Owned] {
    static R: OnceLock<Vec<Owned>> = OnceLock::new();
    R.get_or_init(|| {
        vec![
            // A browser's sign-in POST with a JSON body, over TLS.
            Owned {
                method: "POST",
                uri: "/members/api/send-magic-link/?ref=home",
                path: "/members/api/send-magic-link/",
                query: "ref=home",
                host: "blog.example",
                headers: headers(&[
                    ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
                    ("accept", b"*/*"),
                    ("accept-language", b"en-GB,en;q=0.9"),
                    ("sec-ch-ua", b"\"Chromium\";v=\"126\""),
                    ("sec-fetch-mode", b"cors"),
                    ("cookie", b"a=1"),
                    ("cookie", b"session=2"),
                    ("referer", b"https://blog.example/"),
                    ("content-type", b"application/json"),
                ]),
                ip: "203.0.113.9".parse().unwrap(),
                json: Some(serde_json::json!({
                    "email": "Bot@Spam.example",
                    "n": 42,
                    "ok": true,
                    "none": null,
                    "list": ["a", {"b": [1, 2]}],
                    "": "empty key"
                })),
                ssl: true,
                banned: false,
                proof: (true, false, FixedShape { text: "1p12_alecsmd-o--_y_3c9a0f1e2b7d4a66".into(), consistent: true }),
            },
            // A script: no accept headers, a Python user agent, IPv6, banned.
            Owned {
                method: "GET",
                uri: "/wp-login.php?action=register&x=%00",
                path: "/wp-login.php",
                query: "action=register&x=%00",
                host: "shop.example",
                headers: headers(&[
                    ("user-agent", b"python-requests/2.31.0"),
                    ("x-forwarded-for", b"10.0.0.1, 10.0.0.2"),
                    ("x-test", b"YES"),
                    ("x-test", b"no"),
                    ("x-bin", b"caf\xe9 \xff"),
                ]),
                ip: "2001:db8:3::1".parse().unwrap(),
                json: Some(serde_json::json!(["not", "an", "object"])),
                ssl: false,
                banned: true,
                proof: (false, false, FixedShape { text: String::new(), consistent: false }),
            },
            // Nothing at all: no headers, the root, an IPv4-mapped client on localhost.
            Owned {
                method: "HEAD",
                uri: "/",
                path: "/",
                query: "",
                host: "localhost",
                headers: HeaderMap::new(),
                ip: "::ffff:10.1.2.3".parse().unwrap(),
                json: None,
                ssl: false,
                banned: false,
                proof: (false, true, FixedShape::default()),
            },
        ]
    })
}

/// What a run found, for the stable test to check that the seeds go where they should.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    pub compiled: usize,
    pub errors: usize,
    pub matched: usize,
}

fn check_error(src: &str, e: &moat_rules::ParseError) {
    assert!(
        e.offset <= src.len() && src.is_char_boundary(e.offset),
        "{e:?}"
    );
    let before = &src[..e.offset];
    assert_eq!(e.line, before.matches('\n').count() + 1, "{e:?}");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    assert_eq!(
        e.column,
        src[line_start..e.offset].chars().count() + 1,
        "{e:?}"
    );
    assert!(!e.message.is_empty());
    let r = e.render(src);
    assert!(r.starts_with(&format!("error: {}\n", e.message)), "{r:?}");
    assert!(r.ends_with('^'), "{r:?}");
    assert!(e
        .to_string()
        .ends_with(&format!("at line {}, column {}", e.line, e.column)));
}

fn too_deep(r: &Result<Expr, moat_rules::ParseError>) -> bool {
    matches!(r, Err(e) if e.message == "expression nested too deeply")
}

pub fn run(data: &[u8]) -> Seen {
    let text = String::from_utf8_lossy(data);
    let mut seen = Seen::default();
    let mut exprs = Vec::new();
    for src in text.split('\0').take(4) {
        let e = match Expr::parse(src) {
            Err(e) => {
                check_error(src, &e);
                assert_eq!(src.parse::<Expr>().unwrap_err(), e);
                seen.errors += 1;
                continue;
            }
            Ok(e) => e,
        };
        assert_eq!(e.source(), src);
        seen.compiled += 1;
        // Written again: in parentheses (a newline first, in case the rule ends in a comment),
        // and negated.
        let wrapped = Expr::parse(&format!("({src}\n)"));
        let negated = Expr::parse(&format!("not ({src}\n)"));
        assert!(wrapped.is_ok() || too_deep(&wrapped), "{wrapped:?}");
        assert!(negated.is_ok() || too_deep(&negated), "{negated:?}");
        let plain_logic = !src.contains("xor") && !src.contains("^^");
        for r in requests() {
            let req = r.view(true);
            let m = e.matches(&req);
            seen.matched += usize::from(m);
            if !e.needs_body() {
                assert_eq!(e.matches(&r.view(false)), m, "{src:?} read the body");
            }
            if let Ok(w) = &wrapped {
                assert_eq!(w.matches(&req), m, "({src:?})");
            }
            if let Ok(n) = &negated {
                assert_eq!(n.matches(&req), !m, "not ({src:?})");
            }
            let lines = e.explain(&req);
            assert!(!lines.is_empty());
            if plain_logic {
                let last = lines.last().unwrap();
                assert!(last.ends_with(&format!("-> {m}")), "{src:?}: {lines:?}");
            }
        }
        exprs.push(e);
    }
    if !exprs.is_empty() {
        let pre = Prefilter::new(&exprs);
        for r in requests() {
            let req = r.view(true);
            let c = pre.candidates(&req);
            for (i, e) in exprs.iter().enumerate() {
                if e.matches(&req) {
                    assert!(c.contains(i), "the prefilter dropped {:?}", e.source());
                }
            }
        }
    }
    seen
}

/// Realistic and edge rules (the presets' and the docs' shapes), each as a fuzz input: the
/// seeds in `fuzz/seeds/rules`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let cases: &[(&str, &str)] = &[
        ("magic-link", r#"http.request.uri.path contains "/api/send-magic-link" and lower(http.user_agent) contains "python""#),
        ("chrome-regex", r#"http.user_agent matches r"Chrome/(9[0-9]|[1-9][0-9]{2})\." and len(http.request.headers["sec-ch-ua"]) eq 0"#),
        ("networks", "ip.src in {10.0.0.0/8 2001:db8::/32 203.0.113.9} and not moat.banned"),
        ("json", r#"http.request.body.json["email"] wildcard "*@spam.example" or http.request.body.json["list"][1]["b"][0] eq "1""#),
        ("quantifiers", r#"any(lower(http.request.headers["x-test"][*]) contains "yes") and all(http.request.headers.names[*] ne "cookie")"#),
        ("affixes", r#"starts_with(http.request.uri, "/wp-") || ends_with(http.host, ".example") && !ssl"#),
        ("xor", r#"ssl xor moat.clearance ^^ moat.good_bot"#),
        ("sets-and-ranges", r#"http.request.method in {"POST" "PUT"} and len(http.cookie) in {1..10 20} and len(http.request.uri.query) > 3"#),
        ("comparisons", r#"http.request.uri.query ge "a" and http.user_agent lt "Z" and http.referer != "" and http.request.method == "POST""#),
        ("fingerprint", r#"moat.fingerprint strict wildcard "1p12_*" and not moat.fingerprint.consistent"#),
        ("prefix", r#"ip.src.prefix eq "203.0.113.0/24" or ip.src eq ::ffff:10.1.2.3"#),
        ("multiline-comment", "# block scripted sign-ups\nhttp.request.method eq \"POST\" # the form\n  and http.user_agent ~ r#\"(?i)curl|wget\"#\n"),
        ("several", "ssl\0moat.banned and http.host eq \"shop.example\"\0http.user_agent contains \"python\"\0not ssl"),
        ("deep", &format!("{}ssl{}", "(".repeat(70), ")".repeat(70))),
        ("errors", "http.usr_agent contains \"x\"\0ssl and\0http.host eq \"a\\d\"\0ip.src in {1.2.3}"),
        ("unicode", "http.host eq \"caf\u{e9}\" and http.user_agent contains \"\u{1f600}\" \u{e9}"),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, (name, src))| (format!("{i:02}-{name}"), src.as_bytes().to_vec()))
        .collect()
}
