//! Shared pieces of the proxy integration tests: a recording upstream, starting Moat in-process
//! on port 0 with a rule file, and small HTTP clients (hyper and raw TCP).

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use moat_config::Config;
use moat_http::app::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

/// Bound on every single client operation, so a hang fails a test instead of stalling it.
pub const STEP: Duration = Duration::from_secs(10);

pub const ADMIN_TOKEN: &str = "0123456789abcdef";

/// `/stream` sends this many chunks of `STREAM_CHUNK` bytes.
pub const STREAM_CHUNKS: usize = 64;
pub const STREAM_CHUNK: usize = 64 * 1024;

/// Deterministic, non-periodic-looking bytes for body comparisons.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// The request target arrived in absolute form (`http://host/path`) instead of origin form.
    pub absolute_form: bool,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// False when the body ended with an error (an aborted upload).
    pub body_complete: bool,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

#[derive(Default)]
struct UpState {
    records: Mutex<Vec<Recorded>>,
    /// Requests whose head arrived, whether or not their body completed.
    heads: AtomicUsize,
    /// TCP connections accepted.
    connections: AtomicUsize,
    gate: Mutex<Option<oneshot::Receiver<()>>>,
    gated_done: AtomicUsize,
}

/// A real HTTP/1.1 server on 127.0.0.1:0 that records everything it receives and answers per
/// path:
///
/// * `/stream`: `STREAM_CHUNKS` chunks of `pattern(.., 7)`, chunked, with small delays;
/// * `/gated`: `first-chunk`, then waits for [`Upstream::gate`] before `the-rest`;
/// * `/ws`: a WebSocket-style upgrade (101), then echoes bytes;
/// * `/created`: 201 `Created.` with `x-app`, `etag` and `set-cookie`;
/// * `/hop`: a response carrying hop-by-hop headers next to an end-to-end one;
/// * anything else: 200 `upstream ok`.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpState>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let state = Arc::new(UpState::default());
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream { addr, state }
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.state.records.lock().unwrap().clone()
    }

    /// Requests with this path (query ignored) that the upstream recorded.
    pub fn with_path(&self, path: &str) -> Vec<Recorded> {
        self.records()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    pub fn last(&self, path: &str) -> Recorded {
        self.with_path(path)
            .pop()
            .unwrap_or_else(|| panic!("the upstream never received {path}"))
    }

    pub fn heads(&self) -> usize {
        self.state.heads.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Arms `/gated`: it sends its first chunk, then waits for this sender to fire.
    pub fn gate(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.state.gate.lock().unwrap() = Some(rx);
        tx
    }

    /// How many `/gated` responses the upstream has finished sending.
    pub fn gated_done(&self) -> usize {
        self.state.gated_done.load(Ordering::SeqCst)
    }
}

/// A response body fed from a channel, so the upstream decides when each chunk goes out.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn channel_body(capacity: usize) -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, ChannelBody(rx).boxed())
}

async fn answer(st: Arc<UpState>, mut req: Request<Incoming>) -> Response<TestBody> {
    st.heads.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let mut rec = Recorded {
        method: req.method().clone(),
        uri,
        absolute_form: req.uri().scheme().is_some(),
        version: req.version(),
        headers: req.headers().clone(),
        body: Vec::new(),
        body_complete: true,
    };

    if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        st.records.lock().unwrap().push(rec);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert(
            "sec-websocket-accept",
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        return resp;
    }

    match req.into_body().collect().await {
        Ok(c) => rec.body = c.to_bytes().to_vec(),
        Err(_) => rec.body_complete = false,
    }
    let complete = rec.body_complete;
    st.records.lock().unwrap().push(rec);
    if !complete {
        let mut r = Response::new(full("incomplete body"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }

    match path.as_str() {
        "/stream" => {
            let (tx, body) = channel_body(4);
            tokio::spawn(async move {
                let all = pattern(STREAM_CHUNKS * STREAM_CHUNK, 7);
                for (i, c) in all.chunks(STREAM_CHUNK).enumerate() {
                    if tx.send(Bytes::copy_from_slice(c)).await.is_err() {
                        return;
                    }
                    if i % 8 == 7 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
            Response::new(body)
        }
        "/gated" => {
            let gate = st.gate.lock().unwrap().take();
            let (tx, body) = channel_body(4);
            let st2 = st.clone();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first-chunk")).await;
                if let Some(g) = gate {
                    let _ = tokio::time::timeout(Duration::from_secs(20), g).await;
                }
                let _ = tx.send(Bytes::from_static(b"the-rest")).await;
                st2.gated_done.fetch_add(1, Ordering::SeqCst);
            });
            Response::new(body)
        }
        "/created" => {
            let mut r = Response::new(full("Created."));
            *r.status_mut() = StatusCode::CREATED;
            let h = r.headers_mut();
            h.insert("x-app", HeaderValue::from_static("1"));
            h.insert("etag", HeaderValue::from_static("W/\"created-42\""));
            h.insert(
                "set-cookie",
                HeaderValue::from_static("session=s3cr3t; HttpOnly; Path=/"),
            );
            r
        }
        "/hop" => {
            let mut r = Response::new(full("hop"));
            let h = r.headers_mut();
            h.insert("connection", HeaderValue::from_static("x-up-secret"));
            h.insert("x-up-secret", HeaderValue::from_static("1"));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
            h.insert("x-end-resp", HeaderValue::from_static("1"));
            r
        }
        _ => Response::new(full("upstream ok")),
    }
}

/// A compiled config for `rules` (a rule file's TOML) proxying to `up`, listening on port 0,
/// with state in `dir/state` and a fixed admin token on a port-0 admin listener.
pub fn config(up: &Upstream, dir: &Path, rules: &str) -> Config {
    let rule_file = dir.join("rules.toml");
    std::fs::write(&rule_file, rules).expect("write rule file");
    let ov = moat_config::Overrides {
        listen: Some(vec!["127.0.0.1:0".into()]),
        upstream: Some(format!("http://{}", up.addr)),
        state_dir: Some(dir.join("state").display().to_string()),
        rule_files: vec![rule_file],
        ..Default::default()
    };
    let mut cfg = match moat_config::load(None, &ov) {
        Ok(c) => c,
        Err(e) => panic!("config does not load:\n{e}"),
    };
    cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin.token = Some(ADMIN_TOKEN.into());
    cfg
}

pub async fn start(cfg: Config) -> Running {
    moat_http::app::start(cfg, Arc::new(moat_core::SystemClock))
        .await
        .unwrap_or_else(|e| panic!("Moat does not start: {e}"))
}

/// A response read completely.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request over a fresh HTTP/1.1 connection (closed afterwards); errors are returned.
pub async fn try_send<B>(addr: SocketAddr, req: Request<B>) -> Result<Resp, BoxError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(STEP, sender.send_request(req)).await??;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await??
        .to_bytes();
    Ok(Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    match try_send(addr, req).await {
        Ok(r) => r,
        Err(e) => panic!("request to {addr} failed: {e}"),
    }
}

/// A request for `path` with `Host: moat.test` and the given extra headers.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request<TestBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "moat.test");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(full(body.to_vec())).expect("request")
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, request("GET", path, &[], b"")).await
}

pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(addr, request("GET", path, headers, b"")).await
}

pub async fn post_json(addr: SocketAddr, path: &str, json: &serde_json::Value) -> Resp {
    let body = serde_json::to_vec(json).unwrap();
    let h = [("content-type", "application/json")];
    send(addr, request("POST", path, &h, &body)).await
}

/// Writes `data` on a fresh connection and reads until the peer closes (or errors, or `STEP`
/// passes); returns everything read.
pub async fn raw(addr: SocketAddr, data: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(data).await;
    String::from_utf8_lossy(&read_until_close(&mut s, STEP).await).into_owned()
}

/// Reads until EOF, an error or `limit`; returns the bytes read.
pub async fn read_until_close(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

/// Reads a response head (up to the blank line) from a raw stream.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    tokio::time::timeout(STEP, async {
        while !out.ends_with(b"\r\n\r\n") {
            match s.read(&mut b).await {
                Ok(1) => out.push(b[0]),
                _ => break,
            }
        }
    })
    .await
    .expect("response head in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw response's first line, if it is one.
pub fn raw_status(resp: &str) -> Option<u16> {
    let line = resp.lines().next()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// Polls `f` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /metrics` on the admin listener with an optional bearer token.
pub async fn admin_get(addr: SocketAddr, path: &str, token: Option<&str>) -> Resp {
    let mut b = Request::builder().uri(path).header("host", "admin");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(addr, b.body(full(Bytes::new())).unwrap()).await
}

/// One upstream, one Moat, one temp dir; dropped together at the end of a test.
pub struct Env {
    pub up: Upstream,
    pub moat: moat_http::app::Running,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

pub async fn env(rules: &str, tweak: impl FnOnce(&mut moat_config::Config)) -> Env {
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

/// Decoys and rules of every action, shared by the policy tests and moat-web's admin tests.
pub const ACTIONS: &str = r#"
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
