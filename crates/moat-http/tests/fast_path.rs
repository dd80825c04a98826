//! Issue 2: the fast path for plain HTTP/1.1 `GET`/`HEAD` (crate::fast) against an upstream
//! that answers with every framing HTTP/1.1 has, byte by byte as scripted here: chunked with
//! trailers and split across writes, close-delimited, interim 103, HEAD, a pooled connection
//! the upstream closed, malformed and missing answers. And a keep-alive connection that mixes
//! pipelined `GET`s with a `POST`, which hyper takes over mid-connection.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw upstream that answers by path, the way the tests script it.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn scripted() -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (c, h) = (connections.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_scripted(s, h.clone()));
        }
    });
    Scripted {
        addr,
        connections,
        heads,
    }
}

async fn serve_scripted(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = find_head_end(&buf) else {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        // Bodies (only the POST test sends one) are read by Content-Length.
        let len = header_of(&head, "content-length").map_or(0, |v| v.parse::<usize>().unwrap());
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        heads.lock().unwrap().push(head.clone());
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let ok = match path.as_str() {
            "/chunked" => {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhel",
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                s.write_all(b"lo\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
                    .await
                    .is_ok()
            }
            "/hints" => s
                .write_all(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                )
                .await
                .is_ok(),
            "/close" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
                    .await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = s.write_all(b"the upstream closes").await;
                return;
            }
            "/bye" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")
                    .await;
                return; // closes a connection Moat may have pooled
            }
            // A careless app that answers HEAD like GET, body and all, the body a little later.
            "/head-with-body" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.write_all(b"oops!").await.is_ok()
            }
            "/bad" => s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
                .await
                .is_ok(),
            "/silent" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            "/big" => {
                let body = pattern(300_000, 7);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                s.write_all(head.as_bytes()).await.is_ok() && s.write_all(&body).await.is_ok()
            }
            _ => {
                let mut text = head.clone().into_bytes();
                text.extend_from_slice(&body);
                let h = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len());
                let ok = s.write_all(h.as_bytes()).await.is_ok();
                ok && (head.starts_with("HEAD ") || s.write_all(&text).await.is_ok())
            }
        };
        if !ok {
            return;
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends `METHOD path` on `c` and reads the response (the first one: an interim 103 is
/// returned by itself).
async fn ask(c: &mut TcpStream, buf: &mut Vec<u8>, method: &str, path: &str) -> (String, Vec<u8>) {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    read_response(c, buf, method == "HEAD")
        .await
        .unwrap_or_else(|| panic!("no response to {method} {path}"))
}

/// Reads more of a response into `buf`; false when the connection ended or stalled.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(STEP, s.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// Reads one response (head and body, whatever its framing) from a raw client connection.
/// Returns the head and the decoded body; `None` when the connection ended first.
async fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Option<(String, Vec<u8>)> {
    let end = loop {
        if let Some(e) = find_head_end(buf) {
            break e;
        }
        if !fill(s, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Some((head, Vec::new()));
    }
    if header_of(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !fill(s, buf).await {
                    return None;
                }
            };
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).ok()?;
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        buf.drain(..i + 2);
                        if i == 0 {
                            return Some((head, body));
                        }
                        continue;
                    }
                    if !fill(s, buf).await {
                        return None;
                    }
                }
            }
            while buf.len() < size + 2 {
                if !fill(s, buf).await {
                    return None;
                }
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    if let Some(len) = header_of(&head, "content-length") {
        let len: usize = len.parse().ok()?;
        while buf.len() < len {
            if !fill(s, buf).await {
                return None;
            }
        }
        return Some((head, buf.drain(..len).collect()));
    }
    while fill(s, buf).await {}
    Some((head, std::mem::take(buf)))
}

async fn moat_for(
    up: &Scripted,
    tweak: impl FnOnce(&mut moat_config::Config),
) -> (moat_http::app::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let fake = Upstream::start().await; // only for `config`; its address is replaced below
    let mut cfg = config(&fake, dir.path(), "");
    cfg.server.upstream = format!("http://{}", up.addr).parse().unwrap();
    tweak(&mut cfg);
    (start(cfg).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_is_relayed_intact_on_one_connection() {
    let up = scripted().await;
    let (moat, _dir) = moat_for(&up, |_| {}).await;
    let addr = moat.http_addrs[0];
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();

    let (head, body) = ask(&mut c, &mut buf, "GET", "/chunked").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(header_of(&head, "x-up"), Some("1"));
    assert_eq!(body, b"hello world");

    // The chunked body's end was found: the same connection serves the next request.
    let (head, _) = ask(&mut c, &mut buf, "GET", "/hints").await;
    assert!(head.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{head}");
    assert!(head.contains("Link: </a.css>; rel=preload"));
    let (head, body) = read_response(&mut c, &mut buf, false)
        .await
        .expect("200 after 103");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"ok");

    let (head, body) = ask(&mut c, &mut buf, "HEAD", "/echo").await;
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && body.is_empty(),
        "{head}"
    );

    let (_, body) = ask(&mut c, &mut buf, "GET", "/big").await;
    assert!(
        body == pattern(300_000, 7),
        "a body larger than one read arrives intact (got {} bytes: {:?})",
        body.len(),
        String::from_utf8_lossy(&body[..body.len().min(64)])
    );

    // A body that ends when the upstream closes: relayed whole, then Moat closes too.
    let (head, body) = ask(&mut c, &mut buf, "GET", "/close").await;
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, b"until the upstream closes");
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(STEP, c.read(&mut rest))
        .await
        .expect("Moat closes");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "connection still open after a close-delimited body"
    );
    moat.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_after_a_head_response_never_reaches_the_next_request() {
    let up = scripted().await;
    let (moat, _dir) = moat_for(&up, |_| {}).await;
    let addr = moat.http_addrs[0];
    for i in 0..5 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let (head, body) = ask(&mut c, &mut buf, "HEAD", "/head-with-body").await;
        assert!(
            head.starts_with("HTTP/1.1 200 ") && body.is_empty(),
            "{head}"
        );
        // Whichever pooled connection serves this, it must not hold the stray "oops!".
        let (head, body) = ask(&mut c, &mut buf, "GET", "/next").await;
        assert!(head.starts_with("HTTP/1.1 200 "), "round {i}: {head}");
        assert!(
            body.starts_with(b"GET /next HTTP/1.1\r\n"),
            "round {i}: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    moat.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_gets_then_a_post_that_hyper_takes_over() {
    let up = scripted().await;
    let (moat, _dir) = moat_for(&up, |_| {}).await;
    let addr = moat.http_addrs[0];
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n\
          POST /three HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nbody3\
          GET /four HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    for (path, extra) in [
        ("/one", ""),
        ("/two", ""),
        ("/three", "body3"),
        ("/four", ""),
    ] {
        let (head, body) = read_response(&mut c, &mut buf, false)
            .await
            .unwrap_or_else(|| panic!("no response for {path}"));
        assert!(head.starts_with("HTTP/1.1 200 "), "{path}: {head}");
        let echoed = String::from_utf8_lossy(&body).into_owned();
        assert!(
            echoed.starts_with(&format!(
                "{} {path} HTTP/1.1\r\n",
                if extra.is_empty() { "GET" } else { "POST" }
            )),
            "{echoed}"
        );
        assert!(echoed.ends_with(extra));
        assert_eq!(
            header_of(&echoed, "x-forwarded-for"),
            Some("127.0.0.1"),
            "{path}: a client's X-Forwarded-For is replaced on both paths"
        );
        assert!(header_of(&echoed, "forwarded").is_some_and(|f| f.starts_with("for=127.0.0.1")));
    }
    moat.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_is_replaced_unseen() {
    let up = scripted().await;
    let (moat, _dir) = moat_for(&up, |_| {}).await;
    let addr = moat.http_addrs[0];
    for i in 0..5 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let (head, body) = ask(&mut c, &mut buf, "GET", "/bye").await;
        assert!(head.starts_with("HTTP/1.1 200 "), "round {i}: {head}");
        assert_eq!(body, b"bye");
        // The upstream closed the connection that answered; the next request must not fail.
        let (head, _) = ask(&mut c, &mut buf, "GET", "/after").await;
        assert!(head.starts_with("HTTP/1.1 200 "), "round {i}: {head}");
    }
    assert!(up.heads.lock().unwrap().len() >= 10);
    moat.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_answered_502_and_504() {
    let up = scripted().await;
    let (moat, _dir) = moat_for(&up, |c| {
        c.limits.upstream_timeout = Duration::from_millis(400)
    })
    .await;
    let addr = moat.http_addrs[0];
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let (head, _) = ask(&mut c, &mut buf, "GET", "/bad").await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    let (head, _) = ask(&mut c, &mut buf, "GET", "/silent").await;
    assert!(head.starts_with("HTTP/1.1 504 "), "{head}");
    let (head, _) = ask(&mut c, &mut buf, "GET", "/fine").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    moat.shutdown().await;

    // No upstream at all.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = Scripted {
        addr: gone.local_addr().unwrap(),
        connections: Arc::new(AtomicUsize::new(0)),
        heads: Arc::new(Mutex::new(Vec::new())),
    };
    drop(gone);
    let (moat, _dir) = moat_for(&dead, |_| {}).await;
    let resp = raw(
        moat.http_addrs[0],
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), Some(502), "{resp}");
    assert_eq!(dead.connections.load(Ordering::SeqCst), 0);
    moat.shutdown().await;
}
