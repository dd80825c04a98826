//! Postfix's policy delegation protocol (`moat_mail::policy`) on arbitrary bytes, split into
//! lines on `\n` as the server reads them. Beyond "never panics":
//!
//! - each line's outcome is a model's of SMTPD_POLICY_README with the parser's `Limits`: a line
//!   over `max_line` (after a trailing CR) or holding a NUL is refused, an empty line ends a
//!   request (and is refused when nothing came before it), a line without `=` is refused, and
//!   the attribute after `max_attrs` is refused; the connection ends at the first refusal;
//! - a request holds exactly the attributes given since the last one and never more than
//!   `max_attrs`, each name and value no longer than a line may be, and `get` answers the last
//!   value given for a name (`""` for any other name): nothing leaks between requests;
//! - `reply` is always exactly one `action=` line and the empty line.
//!
//! Input: a control byte (bits 0-3: `max_line`, 4-7: `max_attrs`, both small so the limits are
//! reached; 0 means the defaults), then the stream. The same file runs on stable as a plain
//! test (`crates/moat-mail/tests/policy_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_mail::policy::{reply, Limits, Parser, PolicyError};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// What a run reached, for the stable test to check that the seeds go where they should.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    pub requests: usize,
    pub error: Option<PolicyError>,
}

pub fn limits(ctl: u8) -> Limits {
    let d = Limits::default();
    Limits {
        max_line: match ctl & 15 {
            0 => d.max_line,
            n => usize::from(n) * 6,
        },
        max_attrs: match ctl >> 4 {
            0 => d.max_attrs,
            n => usize::from(n),
        },
    }
}

pub fn run(data: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let Some((&ctl, stream)) = data.split_first() else {
        return seen;
    };
    let lim = limits(ctl);
    let mut p = Parser::new(lim);
    assert_eq!(p.max_line(), lim.max_line + 2);
    // The attributes given since the last request, as the model keeps them.
    let mut pending: Vec<(String, String)> = Vec::new();
    // Lines end with `\n`; what follows the last one is not a line yet.
    let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    lines.pop();
    for raw in lines {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let expected: Result<bool, PolicyError> = if line.len() > lim.max_line {
            Err(PolicyError::LineTooLong(lim.max_line))
        } else if line.contains(&0) {
            Err(PolicyError::Nul)
        } else if line.is_empty() && pending.is_empty() {
            Err(PolicyError::Empty)
        } else if line.is_empty() {
            Ok(true)
        } else if !line.contains(&b'=') {
            Err(PolicyError::NoEquals)
        } else if pending.len() >= lim.max_attrs {
            Err(PolicyError::TooManyAttributes(lim.max_attrs))
        } else {
            Ok(false)
        };
        let got = p.line(raw);
        match (got, expected) {
            (Ok(None), Ok(false)) => {
                let eq = line.iter().position(|&b| b == b'=').unwrap();
                pending.push((
                    String::from_utf8_lossy(&line[..eq]).into_owned(),
                    String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
                ));
            }
            (Ok(Some(req)), Ok(true)) => {
                assert_eq!(req.len(), pending.len());
                assert!(!req.is_empty() && req.len() <= lim.max_attrs);
                for (i, (name, value)) in pending.iter().enumerate() {
                    // A line's bytes, each invalid one as one replacement character.
                    assert!(name.chars().count() + 1 + value.chars().count() <= lim.max_line);
                    let last = pending[i..]
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v);
                    assert_eq!(req.get(name), last.unwrap().as_str(), "{name:?}");
                }
                for absent in ["", "moat-absent", "request=", "sender\r"] {
                    if !pending.iter().any(|(n, _)| n == absent) {
                        assert_eq!(req.get(absent), "", "{absent:?}");
                    }
                }
                pending.clear();
                seen.requests += 1;
            }
            (Err(e), Err(want)) => {
                assert_eq!(e, want);
                seen.error = Some(e);
                break;
            }
            (got, want) => panic!(
                "{:?}: {got:?}, expected {want:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }
    // Whatever Moat answers, the reply is one line and the empty line.
    let action = String::from_utf8_lossy(stream);
    let r = reply(&action);
    assert!(r.starts_with("action=") && r.ends_with("\n\n"));
    assert_eq!(r.matches('\n').count(), 2);
    assert!(!r.contains('\r'));
    seen
}

/// Realistic and edge streams, each as a fuzz input: the seeds in `fuzz/seeds/policy`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    // What Postfix 3.7 sends at RCPT TO (SMTPD_POLICY_README), and at END-OF-MESSAGE.
    let rcpt = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
client_address=192.0.2.7\nclient_name=mail.example.org\nclient_port=54321\n\
reverse_client_name=mail.example.org\nserver_address=198.51.100.25\nserver_port=25\n\
helo_name=mail.example.org\nsender=bob@example.org\nrecipient=alice@moat.test\n\
recipient_count=0\nqueue_id=\ninstance=123.456.7\nsize=12345\netrn_domain=\nstress=\n\
sasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n\
ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\n\
encryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\npolicy_context=\n\
compatibility_level=3.6\nmail_version=3.7.11\n\n";
    let eom = rcpt
        .replace("protocol_state=RCPT", "protocol_state=END-OF-MESSAGE")
        .replace("recipient_count=0", "recipient_count=2");
    let sasl = rcpt
        .replace("sasl_method=\n", "sasl_method=PLAIN\n")
        .replace("sasl_username=\n", "sasl_username=info@moat.test\n");
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("rcpt", 0, rcpt.as_bytes().to_vec()),
        ("two-requests", 0, format!("{rcpt}{eom}").into_bytes()),
        ("sasl-login", 0, sasl.into_bytes()),
        ("crlf", 0, rcpt.replace('\n', "\r\n").into_bytes()),
        (
            "value-with-equals",
            0,
            b"request=smtpd_access_policy\nccert_subject=CN=x,O=y\nx=y=z\n\n".to_vec(),
        ),
        (
            "repeated-name",
            0,
            b"sender=a@b\nsender=c@d\n\nsender=\n\n".to_vec(),
        ),
        ("empty-request", 0, b"\n".to_vec()),
        (
            "no-equals",
            0,
            b"request=smtpd_access_policy\nGET / HTTP/1.1\n\n".to_vec(),
        ),
        (
            "nul",
            0,
            b"request=smtpd_access_policy\nsender=a\0b\n\n".to_vec(),
        ),
        (
            "latin1",
            0,
            b"request=smtpd_access_policy\nhelo_name=caf\xe9\n\n".to_vec(),
        ),
        (
            "line-limit",
            0x32,
            b"abcdefghijk=1\nabcdefghijklmnopqrstuvwxyz=0123456789\n\n".to_vec(),
        ),
        ("attr-limit", 0x20, b"a=1\nb=2\nc=3\n\n".to_vec()),
        (
            "unterminated",
            0,
            b"request=smtpd_access_policy\nsender=a@b".to_vec(),
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, ctl, bytes))| {
            let mut d = vec![ctl];
            d.extend_from_slice(&bytes);
            (format!("{i:02}-{name}"), d)
        })
        .collect()
}
