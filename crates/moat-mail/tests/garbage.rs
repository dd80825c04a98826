//! Bad input never panics the mail shield's protocol code: random and mutated bytes through the
//! Postfix parser and the Dovecot body parser (the capture session's is in moat-trap).

use moat_mail::authpolicy::AuthRequest;
use moat_mail::policy::{Limits, Parser};

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
