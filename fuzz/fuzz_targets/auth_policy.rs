//! Dovecot's auth-policy protocol (`moat_mail::authpolicy`) on arbitrary bytes: the request body
//! Dovecot POSTs and the query string that names the command. Beyond "never panics":
//!
//! - what `AuthRequest::parse` accepts, written back as the JSON Dovecot would send for it,
//!   parses to the same request (nothing is lost or invented: `pwhash` lowercase, `remote` a
//!   canonical address, the fail type one of four), and parsing is deterministic;
//! - it accepts exactly the bodies that are a JSON object;
//! - `Command::from_query` finds the first `command=allow|report` pair and nothing else, and
//!   a later pair never overrides it;
//! - `response` is a JSON object holding exactly the status and message given.
//!
//! Input: a control byte (bit 0: the rest is a query string rather than a body), then the
//! bytes. The same file runs on stable as a plain test
//! (`crates/moat-mail/tests/policy_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_mail::authpolicy::{response, AuthRequest, Command, FailType};
use serde_json::{json, Value};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// What a run found, for the stable test to check that the seeds go where they should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Nothing,
    Request(AuthRequest),
    Refused,
    Command(Option<Command>),
}

/// The JSON Dovecot sends for `r`.
fn to_json(r: &AuthRequest) -> Value {
    let mut v = json!({
        "login": r.login,
        "pwhash": r.pwhash,
        "device_id": r.device_id,
        "protocol": r.protocol,
        "session_id": "fuzz",
        "tls": false,
    });
    let o = v.as_object_mut().unwrap();
    if let Some(ip) = r.remote {
        o.insert("remote".into(), ip.to_string().into());
    }
    if let Some(s) = r.success {
        o.insert("success".into(), s.into());
    }
    let fail = match r.fail_type {
        FailType::None => None,
        FailType::Credentials => Some("credentials"),
        FailType::Account => Some("account"),
        FailType::Other => Some("policy"),
    };
    if let Some(f) = fail {
        o.insert("fail_type".into(), f.into());
    }
    v
}

fn body(data: &[u8]) -> Seen {
    let parsed = AuthRequest::parse(data);
    let is_object = matches!(serde_json::from_slice::<Value>(data), Ok(Value::Object(_)));
    assert_eq!(parsed.is_ok(), is_object);
    let Ok(r) = parsed else {
        return Seen::Refused;
    };
    assert_eq!(
        AuthRequest::parse(data).as_ref(),
        Ok(&r),
        "not deterministic"
    );
    assert_eq!(r.pwhash, r.pwhash.to_ascii_lowercase());
    if let Some(ip) = r.remote {
        assert_eq!(ip, ip.to_canonical());
    }
    let again = serde_json::to_vec(&to_json(&r)).unwrap();
    assert_eq!(
        AuthRequest::parse(&again).as_ref(),
        Ok(&r),
        "{}",
        String::from_utf8_lossy(&again)
    );
    Seen::Request(r)
}

fn query(data: &[u8]) -> Seen {
    let q = String::from_utf8_lossy(data);
    let c = Command::from_query(&q);
    let first = q.split('&').find_map(|kv| match kv {
        "command=allow" => Some(Command::Allow),
        "command=report" => Some(Command::Report),
        _ => None,
    });
    assert_eq!(c, first, "{q:?}");
    for later in ["command=allow", "command=report"] {
        let more = format!("{q}&{later}");
        let want = first.or(Command::from_query(later));
        assert_eq!(Command::from_query(&more), want);
    }
    // The reply to the request, with what came as its message.
    let status = i32::from(data.first().copied().unwrap_or(0) as i8);
    let text = response(status, &q);
    let v: Value = serde_json::from_str(&text).unwrap();
    let o = v.as_object().unwrap();
    assert_eq!(o.len(), 2);
    assert_eq!(o["status"], json!(status));
    assert_eq!(o["msg"].as_str(), Some(&*q));
    Seen::Command(c)
}

pub fn run(data: &[u8]) -> Seen {
    let Some((&ctl, rest)) = data.split_first() else {
        return Seen::Nothing;
    };
    if ctl & 1 == 0 {
        body(rest)
    } else {
        query(rest)
    }
}

/// Realistic and edge bodies and queries, each as a fuzz input: the seeds in
/// `fuzz/seeds/auth_policy`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let cases: &[(&str, u8, &[u8])] = &[
        ("before-auth", 0, br#"{"device_id":"","login":"info@moat.test","protocol":"imap","pwhash":"0F1E2D3C","remote":"192.0.2.7","session_id":"aBcD1234","tls":true}"#),
        ("after-auth-account", 0, br#"{"device_id":"","login":"info@moat.test","protocol":"smtp","pwhash":"ab","remote":"127.10.0.5","session_id":"x","fail_type":"account","success":false,"policy_reject":false,"tls":false}"#),
        ("after-auth-ok", 0, br#"{"login":"alice","pwhash":"","remote":"2001:db8::7","protocol":"submission","success":true,"fail_type":""}"#),
        ("mapped-v4", 0, br#"{"login":"a","remote":"::ffff:192.0.2.1","success":"1","fail_type":"credentials"}"#),
        ("success-number", 0, br#"{"login":"a","success":1,"fail_type":"internal"}"#),
        ("wrong-types", 0, br#"{"login":7,"pwhash":null,"remote":[1],"device_id":{"a":1},"success":"yes"}"#),
        ("escapes", 0, br#"{"login":"caf\u00e9\ud83d\ude00","pwhash":"\u0041B"}"#),
        ("duplicate-keys", 0, br#"{"login":"a","login":"b"}"#),
        ("empty-object", 0, b"{}"),
        ("array", 0, b"[1,2]"),
        ("garbage", 0, b"{garbage"),
        ("deep", 0, &[b'['; 200]),
        ("query-allow", 1, b"command=allow"),
        ("query-report-later", 1, b"x=1&command=report&command=allow"),
        ("query-unknown", 1, b"command=drop&command"),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, (name, ctl, bytes))| {
            let mut d = vec![*ctl];
            d.extend_from_slice(bytes);
            (format!("{i:02}-{name}"), d)
        })
        .collect()
}
