//! Unit tests of every field, operator and function against one fixed request, kept apart from
//! the modules so each of those stays short.

use crate::{Expr, Request};
use http::{HeaderMap, HeaderValue};
use std::net::IpAddr;

struct Fx {
    headers: HeaderMap,
    json: Option<serde_json::Value>,
    ip: IpAddr,
    lens: moat_core::PrefixLens,
}

impl Fx {
    fn new() -> Fx {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("host", "shop.example"),
            ("user-agent", "Mozilla/5.0 Chrome/126.0 Safari/537.36"),
            ("X-Multi", "one"),
            ("x-multi", "Two"),
            ("referer", "https://shop.example/cart"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ] {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let json = serde_json::json!({
            "email": "a@b.c", "n": 42, "ok": true, "nil": null,
            "user": {"tags": ["x", "y"]}
        });
        Fx {
            headers,
            json: Some(json),
            ip: "10.1.2.3".parse().unwrap(),
            lens: moat_core::PrefixLens::default(),
        }
    }

    fn req(&self) -> Request<'_> {
        Request {
            method: "POST",
            uri: "/api/login?next=%2F",
            path: "/api/login",
            query: "next=%2F",
            host: "shop.example",
            headers: &self.headers,
            ip: self.ip,
            prefix_lens: self.lens,
            json: self.json.as_ref(),
            ssl: true,
            secure_context: true,
            banned: false,
            proof: Default::default(),
        }
    }

    fn m(&self, src: &str) -> bool {
        let e = Expr::parse(src).unwrap_or_else(|e| panic!("{}", e.render(src)));
        let got = e.matches(&self.req());
        // The specialised closures must agree with the plain tree walk on every rule.
        assert_eq!(
            got,
            crate::eval::node(&e.root, &self.req()),
            "closure vs tree: {src}"
        );
        got
    }

    /// Asserts each rule matches and that a twisted copy of it does not, so no assertion can
    /// pass merely because everything evaluates to true.
    fn yes(&self, srcs: &[&str]) {
        for s in srcs {
            assert!(self.m(s), "expected match: {s}");
            assert!(
                !self.m(&format!("not ({s})")),
                "negation should not match: {s}"
            );
        }
    }

    fn no(&self, srcs: &[&str]) {
        for s in srcs {
            assert!(!self.m(s), "expected no match: {s}");
        }
    }
}

#[test]
fn string_fields() {
    let f = Fx::new();
    f.yes(&[
        r#"http.request.method eq "POST""#,
        r#"http.request.uri eq "/api/login?next=%2F""#,
        r#"http.request.uri.path eq "/api/login""#,
        r#"http.request.uri.query eq "next=%2F""#,
        r#"http.host eq "shop.example""#,
        r#"http.user_agent eq "Mozilla/5.0 Chrome/126.0 Safari/537.36""#,
        r#"http.referer eq "https://shop.example/cart""#,
        // Cookies split over two fields (HTTP/2) read as one jar.
        r#"http.cookie eq "a=1; b=2""#,
    ]);
    f.no(&[
        r#"http.request.method eq "post""#,
        r#"http.cookie eq "a=1""#,
    ]);
    let mut g = Fx::new();
    g.headers.clear();
    g.yes(&[
        r#"http.user_agent eq """#,
        r#"http.cookie eq "" and http.referer eq """#,
    ]);
}

#[test]
fn header_lists_names_and_indexing() {
    let f = Fx::new();
    f.yes(&[
        r#"http.request.headers["X-MULTI"] eq "Two""#,
        r#"http.request.headers["x-multi"][0] eq "one""#,
        r#"http.request.headers["x-multi"][1] eq "Two""#,
        r#"http.request.headers["x-multi"][2] eq """#,
        r#"len(http.request.headers["x-multi"]) eq 2"#,
        r#"len(http.request.headers["absent"]) eq 0"#,
        r#"http.request.headers.names[0] eq "host""#,
        r#"http.request.headers.names[1] eq "user-agent""#,
        r#"http.request.headers.names eq "x-multi""#,
        r#"len(http.request.headers.names) == 5"#,
        r#"any(http.request.headers["x-multi"][*] eq "one")"#,
        r#"all(http.request.headers["x-multi"][*] ne "three")"#,
        r#"any(lower(http.request.headers["x-multi"][*]) eq "two")"#,
        r#"all(upper(http.request.headers["x-multi"][*]) in {"ONE" "TWO"})"#,
        r#"any(starts_with(http.request.headers.names[*], "x-"))"#,
        r#"all(http.request.headers["absent"][*] eq "vacuous")"#,
        r#"http.request.headers["absent"] ne "1""#,
        r#"http.request.headers["x-multi"] != "three""#,
        r#"any(http.request.headers["x-multi"][*] ne "one")"#,
    ]);
    f.no(&[
        r#"http.request.headers["x-multi"] eq "two""#,
        r#"all(http.request.headers["x-multi"][*] eq "one")"#,
        r#"any(http.request.headers["absent"][*] eq "")"#,
        r#"http.request.headers["absent"] eq """#,
        r#"http.request.headers["x-multi"] ne "one""#,
        r#"all(http.request.headers["x-multi"][*] ne "one")"#,
    ]);
}

#[test]
fn ip_fields() {
    let mut f = Fx::new();
    f.yes(&[
        "ip.src eq 10.1.2.3",
        "ip.src == 10.1.2.3",
        "ip.src ne 10.1.2.4",
        "ip.src in {192.168.0.0/16 10.0.0.0/8}",
        "ip.src in {2001:db8::/32, 10.1.2.3}",
        r#"ip.src.prefix eq "10.1.2.0/24""#,
        "ip.src.prefix eq 10.1.2.0/24",
        r#"ip.src.prefix in {"1.1.1.0/24" 10.1.2.0/24}"#,
        r#"starts_with(ip.src.prefix, "10.")"#,
    ]);
    f.no(&[
        "ip.src in {10.1.3.0/24 2001:db8::/32}",
        "ip.src eq 10.1.2.4",
    ]);
    f.lens = moat_core::PrefixLens { v4: 16, v6: 48 };
    f.yes(&[r#"ip.src.prefix eq "10.1.0.0/16""#]);
    f.ip = "2001:db8:1:2:3:4:5:6".parse().unwrap();
    f.yes(&[
        r#"ip.src.prefix eq "2001:db8:1::/48""#,
        "ip.src in {10.0.0.0/8 2001:db8::/32}",
        "ip.src eq 2001:db8:1:2:3:4:5:6",
    ]);
    f.no(&["ip.src in {10.0.0.0/8 2001:db9::/32}"]);
    // A dual-stack listener reports IPv4 clients in mapped form.
    f.ip = "::ffff:10.9.8.7".parse().unwrap();
    f.yes(&[
        "ip.src in {10.0.0.0/8}",
        "ip.src eq 10.9.8.7",
        "ip.src.prefix eq 10.9.0.0/16",
    ]);
}

#[test]
fn json_fields_and_needs_body() {
    let f = Fx::new();
    f.yes(&[
        r#"http.request.body.json["email"] eq "a@b.c""#,
        r#"http.request.body.json["n"] eq "42""#,
        r#"http.request.body.json["ok"] eq "true""#,
        r#"http.request.body.json["nil"] eq "null""#,
        r#"http.request.body.json["missing"] eq """#,
        r#"http.request.body.json["user"]["tags"][1] eq "y""#,
        r#"ends_with(http.request.body.json["email"], ".c")"#,
    ]);
    let e = Expr::parse(r#"ssl and http.request.body.json["email"] contains "@""#).unwrap();
    assert!(e.needs_body());
    assert!(!Expr::parse(r#"http.user_agent contains "@""#)
        .unwrap()
        .needs_body());
    let mut g = Fx::new();
    g.json = None;
    g.yes(&[r#"http.request.body.json["email"] eq """#]);
}

#[test]
fn proof_fields_read_what_the_proxy_found() {
    let f = Fx::new();
    let mut r = f.req();
    let e = Expr::parse(
        "moat.clearance and not moat.good_bot and moat.fingerprint.consistent \
         and moat.fingerprint contains \"_y_\"",
    )
    .unwrap();
    assert!(!e.matches(&r));
    r.proof.clearance = true;
    let shape = crate::FixedShape {
        text: "1p12_alecsmd-o--_y_0011223344556677".into(),
        consistent: true,
    };
    r.proof.shape = &shape;
    assert!(e.matches(&r));
    r.proof.good_bot = true;
    assert!(!e.matches(&r));
    assert!(
        Expr::parse("moat.fingerprint eq 1").is_err(),
        "a string field"
    );
}

#[test]
fn bool_fields_bare_and_compared() {
    let mut f = Fx::new();
    f.yes(&[
        "ssl",
        "moat.secure_context",
        "not moat.banned",
        "ssl eq true",
        "moat.banned == false",
    ]);
    f.no(&["moat.banned", "ssl ne true"]);
    f.json = None;
    let e = Expr::parse("ssl and not moat.banned").unwrap();
    let mut r = f.req();
    assert!(e.matches(&r));
    r.banned = true;
    assert!(!e.matches(&r));
    r.banned = false;
    r.ssl = false;
    assert!(!e.matches(&r));
    r.secure_context = false;
    assert!(!Expr::parse("moat.secure_context").unwrap().matches(&r));
}

#[test]
fn string_operators_word_and_symbol_forms() {
    let f = Fx::new();
    f.yes(&[
        r#"http.host ne "other""#,
        r#"http.host != "other""#,
        r#"http.host lt "zzz" and http.host < "zzz""#,
        r#"http.host le "shop.example" and http.host <= "shop.example""#,
        r#"http.host gt "aaa" and http.host > "aaa""#,
        r#"http.host ge "shop.example" and http.host >= "shop.example""#,
        r#"http.user_agent contains "Chrome/""#,
        r#"http.user_agent matches "Chrome/1[0-9]{2}\\.""#,
        r#"http.user_agent ~ r"^Mozilla/\d""#,
        r#"http.host wildcard "*.EXAMPLE""#,
        r#"http.host strict wildcard "shop.*""#,
        r#"http.request.uri.path in {"/api/login" "/api/signup"}"#,
    ]);
    f.no(&[
        r#"http.host lt "shop.example""#,
        r#"http.host gt "shop.example""#,
        r#"http.user_agent contains "chrome/""#,
        r#"http.user_agent matches "^Chrome""#,
        r#"http.host strict wildcard "SHOP.*""#,
        r#"http.host wildcard "shop""#,
        r#"http.request.uri.path in {"/api" "/login"}"#,
        r#"http.request.uri.path in {}"#,
    ]);
}

#[test]
fn functions_and_int_operators() {
    let f = Fx::new();
    f.yes(&[
        r#"lower(http.user_agent) contains "chrome/""#,
        r#"upper(http.host) eq "SHOP.EXAMPLE""#,
        r#"lower(upper(http.host)) eq "shop.example""#,
        r#"starts_with(http.request.uri.path, "/api/")"#,
        r#"ends_with(lower(http.referer), "/cart")"#,
        r#"len(http.host) eq 12"#,
        r#"len(lower(http.host)) ne 3"#,
        r#"len(http.host) lt 13 and len(http.host) le 12 and len(http.host) gt 11"#,
        r#"len(http.host) ge 12 and len(http.host) in {1 5..20}"#,
        r#"len(http.request.uri.query) in {8}"#,
    ]);
    f.no(&[
        r#"starts_with(http.request.uri.path, "/API")"#,
        r#"ends_with(http.host, "shop")"#,
        r#"len(http.host) in {1..11 13}"#,
        r#"len(http.host) gt 12"#,
    ]);
}

#[test]
fn logic_and_precedence() {
    let f = Fx::new();
    // T = ssl, F = moat.banned. Each rule would flip under the wrong precedence.
    f.yes(&[
        "ssl or ssl and moat.banned",
        "ssl xor ssl or ssl",
        "ssl or ssl xor ssl",
        "ssl xor ssl and moat.banned",
        "moat.banned and moat.banned xor ssl",
        "ssl && !moat.banned || moat.banned",
        "ssl ^^ moat.banned",
        "ssl xor ssl xor ssl",
        "moat.banned xor ssl xor moat.banned xor moat.banned",
        "not not ssl",
        "(ssl or moat.banned) and ssl",
    ]);
    f.no(&[
        "not moat.banned and moat.banned",
        "! ssl",
        "ssl xor ssl",
        "ssl xor ssl xor ssl xor ssl",
        "(ssl or ssl) and moat.banned",
        "moat.banned or moat.banned",
    ]);
}

#[test]
fn comments_and_layout() {
    let f = Fx::new();
    f.yes(&[
        "# scripted login\nhttp.request.uri.path eq \"/api/login\" # the route\n\tand\r\n  ssl\n",
    ]);
}

#[test]
fn explain_quotes_actual_values() {
    let f = Fx::new();
    let e = Expr::parse(
        "http.user_agent contains \"Chrome\"\n and not  moat.banned and ip.src in {10.0.0.0/8}",
    )
    .unwrap();
    let lines = e.explain(&f.req());
    assert_eq!(
        lines,
        vec![
            "http.user_agent contains \"Chrome\" (http.user_agent = \"Mozilla/5.0 Chrome/126.0 Safari/537.36\") -> true",
            "moat.banned -> false",
            "not moat.banned -> true",
            "ip.src in {10.0.0.0/8} (ip.src = 10.1.2.3) -> true",
        ]
    );
    // Short-circuiting: the second leaf was never needed and is not reported.
    let e = Expr::parse(r#"len(http.request.headers["x-multi"]) eq 5 and ssl"#).unwrap();
    assert_eq!(
        e.explain(&f.req()),
        vec![
            r#"len(http.request.headers["x-multi"]) eq 5 (len(http.request.headers["x-multi"]) = 2) -> false"#
        ]
    );
    let e = Expr::parse(r#"any(lower(http.request.headers["x-multi"][*]) eq "three")"#).unwrap();
    let l = e.explain(&f.req());
    assert!(l[0].contains(r#"= ["one", "two"]) -> false"#), "{l:?}");
}

#[test]
fn expr_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Expr>();
    let e: Expr = "ssl".parse().unwrap();
    assert_eq!(format!("{e:?}"), r#"Expr("ssl")"#);
}

/// A regex that would compile to a huge program is refused at load, with the place and the
/// reason, instead of costing memory and time on every request; a large but real pattern is
/// fine.
#[test]
fn oversized_regexes_are_refused_at_load() {
    for src in [
        r#"http.user_agent matches "(a{1000}){1000}""#,
        r#"http.request.uri.path ~ r"\w{5000}\w{5000}""#,
        // Under the regex crate's own default limit (10 MB), over Moat's.
        r#"http.user_agent matches "(ab){60000}""#,
    ] {
        let e = Expr::parse(src).expect_err(src);
        let shown = e.render(src);
        assert!(shown.contains("invalid regex"), "{shown}");
        assert!(shown.contains("size limit"), "{shown}");
    }
    let words: Vec<String> = (0..500).map(|i| format!("bot{i}x")).collect();
    let big = format!(r#"http.user_agent matches "(?i)({})""#, words.join("|"));
    Expr::parse(&big).unwrap_or_else(|e| panic!("{}", e.render(&big)));
}
