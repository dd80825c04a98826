//! Load for Moat's benchmarks, in two modes:
//! - `rate`: a fixed request rate over keep-alive connections, reporting p50/p99 latency, also
//!   per second (wrk measures throughput; this measures latency at a chosen load, which wrk
//!   cannot);
//! - `flood`: requests from random IPv6 client addresses (sent as X-Forwarded-For to a Moat that
//!   trusts loopback, since only ::1 is bindable) next to a trickle of legitimate requests whose
//!   latency is measured, while sampling the Moat process's RSS;
//! - `policy` and `authpolicy`: closed-loop load on the mail shield's Postfix policy and Dovecot
//!   auth-policy servers (see `mail.rs`);
//! - `milter`: closed-loop load on the milter as Postfix's smtpd drives it, or sessions held
//!   mid-message for memory (see `milter.rs`);
//! - `soak`: a mixed fixed-rate load on one Moat (pages, decoys, the browser proof, the SMTP
//!   trap, Postfix and Dovecot policy) with a CSV row of Moat's resources and each kind's
//!   latency every window, or the same mix closed loop to find saturation (see `soak.rs`).
//!
//! Traffic goes only to the URL given, which the scripts in `bench/` point at loopback.

mod mail;
mod milter;
mod null_milter;
mod soak;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Rate {
        #[arg(long)]
        url: String,
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
    Flood {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Requests per second of legitimate traffic whose latency is measured.
        #[arg(long, default_value_t = 50)]
        legit_rate: u64,
        /// Process to sample RSS from.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 10)]
        sample_every: u64,
    },
    /// Postfix policy delegation: RCPT-state requests over persistent connections, closed loop.
    Policy {
        /// host:port of the policy server.
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Postfix's side of the milter protocol: one message per SMTP session, closed loop; or,
    /// with --hold N, N sessions held after RCPT while Moat's RSS (--pid) is sampled.
    Milter {
        /// host:port of the milter.
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Run time; with --hold, how long to wait before sampling RSS.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Percent of messages with one unknown recipient (whole message, DELRCPT at the end).
        #[arg(long, default_value_t = 0)]
        unknown: u8,
        /// Body size in bytes.
        #[arg(long, default_value_t = 4096)]
        body: usize,
        /// A new milter connection (and negotiation) per SMTP session instead of QUIT_NC.
        #[arg(long)]
        reconnect: bool,
        /// Instead: hold this many sessions open after RCPT and report Moat's RSS.
        #[arg(long)]
        hold: Option<usize>,
        /// Moat's process, for its RSS (with --hold).
        #[arg(long)]
        pid: Option<u32>,
    },
    /// A milter that skips every step Postfix lets it skip: the floor under any milter's
    /// cost, for bench/milter.sh's Postfix rounds.
    NullMilter {
        /// host:port to listen on, or a unix socket's path.
        #[arg(long)]
        listen: String,
    },
    /// A mixed load on one Moat for a long run (bench/soak.sh): fixed rates, open loop, a CSV
    /// row every window. Without --http-rate the HTTP part runs closed loop (the saturation
    /// probe).
    Soak(Box<soak::Soak>),
    /// Dovecot auth policy: alternating allow and report requests over keep-alive HTTP/1.1.
    Authpolicy {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

type C = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> C {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .build_http()
}

async fn one(c: &C, url: &str, xff: Option<String>) -> Option<Duration> {
    let mut b = http::Request::get(url).header("user-agent", "Mozilla/5.0 (loadgen)");
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", x);
    }
    let t = Instant::now();
    let resp = c
        .request(b.body(Full::new(Bytes::new())).ok()?)
        .await
        .ok()?;
    let _ = resp.into_body().collect().await.ok()?;
    Some(t.elapsed())
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One thread: the load generator must not take the cores the servers it measures need.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Policy {
            addr,
            connections,
            seconds,
        } => mail::policy(addr, connections, seconds).await?,
        Mode::Authpolicy {
            url,
            token,
            connections,
            seconds,
        } => mail::authpolicy(url, token, connections, seconds).await?,
        Mode::NullMilter { listen } => null_milter::serve(listen).await?,
        Mode::Soak(a) => soak::run(*a).await?,
        Mode::Milter {
            hold: Some(n),
            addr,
            pid,
            seconds,
            ..
        } => milter::hold(addr, n, pid, seconds).await?,
        Mode::Milter {
            addr,
            connections,
            seconds,
            unknown,
            body,
            reconnect,
            ..
        } => milter::run(addr, connections, seconds, unknown, body, reconnect).await?,
        Mode::Rate {
            url,
            rate,
            seconds,
            connections,
        } => {
            // Each connection paces its own share of the rate on one keep-alive HTTP/1.1
            // connection; latency counts from when a request was due, so a stall is not hidden
            // by the requests it delayed (no coordinated omission).
            let uri: http::Uri = url.parse()?;
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let per_conn = (rate as f64 / connections as f64).max(0.001);
            let start = Instant::now() + Duration::from_millis(100);
            let mut tasks = Vec::new();
            for c in 0..connections {
                let (authority, uri) = (authority.clone(), uri.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0u64;
                    let Ok(stream) = tokio::net::TcpStream::connect(&authority).await else {
                        return (lat, 1);
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok((mut send, conn)) =
                        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
                            hyper_util::rt::TokioIo::new(stream),
                        )
                        .await
                    else {
                        return (lat, 1);
                    };
                    tokio::spawn(conn);
                    let interval = Duration::from_secs_f64(1.0 / per_conn);
                    let offset = interval.mul_f64(c as f64 / connections as f64);
                    let n = (per_conn * seconds as f64) as u64;
                    for i in 0..n {
                        let due = start + offset + interval.mul_f64(i as f64);
                        tokio::time::sleep_until(due.into()).await;
                        let req = http::Request::get(uri.path())
                            .header("host", &authority)
                            .header("user-agent", "Mozilla/5.0 (loadgen)")
                            .body(Full::new(Bytes::new()));
                        let ok = match req {
                            Ok(r) => match send.send_request(r).await {
                                Ok(resp) => resp.into_body().collect().await.is_ok(),
                                Err(_) => false,
                            },
                            Err(_) => false,
                        };
                        if ok {
                            lat.push((
                                due.saturating_duration_since(start).as_secs(),
                                due.elapsed(),
                            ))
                        } else {
                            errors += 1
                        }
                    }
                    (lat, errors)
                }));
            }
            let mut v = Vec::new();
            let mut by_second: Vec<Vec<Duration>> = Vec::new();
            let mut errors = 0;
            for t in tasks {
                if let Ok((l, e)) = t.await {
                    for (s, d) in l {
                        let s = s as usize;
                        if by_second.len() <= s {
                            by_second.resize_with(s + 1, Vec::new);
                        }
                        by_second[s].push(d);
                        v.push(d);
                    }
                    errors += e;
                }
            }
            // Each second's p99 and max (by when requests were due), to tell a stall of a few
            // hundred milliseconds from a tail spread over the run.
            let seconds: Vec<_> = by_second
                .iter_mut()
                .map(|d| serde_json::json!({"p99_ms": pct(d, 0.99), "max_ms": pct(d, 1.0)}))
                .collect();
            let out = serde_json::json!({
                "rate": rate, "sent": v.len() as u64 + errors, "errors": errors,
                "p50_ms": pct(&mut v, 0.50), "p99_ms": pct(&mut v, 0.99), "max_ms": pct(&mut v, 1.0),
                "per_second": seconds,
            });
            println!("{out}");
        }
        Mode::Flood {
            url,
            seconds,
            concurrency,
            legit_rate,
            pid,
            sample_every,
        } => {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut workers = Vec::new();
            for _ in 0..concurrency {
                let (url, sent) = (url.clone(), sent.clone());
                workers.push(tokio::spawn(async move {
                    let c = client();
                    while Instant::now() < deadline {
                        let a: [u16; 8] = std::array::from_fn(|_| fastrand::u16(..));
                        let ip = std::net::Ipv6Addr::new(
                            0x2001,
                            0xdb8 ^ a[0],
                            a[1],
                            a[2],
                            a[3],
                            a[4],
                            a[5],
                            a[6],
                        );
                        one(&c, &url, Some(ip.to_string())).await;
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }));
            }
            let legit = {
                let url = url.clone();
                tokio::spawn(async move {
                    let c = client();
                    let mut v = Vec::new();
                    let interval = Duration::from_secs_f64(1.0 / legit_rate as f64);
                    let mut next = Instant::now();
                    while Instant::now() < deadline {
                        next += interval;
                        tokio::time::sleep_until(next.into()).await;
                        if let Some(d) = one(&c, &url, Some("2001:db8:ffff::1".into())).await {
                            v.push(d);
                        }
                    }
                    v
                })
            };
            let mut samples = Vec::new();
            let t0 = Instant::now();
            while Instant::now() < deadline {
                if let Some(p) = pid {
                    samples.push(serde_json::json!({"t_s": t0.elapsed().as_secs(), "rss_mb": rss_kb(p).map(|k| k / 1024), "sent": sent.load(std::sync::atomic::Ordering::Relaxed)}));
                    eprintln!("{}", samples.last().unwrap_or(&serde_json::Value::Null));
                }
                tokio::time::sleep(
                    Duration::from_secs(sample_every)
                        .min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
            }
            for w in workers {
                let _ = w.await;
            }
            let mut v = legit.await?;
            if let Some(p) = pid {
                samples.push(serde_json::json!({"t_s": t0.elapsed().as_secs(), "rss_mb": rss_kb(p).map(|k| k / 1024), "sent": sent.load(std::sync::atomic::Ordering::Relaxed)}));
            }
            let out = serde_json::json!({
                "seconds": seconds, "flood_requests": sent.load(std::sync::atomic::Ordering::Relaxed),
                "legit_requests": v.len(), "legit_p50_ms": pct(&mut v, 0.5), "legit_p99_ms": pct(&mut v, 0.99),
                "rss_samples": samples,
            });
            println!("{out}");
        }
    }
    Ok(())
}
