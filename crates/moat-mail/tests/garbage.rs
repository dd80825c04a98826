//! Bad input never panics the mail shield's protocol code: random and mutated bytes through the
//! Postfix parser, the capture SMTP session and the Dovecot body parser.

use moat_mail::authpolicy::AuthRequest;
use moat_mail::policy::{Limits, Parser};
use moat_mail::smtp::{Session, Step};

fn random_bytes(rng: &mut fastrand::Rng, max: usize) -> Vec<u8> {
    let n = rng.usize(..max);
    (0..n)
        .map(|_| match rng.u8(..8) {
            // Bias towards the bytes the protocols care about.
            0 => b'=',
            1 => b'\n',
            2 => b'\r',
            3 => b'.',
            4 => b':',
            _ => rng.u8(..),
        })
        .collect()
}

#[test]
fn the_postfix_parser_survives_anything() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let mut p = Parser::new(Limits::default());
        let data = random_bytes(&mut rng, 300);
        for line in data.split(|&b| b == b'\n') {
            if p.line(line).is_err() {
                break;
            }
        }
    }
}

#[test]
fn the_capture_session_survives_anything_and_keeps_its_state_machine() {
    let mut rng = fastrand::Rng::with_seed(11);
    let commands: [&[u8]; 9] = [
        b"EHLO x",
        b"MAIL FROM:<a@b>",
        b"RCPT TO:<c@d>",
        b"DATA",
        b".",
        b"RSET",
        b"XFORWARD ADDR=1.2.3.4",
        b"QUIT",
        b"NOOP",
    ];
    for _ in 0..5_000 {
        let mut s = Session::new("t", 4096);
        for _ in 0..40 {
            let line = if rng.bool() {
                commands[rng.usize(..commands.len())].to_vec()
            } else {
                random_bytes(&mut rng, 200)
            };
            if let Step::Close(_) = s.line(&line) {
                break;
            }
        }
    }
}

#[test]
fn the_dovecot_body_parser_survives_anything() {
    let mut rng = fastrand::Rng::with_seed(13);
    let real = br#"{"login":"a@b","pwhash":"00","remote":"127.0.0.1","success":false,"fail_type":"account"}"#;
    for _ in 0..20_000 {
        let mut body = real.to_vec();
        for _ in 0..rng.usize(1..6) {
            if body.is_empty() {
                break;
            }
            let i = rng.usize(..body.len());
            body[i] = rng.u8(..);
        }
        let _ = AuthRequest::parse(&body);
        let _ = AuthRequest::parse(&random_bytes(&mut rng, 200));
    }
}
