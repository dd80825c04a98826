//! Checks the hot-path promise: plain comparisons allocate nothing per request.
//!
//! A counting global allocator (per thread, so parallel tests do not disturb each other) wraps
//! the system one; this file is its own test binary so the allocator affects nothing else.

use http::{HeaderMap, HeaderValue};
use moat_rules::{Expr, Request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn plain_comparisons_do_not_allocate() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 Chrome/126.0 Safari/537.36"),
    );
    headers.insert(
        "accept-language",
        HeaderValue::from_static("en-US,en;q=0.9"),
    );
    headers.insert("cookie", HeaderValue::from_static("sid=abc"));
    let json = serde_json::json!({"email": "a@b.c"});
    let req = Request {
        method: "GET",
        uri: "/account/login?x=1",
        path: "/account/login",
        query: "x=1",
        host: "app.example",
        headers: &headers,
        ip: "10.1.2.3".parse().unwrap(),
        prefix_lens: moat_core::PrefixLens::default(),
        json: Some(&json),
        ssl: true,
        secure_context: true,
        banned: false,
        proof: Default::default(),
    };
    let rules: Vec<Expr> = [
        r#"http.request.uri.path eq "/account/login""#,
        r#"http.request.uri.path in {"/a" "/b" "/account/login"}"#,
        r#"starts_with(http.request.uri.path, "/account/") and ends_with(http.host, ".example")"#,
        r#"http.user_agent contains "Chrome" and http.user_agent matches r"Chrome/1\d\d""#,
        r#"http.host wildcard "*.EXAMPLE" or http.host strict wildcard "x*""#,
        r#"len(http.request.headers["sec-ch-ua"]) eq 0 and len(http.user_agent) gt 10"#,
        r#"any(http.request.headers.names[*] eq "cookie") and http.cookie contains "sid=""#,
        r#"http.request.headers["accept-language"][0] contains "en""#,
        "ip.src in {10.0.0.0/8 2001:db8::/32} and not moat.banned xor moat.banned",
        r#"ip.src.prefix eq "10.1.2.0/24""#,
        r#"http.request.body.json["email"] contains "@""#,
        // lower() need not copy a value that is already lower case.
        r#"lower(http.request.uri.path) eq "/account/login""#,
    ]
    .iter()
    .map(|s| Expr::parse(s).unwrap())
    .collect();
    // Regexes keep a lazily grown cache per thread; warm it before counting.
    let hits: Vec<bool> = rules.iter().map(|r| r.matches(&req)).collect();
    assert!(hits.iter().all(|&h| h), "{hits:?}");
    for r in &rules {
        let n = allocations(|| {
            std::hint::black_box(r.matches(&req));
        });
        assert_eq!(n, 0, "{} allocated {n} times", r.source());
    }
    // The counter itself works: lower() of a mixed-case value must copy.
    let copying = Expr::parse(r#"lower(http.user_agent) contains "chrome""#).unwrap();
    assert_eq!(allocations(|| assert!(copying.matches(&req))), 1);
}
