use std::hint::black_box;
use moat_rules::Request;
fn main() {
    let headers = http::HeaderMap::new();
    let req = moat_rules::Request { method: "GET", uri: "/a", path: "/products/42/reviews", query: "", host: "h", headers: &headers,
        ip: "1.2.3.4".parse().unwrap(), prefix_lens: Default::default(), json: None, ssl: true, secure_context: true, banned: false };
    let lit: Box<[u8]> = b"/api/v1/resource5".to_vec().into();
    let mut fs: Vec<Box<dyn Fn(&Request<'_>) -> bool>> = Vec::new();
    for i in 0..100 {
        if i % 2 == 0 { let l = lit.clone(); fs.push(Box::new(move |r: &Request<'_>| r.path.as_bytes() == &*l)); }
        else { fs.push(Box::new(move |r: &Request<'_>| r.ssl != (i == 3))); }
    }
    let t = std::time::Instant::now();
    for _ in 0..1_000_000u64 { for f in &fs { black_box(f(black_box(&req))); } }
    println!("closures: {:.2} ns/leaf", t.elapsed().as_nanos() as f64 / 1e8);
    let es: Vec<moat_rules::Expr> = (0..100).map(|i| moat_rules::Expr::parse(if i % 2 == 0 { r#"http.request.uri.path eq "/api/v1/resource5""# } else { "ssl" }).unwrap()).collect();
    let t = std::time::Instant::now();
    for _ in 0..1_000_000u64 { for e in &es { black_box(e.matches(black_box(&req))); } }
    println!("exprs: {:.2} ns/leaf", t.elapsed().as_nanos() as f64 / 1e8);
}
