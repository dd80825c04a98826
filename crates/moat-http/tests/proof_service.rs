//! The proof service end to end without sockets: challenge, solve, verify, cookie, and what a
//! later request with that cookie is worth, over TLS and plain HTTP, across address families,
//! across a restart, and with the no-JS ticket.

use http::{header, HeaderMap, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use moat_http::proof::ProofService;
use moat_proof::challenge::solves;
use std::net::IpAddr;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

fn config(state: &std::path::Path, extra: &str) -> moat_config::Config {
    let file = state.join("moat.toml");
    std::fs::write(&file, extra).unwrap();
    let ov = moat_config::Overrides {
        upstream: Some("http://127.0.0.1:9".into()),
        presets: vec!["ghost".into()],
        state_dir: Some(state.display().to_string()),
        ..Default::default()
    };
    moat_config::load(Some(&file), &ov).unwrap()
}

fn parts(method: Method, uri: &str, cookie: Option<&str>) -> http::request::Parts {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::USER_AGENT, UA);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(()).unwrap().into_parts().0
}

async fn body_json(r: http::Response<moat_http::body::ProxyBody>) -> serde_json::Value {
    let b = r.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap()
}

/// Runs the page script's part: challenge, proof of work, verify. Returns the Set-Cookie value.
async fn earn(p: &ProofService, ip: IpAddr, tls: bool, jar: Option<&str>) -> String {
    let r = p
        .endpoint(&parts(Method::GET, "/.moat/challenge", jar), None, ip, tls)
        .unwrap();
    let c = body_json(r).await;
    assert_eq!(c["cleared"], false, "{c}");
    let challenge = c["challenge"].as_str().unwrap().to_string();
    let d = c["difficulty"].as_u64().unwrap() as u8;
    let nonce = (0u64..)
        .map(|n| n.to_string())
        .find(|n| solves(&challenge, n, d))
        .unwrap();
    let answer = serde_json::json!({ "challenge": challenge, "nonce": nonce }).to_string();
    let verify = parts(Method::POST, "/.moat/verify", jar);
    let r = p
        .endpoint(&verify, Some(answer.as_bytes()), ip, tls)
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    // The same answer buys nothing twice.
    let again = p
        .endpoint(&verify, Some(answer.as_bytes()), ip, tls)
        .unwrap();
    assert_eq!(again.status(), 403);
    cookie
}

fn jar(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

fn headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::USER_AGENT, HeaderValue::from_static(UA));
    h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
    h
}

#[tokio::test]
async fn over_tls_the_cookie_is_host_prefixed_and_secure() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProofService::new(&config(dir.path(), "")).unwrap();
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    let set = earn(&p, ip, true, None).await;
    assert!(set.starts_with("__Host-moat="), "{set}");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(
        !set.contains("Domain"),
        "__Host- cookies must not name a domain: {set}"
    );
    let now = moat_http::proof::now_secs();
    assert!(p.clearance(&headers(&jar(&set)), ip, true, now).is_some());
    assert!(p
        .clearance(
            &headers(&jar(&set)),
            "203.0.114.7".parse().unwrap(),
            true,
            now
        )
        .is_none());

    let plain = earn(&p, ip, false, None).await;
    assert!(
        plain.starts_with("moat_clearance=") && !plain.contains("Secure"),
        "{plain}"
    );
}

#[tokio::test]
async fn a_dual_stack_client_keeps_its_first_binding() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProofService::new(&config(dir.path(), "")).unwrap();
    let v4: IpAddr = "198.51.100.20".parse().unwrap();
    let v6: IpAddr = "2001:db8:1:2::20".parse().unwrap();
    let first = jar(&earn(&p, v4, false, None).await);
    let now = moat_http::proof::now_secs();
    assert!(p.clearance(&headers(&first), v6, false, now).is_none());
    // The phone moves to IPv6 and solves there, presenting its IPv4 token.
    let both = jar(&earn(&p, v6, false, Some(&first)).await);
    assert!(p.clearance(&headers(&both), v6, false, now).is_some());
    assert!(
        p.clearance(&headers(&both), v4, false, now).is_some(),
        "IPv4 binding lost"
    );
}

#[tokio::test]
async fn tokens_survive_a_restart_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let ip: IpAddr = "192.0.2.9".parse().unwrap();
    let cookie = {
        let p = ProofService::new(&cfg).unwrap();
        jar(&earn(&p, ip, false, None).await)
    };
    let p = ProofService::new(&cfg).unwrap();
    assert!(p
        .clearance(&headers(&cookie), ip, false, moat_http::proof::now_secs())
        .is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("proof.keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_nojs_ticket_needs_the_delay_and_redirects_only_locally() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProofService::new(&config(dir.path(), "[proof]\nnojs_delay = \"2s\"\n")).unwrap();
    let ip: IpAddr = "192.0.2.30".parse().unwrap();
    let h = headers("a=b");
    let (url, delay) = p.nojs_url(&h, ip, "//evil.example/x").unwrap();
    assert_eq!(delay, 2);
    assert!(url.ends_with("&r=/"), "an off-site return became {url}");
    let early = p
        .endpoint(&parts(Method::GET, &url, None), None, ip, false)
        .unwrap();
    assert_eq!(early.status(), 200);
    assert!(early.headers().get(header::SET_COOKIE).is_none());
    // A ticket is not a challenge: no nonce redeems it at /verify.
    let t = url.split("t=").nth(1).unwrap().split('&').next().unwrap();
    for nonce in ["0", "1", "12345"] {
        let answer = serde_json::json!({ "challenge": t, "nonce": nonce }).to_string();
        let r = p
            .endpoint(
                &parts(Method::POST, "/.moat/verify", None),
                Some(answer.as_bytes()),
                ip,
                false,
            )
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let (url, _) = p.nojs_url(&h, ip, "/account/x?y=1").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let ok = p
        .endpoint(&parts(Method::GET, &url, None), None, ip, false)
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()[header::LOCATION], "/account/x?y=1");
    let c = ok.headers()[header::SET_COOKIE].to_str().unwrap();
    let kind = p
        .clearance(&headers(&jar(c)), ip, false, moat_http::proof::now_secs())
        .unwrap()
        .kind;
    assert_eq!(kind, moat_proof::token::Kind::NoScript);
    // From another network the ticket is worthless.
    let (url2, _) = p.nojs_url(&h, ip, "/").unwrap();
    let other = p
        .endpoint(
            &parts(Method::GET, &url2, None),
            None,
            "192.0.3.30".parse().unwrap(),
            false,
        )
        .unwrap();
    assert_eq!(other.status(), 403);
}
