//! Bad input never panics the proof's parsers: cookies, challenges, injected HTML and header
//! sets made of random bytes.

use bytes::Bytes;
use moat_proof::challenge;
use moat_proof::fingerprint::shape;
use moat_proof::inject::Injector;
use moat_proof::token;
use moat_proof::{ua_hash, KeyRing, Net};

#[test]
fn tokens_and_challenges_of_random_text_are_refused() {
    let ring = KeyRing::generate(0).unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.";
    let net = Net::of("192.0.2.1".parse().unwrap(), 24, 64);
    for len in [0usize, 1, 69, 70, 71, 79, 80, 81, 500] {
        for _ in 0..500 {
            let t: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                .collect();
            assert!(token::open(&ring, &t).is_err());
            assert!(challenge::check(&ring, &t, "1", 1, ua_hash(b"x"), net).is_err());
        }
    }
}

#[test]
fn the_injector_emits_every_byte_once_plus_the_tag() {
    let mut rng = fastrand::Rng::with_seed(5);
    let pieces = b"<head>HEAD </x>ab\n";
    for _ in 0..2_000 {
        let n = rng.usize(..400);
        let page: Vec<u8> = (0..n).map(|_| pieces[rng.usize(..pieces.len())]).collect();
        let mut inj = Injector::new(Bytes::from_static(b"<T>"));
        let mut out = Vec::new();
        let mut at = 0;
        while at < page.len() {
            let step = rng.usize(1..=(page.len() - at).min(37));
            inj.push(Bytes::copy_from_slice(&page[at..at + step]), &mut out);
            at += step;
        }
        inj.finish(&mut out);
        let all = out.concat();
        assert_eq!(all.len(), page.len() + 3);
        let pos = all.windows(3).position(|w| w == b"<T>").unwrap();
        let mut without = all.clone();
        without.drain(pos..pos + 3);
        assert_eq!(without, page, "the page bytes are untouched");
    }
}

#[test]
fn fingerprints_of_random_headers_do_not_panic() {
    let mut rng = fastrand::Rng::with_seed(9);
    let names = [
        "user-agent",
        "sec-ch-ua",
        "accept-language",
        "sec-fetch-mode",
        "x",
    ];
    for _ in 0..5_000 {
        let mut h = http::HeaderMap::new();
        for _ in 0..rng.usize(..12) {
            let v: String = (0..rng.usize(..60))
                .map(|_| rng.u8(32..127) as char)
                .collect();
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                h.append(names[rng.usize(..names.len())], v);
            }
        }
        let _ = shape(rng.bool(), "GET", &h, rng.bool());
    }
}
