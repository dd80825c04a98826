//! The admin listener, served by moat-web on the HTTP shield's state (issue 2; moved out of
//! moat-http in issue 17).

#[path = "../../moat-http/tests/support/mod.rs"]
mod support;

use http::StatusCode;
use support::*;

/// The admin listener of a shield started alone (tests): moat-web on the same shield.
async fn web(e: &Env) -> (moat_web::Web, moat_listen::Shutdown) {
    let shutdown = moat_listen::Shutdown::new();
    let web = moat_web::start(&e.moat.live, &shutdown).await.unwrap();
    (web, shutdown)
}

/// Issue 2: /metrics on the admin listener needs the bearer token and counts decisions by
/// rule and action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_and_count_decisions() {
    let e = env(ACTIONS, |_| {}).await;
    let (web, stop) = web(&e).await;
    let admin = web.admin_addr.expect("the admin listener");
    assert_eq!(
        admin_get(admin, "/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin_get(admin, "/metrics", Some("0123456789abcdeX"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..2 {
        get(e.addr, "/blockme").await;
    }
    get(e.addr, "/logme").await;
    get(e.addr, "/decoyme").await;
    let r = admin_get(admin, "/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = r.text();
    for line in [
        "moat_http_decisions_total{rule=\"block-custom\",action=\"block\"} 2",
        "moat_http_decisions_total{rule=\"log-it\",action=\"log\"} 1",
        "moat_http_decisions_total{rule=\"decoy-static\",action=\"decoy\"} 1",
        "moat_http_requests_total 4",
        "moat_http_forwarded_total 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    }
    stop.drain(std::time::Duration::from_secs(5)).await;
    e.moat.shutdown().await;
}

/// Issue 17: the admin listener checks the guard at accept (moat-listen's tests show a gated
/// address closed), but never for loopback: a ban covering it must not lock the owner's own
/// `moat unban` out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_covering_loopback_never_locks_the_owner_out_of_the_admin_api() {
    let e = env(ACTIONS, |c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let (web, stop) = web(&e).await;
    let admin = web.admin_addr.unwrap();
    let engine = e.moat.shield.engine.clone();
    engine.ban(
        moat_core::Scope::Prefix("127.0.0.0/8".parse().unwrap()),
        None,
        "test",
        moat_core::Origin::Manual,
    );
    engine.flush();
    assert_eq!(
        admin_get(admin, "/healthz", None).await.status,
        StatusCode::OK,
        "loopback is never refused at the admin listener"
    );
    stop.drain(std::time::Duration::from_secs(5)).await;
    e.moat.shutdown().await;
}
