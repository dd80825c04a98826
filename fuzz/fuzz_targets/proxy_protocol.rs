//! The PROXY protocol parser (`moat_http::proxy_protocol::parse`) on arbitrary bytes. Beyond
//! "never panics", what `read_header` relies on:
//!
//! - a header is at most the input (v1: at most 107 bytes, ending in CRLF; v2: its 16 fixed
//!   bytes and the announced payload), and parses the same from its own bytes alone and with
//!   anything appended: the verdict is decided by the header's bytes;
//! - every proper prefix of a header is `Incomplete` (the module's promise), and a verdict
//!   reached on a prefix (a header or an error) is the verdict on the whole input: bytes
//!   appended never turn a header or an error into something else;
//! - 4112 bytes (16 + `V2_MAX_PAYLOAD`) always decide, so the read loop is bounded;
//! - a v1 header re-formatted from what it says (`PROXY TCP4 src dst sport dport`, addresses
//!   in canonical form) parses to the same source; a v2 header re-encoded from its source and
//!   the destination bytes it carried does too; the source's family is the declared one.
//!
//! Input: a control byte (bit 0: pad the input with its last byte to 4112 bytes, so the size
//! bounds are reached), then the bytes. The same file runs on stable as a plain test
//! (`crates/moat-http/tests/parser_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_http::proxy_protocol::{
    parse, Parsed, ProxyError, V1_MAX_LEN, V2_MAX_PAYLOAD, V2_SIGNATURE,
};
use std::mem::discriminant;
use std::net::{IpAddr, SocketAddr};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// The most bytes `parse` may need before deciding.
const DECIDED: usize = 16 + V2_MAX_PAYLOAD;

/// What a run found, for the stable test to check that the seeds go where they should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Incomplete,
    Header(Option<SocketAddr>),
    Error,
}

fn same(a: &Result<Parsed, ProxyError>, b: &Result<Parsed, ProxyError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => discriminant(x) == discriminant(y),
        _ => false,
    }
}

pub fn run(data: &[u8]) -> Seen {
    let Some((&ctl, rest)) = data.split_first() else {
        return Seen::Incomplete;
    };
    let mut buf = rest.to_vec();
    if ctl & 1 != 0 {
        if let Some(&last) = buf.last() {
            buf.resize(buf.len().max(DECIDED), last);
        }
    }
    let buf = &buf[..];
    let verdict = parse(buf);
    if buf.len() >= DECIDED {
        assert!(
            !matches!(verdict, Ok(Parsed::Incomplete)),
            "undecided at {} bytes",
            buf.len()
        );
    }

    // Verdicts on prefixes: Incomplete, or already the final one. A few cuts, cheaply chosen.
    let mut cuts: Vec<usize> = vec![
        0,
        1,
        5,
        6,
        12,
        13,
        14,
        15,
        16,
        28,
        V1_MAX_LEN - 1,
        V1_MAX_LEN,
    ];
    cuts.extend(buf.iter().take(8).map(|&b| usize::from(b) * 17));
    for cut in cuts.into_iter().filter(|&c| c < buf.len()) {
        let early = parse(&buf[..cut]);
        if !matches!(early, Ok(Parsed::Incomplete)) {
            assert!(
                same(&early, &verdict),
                "{early:?} at {cut} bytes, {verdict:?} at {}",
                buf.len()
            );
        }
    }

    let (len, source) = match verdict {
        Ok(Parsed::Incomplete) => return Seen::Incomplete,
        Err(e) => {
            // Stable when more bytes come.
            let mut more = buf.to_vec();
            more.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
            assert!(same(&parse(&more), &Err(e)));
            return Seen::Error;
        }
        Ok(Parsed::Header { len, source }) => (len, source),
    };
    assert!(len <= buf.len());
    for cut in [0, len / 2, len.saturating_sub(2), len - 1] {
        assert_eq!(
            parse(&buf[..cut]).ok(),
            Some(Parsed::Incomplete),
            "prefix of {cut}"
        );
    }
    let header = Ok(Parsed::Header { len, source });
    assert!(same(&parse(&buf[..len]), &header));
    let mut more = buf[..len].to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert!(same(&parse(&more), &header));

    if buf[0] == b'P' {
        v1(&buf[..len], source);
    } else {
        v2(&buf[..len], source);
    }
    Seen::Header(source)
}

fn v1(line: &[u8], source: Option<SocketAddr>) {
    assert!(line.len() <= V1_MAX_LEN && line.ends_with(b"\r\n"));
    let text = std::str::from_utf8(&line[..line.len() - 2]).unwrap();
    let fields: Vec<&str> = text.split(' ').collect();
    assert_eq!(fields[0], "PROXY");
    let Some(src) = source else {
        assert_eq!(fields[1], "UNKNOWN");
        return;
    };
    assert_eq!(fields.len(), 6, "{text:?}");
    let family = fields[1];
    assert_eq!(family == "TCP4", src.is_ipv4());
    let dst: IpAddr = fields[3].parse().unwrap();
    let dport: u16 = fields[5].parse().unwrap();
    assert_eq!(dst.is_ipv4(), src.is_ipv4());
    // What a sender formats from the same connection.
    let again = format!(
        "PROXY {family} {} {dst} {} {dport}\r\n",
        src.ip(),
        src.port()
    );
    assert_eq!(
        parse(again.as_bytes()).ok(),
        Some(Parsed::Header {
            len: again.len(),
            source: Some(src)
        }),
        "{again:?}"
    );
}

fn v2(head: &[u8], source: Option<SocketAddr>) {
    assert_eq!(head[..12], V2_SIGNATURE);
    let payload = usize::from(u16::from_be_bytes([head[14], head[15]]));
    assert_eq!(head.len(), 16 + payload);
    assert!(payload <= V2_MAX_PAYLOAD);
    let Some(src) = source else {
        return;
    };
    assert_eq!(head[12], 0x21, "a source from a LOCAL header");
    // Re-encoded from the source, with the destination it carried and no TLVs.
    let mut again = V2_SIGNATURE.to_vec();
    match src {
        SocketAddr::V4(a) => {
            assert_eq!(head[13], 0x11);
            again.extend_from_slice(&[0x21, 0x11, 0, 12]);
            again.extend_from_slice(&a.ip().octets());
            again.extend_from_slice(&head[20..24]);
            again.extend_from_slice(&a.port().to_be_bytes());
            again.extend_from_slice(&head[26..28]);
        }
        SocketAddr::V6(a) => {
            assert_eq!(head[13], 0x21);
            again.extend_from_slice(&[0x21, 0x21, 0, 36]);
            again.extend_from_slice(&a.ip().octets());
            again.extend_from_slice(&head[32..48]);
            again.extend_from_slice(&a.port().to_be_bytes());
            again.extend_from_slice(&head[50..52]);
        }
    }
    assert_eq!(
        parse(&again).ok(),
        Some(Parsed::Header {
            len: again.len(),
            source: Some(src)
        })
    );
}

/// Realistic and edge headers, each as a fuzz input: the seeds in `fuzz/seeds/proxy_protocol`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let sig = V2_SIGNATURE;
    let v2 = |vc: u8, fam: u8, payload: &[u8]| {
        let mut d = sig.to_vec();
        d.push(vc);
        d.push(fam);
        d.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        d.extend_from_slice(payload);
        d
    };
    let v4_addrs = [192u8, 0, 2, 1, 198, 51, 100, 2, 0x13, 0x88, 0x01, 0xbb];
    let mut v6_addrs = Vec::new();
    v6_addrs.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v6_addrs.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v6_addrs.extend_from_slice(&[0xc3, 0x50, 0x01, 0xbb]);
    // An AWS NLB-style header: addresses, then a PP2_TYPE_AWS TLV and a CRC32C TLV.
    let mut with_tlvs = v4_addrs.to_vec();
    with_tlvs.extend_from_slice(&[0xea, 0x00, 0x0e, 0x01]);
    with_tlvs.extend_from_slice(b"vpce-0123abcd");
    with_tlvs.extend_from_slice(&[0x03, 0x00, 0x04, 1, 2, 3, 4]);
    let mut bad_tlv = v4_addrs.to_vec();
    bad_tlv.extend_from_slice(&[0x01, 0x00, 0x09, b'h', b'2']);
    let mut unix = vec![0u8; 216];
    unix[..9].copy_from_slice(b"/run/sock");

    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("v1-tcp4", 0, b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\r\nGET / HTTP/1.1\r\n".to_vec()),
        ("v1-tcp6", 0, b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n".to_vec()),
        ("v1-tcp6-mapped", 0, b"PROXY TCP6 ::ffff:192.0.2.1 ::1 65535 0\r\n".to_vec()),
        ("v1-unknown", 0, b"PROXY UNKNOWN\r\n".to_vec()),
        ("v1-unknown-with-junk", 0, b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".to_vec()),
        ("v1-longest", 0, b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec()),
        ("v1-wrong-family", 0, b"PROXY TCP4 2001:db8::1 192.0.2.2 5000 443\r\n".to_vec()),
        ("v1-leading-zero-port", 0, b"PROXY TCP4 192.0.2.1 198.51.100.2 05000 443\r\n".to_vec()),
        ("v1-bare-lf", 0, b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\n".to_vec()),
        ("v1-too-long", 1, b"PROXY TCP4 1".to_vec()),
        ("v1-partial", 0, b"PROXY TCP4 192.0.2.1 198.51".to_vec()),
        ("v2-tcp4", 0, v2(0x21, 0x11, &v4_addrs)),
        ("v2-tcp6", 0, v2(0x21, 0x21, &v6_addrs)),
        ("v2-local", 0, v2(0x20, 0x00, &[])),
        ("v2-tlvs", 0, v2(0x21, 0x11, &with_tlvs)),
        ("v2-bad-tlv", 0, v2(0x21, 0x11, &bad_tlv)),
        ("v2-unix", 0, v2(0x21, 0x31, &unix)),
        ("v2-udp", 0, v2(0x21, 0x12, &v4_addrs)),
        ("v2-unspec", 0, v2(0x21, 0x00, &[])),
        ("v2-short-for-family", 0, v2(0x21, 0x21, &v4_addrs)),
        ("v2-version-1", 0, v2(0x11, 0x11, &v4_addrs)),
        ("v2-too-long", 1, {
            let mut d = sig.to_vec();
            d.extend_from_slice(&[0x21, 0x11, 0x10, 0x01]);
            d
        }),
        ("v2-partial", 0, sig[..7].to_vec()),
        ("http", 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("tls", 0, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
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
