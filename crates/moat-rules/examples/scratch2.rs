use std::hint::black_box;
fn main() {
    let src = std::env::args().nth(1).unwrap();
    let headers = http::HeaderMap::new();
    let req = moat_rules::Request { method: "GET", uri: "/a", path: "/products/42/reviews", query: "", host: "h", headers: &headers,
        ip: "1.2.3.4".parse().unwrap(), prefix_lens: Default::default(), json: None, ssl: true, secure_context: true, banned: false };
    let e = moat_rules::Expr::parse(&src).unwrap();
    for _ in 0..100_000_000u64 { black_box(e.matches(black_box(&req))); }
}
