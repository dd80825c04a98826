//! Evaluation cost of a realistic rule set against a realistic browser request.
//!
//! The target is 100 rules in under 2 µs in total, because every request pays for every rule;
//! these benches measure exactly that loop, plus one rule alone and the one-off parse cost.

use http::{HeaderMap, HeaderName, HeaderValue};
use moat_rules::{Expr, Prefilter, Request};
use std::hint::black_box;

fn main() {
    divan::main();
}

/// 100 rules of the kinds a deployment writes: protected routes, script user agents, browser
/// claims without the headers browsers send, address blocks, and a few combinations.
fn rule_sources() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..20 {
        v.push(format!(r#"http.request.uri.path eq "/api/v1/resource{i}""#));
    }
    for i in 0..10 {
        v.push(format!(
            r#"http.request.uri.path in {{"/login{i}" "/signup{i}" "/reset{i}" "/api/send-magic-link{i}"}}"#
        ));
    }
    for i in 0..10 {
        v.push(format!(
            r#"starts_with(http.request.uri.path, "/admin{i}/")"#
        ));
    }
    let scripts = [
        "python",
        "curl/",
        "Wget",
        "Go-http-client",
        "okhttp",
        "Scrapy",
        "Apache-HttpClient",
        "Java/",
        "libwww-perl",
        "node-fetch",
        "axios/",
        "HeadlessChrome",
        "PhantomJS",
        "httpx",
        "aiohttp",
    ];
    for s in scripts {
        v.push(format!(r#"http.user_agent contains "{s}""#));
    }
    v.push(r#"http.user_agent matches "Chrome/(9[0-9]|[1-9][0-9]{2})\\." and len(http.request.headers["sec-ch-ua"]) eq 0"#.into());
    v.push(r#"http.user_agent ~ r"^Mozilla/4\.0 \(compatible; MSIE [5-8]\.""#.into());
    v.push(r#"http.user_agent matches r"(?i)(bot|crawler|spider)/\d""#.into());
    v.push(r#"http.user_agent matches r"Firefox/([1-9]|[1-5][0-9])\.0$""#.into());
    v.push(r#"not http.user_agent matches "^Mozilla/5\\.0 ""#.into());
    for h in [
        "sec-fetch-site",
        "sec-fetch-mode",
        "sec-fetch-dest",
        "accept-language",
        "accept",
    ] {
        v.push(format!(
            r#"moat.secure_context and len(http.request.headers["{h}"]) eq 0"#
        ));
    }
    for h in [
        "x-forwarded-for",
        "via",
        "x-requested-with",
        "proxy-connection",
        "x-scanner",
    ] {
        v.push(format!(r#"len(http.request.headers["{h}"]) gt 0"#));
    }
    for i in 0..10u8 {
        v.push(format!(
            "ip.src in {{{i}.0.0.0/8 100.{i}.0.0/16 192.0.2.{i} 2001:db8:{i}::/48 2a00:{i}::/32 fe80::{i}}}"
        ));
    }
    for i in 0..10 {
        v.push(format!(
            r#"(http.request.method eq "POST" and http.request.uri.path eq "/checkout{i}")
               and (not ssl or http.user_agent contains "curl" or len(http.cookie) eq 0)"#
        ));
    }
    v.push(r#"http.host wildcard "*.internal.example""#.into());
    v.push(r#"http.request.uri.query contains "union select""#.into());
    v.push(r#"lower(http.request.uri.query) contains "<script""#.into());
    v.push(r#"http.referer contains "spam-domain.example""#.into());
    v.push(r#"http.cookie contains "bot_session=""#.into());
    v.push(r#"http.request.method in {"TRACE" "TRACK" "CONNECT"}"#.into());
    v.push(r#"any(http.request.headers["accept-encoding"][*] eq "identity")"#.into());
    v.push(
        r#"ends_with(http.request.uri.path, ".php") or ends_with(http.request.uri.path, ".asp")"#
            .into(),
    );
    v.push(r#"ip.src.prefix eq "203.0.113.0/24" and moat.banned"#.into());
    v.push(r#"len(http.request.uri) gt 2048 xor moat.banned"#.into());
    assert_eq!(v.len(), 100);
    v
}

struct Browser {
    headers: HeaderMap,
}

impl Browser {
    fn new() -> Browser {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("host", "shop.example.com"),
            ("connection", "keep-alive"),
            (
                "sec-ch-ua",
                r#""Chromium";v="126", "Google Chrome";v="126", "Not-A.Brand";v="8""#,
            ),
            ("sec-ch-ua-mobile", "?0"),
            ("sec-ch-ua-platform", r#""Windows""#),
            ("upgrade-insecure-requests", "1"),
            (
                "user-agent",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36",
            ),
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8",
            ),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-user", "?1"),
            ("sec-fetch-dest", "document"),
            ("referer", "https://shop.example.com/products/42"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("accept-language", "en-GB,en;q=0.9,de;q=0.8"),
            (
                "cookie",
                "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1",
            ),
        ] {
            let name = HeaderName::from_bytes(k.as_bytes()).expect("valid name");
            headers.append(name, HeaderValue::from_str(v).expect("valid value"));
        }
        Browser { headers }
    }

    fn req(&self) -> Request<'_> {
        Request {
            method: "GET",
            uri: "/products/42/reviews?page=2&sort=new",
            path: "/products/42/reviews",
            query: "page=2&sort=new",
            host: "shop.example.com",
            headers: &self.headers,
            ip: "203.0.113.77".parse().expect("valid ip"),
            prefix_lens: moat_core::PrefixLens::default(),
            json: None,
            ssl: true,
            secure_context: true,
            banned: false,
            proof: Default::default(),
        }
    }
}

fn parsed() -> Vec<Expr> {
    rule_sources()
        .iter()
        .map(|s| Expr::parse(s).unwrap_or_else(|e| panic!("{}", e.render(s))))
        .collect()
}

/// The 100 rules and a browser request, which a sane rule set lets through: checked, so that no
/// bench measures an early exit.
fn fixture() -> (Vec<Expr>, Browser) {
    let rules = parsed();
    let browser = Browser::new();
    assert_eq!(
        rules.iter().filter(|r| r.matches(&browser.req())).count(),
        0
    );
    (rules, browser)
}

#[divan::bench]
fn hundred_rules(bencher: divan::Bencher) {
    let (rules, browser) = fixture();
    let req = browser.req();
    bencher.bench_local(|| {
        let req = black_box(&req);
        let mut hits = 0u32;
        for r in &rules {
            hits += u32::from(r.matches(req));
        }
        hits
    });
}

/// The same loop the proxy runs: only the rules whose guards (method, path, address, words of
/// a field) the request passes are evaluated.
#[divan::bench]
fn hundred_rules_prefiltered(bencher: divan::Bencher) {
    let (rules, browser) = fixture();
    let pre = Prefilter::new(&rules);
    let req = browser.req();
    bencher.bench_local(|| {
        let req = black_box(&req);
        let mut hits = 0u32;
        for i in pre.candidates(req).iter() {
            hits += u32::from(rules[i].matches(req));
        }
        hits
    });
}

#[divan::bench]
fn single_rule(bencher: divan::Bencher) {
    let rule = Expr::parse(
        r#"http.request.uri.path contains "/api/send-magic-link" and http.user_agent contains "python""#,
    )
    .expect("valid rule");
    let browser = Browser::new();
    let req = browser.req();
    bencher.bench_local(|| rule.matches(black_box(&req)));
}

#[divan::bench]
fn single_regex_rule(bencher: divan::Bencher) {
    let rule = Expr::parse(
        r#"http.user_agent matches "Chrome/(9[0-9]|[1-9][0-9]{2})\\." and len(http.request.headers["sec-ch-ua"]) eq 0"#,
    )
    .expect("valid rule");
    let browser = Browser::new();
    let req = browser.req();
    bencher.bench_local(|| rule.matches(black_box(&req)));
}

#[divan::bench(sample_count = 20)]
fn parse_hundred_rules(bencher: divan::Bencher) {
    let sources = rule_sources();
    bencher.bench_local(|| {
        sources
            .iter()
            .map(|s| Expr::parse(black_box(s)).map(|e| e.needs_body()))
            .filter(|r| r.is_ok())
            .count()
    });
}
