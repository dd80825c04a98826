//! The mail shield's decision paths without I/O, per request: parsing what Postfix and Dovecot
//! send, the recipient lookup, and the brute-force and enumeration judges. The issue's targets
//! (Postfix policy >= 50,000 req/s, Dovecot auth policy >= 20,000 req/s on this machine) leave
//! 20 and 50 microseconds per request for everything, sockets included; these show how little of
//! that the decisions take. `cargo bench -p moat-mail --bench mail`
//!
//! (`MailShield::policy` itself needs an `Engine`, which needs a store: with `moat-store` as a
//! dev-dependency it could be benched here too.)

use moat_core::PrefixLens;
use moat_mail::authpolicy::{self, AuthRequest};
use moat_mail::bruteforce::{BruteConfig, BruteForce};
use moat_mail::enumeration::{EnumConfig, EnumJudge};
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
