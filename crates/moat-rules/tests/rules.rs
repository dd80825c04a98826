//! End-to-end tests of the public API: real-world rules against realistic requests, and the
//! errors an operator sees for broken rules.

use http::{HeaderMap, HeaderName, HeaderValue};
use moat_rules::{Expr, Request};
use std::net::IpAddr;

struct Req {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    uri: String,
    headers: HeaderMap,
    ip: IpAddr,
    json: Option<serde_json::Value>,
}

impl Req {
    fn new(method: &'static str, path: &'static str, query: &'static str) -> Req {
        let uri = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        Req {
            method,
            path,
            query,
            uri,
            headers: HeaderMap::new(),
            ip: "203.0.113.9".parse().unwrap(),
            json: None,
        }
    }

    fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
        self
    }

    fn ip(mut self, ip: &str) -> Req {
        self.ip = ip.parse().unwrap();
        self
    }

    fn json(mut self, v: serde_json::Value) -> Req {
        self.json = Some(v);
        self
    }

    fn get(&self) -> Request<'_> {
        Request {
            method: self.method,
            uri: &self.uri,
            path: self.path,
            query: self.query,
            host: "app.example",
            headers: &self.headers,
            ip: self.ip,
            prefix_lens: moat_core::PrefixLens::default(),
            json: self.json.as_ref(),
            ssl: true,
            secure_context: true,
            banned: false,
            proof: Default::default(),
        }
    }
}

fn parse(src: &str) -> Expr {
    Expr::parse(src).unwrap_or_else(|e| panic!("{}", e.render(src)))
}

const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                         (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

#[test]
fn cloudflare_magic_link_rule() {
    let rule = parse(
        r#"http.request.uri.path contains "/api/send-magic-link" and http.user_agent contains "python""#,
    );
    let bot =
        Req::new("POST", "/api/send-magic-link", "").header("user-agent", "python-requests/2.31");
    assert!(rule.matches(&bot.get()));
    let browser = Req::new("POST", "/api/send-magic-link", "").header("user-agent", CHROME_UA);
    assert!(!rule.matches(&browser.get()));
    let elsewhere = Req::new("GET", "/", "").header("user-agent", "python-requests/2.31");
    assert!(!rule.matches(&elsewhere.get()));
    let lines = rule.explain(&bot.get());
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1],
        r#"http.user_agent contains "python" (http.user_agent = "python-requests/2.31") -> true"#
    );
    assert!(lines[0].contains(r#"(http.request.uri.path = "/api/send-magic-link") -> true"#));
    assert!(rule.explain(&browser.get())[1].ends_with("-> false"));
}

#[test]
fn chrome_claim_without_client_hints() {
    let src = r#"http.user_agent matches "Chrome/(9[0-9]|[1-9][0-9]{2})\\."
                 and len(http.request.headers["sec-ch-ua"]) eq 0"#;
    let rule = parse(src);
    let fake = Req::new("GET", "/", "").header("user-agent", CHROME_UA);
    assert!(rule.matches(&fake.get()));
    let real = Req::new("GET", "/", "")
        .header("user-agent", CHROME_UA)
        .header(
            "Sec-CH-UA",
            r#""Chromium";v="126", "Google Chrome";v="126""#,
        );
    assert!(!rule.matches(&real.get()));
    let old = Req::new("GET", "/", "").header("user-agent", "Mozilla/5.0 Chrome/89.0.1 Safari");
    assert!(!rule.matches(&old.get()));
    let v99 = Req::new("GET", "/", "").header("user-agent", "Mozilla/5.0 Chrome/99.0 Safari");
    assert!(rule.matches(&v99.get()));
    // Without the escaped dot the regex would also take "Chrome/999x".
    let odd = Req::new("GET", "/", "").header("user-agent", "Chrome/999x");
    assert!(!rule.matches(&odd.get()));
}

#[test]
fn ip_in_mixed_v4_v6_sets() {
    let rule = parse("ip.src in {10.0.0.0/8 192.168.1.1 2001:db8::/32 ::1}");
    for ip in [
        "10.200.3.4",
        "192.168.1.1",
        "2001:db8:ffff::1",
        "::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(rule.matches(&Req::new("GET", "/", "").ip(ip).get()), "{ip}");
    }
    for ip in ["11.0.0.1", "192.168.1.2", "2001:db9::1", "::2", "fe80::1"] {
        assert!(
            !rule.matches(&Req::new("GET", "/", "").ip(ip).get()),
            "{ip}"
        );
    }
    let not_in = parse("not ip.src in {10.0.0.0/8 2001:db8::/32}");
    assert!(not_in.matches(&Req::new("GET", "/", "").ip("8.8.8.8").get()));
    assert!(!not_in.matches(&Req::new("GET", "/", "").ip("2001:db8::8").get()));
}

#[test]
fn json_body_fields() {
    let rule = parse(
        r#"http.request.uri.path eq "/api/signup"
           and (ends_with(lower(http.request.body.json["email"]), "@mailinator.com")
                or http.request.body.json["age"] eq "0")"#,
    );
    assert!(rule.needs_body());
    let spam = Req::new("POST", "/api/signup", "")
        .json(serde_json::json!({"email": "X@Mailinator.com", "age": 30}));
    assert!(rule.matches(&spam.get()));
    let zero =
        Req::new("POST", "/api/signup", "").json(serde_json::json!({"email": "a@b.c", "age": 0}));
    assert!(rule.matches(&zero.get()));
    let fine =
        Req::new("POST", "/api/signup", "").json(serde_json::json!({"email": "a@b.c", "age": 30}));
    assert!(!rule.matches(&fine.get()));
    assert!(!rule.matches(&Req::new("POST", "/api/signup", "").get()));
    let lines = rule.explain(&spam.get());
    assert!(
        lines.iter().any(|l| l.contains(r#"= "x@mailinator.com""#)),
        "{lines:?}"
    );
}

#[test]
fn query_uri_and_method_rules() {
    let rule = parse(
        r#"http.request.method in {"POST" "PUT"} and http.request.uri wildcard "/search?q=*"
           and http.request.uri.query contains "union""#,
    );
    let r = Req::new("POST", "/search", "q=1 union select").header("host", "x");
    assert!(rule.matches(&r.get()));
    assert!(!rule.matches(&Req::new("GET", "/search", "q=1 union select").get()));
    assert!(!rule.matches(&Req::new("POST", "/search", "q=1").get()));
    assert_eq!(rule.source(), rule.source().to_string());
    assert!(rule.source().starts_with("http.request.method in"));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let src = format!("{}ssl{}", "(".repeat(500), ")".repeat(500));
    let e = Expr::parse(&src).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.column),
        ("expression nested too deeply", 65)
    );
    let src = format!("{}ssl", "not ".repeat(500));
    assert!(Expr::parse(&src).is_err());
    // Long flat chains are not nesting and must work at any length.
    for op in ["and", "or", "xor"] {
        let src = vec!["ssl"; 20_001].join(&format!(" {op} "));
        assert!(parse(&src).matches(&Req::new("GET", "/", "").get()), "{op}");
    }
    let ok = format!("{}ssl{}", "(".repeat(30), ")".repeat(30));
    assert!(parse(&ok).matches(&Req::new("GET", "/", "").get()));
}

/// Every prefix and a scattering of byte-mangled variants of real rules must parse or fail
/// cleanly, with an error position inside the source.
#[test]
fn mangled_rules_never_panic() {
    let rules = [
        r#"http.request.uri.path contains "/api/send-magic-link" and http.user_agent contains "python""#,
        r#"any(lower(http.request.headers["x"][*]) wildcard "*a\\*") or ip.src in {10.0.0.0/8 ::1}"#,
        r##"not (len(http.request.headers.names) in {1..3 9}) ^^ http.cookie ~ r#"a"b"#"##,
        "http.request.body.json[\"a\"][0] strict wildcard \"\u{e9}*\" && !ssl # done",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let req = Req::new("GET", "/", "");
    for rule in rules {
        for cut in (0..=rule.len()).filter(|&i| rule.is_char_boundary(i)) {
            check(&rule[..cut], &req);
        }
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = rule.as_bytes().to_vec();
            let i = (seed as usize) % b.len();
            let palette = b"()[]{}\"#*\\ ,.:/-0aZ!=~";
            b[i] = palette[(seed >> 32) as usize % palette.len()];
            if let Ok(s) = String::from_utf8(b) {
                check(&s, &req);
            }
        }
    }

    fn check(src: &str, req: &Req) {
        match Expr::parse(src) {
            Ok(e) => {
                let got = e.matches(&req.get());
                let _ = e.explain(&req.get());
                assert_eq!(got, e.matches(&req.get()));
            }
            Err(e) => {
                assert!(e.offset <= src.len(), "{src:?}");
                assert!(e.render(src).contains('^'));
            }
        }
    }
}
