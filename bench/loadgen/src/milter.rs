//! Load for Moat's milter, acting as Postfix's smtpd does (issue target: >= 20,000 messages/s of
//! 4 KB on loopback for the milter alone; <= 60 MB for 10,000 sessions held mid-message).
//!
//! Each connection opens with `SMFIC_OPTNEG` (version 6, actions 0x1ff, protocol 0x1fffff, as
//! Postfix 3.7 offers) and then plays SMTP sessions of one message each: macros and `CONNECT`
//! from a varying 127.x client, `HELO`, `MAIL`, `RCPT`s, `DATA`, and, unless the milter accepted
//! the message at `DATA` (Postfix then sends nothing more of it), the headers, end of headers,
//! the body and end of message. Between sessions it sends `SMFIC_QUIT_NC` and keeps the
//! connection: the milter's own cost per message. `--reconnect` does what Postfix 3.7's smtpd
//! does (bench/milter.sh counts one milter connection per SMTP session): `SMFIC_QUIT`, a new
//! connection and a new negotiation for every session.
//!
//! Packets are the ones Postfix sends. A reply is awaited exactly where the negotiation left
//! one (no `SMFIP_NR_*` flag for that step); commands that get none go out in the same write as
//! the next command that does (Postfix writes each event on its own: the same bytes, fewer
//! wake-ups for Moat here).
//!
//! The mix: `--unknown PERCENT` of messages go to a real mailbox plus one unknown one in the
//! protected domain (hidden at RCPT, then `DELRCPT` + `CONTINUE` at end of message, so Moat sees
//! the whole message); the rest go to a real mailbox (accepted at `DATA`).
//!
//! `--hold N` measures memory instead: N connections each stopped after `RCPT` (mid-message),
//! Moat's RSS (`--pid`) before and with all of them open.
//!
//! Prints one JSON line. Latency is per message: from the session's first write to the
//! message's final reply.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `SMFIP_*` flags the load generator reads from the negotiation reply.
mod proto {
    pub const NOCONNECT: u32 = 0x1;
    pub const NOHELO: u32 = 0x2;
    pub const NOMAIL: u32 = 0x4;
    pub const NORCPT: u32 = 0x8;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NODATA: u32 = 0x200;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
}

/// What Postfix 3.7 offers (`milter_protocol = 6`).
const OFFER: (u32, u32, u32) = (6, 0x1ff, 0x1f_ffff);

/// A packet as an MTA writes it: length (command byte included), command byte, data.
pub(crate) fn packet(code: u8, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    out.push(code);
    out.extend_from_slice(data);
}

/// `SMFIC_MACRO` for `stage`: NUL-terminated names and values.
fn macros(stage: u8, pairs: &[(&str, &str)], out: &mut Vec<u8>) {
    let mut d = Vec::with_capacity(128);
    d.push(stage);
    for (k, v) in pairs {
        d.extend_from_slice(k.as_bytes());
        d.push(0);
        d.extend_from_slice(v.as_bytes());
        d.push(0);
    }
    packet(b'D', &d, out);
}

fn cstrs(parts: &[&str]) -> Vec<u8> {
    let mut d = Vec::with_capacity(64);
    for p in parts {
        d.extend_from_slice(p.as_bytes());
        d.push(0);
    }
    d
}

/// One connection to the milter: a write buffer and a reply reader.
struct Conn {
    s: TcpStream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    at: usize,
    /// The negotiated `SMFIP_*` flags.
    protocol: u32,
}

#[derive(Debug)]
struct Broken;

impl Conn {
    async fn open(addr: SocketAddr, from: Option<IpAddr>) -> Result<Conn, Broken> {
        let s = match from {
            Some(ip) => {
                let sock = tokio::net::TcpSocket::new_v4().map_err(|_| Broken)?;
                sock.bind(SocketAddr::new(ip, 0)).map_err(|_| Broken)?;
                sock.connect(addr).await.map_err(|_| Broken)?
            }
            None => TcpStream::connect(addr).await.map_err(|_| Broken)?,
        };
        let _ = s.set_nodelay(true);
        let mut c = Conn {
            s,
            out: Vec::with_capacity(8192),
            inbuf: Vec::with_capacity(512),
            at: 0,
            protocol: 0,
        };
        let mut d = Vec::with_capacity(12);
        for v in [OFFER.0, OFFER.1, OFFER.2] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        packet(b'O', &d, &mut c.out);
        c.flush().await?;
        let (code, data) = c.reply().await?;
        if code != b'O' || data.len() < 12 {
            return Err(Broken);
        }
        c.protocol = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        Ok(c)
    }

    async fn flush(&mut self) -> Result<(), Broken> {
        if !self.out.is_empty() {
            self.s.write_all(&self.out).await.map_err(|_| Broken)?;
            self.out.clear();
        }
        Ok(())
    }

    /// The next reply packet: its code and data.
    async fn reply(&mut self) -> Result<(u8, Vec<u8>), Broken> {
        loop {
            let avail = &self.inbuf[self.at..];
            if avail.len() >= 4 {
                let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
                if len == 0 || len > 1 << 20 {
                    return Err(Broken);
                }
                if avail.len() >= 4 + len {
                    let r = (avail[4], avail[5..4 + len].to_vec());
                    self.at += 4 + len;
                    if self.at == self.inbuf.len() {
                        self.inbuf.clear();
                        self.at = 0;
                    }
                    return Ok(r);
                }
            }
            let mut chunk = [0u8; 1024];
            match self.s.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(Broken),
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn wants_reply(&self, nr: u32) -> bool {
        self.protocol & nr == 0
    }

    /// Writes what is buffered and returns the reply to the last command if it gets one; a
    /// command that gets none stays buffered for the next write (the same bytes on the wire as
    /// Postfix's per-event writes, fewer wake-ups for the load generator).
    async fn step(&mut self, nr: u32) -> Result<Option<u8>, Broken> {
        if !self.wants_reply(nr) {
            return Ok(None);
        }
        self.flush().await?;
        loop {
            let (code, _) = self.reply().await?;
            // Progress and message changes come before the answer proper.
            if !matches!(
                code,
                b'p' | b'-' | b'+' | b'h' | b'm' | b'i' | b'e' | b'b' | b'2'
            ) {
                return Ok(Some(code));
            }
        }
    }

    /// End of message: the final answer, counting the recipients deleted before it.
    async fn end_of_message(&mut self) -> Result<(u8, usize), Broken> {
        self.flush().await?;
        let mut deleted = 0;
        loop {
            let (code, _) = self.reply().await?;
            match code {
                b'-' => deleted += 1,
                b'p' | b'+' | b'h' | b'm' | b'i' | b'e' | b'b' | b'2' => {}
                _ => return Ok((code, deleted)),
            }
        }
    }
}

/// What the message is.
#[derive(Clone, Copy)]
enum Kind {
    /// To a real mailbox: accepted at DATA.
    Ordinary,
    /// A real mailbox and an unknown one: the whole message, DELRCPT at the end.
    Unknown,
}

struct Texts {
    body: Vec<u8>,
}

/// A 4 KB-ish text body of `size` bytes, CRLF lines.
fn body(size: usize) -> Vec<u8> {
    let line =
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    let mut b = Vec::with_capacity(size);
    while b.len() + line.len() <= size {
        b.extend_from_slice(line);
    }
    b.resize(size, b'.');
    if size >= 2 {
        b[size - 2..].copy_from_slice(b"\r\n");
    }
    b
}

/// One SMTP session with one message, as Postfix's smtpd drives the milter. Returns the answer
/// that ended the message (for the summary).
async fn message(c: &mut Conn, n: u64, kind: Kind, t: &Texts) -> Result<&'static str, Broken> {
    let client = format!(
        "127.{}.{}.{}",
        fastrand::u8(..),
        fastrand::u8(..),
        fastrand::u8(1..255)
    );
    let host = format!("mx{}.example.net", fastrand::u32(..));
    let qid = format!("4X{n:010X}");
    let p = c.protocol;
    if p & proto::NOCONNECT == 0 {
        macros(
            b'C',
            &[
                ("j", "mx.moat.test"),
                ("{daemon_name}", "smtpd"),
                ("v", "Postfix 3.7.11"),
                ("_", &format!("{host} [{client}]")),
                ("{client_addr}", &client),
                ("{client_name}", &host),
            ],
            &mut c.out,
        );
        let mut d = Vec::with_capacity(64);
        d.extend_from_slice(host.as_bytes());
        d.push(0);
        d.push(b'4');
        d.extend_from_slice(&fastrand::u16(1024..).to_be_bytes());
        d.extend_from_slice(client.as_bytes());
        d.push(0);
        packet(b'C', &d, &mut c.out);
        if let Some(code) = c.step(proto::NR_CONN).await? {
            if code != b'c' {
                return Ok("refused at CONNECT");
            }
        }
    }
    if p & proto::NOHELO == 0 {
        macros(b'H', &[("{tls_version}", "TLSv1.3")], &mut c.out);
        packet(b'H', &cstrs(&[&host]), &mut c.out);
        if let Some(code) = c.step(proto::NR_HELO).await? {
            if code != b'c' {
                return Ok("refused at HELO");
            }
        }
    }
    let sender = format!("news{}@sender{}.example.org", n % 1000, fastrand::u16(..));
    if p & proto::NOMAIL == 0 {
        macros(
            b'M',
            &[
                ("i", &qid),
                ("{mail_addr}", &sender),
                ("{mail_mailer}", "smtp"),
            ],
            &mut c.out,
        );
        let from = format!("<{sender}>");
        packet(
            b'M',
            &cstrs(&[&from, "BODY=8BITMIME", "SIZE=4096"]),
            &mut c.out,
        );
        if let Some(code) = c.step(proto::NR_MAIL).await? {
            if code != b'c' {
                return Ok("refused at MAIL");
            }
        }
    }
    let real = if n.is_multiple_of(2) {
        "alice@moat.test".to_string()
    } else {
        "bob@moat.test".to_string()
    };
    let mut rcpts = vec![real];
    if let Kind::Unknown = kind {
        rcpts.push(format!("u{:08x}@moat.test", fastrand::u32(..)));
    }
    if p & proto::NORCPT == 0 {
        for r in &rcpts {
            macros(
                b'R',
                &[("{rcpt_addr}", r), ("{rcpt_mailer}", "virtual")],
                &mut c.out,
            );
            packet(b'R', &cstrs(&[&format!("<{r}>")]), &mut c.out);
            if let Some(code) = c.step(proto::NR_RCPT).await? {
                if code != b'c' {
                    return Ok("refused at RCPT");
                }
            }
        }
    }
    if p & proto::NODATA == 0 {
        packet(b'T', &[], &mut c.out);
        match c.step(proto::NR_DATA).await? {
            Some(b'a') => return Ok("accept at DATA"),
            Some(b'c') | None => {}
            Some(_) => return Ok("refused at DATA"),
        }
    }
    if p & proto::NOHDRS == 0 {
        let date = "Thu, 26 Nov 2026 10:00:00 +0000";
        let received = format!(
            " from {host} ({host} [{client}])\n\tby mx.moat.test (Postfix) with ESMTPS id {qid}\n\tfor <{}>; {date}",
            rcpts[0]
        );
        let from = format!(" <{sender}>");
        let to = format!(" <{}>", rcpts[0]);
        let mid = format!(" <{n}.{qid}@sender.example.org>");
        for (name, value) in [
            ("Received", received.as_str()),
            ("From", &from),
            ("To", &to),
            ("Subject", " Our November newsletter"),
            ("Date", " Thu, 26 Nov 2026 10:00:00 +0000"),
            ("Message-ID", &mid),
            ("MIME-Version", " 1.0"),
            ("Content-Type", " text/plain; charset=utf-8"),
        ] {
            packet(b'L', &cstrs(&[name, value]), &mut c.out);
            if let Some(code) = c.step(proto::NR_HDR).await? {
                if code != b'c' {
                    return Ok("refused at a header");
                }
            }
        }
    }
    if p & proto::NOEOH == 0 {
        packet(b'N', &[], &mut c.out);
        if let Some(code) = c.step(proto::NR_EOH).await? {
            if code != b'c' {
                return Ok("refused at end of headers");
            }
        }
    }
    if p & proto::NOBODY == 0 {
        // Postfix sends the body in chunks of at most 65535 bytes.
        for chunk in t.body.chunks(65535) {
            packet(b'B', chunk, &mut c.out);
            if let Some(code) = c.step(proto::NR_BODY).await? {
                if code != b'c' {
                    return Ok("refused in the body");
                }
            }
        }
    }
    macros(b'E', &[("{msg_id}", "<x@sender.example.org>")], &mut c.out);
    packet(b'E', &[], &mut c.out);
    let (code, deleted) = c.end_of_message().await?;
    Ok(match (code, deleted) {
        (b'c', 0) => "continue at end of message",
        (b'c', _) => "recipient deleted + continue",
        (b'd', _) => "discard",
        (b'a', _) => "accept at end of message",
        (b't', _) => "tempfail at end of message",
        _ => "other at end of message",
    })
}

struct Outcome {
    lat: Vec<Duration>,
    errors: u64,
    answers: BTreeMap<&'static str, u64>,
}

async fn milter_conn(
    addr: SocketAddr,
    deadline: Instant,
    unknown_percent: u8,
    reconnect: bool,
    texts: std::sync::Arc<Texts>,
) -> Outcome {
    let mut o = Outcome {
        lat: Vec::with_capacity(1 << 20),
        errors: 0,
        answers: BTreeMap::new(),
    };
    let mut n = fastrand::u64(..1 << 32);
    'connect: while Instant::now() < deadline {
        let mut t = Instant::now();
        let Ok(mut c) = Conn::open(addr, None).await else {
            o.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while Instant::now() < deadline {
            n += 1;
            let kind = if fastrand::u8(..100) < unknown_percent {
                Kind::Unknown
            } else {
                Kind::Ordinary
            };
            let answer = match message(&mut c, n, kind, &texts).await {
                Ok(a) => a,
                Err(Broken) => {
                    o.errors += 1;
                    continue 'connect;
                }
            };
            o.lat.push(t.elapsed());
            *o.answers.entry(answer).or_default() += 1;
            if reconnect {
                // Postfix's smtpd at the end of an SMTP session, when it does not reuse.
                packet(b'Q', &[], &mut c.out);
                let _ = c.flush().await;
                continue 'connect;
            }
            // The next session on this connection; QUIT_NC goes out with its first write.
            packet(b'K', &[], &mut c.out);
            t = Instant::now();
        }
    }
    o
}

pub async fn run(
    addr: String,
    connections: usize,
    seconds: u64,
    unknown_percent: u8,
    body_size: usize,
    reconnect: bool,
) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let texts = std::sync::Arc::new(Texts {
        body: body(body_size),
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(milter_conn(
                addr,
                deadline,
                unknown_percent,
                reconnect,
                texts.clone(),
            ))
        })
        .collect();
    let mut v = Vec::new();
    let mut errors = 0;
    let mut answers: BTreeMap<&str, u64> = BTreeMap::new();
    for t in tasks {
        let o = t.await?;
        v.extend(o.lat);
        errors += o.errors;
        for (k, n) in o.answers {
            *answers.entry(k).or_default() += n;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "messages": v.len(), "seconds": (secs * 1000.0).round() / 1000.0,
        "rps": (v.len() as f64 / secs).round() as u64,
        "p50_ms": crate::pct(&mut v, 0.50), "p99_ms": crate::pct(&mut v, 0.99),
        "max_ms": crate::pct(&mut v, 1.0), "errors": errors, "answers": answers,
        "unknown_percent": unknown_percent, "body_bytes": body_size, "reconnect": reconnect,
    });
    println!("{out}");
    Ok(())
}

/// One session stopped after RCPT, kept open.
async fn held(addr: SocketAddr, from: IpAddr, n: u64) -> Result<Conn, Broken> {
    let mut c = Conn::open(addr, Some(from)).await?;
    // The envelope only: a message whose DATA never comes.
    let client = format!(
        "127.{}.{}.{}",
        n >> 16 & 255,
        n >> 8 & 255,
        (n & 255).max(1)
    );
    macros(b'C', &[("{client_addr}", &client)], &mut c.out);
    let mut d = b"mx.example.net\x004".to_vec();
    d.extend_from_slice(&40000u16.to_be_bytes());
    d.extend_from_slice(client.as_bytes());
    d.push(0);
    packet(b'C', &d, &mut c.out);
    c.step(proto::NR_CONN).await?;
    packet(b'H', &cstrs(&["mx.example.net"]), &mut c.out);
    c.step(proto::NR_HELO).await?;
    macros(b'M', &[("i", &format!("4X{n:010X}"))], &mut c.out);
    packet(b'M', &cstrs(&["<news@sender.example.org>"]), &mut c.out);
    c.step(proto::NR_MAIL).await?;
    for r in ["alice@moat.test", "nobody@moat.test"] {
        packet(b'R', &cstrs(&[&format!("<{r}>")]), &mut c.out);
        c.step(proto::NR_RCPT).await?;
    }
    c.flush().await?;
    Ok(c)
}

/// `--hold N`: N sessions mid-message, Moat's RSS before and with them.
pub async fn hold(
    addr: String,
    sessions: usize,
    pid: Option<u32>,
    seconds: u64,
) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let rss = || pid.and_then(crate::rss_kb);
    let before = rss();
    let start = Instant::now();
    let mut conns = Vec::with_capacity(sessions);
    let mut errors = 0u64;
    // 100 sessions opening at a time (Moat's listen backlog is 128: more SYNs at once get
    // dropped and retried a second later), from 64 source addresses (ephemeral ports).
    let mut i = 0u64;
    while conns.len() + (errors as usize) < sessions {
        let batch = (sessions - conns.len() - errors as usize).min(100);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                i += 1;
                let from = IpAddr::V4(Ipv4Addr::new(127, 1, (i % 64) as u8, 1));
                tokio::spawn(held(addr, from, i))
            })
            .collect();
        for t in tasks {
            match t.await? {
                Ok(c) => conns.push(c),
                Err(Broken) => errors += 1,
            }
        }
    }
    let opened = start.elapsed();
    // Let Moat's tasks settle (every reply written, buffers at rest) before sampling.
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let with = rss();
    // Still open? A closed one reads 0 (or an error); an open one has nothing to read.
    let mut b = [0u8; 1];
    let alive = conns
        .iter()
        .filter(|c| matches!(c.s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    let mb = |k: Option<u64>| k.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0);
    let out = serde_json::json!({
        "sessions": conns.len(), "alive": alive, "errors": errors,
        "open_seconds": (opened.as_secs_f64() * 100.0).round() / 100.0,
        "rss_before_mb": mb(before), "rss_with_mb": mb(with),
        "per_session_kb": match (before, with) {
            (Some(b), Some(w)) if !conns.is_empty() => Some(((w as f64 - b as f64) / conns.len() as f64 * 100.0).round() / 100.0),
            _ => None,
        },
    });
    println!("{out}");
    Ok(())
}
