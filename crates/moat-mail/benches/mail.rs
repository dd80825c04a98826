//! The mail shield's decision paths without I/O, per request: parsing what Postfix and Dovecot
//! send, the recipient lookup, and the brute-force and enumeration judges. The issue's targets
//! (Postfix policy >= 50,000 req/s, Dovecot auth policy >= 20,000 req/s on this machine) leave
//! 20 and 50 microseconds per request for everything, sockets included; these show how little of
//! that the decisions take. `cargo bench -p moat-mail --bench mail`
//!
//! (`MailShield::policy` itself needs an `Engine`, which needs a store: with `moat-store` as a
//! dev-dependency it could be benched here too.)
//!
//! The `milter_*` benches run one whole message, as Postfix's bytes, through the milter's
//! decoder and session and encode the replies: the I/O-free part of the milter's >= 20,000
//! messages/s target (50 microseconds a message, sockets included).

use moat_core::PrefixLens;
use moat_detect::bruteforce::{BruteConfig, BruteForce};
use moat_detect::enumeration::{EnumConfig, EnumJudge};
use moat_mail::authpolicy::{self, AuthRequest};
use moat_mail::milter::codec::{encode_command, Decoder};
use moat_mail::milter::session::{MilterPolicy, Outcome, RcptClass, Session};
use moat_mail::policy::{self, Limits, Parser};
use moat_mail::recipients::Recipients;
use std::net::{IpAddr, Ipv4Addr};

fn main() {
    divan::main();
}

/// An RCPT-state request as Postfix 3.7 sends it (31 attributes), lines without their `\n`.
const POSTFIX_REQUEST: &str = "request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=198.51.100.23
client_name=mx23.example.net
reverse_client_name=mx23.example.net
client_port=52344
helo_name=mx23.example.net
sender=newsletter@sender.example.org
recipient=alice@moat.test
recipient_count=0
queue_id=
instance=4f2a.65b1c3d2.8e3f1.0
size=18342
etrn_domain=
stress=
sasl_method=
sasl_username=
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=TLSv1.3
encryption_cipher=TLS_AES_256_GCM_SHA384
encryption_keysize=256
policy_context=
server_address=127.0.0.1
server_port=25
compatibility_level=3.6
mail_version=3.7.11
";

const DOVECOT_BODY: &[u8] = br#"{"device_id":"","login":"alice@moat.test","protocol":"imap","pwhash":"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8","remote":"127.10.0.5","session_id":"3Wc2Pxp4ZqZ/AAAB","fail_type":"credentials","success":false,"policy_reject":false,"tls":false}"#;

fn ip(i: u32) -> IpAddr {
    // Scattered over the address space: a different /24 almost every time.
    IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
}

/// One whole request through the line parser, as `server::policy_conn` feeds it.
#[divan::bench]
fn postfix_parse_request(b: divan::Bencher) {
    let lines: Vec<&[u8]> = POSTFIX_REQUEST.lines().map(str::as_bytes).collect();
    let mut p = Parser::new(Limits::default());
    b.bench_local(|| {
        for l in &lines {
            let _ = p.line(divan::black_box(l));
        }
        p.line(b"").ok().flatten()
    });
}

/// What the Postfix path does after parsing, short of the engine: the client address, the
/// recipient lookup, the reply text.
#[divan::bench]
fn postfix_lookup_and_reply(b: divan::Bencher) {
    let mut r = Recipients::default();
    for i in 0..1000 {
        r.add(&format!("user{i}@moat.test"));
    }
    r.add("alice@moat.test");
    let req = policy::PolicyRequest::from_pairs(
        POSTFIX_REQUEST.lines().filter_map(|l| l.split_once('=')),
    );
    b.bench_local(|| {
        let req = divan::black_box(&req);
        let client = req.get("client_address").parse::<IpAddr>().ok();
        let known = r.contains(req.get("recipient"));
        (client, known, policy::reply("DUNNO"))
    });
}

#[divan::bench]
fn dovecot_parse_body(b: divan::Bencher) {
    b.bench_local(|| AuthRequest::parse(divan::black_box(DOVECOT_BODY)));
}

#[divan::bench]
fn dovecot_response(b: divan::Bencher) {
    b.bench_local(|| authpolicy::response(divan::black_box(0), ""));
}

/// `allow` on one login out of 100,000 tracked ones.
#[divan::bench]
fn brute_allow(b: divan::Bencher) {
    let mut bf = BruteForce::new(BruteConfig::default(), PrefixLens::default());
    let logins: Vec<String> = (0..100_000).map(|i| format!("user{i}@moat.test")).collect();
    for (i, l) in logins.iter().enumerate() {
        bf.failure(l, "0123456789abcdef", ip(i as u32), 1);
    }
    let mut i = 0;
    b.bench_local(|| {
        i = (i + 1) % logins.len();
        bf.allow(
            divan::black_box(&logins[i]),
            "5e884898da28047151d0e56f",
            None,
            "",
            2,
        )
    });
}

/// A failure report from a new address on one of 100,000 logins.
#[divan::bench]
fn brute_failure(b: divan::Bencher) {
    let mut bf = BruteForce::new(BruteConfig::default(), PrefixLens::default());
    let logins: Vec<String> = (0..100_000).map(|i| format!("user{i}@moat.test")).collect();
    let mut i = 0u32;
    b.bench_local(|| {
        i = i.wrapping_add(1);
        let l = &logins[i as usize % logins.len()];
        bf.failure(divan::black_box(l), "5e884898da28047151d0e56f", ip(i), 1)
    });
}

/// An unknown recipient from a new client address, then the check the next request does.
#[divan::bench]
fn enum_unknown_recipient(b: divan::Bencher) {
    let mut j = EnumJudge::new(EnumConfig::default(), PrefixLens::default());
    let mut i = 0u32;
    b.bench_local(|| {
        i = i.wrapping_add(1);
        let a = ip(i);
        j.unknown_recipient(a, "newsletter@sender.example.org", 1);
        j.is_judged(divan::black_box(a), "newsletter@sender.example.org", 1)
    });
}

/// The milter's view of the mail shield without the engine: 1,000 mailboxes, one honey login.
struct MilterBenchPolicy(Recipients);

impl MilterPolicy for MilterBenchPolicy {
    fn is_honey(&self, login: &str) -> bool {
        login == "info@moat.test"
    }
    fn is_trusted(&self, _: IpAddr) -> bool {
        false
    }
    fn classify(&self, r: &str) -> RcptClass {
        if self.0.contains(r) {
            RcptClass::Known
        } else if self.0.is_local(r) {
            RcptClass::UnknownLocal
        } else {
            RcptClass::Foreign
        }
    }
    fn hide_recipients(&self) -> bool {
        true
    }
    fn unknown_recipient(&self, _: IpAddr, _: &str) {}
    fn captured(&self, _: IpAddr, _: &str, _: &str) {}
}

fn milter_packet(code: u8, parts: &[&[u8]], out: &mut Vec<u8>) {
    let mut d = Vec::new();
    for p in parts {
        d.extend_from_slice(p);
        if code != b'B' {
            d.push(0);
        }
    }
    encode_command(code, &d, out);
}

/// One SMTP session with one message as Postfix 3.7 sends it after negotiation (ending with
/// `QUIT_NC`), up to `DATA` for ordinary mail (accepted there), whole otherwise.
fn milter_message(login: &str, rcpts: &[&str], whole: bool) -> Vec<u8> {
    let mut o = Vec::new();
    milter_packet(
        b'D',
        &[b"C{client_addr}", b"127.8.9.10", b"j", b"mx.moat.test"],
        &mut o,
    );
    let mut c = b"mx23.example.net\x004".to_vec();
    c.extend_from_slice(&40000u16.to_be_bytes());
    c.extend_from_slice(b"127.8.9.10\0");
    encode_command(b'C', &c, &mut o);
    milter_packet(b'H', &[b"mx23.example.net"], &mut o);
    let mut macros: Vec<&[u8]> = vec![b"Mi", b"4XABCDEF0123"];
    if !login.is_empty() {
        macros.extend([b"{auth_authen}".as_slice(), login.as_bytes()]);
    }
    milter_packet(b'D', &macros, &mut o);
    milter_packet(
        b'M',
        &[b"<news@sender.example.org>", b"BODY=8BITMIME"],
        &mut o,
    );
    for r in rcpts {
        milter_packet(b'R', &[format!("<{r}>").as_bytes()], &mut o);
    }
    milter_packet(b'T', &[], &mut o);
    if whole {
        for (n, v) in [
            (
                "Received",
                " from mx23.example.net ([127.8.9.10])\n\tby mx.moat.test (Postfix)",
            ),
            ("From", " <news@sender.example.org>"),
            ("To", " <alice@moat.test>"),
            ("Subject", " Our November newsletter"),
            ("Date", " Thu, 26 Nov 2026 10:00:00 +0000"),
            ("Message-ID", " <1.4XABCDEF0123@sender.example.org>"),
            ("MIME-Version", " 1.0"),
            ("Content-Type", " text/plain; charset=utf-8"),
        ] {
            milter_packet(b'L', &[n.as_bytes(), v.as_bytes()], &mut o);
        }
        milter_packet(b'N', &[], &mut o);
        let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
        let body: Vec<u8> = line.iter().copied().cycle().take(4096).collect();
        milter_packet(b'B', &[&body], &mut o);
        milter_packet(b'E', &[], &mut o);
    }
    milter_packet(b'K', &[], &mut o);
    o
}

/// Decodes and handles one message's bytes on a negotiated session, encoding every reply.
fn milter_run(b: divan::Bencher, bytes: Vec<u8>) {
    let mut r = Recipients::default();
    for i in 0..1000 {
        r.add(&format!("user{i}@moat.test"));
    }
    r.add("alice@moat.test");
    let policy = MilterBenchPolicy(r);
    let mut s = Session::new();
    let mut neg = Vec::new();
    let mut d = Vec::new();
    for v in [6u32, 0x1ff, 0x1f_ffff] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    encode_command(b'O', &d, &mut neg);
    let mut dec = Decoder::new();
    dec.feed(&neg);
    let cmd = dec.decode().unwrap().unwrap();
    s.handle(cmd, &policy);
    let mut out = Vec::with_capacity(256);
    b.bench_local(|| {
        dec.feed(divan::black_box(&bytes));
        out.clear();
        let mut captured = None;
        while let Ok(Some(cmd)) = dec.decode() {
            match s.handle(cmd, &policy) {
                Outcome::Reply(r) => r.encode(&mut out),
                Outcome::Drop(rs, _) => rs.iter().for_each(|r| r.encode(&mut out)),
                Outcome::Capture(c) => captured = Some(c),
                Outcome::Silent | Outcome::Close => {}
            }
        }
        (out.len(), captured)
    });
}

/// Ordinary mail: connect, helo, mail, rcpt, data (accepted there).
#[divan::bench]
fn milter_ordinary_message(b: divan::Bencher) {
    milter_run(b, milter_message("", &["alice@moat.test"], false));
}

/// A real and an unknown recipient: the whole 4 KB message kept, DELRCPT at the end.
#[divan::bench]
fn milter_unknown_recipient_message(b: divan::Bencher) {
    milter_run(
        b,
        milter_message("", &["alice@moat.test", "nobody@moat.test"], true),
    );
}

/// A honey login's 4 KB message, captured whole (the quarantine's write is not included).
#[divan::bench]
fn milter_honey_message(b: divan::Bencher) {
    milter_run(
        b,
        milter_message("info@moat.test", &["victim@far.example"], true),
    );
}
