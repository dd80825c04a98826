//! `soak`: a mixed load against one Moat (HTTP proxy with the ghost preset, SMTP trap, Postfix
//! policy and Dovecot auth policy), for hours, to find what grows or slows down over time.
//!
//! Traffic kinds, each with its own latency histogram:
//! - `page`: GET of a page without `Accept: text/html` (Moat's fast path), on keep-alive
//!   connections from 127.1.x.y, each connection replaced after [`REUSE`] requests so accepting
//!   and closing connections is part of the soak;
//! - `html`: a page navigation (`Accept: text/html`), which Moat relays with its page script
//!   injected; checked to carry the script;
//! - `decoy`: a script's POST to Ghost's `/members/api/send-magic-link/` (user agent
//!   python-requests, JSON naming a victim), one connection each, from 127.66.x.y; expects the
//!   decoy `201 Created.`;
//! - `proof`: a browser earning clearance: GET `/.moat/challenge`, solve the SHA-256 work (on a
//!   blocking thread, not the event loop), POST `/.moat/verify`, then GET `/.moat/challenge`
//!   with the cookie (must say `cleared`) and a page with it; one connection per browser, from
//!   127.2.x.y. Its latency leaves out the solving (client CPU), the rest counts;
//! - `smtp`: one trap session each (banner, EHLO, MAIL, RCPT, DATA, QUIT) from 127.3.x.y, one of
//!   256 message contents (spam runs: the quarantine stores each content once);
//! - `policy`: Postfix policy requests over persistent connections;
//! - `auth`: Dovecot auth-policy requests (an `allow`, then its `report`) over keep-alive HTTP.
//!
//! Every kind runs open loop at a fixed rate: a request's latency counts from when it was due,
//! not from when it was sent, so a stall is not hidden by the requests it delayed (no
//! coordinated omission). Without `--http-rate` the HTTP part (page, html, decoy) runs closed
//! loop instead, as fast as it goes: the saturation probe.
//!
//! Keys come from bounded pools (client addresses, victims, logins, senders), so every table in
//! Moat reaches its steady size early and growth after that is a leak, not new keys.
//!
//! Every `--window` seconds: one CSV row with Moat's RSS, open descriptors, threads and CPU,
//! this process's CPU, and per kind the achieved rate, p50, p99 and errors of the window. At
//! the end one JSON line on stdout. Traffic goes only to the loopback addresses given.

use crate::mail::{attempt, postfix_request, status_of, Pool};
use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Page,
    Html,
    Decoy,
    Proof,
    Smtp,
    Policy,
    Auth,
}

const KINDS: [Kind; 7] = [
    Kind::Page,
    Kind::Html,
    Kind::Decoy,
    Kind::Proof,
    Kind::Smtp,
    Kind::Policy,
    Kind::Auth,
];
const N: usize = KINDS.len();

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Page => "page",
            Kind::Html => "html",
            Kind::Decoy => "decoy",
            Kind::Proof => "proof",
            Kind::Smtp => "smtp",
            Kind::Policy => "policy",
            Kind::Auth => "auth",
        }
    }
    fn http(self) -> bool {
        matches!(self, Kind::Page | Kind::Html | Kind::Decoy)
    }
}

/// A keep-alive page connection is replaced after this many requests.
const REUSE: u32 = 500;
/// Policy and auth-policy connections are replaced after this many (Postfix and Dovecot
/// reconnect too).
const MAIL_REUSE: u32 = 5000;
/// No step waits longer than this: every loop is bounded.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Open-loop kinds (one connection each) give up on a request when this many are in flight.
const MAX_INFLIGHT: usize = 512;
/// Above this many bits the proof is not solved (2^20 hashes, about half a second of a core):
/// the soak's browsers must not take the machine from what it measures.
const MAX_SOLVE_BITS: u64 = 20;
/// Distinct error reasons and answers kept (the rest count as "other").
const MAX_NOTES: usize = 64;

const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SCRIPT_UA: &str = "python-requests/2.32.3";

mod clients;
mod report;
mod stats;

#[cfg(test)]
use clients::solve;
use clients::{decoy, proof, smtp};
use report::reporter;
use stats::{Hist, Stats};

#[derive(clap::Args)]
pub struct Soak {
    /// Moat's HTTP listener (host:port on loopback).
    #[arg(long)]
    pub http: SocketAddr,
    /// The trap's SMTP listener.
    #[arg(long)]
    pub trap: SocketAddr,
    /// The Postfix policy listener.
    #[arg(long)]
    pub policy: SocketAddr,
    /// The Dovecot auth-policy listener.
    #[arg(long)]
    pub auth: SocketAddr,
    /// The auth-policy bearer token.
    #[arg(long)]
    pub token: String,
    /// Requests/s of the HTTP part (page + html + decoy); absent: closed loop (the probe);
    /// 0: no HTTP traffic.
    #[arg(long)]
    pub http_rate: Option<f64>,
    /// HTTP connections making the page and html requests (each paced, or closed loop).
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds per CSV row.
    #[arg(long, default_value_t = 10)]
    pub window: u64,
    /// Seconds left out before the summary's first minute.
    #[arg(long, default_value_t = 120)]
    pub warmup: u64,
    /// Moat's process, sampled every window.
    #[arg(long)]
    pub pid: Option<u32>,
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Share of the HTTP rate that is page navigations (page script injected).
    #[arg(long, default_value_t = 0.07)]
    pub html_share: f64,
    /// Share of the HTTP rate that is scripted decoy POSTs.
    #[arg(long, default_value_t = 0.03)]
    pub decoy_share: f64,
    /// Browsers earning clearance per second.
    #[arg(long, default_value_t = 2.0)]
    pub proof_rate: f64,
    /// Trap sessions per second.
    #[arg(long, default_value_t = 20.0)]
    pub smtp_rate: f64,
    /// Postfix policy requests per second.
    #[arg(long, default_value_t = 200.0)]
    pub policy_rate: f64,
    /// Dovecot auth-policy requests per second (an allow and a report count as two).
    #[arg(long, default_value_t = 100.0)]
    pub auth_rate: f64,
    /// Connections for each of policy and auth policy.
    #[arg(long, default_value_t = 4)]
    pub mail_connections: usize,
    /// Distinct client addresses, logins and senders in the mail requests.
    #[arg(long, default_value_t = 2000)]
    pub pool: u32,
}

struct Ctx {
    a: Soak,
    host: String,
    stats: Stats,
    start: Instant,
    deadline: Instant,
}

/// Address `i` of the loopback network 127.`net`.0.0/16, 250 to a /24.
fn lo(net: u8, i: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, net, (i / 250 % 256) as u8, (i % 250 + 1) as u8)
}
const PAGE_NET: (u8, u32) = (1, 2000);
const PROOF_NET: (u8, u32) = (2, 500);
const SMTP_NET: (u8, u32) = (3, 500);
const DECOY_NET: (u8, u32) = (66, 1000);
const VICTIMS: u32 = 5000;
const PAGES: u32 = 1000;
const CONTENTS: u64 = 256;

async fn connect(src: Option<Ipv4Addr>, dst: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    if let Some(src) = src {
        s.set_reuseaddr(true)?;
        s.bind(SocketAddr::new(src.into(), 0))?;
    }
    let st = s.connect(dst).await?;
    st.set_nodelay(true)?;
    Ok(st)
}

type Send = SendRequest<Full<Bytes>>;

async fn http_conn(src: Ipv4Addr, dst: SocketAddr) -> Result<Send, &'static str> {
    let st = connect(Some(src), dst).await.map_err(|_| "connect")?;
    let (send, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(st))
            .await
            .map_err(|_| "handshake")?;
    tokio::spawn(conn);
    Ok(send)
}

struct Reply {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

/// One request and its whole response. `Err` is a transport failure: the connection is gone.
async fn exchange(send: &mut Send, req: http::Request<Full<Bytes>>) -> Result<Reply, &'static str> {
    send.ready().await.map_err(|_| "connection closed")?;
    let resp = send.send_request(req).await.map_err(|_| "send")?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|_| "body")?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn get(
    host: &str,
    path: &str,
    ua: &str,
    accept: &str,
    cookie: Option<&str>,
) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::get(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, ua)
        .header(header::ACCEPT, accept)
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.5");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| http::Request::new(Full::new(Bytes::new())))
}

/// A page GET (`html`: a navigation, which gets the page script). `Err((why, transport))`.
async fn page(ctx: &Ctx, send: &mut Send, html: bool) -> Result<(), (String, bool)> {
    let path = format!("/p/{}/", fastrand::u32(..PAGES));
    let accept = if html {
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    } else {
        "*/*"
    };
    let r = exchange(send, get(&ctx.host, &path, BROWSER_UA, accept, None))
        .await
        .map_err(|e| (e.to_string(), true))?;
    if r.status != http::StatusCode::OK {
        return Err((format!("status {}", r.status.as_u16()), false));
    }
    if html && !r.body.windows(15).any(|w| w == b"/.moat/proof.js") {
        return Err(("no page script in the page".into(), false));
    }
    Ok(())
}

/// A kind that opens a connection per request, scheduled open loop at `rate`.
async fn open_loop(ctx: Arc<Ctx>, kind: Kind, rate: f64) {
    if rate <= 0.0 {
        return;
    }
    let inflight = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0u64.. {
        let due = ctx.start + interval.mul_f64(i as f64);
        if due >= ctx.deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if inflight.load(Ordering::Relaxed) >= MAX_INFLIGHT {
            ctx.stats.err(kind, "too many in flight (not sent)");
            continue;
        }
        inflight.fetch_add(1, Ordering::Relaxed);
        let (ctx, inflight) = (ctx.clone(), inflight.clone());
        tokio::spawn(async move {
            let op = async {
                match kind {
                    Kind::Decoy => decoy(&ctx, i).await,
                    Kind::Proof => proof(&ctx, i).await,
                    _ => smtp(&ctx, i).await,
                }
            };
            match tokio::time::timeout(OP_TIMEOUT, op).await {
                Ok(Ok(excluded)) => ctx.stats.ok(kind, due.elapsed().saturating_sub(excluded)),
                Ok(Err(e)) => ctx.stats.err(kind, &e),
                Err(_) => ctx.stats.err(kind, "timeout"),
            }
            inflight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Bounded wait for the stragglers (each has OP_TIMEOUT).
    let until = Instant::now() + OP_TIMEOUT + Duration::from_secs(1);
    while inflight.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP connection's worth of page and html GETs, paced at `rate` (or closed loop, with
/// the decoy share inline, when `rate` is `None`).
async fn http_worker(ctx: Arc<Ctx>, w: usize, rate: Option<f64>) {
    let workers = ctx.a.workers.max(1);
    let pace = rate.map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
    let offset = pace.map_or(Duration::ZERO, |p| p.mul_f64(w as f64 / workers as f64));
    // Of the requests this worker makes: html among the GETs.
    let html_frac = ctx.a.html_share / (1.0 - ctx.a.decoy_share).max(0.01);
    let mut conn: Option<Send> = None;
    let (mut used, mut cycle) = (0u32, 0u32);
    let mut decoys = w as u64;
    for i in 0u64.. {
        let due = match pace {
            Some(p) => ctx.start + offset + p.mul_f64(i as f64),
            None => Instant::now(),
        };
        if due >= ctx.deadline {
            break;
        }
        if pace.is_some() {
            tokio::time::sleep_until(due.into()).await;
        } else if due < ctx.start {
            tokio::time::sleep_until(ctx.start.into()).await;
            continue;
        }
        if pace.is_none() && fastrand::f64() < ctx.a.decoy_share {
            decoys += workers as u64;
            match tokio::time::timeout(OP_TIMEOUT, decoy(&ctx, decoys)).await {
                Ok(Ok(_)) => ctx.stats.ok(Kind::Decoy, due.elapsed()),
                Ok(Err(e)) => ctx.stats.err(Kind::Decoy, &e),
                Err(_) => ctx.stats.err(Kind::Decoy, "timeout"),
            }
            continue;
        }
        let kind = if fastrand::f64() < html_frac {
            Kind::Html
        } else {
            Kind::Page
        };
        if used >= REUSE {
            conn = None;
        }
        let send = match &mut conn {
            Some(s) => s,
            None => {
                let idx = (w as u32).wrapping_add(cycle.wrapping_mul(workers as u32)) % PAGE_NET.1;
                cycle = cycle.wrapping_add(1);
                used = 0;
                match tokio::time::timeout(OP_TIMEOUT, http_conn(lo(PAGE_NET.0, idx), ctx.a.http))
                    .await
                {
                    Ok(Ok(s)) => conn.insert(s),
                    Ok(Err(e)) => {
                        ctx.stats.err(kind, e);
                        if pace.is_none() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    }
                    Err(_) => {
                        ctx.stats.err(kind, "connect timeout");
                        continue;
                    }
                }
            }
        };
        used += 1;
        match tokio::time::timeout(OP_TIMEOUT, page(&ctx, send, kind == Kind::Html)).await {
            Ok(Ok(())) => ctx.stats.ok(kind, due.elapsed()),
            Ok(Err((e, transport))) => {
                ctx.stats.err(kind, &e);
                if transport {
                    conn = None;
                }
            }
            Err(_) => {
                ctx.stats.err(kind, "timeout");
                conn = None;
            }
        }
    }
}

/// Paced due times for connection `c` of `n` sharing `rate`.
fn schedule(ctx: &Ctx, c: usize, n: usize, rate: f64) -> impl Iterator<Item = Instant> + '_ {
    let per = rate / n.max(1) as f64;
    let interval = Duration::from_secs_f64(1.0 / per.max(0.001));
    let offset = interval.mul_f64(c as f64 / n.max(1) as f64);
    (0u64..)
        .map(move |i| ctx.start + offset + interval.mul_f64(i as f64))
        .take_while(|d| *d < ctx.deadline)
}

async fn policy_conn(ctx: Arc<Ctx>, c: usize) {
    let pool: Pool = Some(ctx.a.pool);
    let mut s: Option<tokio::net::TcpStream> = None;
    let mut used = 0;
    let mut req = String::with_capacity(1024);
    let mut resp = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let n = ctx.a.mail_connections;
    for (i, due) in schedule(&ctx, c, n, ctx.a.policy_rate).enumerate() {
        tokio::time::sleep_until(due.into()).await;
        if used >= MAIL_REUSE {
            s = None;
        }
        if s.is_none() {
            used = 0;
            match tokio::time::timeout(OP_TIMEOUT, connect(None, ctx.a.policy)).await {
                Ok(Ok(st)) => s = Some(st),
                _ => {
                    ctx.stats.err(Kind::Policy, "connect");
                    continue;
                }
            }
        }
        let Some(st) = s.as_mut() else { continue };
        used += 1;
        postfix_request(&mut req, i as u64, pool);
        resp.clear();
        let exchange = async {
            st.write_all(req.as_bytes()).await?;
            while !resp.ends_with(b"\n\n") && resp.len() < 4096 {
                let k = st.read(&mut chunk).await?;
                if k == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                resp.extend_from_slice(&chunk[..k]);
            }
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(OP_TIMEOUT, exchange).await {
            Ok(Ok(())) if resp.starts_with(b"action=") => {
                ctx.stats.ok(Kind::Policy, due.elapsed());
                let a = if resp.starts_with(b"action=DUNNO") {
                    "DUNNO"
                } else if resp.starts_with(b"action=450") {
                    "450"
                } else {
                    "other action"
                };
                ctx.stats.answer(Kind::Policy, a);
            }
            Ok(Ok(())) => {
                ctx.stats.err(Kind::Policy, "malformed answer");
                s = None;
            }
            Ok(Err(e)) => {
                ctx.stats.err(Kind::Policy, &format!("{}", e.kind()));
                s = None;
            }
            Err(_) => {
                ctx.stats.err(Kind::Policy, "timeout");
                s = None;
            }
        }
    }
}

async fn auth_conn(ctx: Arc<Ctx>, c: usize) {
    let pool: Pool = Some(ctx.a.pool);
    let host = ctx.a.auth.to_string();
    let bearer = format!("Bearer {}", ctx.a.token);
    let mut conn: Option<Send> = None;
    let mut used = 0;
    let mut report: Option<String> = None;
    let n = ctx.a.mail_connections;
    for (i, due) in schedule(&ctx, c, n, ctx.a.auth_rate).enumerate() {
        tokio::time::sleep_until(due.into()).await;
        if used >= MAIL_REUSE && report.is_none() {
            conn = None;
        }
        if conn.is_none() {
            used = 0;
            let st = match tokio::time::timeout(OP_TIMEOUT, connect(None, ctx.a.auth)).await {
                Ok(Ok(st)) => st,
                _ => {
                    ctx.stats.err(Kind::Auth, "connect");
                    continue;
                }
            };
            match hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
                hyper_util::rt::TokioIo::new(st),
            )
            .await
            {
                Ok((send, task)) => {
                    tokio::spawn(task);
                    conn = Some(send);
                }
                Err(_) => {
                    ctx.stats.err(Kind::Auth, "handshake");
                    continue;
                }
            }
        }
        let Some(send) = conn.as_mut() else { continue };
        used += 1;
        // An allow for a new attempt, then that attempt's report.
        let (command, body) = match report.take() {
            Some(r) => ("report", r),
            None => {
                let (allow, r) = attempt(i as u64, pool);
                report = Some(r);
                ("allow", allow)
            }
        };
        let req = http::Request::post(format!("/?command={command}"))
            .header(header::HOST, &host)
            .header(header::AUTHORIZATION, &bearer)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "dovecot/2.3.21")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            ctx.stats.err(Kind::Auth, "request");
            continue;
        };
        match tokio::time::timeout(OP_TIMEOUT, exchange(send, req)).await {
            Ok(Ok(r)) if r.status == http::StatusCode::OK => {
                ctx.stats.ok(Kind::Auth, due.elapsed());
                ctx.stats
                    .answer(Kind::Auth, &format!("{command} {}", status_of(&r.body)));
            }
            Ok(Ok(r)) => ctx
                .stats
                .err(Kind::Auth, &format!("status {}", r.status.as_u16())),
            Ok(Err(e)) => {
                ctx.stats.err(Kind::Auth, e);
                conn = None;
                report = None;
            }
            Err(_) => {
                ctx.stats.err(Kind::Auth, "timeout");
                conn = None;
                report = None;
            }
        }
    }
}

pub async fn run(a: Soak) -> anyhow::Result<()> {
    let start = Instant::now() + Duration::from_millis(200);
    // Traffic goes on for a moment after the last sample, so that sample sees the load's
    // connections open like every other.
    let deadline = start + Duration::from_secs(a.seconds) + Duration::from_secs(1);
    let host = a.http.to_string();
    let ctx = Arc::new(Ctx {
        a,
        host,
        stats: Stats::new(),
        start,
        deadline,
    });
    let a = &ctx.a;
    let mut tasks = Vec::new();
    let per_worker = a
        .http_rate
        .map(|r| r * (1.0 - a.decoy_share) / a.workers.max(1) as f64);
    for w in 0..a.workers * usize::from(a.http_rate != Some(0.0)) {
        tasks.push(tokio::spawn(http_worker(ctx.clone(), w, per_worker)));
    }
    if let Some(r) = a.http_rate.filter(|r| *r > 0.0) {
        tasks.push(tokio::spawn(open_loop(
            ctx.clone(),
            Kind::Decoy,
            r * a.decoy_share,
        )));
    }
    tasks.push(tokio::spawn(open_loop(
        ctx.clone(),
        Kind::Proof,
        a.proof_rate,
    )));
    tasks.push(tokio::spawn(open_loop(
        ctx.clone(),
        Kind::Smtp,
        a.smtp_rate,
    )));
    for c in 0..a.mail_connections {
        if a.policy_rate > 0.0 {
            tasks.push(tokio::spawn(policy_conn(ctx.clone(), c)));
        }
        if a.auth_rate > 0.0 {
            tasks.push(tokio::spawn(auth_conn(ctx.clone(), c)));
        }
    }
    let rep = tokio::spawn(reporter(ctx.clone()));
    let rep = rep.await??;
    for t in tasks {
        let _ = t.await;
    }
    let secs = (rep.rows * a.window).max(1) as f64;
    let target = |k: Kind| -> Option<f64> {
        match k {
            Kind::Page | Kind::Html | Kind::Decoy => {
                let r = a.http_rate?;
                Some(match k {
                    Kind::Decoy => r * a.decoy_share,
                    Kind::Html => r * a.html_share,
                    _ => r * (1.0 - a.decoy_share - a.html_share),
                })
            }
            Kind::Proof => Some(a.proof_rate),
            Kind::Smtp => Some(a.smtp_rate),
            Kind::Policy => Some(a.policy_rate),
            Kind::Auth => Some(a.auth_rate),
        }
    };
    let mut last = (0..N).map(|_| Hist::new()).collect::<Vec<_>>();
    for w in &rep.last_minute {
        for k in 0..N {
            last[k].merge(&w[k]);
        }
    }
    let mut kinds = serde_json::Map::new();
    let mut http_ok = 0;
    for k in KINDS {
        let i = k as usize;
        if k.http() {
            http_ok += rep.ok[i];
        }
        let (aw, first, last) = (&rep.after_warmup[i], &rep.first_minute[i], &last[i]);
        kinds.insert(
            k.name().into(),
            serde_json::json!({
                "ok": rep.ok[i], "errors": rep.errors[i],
                "rate": (rep.ok[i] as f64 / secs * 10.0).round() / 10.0,
                "target_rate": target(k),
                "p50_ms": aw.quantile_ms(0.5), "p99_ms": aw.quantile_ms(0.99),
                "first_minute_p99_ms": first.quantile_ms(0.99), "first_minute_n": first.n,
                "last_minute_p99_ms": last.quantile_ms(0.99), "last_minute_n": last.n,
            }),
        );
    }
    let (errors, answers) = {
        let g = ctx.stats.lock();
        (g.errors.clone(), g.answers.clone())
    };
    let out = serde_json::json!({
        "mode": if a.http_rate.is_some() { "soak" } else { "probe" },
        "seconds": secs, "warmup_s": a.warmup, "window_s": a.window,
        "http_rate_target": a.http_rate,
        "http_rps": (http_ok as f64 / secs).round(),
        "kinds": kinds, "errors": errors, "answers": answers,
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_tight() {
        for ns in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1_000,
            123_456,
            9_999_999,
            1 << 40,
        ] {
            let i = Hist::index(ns);
            let v = Hist::value(i);
            let err = (v - ns as f64).abs() / (ns as f64).max(1.0);
            assert!(err <= 0.016 || ns < 128, "{ns}: bucket {i} value {v}");
        }
        let mut h = Hist::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((p99 - 0.990).abs() < 0.016, "{p99}");
    }

    #[test]
    fn solves_what_moat_checks() {
        use moat_proof::{challenge, ua_hash, KeyRing, Net};
        let ring = KeyRing::generate(0).unwrap();
        let ua = ua_hash(BROWSER_UA.as_bytes());
        let net = Net::of("127.2.0.1".parse().unwrap(), 24, 64);
        for bits in [8u8, 12, 16] {
            let c = challenge::issue(&ring, 120, bits, ua, net, [bits; 16]);
            let nonce = solve(&c, u32::from(bits)).unwrap().to_string();
            let s = challenge::check(&ring, &c, &nonce, 100, ua, net).unwrap();
            assert_eq!(s.difficulty, bits);
        }
    }
}
