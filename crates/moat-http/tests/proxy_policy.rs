//! Moat's HTTP policy at the proxy, end to end: actions (block, decoy, learned decoy, tarpit,
//! challenge, log, allow, skip), rate limits by every key, bans and the admin metrics, against a
//! real upstream with Moat started in-process on port 0.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use moat_core::{Origin, Scope};
use support::*;

/// Issue 2: `block` answers with its own status and body, `decoy` with the static decoy, and
/// `challenge` (until the browser proof exists) as its decoy fallback; none reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_decoy_and_challenge_answer_without_the_upstream() {
    let e = env(ACTIONS, |_| {}).await;
    let r = get(e.addr, "/blockme").await;
    assert_eq!(r.status.as_u16(), 451);
    assert_eq!(r.text(), "go away\n");

    for path in ["/decoyme", "/challenge"] {
        let r = get(e.addr, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.text(), "static decoy", "{path}");
        assert_eq!(r.header("x-decoy"), Some("1"), "{path}");
    }
    assert_eq!(
        e.up.heads(),
        0,
        "terminal actions must not reach the upstream"
    );
    e.moat.shutdown().await;
}

/// Issue 2: a learned decoy records the upstream's first genuine success on its route and
/// replays it (status, body, stable headers; no Set-Cookie) to matching requests, also after
/// a restart on the same state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_decoy_replays_the_first_success_and_persists() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&up, dir.path(), ACTIONS);
    let moat = start(cfg.clone()).await;
    let addr = moat.http_addrs[0];

    let real = send(
        addr,
        request("POST", "/created", &[("user-agent", "person")], b"{}"),
    )
    .await;
    assert_eq!(real.status, StatusCode::CREATED);
    assert_eq!(real.text(), "Created.");
    assert_eq!(real.header("x-app"), Some("1"));
    let etag = real.header("etag").expect("etag").to_string();
    assert!(real.header("set-cookie").is_some());
    assert!(real.header("date").is_some());
    assert_eq!(up.with_path("/created").len(), 1);

    let check_decoy = |d: &Resp| {
        assert_eq!(d.status, StatusCode::CREATED, "{}", d.text());
        assert_eq!(d.text(), "Created.");
        assert_eq!(d.header("x-app"), Some("1"));
        assert_eq!(d.header("etag"), Some(etag.as_str()));
        assert!(
            d.header("set-cookie").is_none(),
            "a session cookie was replayed"
        );
    };
    let bot = [("user-agent", "bot")];
    let d = send(addr, request("POST", "/created", &bot, b"{}")).await;
    check_decoy(&d);
    assert_eq!(
        up.with_path("/created").len(),
        1,
        "the decoy reached the upstream"
    );
    moat.shutdown().await;

    let moat = start(cfg).await;
    let addr = moat.http_addrs[0];
    let d = send(addr, request("POST", "/created", &bot, b"{}")).await;
    check_decoy(&d);
    assert_eq!(up.with_path("/created").len(), 1);
    moat.shutdown().await;
}

/// Issue 2: a tarpit holds a request for its delay, but only up to
/// `tarpit_max_concurrent`; over the cap it answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarpit_delays_up_to_its_concurrency_cap() {
    let e = env(ACTIONS, |c| c.limits.tarpit_max_concurrent = 1).await;
    let addr = e.addr;
    let timed = || async move {
        let t = Instant::now();
        let r = get(addr, "/tarpit").await;
        (t.elapsed(), r)
    };
    let (a, b) = tokio::join!(tokio::spawn(timed()), tokio::spawn(timed()));
    let (a, b) = (a.unwrap(), b.unwrap());
    for (_, r) in [&a, &b] {
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.text(), "tarpitted\n");
    }
    let (fast, slow) = if a.0 < b.0 { (a.0, b.0) } else { (b.0, a.0) };
    assert!(
        slow >= Duration::from_secs(1),
        "tarpitted for only {slow:?}"
    );
    assert!(
        fast < Duration::from_millis(900),
        "the overflow request waited {fast:?}"
    );
    assert_eq!(e.moat.shield.metrics.tarpit_overflow.get(), 1);
    assert_eq!(e.up.heads(), 0);
    e.moat.shutdown().await;
}

/// Issue 2: `log` goes on to the upstream; `allow` skips the rate limits; `skip` stops the
/// rules but the rate limits still apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_allow_and_skip_semantics() {
    let e = env(ACTIONS, |_| {}).await;
    let r = get(e.addr, "/logme").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "upstream ok");
    assert_eq!(e.up.with_path("/logme").len(), 1);

    // allow: the friend is never limited; others are after one request.
    let friend = [("user-agent", "friend")];
    for _ in 0..3 {
        assert_eq!(
            get_with(e.addr, "/allowtest", &friend).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(get(e.addr, "/allowtest").await.status, StatusCode::OK);
    let r = get(e.addr, "/allowtest").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text(), "limited allowtest\n");
    assert_eq!(
        get_with(e.addr, "/allowtest", &friend).await.status,
        StatusCode::OK
    );

    // skip: the block rule after it is not evaluated, but the limit still counts.
    let skipper = [("user-agent", "skipper")];
    let r = get(e.addr, "/skiptest").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "blocked by rule\n");
    let r = get_with(e.addr, "/skiptest", &skipper).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = get_with(e.addr, "/skiptest", &skipper).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.text(), "limited skiptest\n");
    assert_eq!(e.up.with_path("/skiptest").len(), 1);
    e.moat.shutdown().await;
}

const LIMITS: &str = r#"
[[decoy]]
id = "email-decoy"
status = 201
body = "Created."

[[rate_limit]]
id = "per-api-key"
expression = 'http.request.uri.path eq "/rl/header"'
key = "header:x-api-key"
requests = 2
period = "1h"
action = "block"
status = 429
body = "api key limit\n"

[[rate_limit]]
id = "per-email"
expression = 'http.request.uri.path eq "/rl/email"'
key = "json:email"
requests = 2
period = "1h"
action = "decoy"
decoy = "email-decoy"

[[rate_limit]]
id = "per-domain"
expression = 'http.request.uri.path eq "/rl/domain"'
key = "json_domain:email"
requests = 2
period = "1h"
action = "block"
status = 429
body = "domain limit\n"

[[rate_limit]]
id = "per-prefix"
expression = 'http.request.uri.path eq "/rl/prefix"'
key = "prefix"
requests = 2
period = "1h"
action = "block"
status = 429
body = "prefix limit\n"

[[rate_limit]]
id = "global"
expression = 'http.request.uri.path eq "/rl/global"'
key = "global"
requests = 2
period = "1h"
action = "block"
status = 503
body = "global limit\n"
"#;

/// Issue 2: rate limits keyed by header, JSON email (case-insensitive), email domain,
/// network prefix and globally; requests without the key are not limited by that limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_by_key() {
    let e = env(LIMITS, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.server.client_ip_headers = vec![moat_config::ClientIpHeader::FlyClientIp];
    })
    .await;
    let a = e.addr;

    // header:x-api-key
    let k1 = [("x-api-key", "k1")];
    assert_eq!(get_with(a, "/rl/header", &k1).await.status, StatusCode::OK);
    assert_eq!(get_with(a, "/rl/header", &k1).await.status, StatusCode::OK);
    let r = get_with(a, "/rl/header", &k1).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text(), "api key limit\n");
    assert_eq!(
        get_with(a, "/rl/header", &[("x-api-key", "k2")])
            .await
            .status,
        StatusCode::OK
    );
    for _ in 0..4 {
        assert_eq!(
            get(a, "/rl/header").await.status,
            StatusCode::OK,
            "no key, no limit"
        );
    }

    // json:email, lowercased: A@X.org and a@x.org share one limit.
    let email = |v: &str| serde_json::json!({ "email": v });
    assert_eq!(
        post_json(a, "/rl/email", &email("A@X.org")).await.text(),
        "upstream ok"
    );
    assert_eq!(
        post_json(a, "/rl/email", &email("a@x.org")).await.text(),
        "upstream ok"
    );
    let r = post_json(a, "/rl/email", &email("a@X.ORG")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.text(), "Created.");
    assert_eq!(
        post_json(a, "/rl/email", &email("b@x.org")).await.text(),
        "upstream ok"
    );
    for _ in 0..4 {
        let r = post_json(a, "/rl/email", &serde_json::json!({ "name": "no email" })).await;
        assert_eq!(r.text(), "upstream ok", "no email, no limit");
    }
    assert_eq!(e.up.with_path("/rl/email").len(), 7);

    // json_domain:email
    for who in ["a@corp.example", "b@CORP.example"] {
        let r = post_json(a, "/rl/domain", &email(who)).await;
        assert_eq!(r.status, StatusCode::OK, "{who}");
    }
    let r = post_json(a, "/rl/domain", &email("c@corp.example")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text(), "domain limit\n");
    assert_eq!(
        post_json(a, "/rl/domain", &email("c@other.example"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post_json(a, "/rl/domain", &serde_json::json!({}))
            .await
            .status,
        StatusCode::OK
    );

    // prefix: two addresses of one /24 share a limit; another network does not.
    let from = |ip: &'static str| [("fly-client-ip", ip)];
    assert_eq!(
        get_with(a, "/rl/prefix", &from("198.51.100.1"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(a, "/rl/prefix", &from("198.51.100.2"))
            .await
            .status,
        StatusCode::OK
    );
    let r = get_with(a, "/rl/prefix", &from("198.51.100.3")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text(), "prefix limit\n");
    assert_eq!(
        get_with(a, "/rl/prefix", &from("203.0.113.1")).await.status,
        StatusCode::OK
    );

    // global: everyone together.
    assert_eq!(
        get_with(a, "/rl/global", &from("192.0.2.1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(a, "/rl/global", &from("203.0.113.50"))
            .await
            .status,
        StatusCode::OK
    );
    let r = get_with(a, "/rl/global", &from("198.18.0.1")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "global limit\n");
    e.moat.shutdown().await;
}

async fn flush(e: &Env) {
    let engine = e.moat.shield.engine.clone();
    tokio::task::spawn_blocking(move || engine.flush())
        .await
        .unwrap();
}

/// Issue 2: a manual ban is enforced at the proxy (default 403) and an allow lifts it; a rule
/// with `offence = true` bans the client after `bans.offences_to_ban` matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_enforced_and_offences_escalate() {
    let e = env("", |_| {}).await;
    assert_eq!(get(e.addr, "/").await.status, StatusCode::OK);
    e.moat.shield.engine.ban(
        Scope::parse("127.0.0.1").unwrap(),
        None,
        "t",
        Origin::Manual,
    );
    flush(&e).await;
    let r = get(e.addr, "/while-banned").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "Forbidden\n");
    assert!(e.up.with_path("/while-banned").is_empty());
    e.moat.shield.engine.allow("127.0.0.1/32".parse().unwrap());
    flush(&e).await;
    assert_eq!(get(e.addr, "/after-allow").await.status, StatusCode::OK);
    e.moat.shutdown().await;

    let rules = r#"
[[rule]]
id = "evil"
expression = 'http.request.uri.path eq "/evil"'
action = "block"
status = 400
body = "evil\n"
offence = true
"#;
    let e = env(rules, |c| c.bans.offences_to_ban = 3).await;
    for _ in 0..2 {
        assert_eq!(get(e.addr, "/evil").await.status, StatusCode::BAD_REQUEST);
    }
    flush(&e).await;
    assert_eq!(
        get(e.addr, "/").await.status,
        StatusCode::OK,
        "banned too early"
    );
    assert_eq!(get(e.addr, "/evil").await.status, StatusCode::BAD_REQUEST);
    flush(&e).await;
    let r = get(e.addr, "/").await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "not banned after 3 offences"
    );
    assert_eq!(r.text(), "Forbidden\n");
    assert_eq!(e.up.with_path("/").len(), 1);
    e.moat.shutdown().await;
}

/// Issue 2: a response too large to become a decoy (over 256 KiB) is not learned, and the
/// client that triggered it still receives all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_success_is_not_learned_and_not_truncated() {
    const BIG: &str = r#"
[[decoy]]
id = "big"
status = 201
body = "static"
learn = 'http.request.uri.path eq "/stream"'

[[rule]]
id = "decoy-bots"
expression = 'http.user_agent eq "bot"'
action = "decoy"
decoy = "big"
"#;
    let e = env(BIG, |_| {}).await;
    let r = get(e.addr, "/stream").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body.len(),
        STREAM_CHUNKS * STREAM_CHUNK,
        "the response was truncated"
    );
    assert_eq!(r.body, pattern(STREAM_CHUNKS * STREAM_CHUNK, 7));
    let d = get_with(e.addr, "/stream", &[("user-agent", "bot")]).await;
    assert_eq!(
        (d.status, d.text()),
        (StatusCode::CREATED, "static".to_string())
    );
}

/// Issue 2: a request stopped by a later limit does not spend its allowance on earlier ones
/// (a person caught by a global limit keeps their per-email budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_request_spends_no_other_limit() {
    const TWO: &str = r#"
[[rate_limit]]
id = "per-email"
key = "json:email"
requests = 2
period = "1h"
action = "block"
status = 429
body = "email"

[[rate_limit]]
id = "per-key"
key = "header:x-k"
requests = 1
period = "1h"
action = "block"
status = 429
body = "key"
"#;
    let e = env(TWO, |_| {}).await;
    let body = br#"{"email":"e@example.org"}"#;
    let post = |k: &'static str| {
        request(
            "POST",
            "/rl/two",
            &[("x-k", k), ("content-type", "application/json")],
            body,
        )
    };
    assert_eq!(send(e.addr, post("a")).await.status, StatusCode::OK);
    for _ in 0..2 {
        let r = send(e.addr, post("a")).await;
        assert_eq!(
            (r.status, r.text()),
            (StatusCode::TOO_MANY_REQUESTS, "key".into())
        );
    }
    // The per-email limit (2 per hour) was spent once, by the first request only.
    assert_eq!(send(e.addr, post("b")).await.status, StatusCode::OK);
    let r = send(e.addr, post("c")).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::TOO_MANY_REQUESTS, "email".into())
    );
}
