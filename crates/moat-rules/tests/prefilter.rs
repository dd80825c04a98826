//! The prefilter never drops a rule that matches, and it does drop the rules a request
//! plainly cannot match.

use http::{HeaderMap, HeaderValue};
use moat_rules::{Expr, Prefilter, ProofFields, Request};
use std::net::IpAddr;

/// Rules of every shape a guard is taken from, and of the shapes that must not give one
/// (negations, `or`, `xor`, `ne`, case mappings, lists).
fn rules() -> Vec<Expr> {
    let mut src: Vec<String> = vec![
        r#"http.request.method eq "POST" and starts_with(lower(http.request.uri.path), "/members/api/send-magic-link")"#.into(),
        r#"moat.banned and http.request.method eq "POST""#.into(),
        r#"http.request.method in {"PUT" "DELETE"}"#.into(),
        r#"http.request.method ne "GET""#.into(),
        r#"not http.request.method eq "GET""#.into(),
        r#"upper(http.request.method) eq "HEAD""#.into(),
        r#"http.request.uri.path eq "/private""#.into(),
        r#"lower(http.request.uri.path) eq "/private""#.into(),
        r#"http.request.uri.path in {"/a" "/private" "/b"} and http.request.method eq "GET""#.into(),
        r#"(http.request.uri.path eq "/a" or http.request.method eq "HEAD")"#.into(),
        r#"http.request.uri.path eq "/a" xor http.request.method eq "HEAD""#.into(),
        r#"lower(http.user_agent) contains "badbot""#.into(),
        r#"http.user_agent contains "BadBot""#.into(),
        r#"upper(http.user_agent) contains "CURL/""#.into(),
        r#"http.user_agent contains "python" and http.user_agent contains "requests""#.into(),
        r#"http.user_agent contains "bot" and http.referer contains "spam""#.into(),
        r#"not http.user_agent contains "Mozilla""#.into(),
        r#"http.user_agent eq """#.into(),
        r#"ip.src in {198.51.3.0/24 2001:db8:3::/48}"#.into(),
        r#"ip.src in {198.51.3.0/24 10.0.0.0/8} and not ssl"#.into(),
        r#"not ip.src in {198.51.3.0/24}"#.into(),
        r#"ip.src in {127.0.0.0/8} and ssl"#.into(),
        r#"ip.src eq 10.0.0.1"#.into(),
        r#"ssl and (http.request.method eq "POST" and http.request.uri.path eq "/a")"#.into(),
        r#"not moat.banned and http.request.uri.query contains "id=""#.into(),
        r#"moat.secure_context and len(http.request.headers["sec-fetch-mode"]) eq 0"#.into(),
        r#"http.request.headers["x-test"] contains "yes""#.into(),
        r#"any(lower(http.request.headers["x-test"][*]) contains "yes")"#.into(),
        r#"http.request.uri contains "?id=" and http.host eq "shop.example""#.into(),
        r#"http.cookie contains "session=""#.into(),
        r#"http.user_agent contains "" and http.request.method eq "HEAD""#.into(),
    ];
    for i in 0..80 {
        src.push(match i % 4 {
            0 => format!(r#"http.request.uri.path eq "/private-{i}""#),
            1 => format!(
                r#"http.request.method eq "POST" and starts_with(http.request.uri.path, "/api/v{i}/")"#
            ),
            2 => format!(r#"lower(http.user_agent) contains "badbot-{i}""#),
            _ => format!(r#"ip.src in {{198.51.{i}.0/24 2001:db8:{i}::/48}} and not ssl"#),
        });
    }
    src.iter()
        .map(|s| Expr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect()
}

struct Req {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: HeaderMap,
    ip: IpAddr,
    ssl: bool,
    banned: bool,
}

impl Req {
    fn view(&self) -> Request<'_> {
        Request {
            method: self.method,
            uri: self.path,
            path: self.path,
            query: self.query,
            host: "shop.example",
            headers: &self.headers,
            ip: self.ip,
            prefix_lens: Default::default(),
            json: None,
            ssl: self.ssl,
            secure_context: self.ssl,
            banned: self.banned,
            proof: ProofFields::default(),
        }
    }
}

fn headers(ua: &str, extra: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !ua.is_empty() {
        h.insert("user-agent", HeaderValue::from_str(ua).unwrap());
    }
    for (k, v) in extra {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

/// A plain-HTTP request with no query and no ban.
fn plain(method: &'static str, path: &'static str, ua: &str, ip: &str) -> Req {
    Req {
        method,
        path,
        query: "",
        headers: headers(ua, &[]),
        ip: ip.parse().unwrap(),
        ssl: false,
        banned: false,
    }
}

#[test]
fn every_matching_rule_is_a_candidate() {
    let rules = rules();
    let pre = Prefilter::new(&rules);
    let methods = ["GET", "POST", "HEAD", "PUT", "get"];
    let paths = [
        "/",
        "/private",
        "/Private",
        "/private-4",
        "/a",
        "/api/v1/x",
        "/members/api/send-magic-link/",
    ];
    let uas = [
        "",
        "BadBot-2/1.0",
        "xbadbot-6",
        "curl/8.5",
        "python-requests/2.31",
        "Mozilla/5.0 Chrome/126",
        "bot",
    ];
    let extras: [&[(&str, &str)]; 3] = [
        &[],
        &[("referer", "http://spam.example/"), ("x-test", "YES")],
        &[("cookie", "a=1"), ("cookie", "session=2"), ("x-test", "no")],
    ];
    let ips = [
        "127.0.0.1",
        "198.51.3.7",
        "::ffff:198.51.3.7",
        "2001:db8:3::1",
        "10.0.0.1",
        "198.51.7.9",
    ];
    let (mut checked, mut matched, mut skipped) = (0, 0, 0);
    for method in methods {
        for path in paths {
            for ua in uas {
                for extra in extras {
                    for ip in ips {
                        for (ssl, banned) in [(false, false), (true, true)] {
                            let r = Req {
                                method,
                                path,
                                query: if ssl { "id=3" } else { "" },
                                headers: headers(ua, extra),
                                ip: ip.parse().unwrap(),
                                ssl,
                                banned,
                            };
                            let v = r.view();
                            let c = pre.candidates(&v);
                            for (i, e) in rules.iter().enumerate() {
                                checked += 1;
                                if e.matches(&v) {
                                    matched += 1;
                                    assert!(
                                        c.contains(i),
                                        "rule {i} `{}` matches {method} {path} ua={ua:?} ip={ip} ssl={ssl} but was filtered out",
                                        e.source()
                                    );
                                } else if !c.contains(i) {
                                    skipped += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // The sweep exercised both sides: rules that matched, and many that were never evaluated.
    assert!(matched > 1000, "{matched} of {checked}");
    assert!(skipped > checked / 2, "{skipped} of {checked}");
}

#[test]
fn a_plain_get_leaves_nothing_to_evaluate() {
    // The bench's policy shape: exact paths, POST routes, user-agent words, address blocks.
    let rules: Vec<Expr> = rules().split_off(31);
    let pre = Prefilter::new(&rules);
    let r = plain("GET", "/", "Mozilla/5.0 Chrome/126", "127.0.0.1");
    assert!(pre.candidates(&r.view()).is_empty());
    // Each kind of guard lets through exactly the rule it names.
    let cases: [(&str, &str, &str, &str, usize); 4] = [
        ("GET", "/private-4", "", "127.0.0.1", 4),
        ("POST", "/api/v5/x", "", "127.0.0.1", 5),
        ("GET", "/", "x BADBOT-6 y", "127.0.0.1", 6),
        ("GET", "/", "", "198.51.7.1", 7),
    ];
    for (method, path, ua, ip, want) in cases {
        let r = plain(method, path, ua, ip);
        let got: Vec<usize> = pre.candidates(&r.view()).iter().collect();
        // POST rules all pass the method guard; only the one whose path fits then matches.
        if method == "POST" {
            assert!(got.contains(&want), "{got:?}");
            assert_eq!(got.len(), 20, "{got:?}");
        } else {
            assert_eq!(got, vec![want], "{method} {path} {ua} {ip}");
        }
    }
}

#[test]
fn more_than_256_rules() {
    let rules: Vec<Expr> = (0..300)
        .map(|i| Expr::parse(&format!(r#"http.request.uri.path eq "/p{i}""#)).unwrap())
        .chain([Expr::parse(r#"http.user_agent contains "x""#).unwrap()])
        .collect();
    let pre = Prefilter::new(&rules);
    let r = plain("GET", "/p299", "x", "127.0.0.1");
    let got: Vec<usize> = pre.candidates(&r.view()).iter().collect();
    assert_eq!(got, vec![299, 300]);
}
