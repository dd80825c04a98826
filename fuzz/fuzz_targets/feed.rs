//! A feed as a subscriber receives it from a peer it does not control (`moat-feed`): the
//! signed head and the gzip'd JSON-lines files. The first byte picks what the rest is:
//!
//! - 0: a head note, opened with a fixed key, parsed, checked as a subscriber checks it;
//! - 1: an indicator file as it comes over the wire (gzip);
//! - 2: an indicator file's text, gzip'd here, so the JSON-lines parser sees the bytes.
//!
//! Beyond "never panics": a note that opens yields a prefix of itself; a head that parses
//! writes itself back to the same head; a file that decodes has only canonical values and
//! encodes back to the same header and operations.
//!
//! The same file runs on stable as a plain test (`crates/moat-feed/tests/feed_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_feed::indicator::{canonical, decode, encode, FileHeader, FileType, Indicator, Kind, Op};
use moat_feed::{Head, PeerView, SignerKey};
use std::io::Write;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

fn key() -> SignerKey {
    SignerKey::from_seed("fuzz.example", [7u8; 32]).expect("a fixed key")
}

/// Returns what was accepted: 1 for a verified head or a decoded file, 0 otherwise.
pub fn run(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    match mode % 3 {
        0 => head(rest),
        1 => file(rest),
        _ => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(rest);
            file(&gz.finish().unwrap_or_default())
        }
    }
}

fn head(rest: &[u8]) -> usize {
    let note = String::from_utf8_lossy(rest);
    let vkey = key().verifier();
    let Ok(text) = vkey.open(&note) else {
        return 0;
    };
    assert!(
        note.starts_with(text),
        "an opened note is a prefix of itself"
    );
    if let Ok(h) = Head::parse(text) {
        assert_eq!(
            Head::parse(&h.to_text()).as_ref(),
            Ok(&h),
            "a head writes itself back"
        );
    }
    // As a subscriber sees it, fresh and after a first head.
    let fresh = PeerView::default();
    let _ = fresh.check_head(&vkey, &note, 1_765_000_000);
    let seen = PeerView {
        seq: 5,
        content: 5,
        expires: 1_765_003_600,
        head_sha: "0".repeat(64),
        ..Default::default()
    };
    let _ = seen.check_head(&vkey, &note, 1_765_000_000);
    1
}

fn file(bytes: &[u8]) -> usize {
    let Ok((header, ops)) = decode(bytes) else {
        return 0;
    };
    for op in &ops {
        let (kind, value) = match op {
            Op::Add(i) => (i.kind, &i.value),
            Op::Del { kind, value } => (*kind, value),
        };
        assert_eq!(
            canonical(kind, value).as_ref(),
            Ok(value),
            "values come out canonical"
        );
    }
    let again = decode(&encode(&header, &ops)).expect("what decoded encodes back");
    assert_eq!(again, (header, ops));
    1
}

/// The seeds: a real signed head (and one with a flipped byte), real files, and broken ones.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let k = key();
    let text = "moat-feed/1\norigin fuzz.example\nseq 7\nexpires 1765003600\nsnapshot 5 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 120\ndelta 6 3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d 60\ndelta 7 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae 61\n";
    let note = k.sign(text);
    let mut flipped = note.clone().into_bytes();
    flipped[30] ^= 1;
    let ind = |kind, value: &str| {
        Op::Add(Indicator {
            kind,
            value: value.into(),
            detector: "jail:postfix-sasl".into(),
            count: 3,
            first_seen: 1_764_990_000,
            last_seen: 1_764_993_600,
            expires: 1_765_080_000,
        })
    };
    let header = FileHeader {
        feed: "fuzz.example".into(),
        number: 6,
        file_type: FileType::Delta,
    };
    let ops = vec![
        ind(Kind::Ip, "203.0.113.7"),
        ind(Kind::Prefix, "198.51.100.0/24"),
        ind(Kind::Domain, "claim.prizes-now.example"),
        ind(Kind::UrlSha256, &"ab".repeat(32)),
        Op::Del {
            kind: Kind::Ip,
            value: "2001:db8::1".into(),
        },
    ];
    let gz = encode(&header, &ops);
    let plain = String::from_utf8_lossy(&{
        let mut d = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut d).unwrap();
        d
    })
    .into_owned();
    let with = |mode: u8, body: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(body);
        v
    };
    vec![
        ("feed-head".into(), with(0, note.as_bytes())),
        ("feed-head-flipped".into(), with(0, &flipped)),
        ("feed-head-unsigned".into(), with(0, text.as_bytes())),
        ("feed-file".into(), with(1, &gz)),
        ("feed-file-cut".into(), with(1, &gz[..gz.len() / 2])),
        ("feed-lines".into(), with(2, plain.as_bytes())),
        (
            "feed-lines-bad".into(),
            with(2, b"{\"feed\":\"x\",\"number\":1,\"type\":\"snapshot\"}\n{\"op\":\"add\",\"kind\":\"ip\",\"value\":\"10.0.0.300\"}\n"),
        ),
    ]
}
