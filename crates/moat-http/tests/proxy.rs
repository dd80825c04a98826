//! Moat's HTTP reverse proxy, end to end: a real upstream, Moat started in-process on port 0,
//! and real clients (hyper and raw TCP). Each test names the issue it covers.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use moat_core::{Origin, Scope};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One upstream, one Moat, one temp dir; dropped together at the end of a test.
struct Env {
    up: Upstream,
    moat: moat_http::app::Running,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn env(rules: &str, tweak: impl FnOnce(&mut moat_config::Config)) -> Env {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&up, dir.path(), rules);
    tweak(&mut cfg);
    let moat = start(cfg).await;
    let addr = moat.http_addrs[0];
    Env {
        up,
        moat,
        addr,
        _dir: dir,
    }
}

/// Issue 1: HTTP/1.1 and HTTP/2 (h2c, prior knowledge) clients are both proxied, and the
/// upstream always receives HTTP/1.1 with a Host header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_clients_reach_an_http1_upstream_with_host() {
    let e = env("", |_| {}).await;

    let r = get(e.addr, "/via-h1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, Version::HTTP_11);
    assert_eq!(r.text(), "upstream ok");
    let seen = e.up.last("/via-h1");
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.header("host"), Some("moat.test"));

    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let uri: http::Uri = format!("http://{}/via-h2?x=1", e.addr).parse().unwrap();
    let resp = tokio::time::timeout(STEP, client.get(uri))
        .await
        .expect("h2 response in time")
        .expect("h2c request through Moat");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"upstream ok");
    let seen = e.up.last("/via-h2");
    assert_eq!(seen.uri, "/via-h2?x=1");
    assert_eq!(seen.version, Version::HTTP_11, "upstream must get HTTP/1.1");
    let authority = e.addr.to_string();
    assert_eq!(
        seen.header("host"),
        Some(authority.as_str()),
        "the h2 :authority becomes the upstream's Host"
    );
    assert_eq!(seen.header_all("host").len(), 1);

    // Even an HTTP/1.0 request without Host reaches the upstream as HTTP/1.1 with a Host.
    let resp = raw(e.addr, b"GET /via-h10 HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&resp), Some(200), "{resp}");
    let seen = e.up.last("/via-h10");
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.header_all("host").len(), 1, "{:?}", seen.headers);
    e.moat.shutdown().await;
}

/// Issue 2: streaming both ways. A 20 MB chunked upload reaches the upstream byte-exact, a
/// multi-MB streamed response arrives complete, and the first response chunk reaches the
/// client while the upstream is still holding back the rest (no full buffering).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_without_buffering() {
    let e = env("", |c| c.limits.max_body_bytes = 64 * 1024 * 1024).await;

    // Upload: 20 MB in 64 KiB chunks, no Content-Length (chunked).
    const UP_LEN: usize = 20 * 1024 * 1024;
    let data = Bytes::from(pattern(UP_LEN, 3));
    let (tx, body) = channel_body(8);
    let feed = data.clone();
    tokio::spawn(async move {
        for off in (0..UP_LEN).step_by(64 * 1024) {
            let end = (off + 64 * 1024).min(UP_LEN);
            if tx.send(feed.slice(off..end)).await.is_err() {
                return;
            }
        }
    });
    let req = http::Request::post("/upload")
        .header("host", "moat.test")
        .body(body)
        .unwrap();
    let r = send(e.addr, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = e.up.last("/upload");
    assert!(seen.body_complete);
    assert_eq!(seen.body.len(), UP_LEN, "upload length at the upstream");
    assert!(seen.body == data[..], "upload bytes differ at the upstream");
    assert!(
        seen.header("content-length").is_none()
            || seen.header("content-length") == Some("20971520")
    );

    // Download: STREAM_CHUNKS x STREAM_CHUNK bytes, streamed by the upstream.
    let r = get(e.addr, "/stream").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), STREAM_CHUNKS * STREAM_CHUNK);
    assert!(r.body == pattern(STREAM_CHUNKS * STREAM_CHUNK, 7)[..]);

    // First chunk before the upstream finished.
    let gate = e.up.gate();
    let tcp = TcpStream::connect(e.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/gated")
        .header("host", "moat.test")
        .body(full(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("the response head arrives while the upstream still holds the body")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk must arrive before the upstream finishes (Moat buffers?)")
        .expect("a frame")
        .expect("no error");
    assert_eq!(
        frame.into_data().unwrap(),
        Bytes::from_static(b"first-chunk")
    );
    assert_eq!(e.up.gated_done(), 0, "the upstream had not finished yet");
    gate.send(()).unwrap();
    let rest = tokio::time::timeout(STEP, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(&rest[..], b"the-rest");
    e.moat.shutdown().await;
}

/// Issue 3: a WebSocket upgrade passes through Moat: 101, then bytes both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_spliced_through() {
    let e = env("", |_| {}).await;
    let mut s = TcpStream::connect(e.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: moat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(raw_status(&head), Some(101), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(lower.contains("sec-websocket-accept:"), "{head}");

    let seen = e.up.last("/ws");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert!(seen
        .header("connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("upgrade")));
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert_eq!(seen.header("sec-websocket-version"), Some("13"));

    for msg in [
        &b"hello through moat"[..],
        b"\x81\x05second",
        &[0u8; 3000][..],
    ] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(STEP, s.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(back, msg);
    }
    drop(s);
    e.moat.shutdown().await;
}

/// Issue 4: hop-by-hop headers (RFC 9110 7.6.1), including those the Connection header names,
/// do not cross Moat in either direction; end-to-end headers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let e = env("", |_| {}).await;
    let r = get_with(
        e.addr,
        "/hop",
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "x"),
            ("te", "trailers"),
            ("x-end", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = e.up.last("/hop");
    for h in ["x-secret", "keep-alive", "proxy-connection", "te"] {
        assert!(
            seen.header(h).is_none(),
            "upstream got hop-by-hop {h}: {:?}",
            seen.headers
        );
    }
    if let Some(c) = seen.header("connection") {
        let c = c.to_ascii_lowercase();
        assert!(!c.contains("x-secret"), "connection forwarded: {c}");
    }
    assert_eq!(seen.header("x-end"), Some("1"));

    for h in ["x-up-secret", "keep-alive", "proxy-connection"] {
        assert!(
            r.header(h).is_none(),
            "client got upstream hop-by-hop {h}: {:?}",
            r.headers
        );
    }
    if let Some(c) = r.header("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-up-secret"),
            "connection: {c}"
        );
    }
    assert_eq!(r.header("x-end-resp"), Some("1"));
    assert_eq!(r.text(), "hop");
    e.moat.shutdown().await;
}

/// Issue 5: Moat keeps upstream connections alive: 30 sequential requests (each on a new
/// client connection) use at most 2 upstream TCP connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled() {
    let e = env("", |_| {}).await;
    for i in 0..30 {
        let r = get(e.addr, &format!("/pool/{i}")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(e.up.heads(), 30);
    let n = e.up.connections();
    assert!(n <= 2, "upstream accepted {n} connections for 30 requests");
    e.moat.shutdown().await;
}

/// Issue 6: forwarding headers from an untrusted client are replaced by Moat's own; a trusted
/// proxy's Fly-Client-IP becomes the client address, for the upstream and for the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_rewritten_and_trusted_only_from_proxies() {
    let rules = r#"
[[rule]]
id = "block-that-ip"
expression = 'ip.src eq 203.0.113.9 and http.request.uri.path eq "/ip-rule"'
action = "block"
"#;
    let spoof = [
        ("x-forwarded-for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
        ("fly-client-ip", "6.6.6.6"),
        ("cf-connecting-ip", "6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
    ];

    // Untrusted (no trusted proxies): every spoofed header is replaced.
    let e = env(rules, |_| {}).await;
    let r = get_with(e.addr, "/fwd", &spoof).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = e.up.last("/fwd");
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    let fwd = seen.header_all("forwarded");
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert!(fwd[0].starts_with("for=127.0.0.1;"), "{fwd:?}");
    for h in ["fly-client-ip", "cf-connecting-ip", "x-real-ip"] {
        assert!(seen.header(h).is_none(), "{h} reached the upstream");
    }
    assert!(!format!("{:?}", seen.headers).contains("6.6.6.6"));
    // The rule keyed on the trusted address does not fire for a spoofed header.
    let r = get_with(e.addr, "/ip-rule", &[("fly-client-ip", "203.0.113.9")]).await;
    assert_eq!(r.status, StatusCode::OK);
    e.moat.shutdown().await;

    // Trusted proxy at 127.0.0.1: its Fly-Client-IP is the client.
    let e = env(rules, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let r = get_with(e.addr, "/fwd", &[("fly-client-ip", "203.0.113.9")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = e.up.last("/fwd");
    assert_eq!(seen.header_all("x-forwarded-for"), ["203.0.113.9"]);
    assert!(seen
        .header("forwarded")
        .is_some_and(|f| f.starts_with("for=203.0.113.9;")));
    assert!(seen.header("fly-client-ip").is_none());
    let r = get_with(e.addr, "/ip-rule", &[("fly-client-ip", "203.0.113.9")]).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the rule sees the proxied address"
    );
    let r = get_with(e.addr, "/ip-rule", &[("fly-client-ip", "203.0.113.10")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(e.up.with_path("/ip-rule").len(), 1);
    e.moat.shutdown().await;
}

/// Issue 7: a PROXY protocol v1 header from a trusted peer names the client; from an
/// untrusted peer it is never honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_only_from_trusted_peers() {
    let req = b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n\
                GET /pp HTTP/1.1\r\nHost: moat.test\r\nConnection: close\r\n\r\n";

    let e = env("", |c| {
        c.server.proxy_protocol = true;
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let resp = raw(e.addr, req).await;
    assert_eq!(raw_status(&resp), Some(200), "{resp}");
    assert_eq!(
        e.up.last("/pp").header_all("x-forwarded-for"),
        ["198.51.100.7"]
    );
    e.moat.shutdown().await;

    let e = env("", |c| {
        c.server.proxy_protocol = true;
        c.server.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let resp = raw(e.addr, req).await;
    let status = raw_status(&resp);
    for r in e.up.records() {
        assert!(
            !format!("{:?}", r.headers).contains("198.51.100.7"),
            "a spoofed PROXY header reached the upstream: {:?}",
            r.headers
        );
        assert_eq!(r.header_all("x-forwarded-for"), ["127.0.0.1"]);
    }
    assert!(
        status == Some(400) || !e.up.records().is_empty(),
        "untrusted PROXY header: {resp}"
    );
    // A plain request from the untrusted peer still works.
    assert_eq!(get(e.addr, "/plain").await.status, StatusCode::OK);
    e.moat.shutdown().await;
}

/// Issue 8: size limits and malformed requests: 431 for a huge header block, 413 for a
/// declared or streamed body over the cap (the upstream never gets a complete body), 400 for a
/// garbage request line without harming the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_431_413_400() {
    let e = env("", |c| {
        c.limits.max_header_bytes = 8192;
        c.limits.max_body_bytes = 1024 * 1024;
    })
    .await;

    // Header block over max_header_bytes.
    let mut big = b"GET /big-header HTTP/1.1\r\nHost: moat.test\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 12_000));
    big.extend_from_slice(b"\r\n\r\n");
    let resp = raw(e.addr, &big).await;
    assert_eq!(raw_status(&resp), Some(431), "{resp:?}");
    assert!(e.up.with_path("/big-header").is_empty());

    // Declared Content-Length over max_body_bytes: refused before reading or forwarding.
    let mut s = TcpStream::connect(e.addr).await.unwrap();
    s.write_all(b"POST /declared HTTP/1.1\r\nHost: moat.test\r\nContent-Length: 2097152\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(raw_status(&head), Some(413), "{head}");
    drop(s);
    assert_eq!(e.up.heads(), 0, "the upstream saw the oversized request");

    // Chunked upload over max_body_bytes: an error or 413, and no complete body upstream.
    let (tx, body) = channel_body(4);
    tokio::spawn(async move {
        for _ in 0..32 {
            if tx.send(Bytes::from(vec![b'z'; 64 * 1024])).await.is_err() {
                return;
            }
        }
    });
    let req = http::Request::post("/chunked-too-big")
        .header("host", "moat.test")
        .body(body)
        .unwrap();
    // An error means the connection was cut mid-upload, which is also a refusal.
    if let Ok(r) = try_send(e.addr, req).await {
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in e.up.with_path("/chunked-too-big") {
        assert!(
            !r.body_complete,
            "the upstream received a complete body of {} bytes",
            r.body.len()
        );
        assert!(r.body.len() as u64 <= 1024 * 1024 + 64 * 1024);
    }

    // Garbage request line: 400, and the next connection is served.
    let resp = raw(e.addr, b"\x01\x02\x03 nonsense\r\n\r\n").await;
    assert_eq!(raw_status(&resp), Some(400), "{resp:?}");
    let r = get(e.addr, "/after-garbage").await;
    assert_eq!(r.status, StatusCode::OK);
    e.moat.shutdown().await;
}

/// Opens a connection, writes `first`, then (if `trickle`) one header byte every 300 ms, and
/// reads until Moat closes it. Returns whether it was closed within 8 s, how long it lived and
/// what Moat sent.
async fn hold_open(
    addr: SocketAddr,
    first: &'static [u8],
    trickle: bool,
) -> (bool, Duration, String) {
    let start = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    w.write_all(first).await.unwrap();
    let writer = tokio::spawn(async move {
        if !trickle {
            // Keep the write half open without sending anything.
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(w);
            return;
        }
        for b in b"X-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
        {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    writer.abort();
    (
        closed,
        start.elapsed(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

/// Issue 9: slow-loris. Connections trickling a header byte every 300 ms are closed by the
/// header timeout, and silent or idle keep-alive connections by the idle timeout, while
/// normal requests keep being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_cut() {
    let e = env("", |c| {
        c.limits.header_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = e.addr;
    let slow: Vec<_> = (0..20)
        .map(|_| tokio::spawn(hold_open(addr, b"GET / HTTP/1.1\r\nHost: x\r\n", true)))
        .collect();
    let silent: Vec<_> = (0..5)
        .map(|_| tokio::spawn(hold_open(addr, b"", false)))
        .collect();
    let idle: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(hold_open(
                addr,
                b"GET /keep-alive HTTP/1.1\r\nHost: x\r\n\r\n",
                false,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let r = get(addr, &format!("/normal/{i}")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    for t in slow {
        let (closed, took, got) = t.await.unwrap();
        assert!(
            closed,
            "a slow connection was still open after 8 s (got {got:?})"
        );
        assert!(
            took <= Duration::from_secs(5),
            "a slow connection lived {took:?} (got {got:?})"
        );
        assert!(got.is_empty() || raw_status(&got) == Some(408), "{got:?}");
    }
    for t in silent {
        let (closed, took, got) = t.await.unwrap();
        assert!(
            closed && took <= Duration::from_secs(5),
            "a silent connection lived {took:?}"
        );
        assert!(got.is_empty() || raw_status(&got) == Some(408), "{got:?}");
    }
    for t in idle {
        let (closed, took, got) = t.await.unwrap();
        assert_eq!(raw_status(&got), Some(200), "{got:?}");
        assert!(
            closed && took <= Duration::from_secs(5),
            "an idle keep-alive connection lived {took:?}"
        );
    }
    assert_eq!(
        e.up.heads(),
        25,
        "only the complete requests reached the upstream"
    );
    e.moat.shutdown().await;
}

const ACTIONS: &str = r#"
[[decoy]]
id = "static"
status = 200
body = "static decoy"
headers = { "x-decoy" = "1" }

[[decoy]]
id = "learned"
status = 202
body = "not learned yet"
learn = 'http.request.uri.path eq "/created"'

[[rule]]
id = "block-custom"
expression = 'http.request.uri.path eq "/blockme"'
action = "block"
status = 451
body = "go away\n"

[[rule]]
id = "decoy-static"
expression = 'http.request.uri.path eq "/decoyme"'
action = "decoy"
decoy = "static"

[[rule]]
id = "decoy-learned"
expression = 'http.request.uri.path eq "/created" and http.user_agent eq "bot"'
action = "decoy"
decoy = "learned"

[[rule]]
id = "tarpit"
expression = 'http.request.uri.path eq "/tarpit"'
action = "tarpit"
delay = "1s"
then = "block"
status = 429
body = "tarpitted\n"

[[rule]]
id = "challenge"
expression = 'http.request.uri.path eq "/challenge"'
action = "challenge"
fallback = "decoy"
decoy = "static"

[[rule]]
id = "log-it"
expression = 'http.request.uri.path eq "/logme"'
action = "log"

[[rule]]
id = "friend"
expression = 'http.user_agent eq "friend"'
action = "allow"

[[rule]]
id = "skipper"
expression = 'http.user_agent eq "skipper"'
action = "skip"

[[rule]]
id = "block-skiptest"
expression = 'http.request.uri.path eq "/skiptest"'
action = "block"
status = 403
body = "blocked by rule\n"

[[rate_limit]]
id = "limit-allowtest"
expression = 'http.request.uri.path eq "/allowtest"'
key = "global"
requests = 1
period = "1h"
action = "block"
status = 429
body = "limited allowtest\n"

[[rate_limit]]
id = "limit-skiptest"
expression = 'http.request.uri.path eq "/skiptest"'
key = "global"
requests = 1
period = "1h"
action = "block"
status = 429
body = "limited skiptest\n"
"#;

/// Issue 10: `block` answers with its own status and body, `decoy` with the static decoy, and
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

/// Issue 10: a learned decoy records the upstream's first genuine success on its route and
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

/// Issue 10: a tarpit holds a request for its delay, but only up to
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
    assert_eq!(
        e.moat
            .shield
            .metrics
            .tarpit_overflow
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(e.up.heads(), 0);
    e.moat.shutdown().await;
}

/// Issue 10: `log` goes on to the upstream; `allow` skips the rate limits; `skip` stops the
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

/// Issue 11: rate limits keyed by header, JSON email (case-insensitive), email domain,
/// network prefix and globally; requests without the key are not limited by that limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_by_key() {
    let e = env(LIMITS, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
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

/// Issue 12: a manual ban is enforced at the proxy (default 403) and an allow lifts it; a rule
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

/// Issue 13: /metrics on the admin listener needs the bearer token and counts decisions by
/// rule and action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_and_count_decisions() {
    let e = env(ACTIONS, |_| {}).await;
    let admin = e.moat.admin_addr;
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
