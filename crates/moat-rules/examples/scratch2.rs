use std::hint::black_box;
fn main() {
    let src = std::env::args().nth(1).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", http::HeaderValue::from_static("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"));
    let req = moat_rules::Request { method: "GET", uri: "/a", path: "/products/42/reviews", query: "", host: "h", headers: &headers,
        ip: "1.2.3.4".parse().unwrap(), prefix_lens: Default::default(), json: None, ssl: true, secure_context: true, banned: false };
    let e = moat_rules::Expr::parse(&src).unwrap();
    for _ in 0..10_000_000u64 { black_box(e.matches(black_box(&req))); }
}
