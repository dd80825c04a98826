//! Closed-loop load for Moat's mail shield (issue targets: Postfix policy >= 50,000 req/s over 8
//! persistent connections with p99 < 1 ms; Dovecot auth policy >= 20,000 req/s with p99 < 2 ms):
//! - `policy`: Postfix policy delegation, RCPT-state requests as Postfix 3.7 sends them, one
//!   outstanding request per connection (as Postfix does), each written with one write;
//! - `authpolicy`: Dovecot's auth policy over keep-alive HTTP/1.1, an `allow` then a `report` for
//!   each simulated login attempt.
//!
//! Both print one JSON line: requests, seconds, rps, p50_ms, p99_ms, max_ms, errors, and what
//! Moat answered. Latency is per request, from the write to the end of the reply.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Outcome {
    lat: Vec<Duration>,
    errors: u64,
    answers: BTreeMap<String, u64>,
}

fn summary(outs: Vec<Outcome>, elapsed: Duration) -> serde_json::Value {
    let mut v = Vec::new();
    let mut errors = 0;
    let mut answers: BTreeMap<String, u64> = BTreeMap::new();
    for o in outs {
        v.extend(o.lat);
        errors += o.errors;
        for (k, n) in o.answers {
            *answers.entry(k).or_default() += n;
        }
    }
    let secs = elapsed.as_secs_f64();
    serde_json::json!({
        "requests": v.len(), "seconds": (secs * 1000.0).round() / 1000.0,
        "rps": (v.len() as f64 / secs).round() as u64,
        "p50_ms": crate::pct(&mut v, 0.50), "p99_ms": crate::pct(&mut v, 0.99),
        "max_ms": crate::pct(&mut v, 1.0), "errors": errors, "answers": answers,
    })
}

/// Where request keys (client addresses, senders, unknown recipients, logins) come from.
/// `None`: fresh random keys, as the throughput runs use. `Some(n)`: one of `n` fixed keys each
/// (the soak), so every table of the mail shield reaches its steady size early and any growth
/// after that is a leak; its addresses avoid 127/8, where the soak's HTTP clients live (a ban
/// the mail shield reports to the shared engine must not hit them). With a pool, abusers and
/// legitimate clients keep to separate networks, so both keep getting their own answers for
/// the whole run instead of everyone ending up judged:
/// - Postfix clients 0..256 (198.18.0.0/24, 2001:db8:0::/64) enumerate (70 % unknown
///   recipients), the others send to existing recipients only;
/// - Dovecot: the farms try from 198.19.0.0/17 (and IPv6 in 2001:db8:100::/40), the real users
///   log in, always with their password, from four home addresses (198.19.128.0/24 and
///   2001:db8:180::/48).
pub type Pool = Option<u32>;

/// Pool entries before this index are the Postfix clients that enumerate.
const ENUMERATORS: u32 = 256;
/// Offset of the Dovecot farms' addresses in [`pooled_address`]'s numbering (198.19/16).
const FARMS: u32 = 1 << 16;
/// Offset of the real users' home addresses (198.19.128.0/24).
const HOMES: u32 = FARMS + (1 << 15);

/// Address `i` of a bounded pool: 198.18.0.0/15 (the benchmarking range), one in five IPv6 from
/// the documentation prefix.
fn pooled_address(out: &mut String, i: u32) {
    if i.is_multiple_of(5) {
        let _ = write!(out, "2001:db8:{:x}::{:x}", i >> 8, (i & 255) + 1);
    } else {
        let _ = write!(
            out,
            "198.{}.{}.{}",
            18 + ((i >> 16) & 1),
            (i >> 8) & 255,
            i & 255
        );
    }
}

/// A client address: mostly scattered over 127/8, some from the benchmarking range
/// 198.18.0.0/15, some IPv6 from the documentation prefix (only text in the request: no traffic
/// goes to any of them).
fn client_address(out: &mut String) {
    match fastrand::u8(..10) {
        0..=5 => write!(
            out,
            "127.{}.{}.{}",
            fastrand::u8(..),
            fastrand::u8(..),
            fastrand::u8(1..255)
        ),
        6..=7 => write!(
            out,
            "198.{}.{}.{}",
            18 + fastrand::u8(..2),
            fastrand::u8(..),
            fastrand::u8(1..255)
        ),
        _ => write!(
            out,
            "2001:db8:{:x}:{:x}::{:x}",
            fastrand::u16(..),
            fastrand::u16(..),
            fastrand::u16(1..)
        ),
    }
    .ok();
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn word(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(ALNUM[fastrand::usize(..ALNUM.len())] as char);
    }
}

/// One RCPT-state request with the attributes Postfix 3.7 sends (SMTPD_POLICY_README), in its
/// order, ended by the empty line. 70% of recipients exist; the rest are random unknown ones.
pub fn postfix_request(buf: &mut String, n: u64, pool: Pool) {
    buf.clear();
    buf.push_str("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n");
    buf.push_str("client_address=");
    // Used only with a pool.
    let key = || fastrand::u32(..pool.unwrap_or(1).max(1));
    let host = match pool {
        None => {
            client_address(buf);
            fastrand::u32(..)
        }
        Some(_) => {
            let i = key();
            pooled_address(buf, i);
            i
        }
    };
    // With a pool, whether this client enumerates (see `Pool`).
    let enumerates = pool.map(|p| host < ENUMERATORS.min(p / 4).max(1));
    let _ = write!(
        buf,
        "\nclient_name=mx{host}.example.net\nreverse_client_name=mx{host}.example.net\nclient_port={}\n",
        fastrand::u16(1024..)
    );
    let _ = writeln!(buf, "helo_name=mx{host}.example.net");
    buf.push_str("sender=");
    if fastrand::u8(..10) == 0 {
        // The null sender (bounces).
    } else if pool.is_some() {
        // One sender per client.
        let _ = write!(buf, "s{host}@sender{}.example.org", host % 64);
    } else {
        word(buf, 8);
        let _ = write!(buf, "@sender{}.example.org", fastrand::u16(..));
    }
    buf.push_str("\nrecipient=");
    match (fastrand::u8(..10), enumerates) {
        (0..=6, Some(true)) => {
            let _ = write!(buf, "u{}@moat.test", key());
        }
        (0..=4, Some(_)) | (0..=3, None) => buf.push_str("alice@moat.test"),
        (_, Some(_)) | (4..=6, None) => buf.push_str("bob@moat.test"),
        _ => {
            word(buf, 10);
            buf.push_str("@moat.test");
        }
    }
    let _ = write!(
        buf,
        "\nrecipient_count=0\nqueue_id=\ninstance={:x}.{:x}.{:x}.{}\nsize={}\n",
        fastrand::u32(..),
        fastrand::u32(..),
        fastrand::u16(..),
        n % 50,
        fastrand::u32(..200_000)
    );
    buf.push_str(
        "etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n\
         ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n\
         encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n\
         encryption_keysize=256\npolicy_context=\nserver_address=127.0.0.1\nserver_port=25\n\
         compatibility_level=3.6\nmail_version=3.7.11\n\n",
    );
}

async fn policy_conn(addr: String, deadline: Instant) -> Outcome {
    let mut o = Outcome {
        lat: Vec::with_capacity(1 << 20),
        errors: 0,
        answers: BTreeMap::new(),
    };
    let mut req = String::with_capacity(1024);
    let mut resp = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let mut n = 0u64;
    'connect: while Instant::now() < deadline {
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            o.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = s.set_nodelay(true);
        while Instant::now() < deadline {
            n += 1;
            postfix_request(&mut req, n, None);
            resp.clear();
            let t = Instant::now();
            if s.write_all(req.as_bytes()).await.is_err() {
                o.errors += 1;
                continue 'connect;
            }
            while !resp.ends_with(b"\n\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        o.errors += 1;
                        continue 'connect;
                    }
                    Ok(k) => resp.extend_from_slice(&chunk[..k]),
                }
            }
            o.lat.push(t.elapsed());
            let action = match resp.strip_prefix(b"action=") {
                Some(a) if a.starts_with(b"DUNNO") => "DUNNO",
                Some(a) if a.starts_with(b"450 ") => "450 (enumeration refusal)",
                Some(_) => "other",
                None => "malformed",
            };
            match o.answers.get_mut(action) {
                Some(c) => *c += 1,
                None => {
                    o.answers.insert(action.to_string(), 1);
                }
            }
        }
    }
    o
}

pub async fn policy(addr: String, connections: usize, seconds: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(policy_conn(addr.clone(), deadline)))
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await?);
    }
    println!("{}", summary(outs, start.elapsed()));
    Ok(())
}

/// Logins a bot farm tries that do not exist (they feed honey accounts); "admin" is protected.
const BOT_LOGINS: &[&str] = &[
    "info@moat.test",
    "test@moat.test",
    "sales@moat.test",
    "contact@moat.test",
    "office@moat.test",
    "support@moat.test",
    "admin@moat.test",
    "webmaster@moat.test",
];
const PASSWORDS: &[&str] = &[
    "123456", "password", "qwerty", "12345678", "111111", "abc123",
];

fn hex64(out: &mut String) {
    for _ in 0..4 {
        let _ = write!(out, "{:016x}", fastrand::u64(..));
    }
}

/// One simulated login attempt: the `allow` body and the `report` body.
pub fn attempt(n: u64, pool: Pool) -> (String, String) {
    let mut login = String::new();
    let mut pwhash = String::with_capacity(64);
    let (fail_type, success) = match fastrand::u8(..10) {
        // Real users logging in, mostly with the right password.
        0..=2 => {
            login.push_str(if n.is_multiple_of(2) {
                "alice@moat.test"
            } else {
                "bob@moat.test"
            });
            // With a pool the real users log in from four homes, so their typos would get
            // the homes banned within seconds: there, the failures are the farms' alone.
            if pool.is_none() && fastrand::u8(..4) == 0 {
                hex64(&mut pwhash);
                ("credentials", false)
            } else {
                // A stable hash per user: the "right password".
                pwhash.push_str(&format!("{:064x}", login.len() as u64 * 0x9e37_79b9));
                ("", true)
            }
        }
        // Credential stuffing on many existing-looking logins.
        3..=7 => {
            let users = pool.unwrap_or(200_000).max(1);
            let _ = write!(login, "user{}@moat.test", fastrand::u32(..users));
            hex64(&mut pwhash);
            ("credentials", false)
        }
        // A farm trying common names that do not exist with common passwords.
        _ => {
            login.push_str(BOT_LOGINS[fastrand::usize(..BOT_LOGINS.len())]);
            let pw = PASSWORDS[fastrand::usize(..PASSWORDS.len())];
            let _ = write!(pwhash, "{:064x}", pw.len() as u64 * 0x2545_f491);
            ("account", false)
        }
    };
    let mut remote = String::new();
    match pool {
        None => client_address(&mut remote),
        Some(_) if success => pooled_address(&mut remote, HOMES + (n % 4) as u32),
        Some(p) => pooled_address(
            &mut remote,
            FARMS + fastrand::u32(..p.clamp(1, HOMES - FARMS)),
        ),
    }
    let session = fastrand::u64(..);
    let allow = format!(
        r#"{{"device_id":"","login":"{login}","protocol":"imap","pwhash":"{pwhash}","remote":"{remote}","session_id":"{session:x}","tls":true}}"#
    );
    let report = format!(
        r#"{{"device_id":"","login":"{login}","protocol":"imap","pwhash":"{pwhash}","remote":"{remote}","session_id":"{session:x}","fail_type":"{fail_type}","success":{success},"policy_reject":false,"tls":true}}"#
    );
    (allow, report)
}

/// `"status":N` from Moat's answer, without a JSON parser (the load generator shares the
/// machine with what it measures).
pub fn status_of(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    s.split("\"status\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .map_or_else(|| "malformed".into(), |v| format!("status {}", v.trim()))
}

async fn auth_conn(uri: http::Uri, token: String, deadline: Instant) -> Outcome {
    let mut o = Outcome {
        lat: Vec::with_capacity(1 << 19),
        errors: 0,
        answers: BTreeMap::new(),
    };
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let bearer = http::HeaderValue::from_str(&format!("Bearer {token}"));
    let Ok(bearer) = bearer else {
        o.errors += 1;
        return o;
    };
    let allow_uri = format!("{}?command=allow", uri.path());
    let report_uri = format!("{}?command=report", uri.path());
    let mut n = 0u64;
    'connect: while Instant::now() < deadline {
        let Ok(stream) = tokio::net::TcpStream::connect(&authority).await else {
            o.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut send, conn)) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        else {
            o.errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < deadline {
            n += 1;
            let (allow, report) = attempt(n, None);
            for (path, body) in [(&allow_uri, allow), (&report_uri, report)] {
                let req = http::Request::post(path.as_str())
                    .header(http::header::HOST, &authority)
                    .header(http::header::AUTHORIZATION, bearer.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::USER_AGENT, "dovecot/2.3.21")
                    .body(Full::new(Bytes::from(body)));
                let Ok(req) = req else {
                    o.errors += 1;
                    continue;
                };
                let t = Instant::now();
                let resp = match send.send_request(req).await {
                    Ok(r) => r,
                    Err(_) => {
                        o.errors += 1;
                        continue 'connect;
                    }
                };
                let code = resp.status();
                let Ok(body) = resp.into_body().collect().await else {
                    o.errors += 1;
                    continue 'connect;
                };
                o.lat.push(t.elapsed());
                if code != http::StatusCode::OK {
                    o.errors += 1;
                }
                let key = if path == &allow_uri {
                    format!("allow {}", status_of(&body.to_bytes()))
                } else {
                    format!("report {}", status_of(&body.to_bytes()))
                };
                *o.answers.entry(key).or_default() += 1;
            }
        }
    }
    o
}

pub async fn authpolicy(
    url: String,
    token: String,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(auth_conn(uri.clone(), token.clone(), deadline)))
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await?);
    }
    println!("{}", summary(outs, start.elapsed()));
    Ok(())
}
