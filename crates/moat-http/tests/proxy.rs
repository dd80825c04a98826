//! Moat's HTTP reverse proxy, end to end: a real upstream, Moat started in-process on port 0,
//! and real clients (hyper and raw TCP). Each test names the issue it covers.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Issue 2: HTTP/1.1 and HTTP/2 (h2c, prior knowledge) clients are both proxied, and the
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

/// Issue 2: a WebSocket upgrade passes through Moat: 101, then bytes both ways.
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

/// Issue 2: hop-by-hop headers (RFC 9110 7.6.1), including those the Connection header names,
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
    assert!(
        !seen.absolute_form,
        "the upstream must get an origin-form target"
    );
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

/// Issue 2: a client's Connection header cannot make Moat drop the forwarding headers it sets
/// or the Host header (the app would otherwise see every client as Moat itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_remove_forwarding_headers() {
    let e = env("", |_| {}).await;
    let r = get_with(
        e.addr,
        "/conn",
        &[(
            "connection",
            "keep-alive, X-Forwarded-For, Forwarded, X-Forwarded-Proto, Host",
        )],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = e.up.last("/conn");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen
        .header("forwarded")
        .is_some_and(|f| f.starts_with("for=127.0.0.1")));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert!(seen.header("host").is_some());
}

/// Issue 2: Moat keeps upstream connections alive: 30 sequential requests (each on a new
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

/// Issue 2: forwarding headers from an untrusted client are replaced by Moat's own; a trusted
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

    // Trusted proxy at 127.0.0.1 that sets only X-Forwarded-For (the default source): a
    // Fly-Client-IP it passed through from the client is not believed.
    let e = env(rules, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let r = get_with(
        e.addr,
        "/fwd",
        &[
            ("fly-client-ip", "9.9.9.9"),
            ("x-forwarded-for", "198.51.100.23"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        e.up.last("/fwd").header("x-forwarded-for"),
        Some("198.51.100.23")
    );
    e.moat.shutdown().await;

    // Trusted proxy at 127.0.0.1 configured as Fly's: its Fly-Client-IP is the client.
    let e = env(rules, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.server.client_ip_headers = vec![moat_config::ClientIpHeader::FlyClientIp];
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

/// Issue 2: a PROXY protocol v1 header from a trusted peer names the client; from an
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

/// Issue 2: size limits and malformed requests: 431 for a huge header block, 413 for a
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

/// Issue 2: slow-loris. Connections trickling a header byte every 300 ms are closed by the
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

/// Issue 2: `server.workers` sets the serving threads (the default, half the cores, is one on a
/// two-core machine); connections are spread over them, each worker relays over its own
/// upstream pool, and every request on every keep-alive connection is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_workers_share_the_connections() {
    let e = env("", |c| c.server.workers = Some(3)).await;
    // A thread names itself once it runs, which may be just after `start` returned.
    let names = || -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect()
    };
    let deadline = Instant::now() + STEP;
    while !names().iter().any(|n| n == "moat-http-2") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(names().iter().any(|n| n == "moat-http-2"), "{:?}", names());
    let mut clients = Vec::new();
    for c in 0..9 {
        let addr = e.addr;
        clients.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            for i in 0..3 {
                let req = request("GET", &format!("/w{c}-{i}"), &[], b"");
                let resp = tokio::time::timeout(STEP, sender.send_request(req))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"upstream ok");
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    for c in 0..9 {
        for i in 0..3 {
            assert_eq!(e.up.with_path(&format!("/w{c}-{i}")).len(), 1, "/w{c}-{i}");
        }
    }
}
