//! Client address resolution and the PROXY protocol, tested as the proxy uses them: who wins
//! when headers are spoofed, what the upstream sees, and how a PROXY header comes off a stream.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use moat_http::client_addr::{
    resolve, rewrite_forwarding, ClientAddrPolicy, ClientIpSource, TrustedProxies,
};
use moat_http::proxy_protocol::{parse, read_header, Parsed, Prefixed, ProxyError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ClientIpSource::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn policy(trusted: &[&str], sources: &[ClientIpSource]) -> ClientAddrPolicy {
    let nets = trusted.iter().map(|n| n.parse().expect("net")).collect();
    ClientAddrPolicy {
        trusted: TrustedProxies::new(nets),
        sources: sources.to_vec(),
    }
}

/// Builds a map, appending repeated names as separate lines in order.
fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let pair = |(k, v): &(&str, &str)| (k.parse().expect("name"), v.parse().expect("value"));
    pairs.iter().map(pair).collect()
}

const ALL: [ClientIpSource; 4] = [XForwardedFor, Forwarded, FlyClientIp, CfConnectingIp];
const TRUSTED: &[&str] = &["10.0.0.0/8", "192.168.1.1/32"];

/// The client address for a request from `peer` carrying `pairs`, trusting [`TRUSTED`].
fn who(sources: &[ClientIpSource], peer: &str, pairs: &[(&str, &str)]) -> IpAddr {
    resolve(&policy(TRUSTED, sources), ip(peer), &headers(pairs))
}

/// Rows are `line | line ... => client`: header lines of one kind, in order, and the client
/// expected when they arrive from the trusted peer 10.0.0.1.
fn check_table(source: ClientIpSource, name: &str, rows: &[&str]) {
    for row in rows {
        let (lines, want) = row.rsplit_once(" => ").expect("row has =>");
        let pairs: Vec<_> = lines.split(" | ").map(|l| (name, l)).collect();
        assert_eq!(who(&[source], "10.0.0.1", &pairs), ip(want), "{row}");
    }
}

#[test]
fn untrusted_peer_ignores_every_header() {
    let spoofed = [
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
        ("fly-client-ip", "1.2.3.4"),
        ("cf-connecting-ip", "1.2.3.4"),
    ];
    for source in ALL {
        assert_eq!(who(&[source], "198.51.100.9", &spoofed), ip("198.51.100.9"));
        // The same headers from a trusted peer do win, so the rejection above is meaningful.
        assert_eq!(who(&[source], "10.0.0.1", &spoofed), ip("1.2.3.4"));
    }
    // An empty trust list trusts no one, not even loopback.
    let h = headers(&spoofed);
    let loopback = resolve(&policy(&[], &ALL), ip("127.0.0.1"), &h);
    assert_eq!(loopback, ip("127.0.0.1"));
    // Trusted, but no header sources configured: the peer.
    assert_eq!(who(&[], "10.0.0.1", &spoofed), ip("10.0.0.1"));
}

#[test]
fn xff_walks_right_to_left_across_lines() {
    let rows = &[
        // The client spoofed 6.6.6.6; our edge appended the real address, then internal hops.
        "6.6.6.6, 203.0.113.7 | 192.168.1.1 ,10.1.2.3 => 203.0.113.7",
        "6.6.6.6,203.0.113.7:5123,,10.1.2.3 => 203.0.113.7",
        "6.6.6.6 | 203.0.113.7 | 10.1.2.3 => 203.0.113.7",
        // Every hop trusted: the leftmost is the best we know.
        "10.9.9.9, 192.168.1.1, 10.1.2.3 => 10.9.9.9",
        "2001:db8::1, [2001:db8::2]:443, 10.0.0.2 => 2001:db8::2",
        // Malformed entries stop the walk: the last good hop, or else the peer.
        "203.0.113.7, not-an-ip, 10.0.0.5 => 10.0.0.5",
        "203.0.113.7, unknown => 10.0.0.1",
        "203.0.113.7:99999 => 10.0.0.1",
        "203.0.113.7, [2001:db8::1 => 10.0.0.1",
    ];
    check_table(XForwardedFor, "x-forwarded-for", rows);
    // A non-ASCII line on the right poisons the walk even though an earlier line is valid.
    let mut h = headers(&[("x-forwarded-for", "203.0.113.7")]);
    let opaque = HeaderValue::from_bytes(b"\xff\xfe").expect("opaque value");
    h.append("x-forwarded-for", opaque);
    let p = policy(TRUSTED, &[XForwardedFor]);
    assert_eq!(resolve(&p, ip("10.0.0.1"), &h), ip("10.0.0.1"));
}

#[test]
fn forwarded_params_quotes_and_ports() {
    let rows = &[
        "for=192.0.2.60;proto=http;by=203.0.113.43 => 192.0.2.60",
        r#"For="[2001:db8:cafe::17]:4711" => 2001:db8:cafe::17"#,
        r#"for="[2001:db8:cafe::17]" => 2001:db8:cafe::17"#,
        r#"for="192.0.2.1:8080";host="a,b;c" => 192.0.2.1"#,
        "for=6.6.6.6, for=192.0.2.43, for=10.0.0.7 => 192.0.2.43",
        "for=6.6.6.6 | for=192.0.2.43 | for=10.0.0.7 => 192.0.2.43",
        "proto=https; for = 192.0.2.44 ;by=x => 192.0.2.44",
        r#"for="_spoof", for=192.0.2.45;by=_edge => 192.0.2.45"#,
        r#"for="[::ffff:192.0.2.46]" => 192.0.2.46"#,
        // A client's unbalanced quote cannot swallow the line our proxy appended.
        r#"for="6.6.6.6, for=7.7.7.7 | for=198.51.100.20 => 198.51.100.20"#,
        // Stops: obfuscated, unknown, unquoted v6, missing or repeated `for` → last good.
        "for=192.0.2.1, for=_hidden, for=10.0.0.9 => 10.0.0.9",
        "for=192.0.2.1, for=unknown => 10.0.0.1",
        "for=2001:db8::1 => 10.0.0.1",
        "for=192.0.2.1, proto=https => 10.0.0.1",
        "for=192.0.2.1;for=192.0.2.2 => 10.0.0.1",
        r#"for="192.0.2.1 => 10.0.0.1"#,
    ];
    check_table(Forwarded, "forwarded", rows);
}

#[test]
fn single_value_headers_and_source_order() {
    let h = [
        ("fly-client-ip", "203.0.113.1"),
        ("cf-connecting-ip", " 2001:db8::9 "),
        ("x-forwarded-for", "203.0.113.3"),
    ];
    let fly_first = [FlyClientIp, CfConnectingIp, XForwardedFor];
    assert_eq!(who(&fly_first, "10.0.0.1", &h), ip("203.0.113.1"));
    let cf_first = [CfConnectingIp, FlyClientIp];
    assert_eq!(who(&cf_first, "10.0.0.1", &h), ip("2001:db8::9"));
    let xff_first = [XForwardedFor, FlyClientIp];
    assert_eq!(who(&xff_first, "10.0.0.1", &h), ip("203.0.113.3"));
    // Unparseable or duplicated single headers are ignored; the next source is used.
    let bad_values: [&[&str]; 3] = [&["203.0.113.1:80"], &["nope"], &["203.0.113.1", "6.6.6.6"]];
    for bad in bad_values {
        let mut pairs: Vec<_> = bad.iter().map(|v| ("fly-client-ip", *v)).collect();
        pairs.push(("x-forwarded-for", "192.0.2.5"));
        assert_eq!(who(&fly_first, "10.0.0.1", &pairs), ip("192.0.2.5"));
    }
}

#[test]
fn ipv4_mapped_addresses_are_normalized() {
    let h = [("x-forwarded-for", "::ffff:203.0.113.7, ::ffff:10.0.0.3")];
    // A dual-stack socket reports the trusted balancer as a mapped address; still trusted.
    let xff = [XForwardedFor];
    assert_eq!(who(&xff, "::ffff:10.0.0.1", &h), ip("203.0.113.7"));
    assert_eq!(who(&xff, "::ffff:198.51.100.1", &h), ip("198.51.100.1"));
    let h = [("fly-client-ip", "::ffff:203.0.113.8")];
    assert_eq!(who(&[FlyClientIp], "10.0.0.1", &h), ip("203.0.113.8"));
    let p = policy(TRUSTED, &[]);
    assert!(p.trusted.contains(ip("::ffff:10.1.1.1")));
    assert!(!p.trusted.contains(ip("11.0.0.1")) && !p.trusted.is_empty());
}

/// Asserts the map holds exactly `want` (sorted by name), one value per entry.
fn assert_headers(h: &HeaderMap, want: &[(&str, &str)]) {
    let mut got: Vec<_> = h
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().ok()))
        .collect();
    got.sort();
    let want: Vec<_> = want.iter().map(|&(k, v)| (k, Some(v))).collect();
    assert_eq!(got, want);
}

#[test]
fn rewrite_replaces_all_forwarding_headers() {
    let spoofable = "x-forwarded-for x-forwarded-for forwarded x-real-ip fly-client-ip \
                     cf-connecting-ip x-forwarded-proto x-forwarded-host";
    let mut pairs: Vec<_> = spoofable.split(' ').map(|n| (n, "6.6.6.6")).collect();
    pairs.push(("accept", "*/*"));
    let mut h = headers(&pairs);
    assert_eq!(h.len(), 9);
    rewrite_forwarding(&mut h, ip("203.0.113.7"), false, Some("shop.example"));
    let want = [
        ("accept", "*/*"),
        ("forwarded", "for=203.0.113.7;proto=http;host=shop.example"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-host", "shop.example"),
        ("x-forwarded-proto", "http"),
    ];
    assert_headers(&h, &want);

    let mut h = headers(&[("x-forwarded-host", "evil.example")]);
    rewrite_forwarding(&mut h, ip("::ffff:192.0.2.1"), true, None);
    let want = [
        ("forwarded", "for=192.0.2.1;proto=https"),
        ("x-forwarded-for", "192.0.2.1"),
        ("x-forwarded-proto", "https"),
    ];
    assert_headers(&h, &want);

    let mut h = HeaderMap::new();
    rewrite_forwarding(&mut h, ip("2001:db8::1"), true, Some("[2001:db8::5]:8443"));
    let fwd = r#"for="[2001:db8::1]";proto=https;host="[2001:db8::5]:8443""#;
    let v6_want = [
        ("forwarded", fwd),
        ("x-forwarded-for", "2001:db8::1"),
        ("x-forwarded-host", "[2001:db8::5]:8443"),
        ("x-forwarded-proto", "https"),
    ];
    assert_headers(&h, &v6_want);

    // A host that cannot be a header value is dropped, not smuggled.
    let mut h = HeaderMap::new();
    rewrite_forwarding(&mut h, ip("192.0.2.1"), true, Some("a\r\nx-evil: 1"));
    assert_headers(&h, &want);
}

fn sa(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("socket address"))
}

/// A complete header of `len` bytes disclosing `src` ("" for none).
fn hdr(len: usize, src: &str) -> Option<Parsed> {
    let source = (!src.is_empty()).then(|| sa(src)).flatten();
    Some(Parsed::Header { len, source })
}

const INCOMPLETE: Option<Parsed> = Some(Parsed::Incomplete);

fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[ver_cmd, fam]);
    out.extend_from_slice(&u16::try_from(payload.len()).expect("len").to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const V1_TCP4: &[u8] = b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\r\n";
const INET_ADDRS: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 2, 0x13, 0x88, 0x01, 0xbb];
// PP2_TYPE_AUTHORITY "example.com", then a NOOP with an empty value.
const TLVS: &[u8] = b"\x02\x00\x0bexample.com\x04\x00\x00";

#[test]
fn proxy_v1_headers() {
    let with_request = [V1_TCP4, b"GET / HTTP/1.1\r\n"].concat();
    assert_eq!(parse(&with_request).ok(), hdr(44, "192.0.2.1:5000"));
    let tcp6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
    assert_eq!(parse(tcp6).ok(), hdr(tcp6.len(), "[2001:db8::1]:65535"));
    let unknown: [&[u8]; 2] = [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ::1 ::2 1 2\r\n"];
    for buf in unknown {
        assert_eq!(parse(buf).ok(), hdr(buf.len(), ""));
    }
    for cut in 0..V1_TCP4.len() {
        assert_eq!(parse(&V1_TCP4[..cut]).ok(), INCOMPLETE, "{cut}");
    }
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PROXX",
        b"\x16\x03\x01",
        b"PROXY tcp4 192.0.2.1 198.51.100.2 5000 443\r\n",
        b"PROXY TCP4 192.0.2.1  198.51.100.2 5000 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 +5000 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 05000 443\r\n",
        b"PROXY TCP4 192.0.2.1 2001:db8::2 5000 443\r\n",
        b"PROXY TCP6 192.0.2.1 2001:db8::2 5000 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443 \r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 5000\r\n",
        b"PROXY UDP4 192.0.2.1 198.51.100.2 5000 443\r\n",
        b"PROXY TCP4 192.0.2.1\x00198",
    ] {
        assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    assert!(matches!(parse(&[b'P'; 107]), Err(ProxyError::NotProxy)));
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(106, b'x');
    long.push(b'\r'); // 107 bytes and still no LF: the CRLF cannot fit any more.
    assert_eq!(parse(&long[..106]).ok(), INCOMPLETE);
    assert!(matches!(parse(&long), Err(ProxyError::V1TooLong)));
}

#[test]
fn proxy_v2_headers() {
    let inet = [&INET_ADDRS[..], TLVS].concat();
    let buf = v2(0x21, 0x11, &inet);
    assert_eq!(parse(&buf).ok(), hdr(buf.len(), "192.0.2.1:5000"));
    for cut in 0..buf.len() {
        assert_eq!(parse(&buf[..cut]).ok(), INCOMPLETE, "{cut}");
    }
    let with_tail = [&buf[..], b"GET /"].concat();
    assert_eq!(parse(&with_tail).ok(), hdr(buf.len(), "192.0.2.1:5000"));

    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().expect("v6").octets();
    let inet6 = [v6("2001:db8::1"), v6("2001:db8::2")].concat();
    let buf = v2(0x21, 0x21, &[&inet6[..], &[0xc3, 0x50, 1, 0xbb]].concat());
    assert_eq!(parse(&buf).ok(), hdr(52, "[2001:db8::1]:50000"));

    // LOCAL (health checks), UNSPEC and UNIX all mean "use the socket peer".
    for (vc, fam, payload) in [
        (0x20, 0x00, TLVS.to_vec()),
        (0x20, 0x11, inet.clone()),
        (0x21, 0x00, Vec::new()),
        (0x21, 0x31, vec![0u8; 216]),
    ] {
        let buf = v2(vc, fam, &payload);
        assert_eq!(parse(&buf).ok(), hdr(buf.len(), ""), "{vc:#x} {fam:#x}");
    }
}

#[test]
fn proxy_v2_rejects_bad_headers() {
    let bad_tlv = [&INET_ADDRS[..], b"\x02\x00\x09short"].concat();
    let cases: [(Vec<u8>, &str); 10] = [
        (v2(0x11, 0x11, &INET_ADDRS), "V2Version(1)"),
        (v2(0x22, 0x11, &INET_ADDRS), "V2Command(2)"),
        // The version byte is checked as soon as it arrives, before the rest.
        (v2(0x31, 0x11, &[])[..13].to_vec(), "V2Version(3)"),
        (v2(0x21, 0x12, &INET_ADDRS), "V2Family(18)"),
        (v2(0x21, 0x41, &INET_ADDRS), "V2Family(65)"),
        (v2(0x21, 0x11, &INET_ADDRS[..8]), "V2Malformed("),
        (v2(0x21, 0x21, &INET_ADDRS), "V2Malformed("),
        (v2(0x21, 0x11, &bad_tlv), "V2Malformed("),
        (v2(0x21, 0x11, &[0; 5000])[..16].to_vec(), "V2TooLong(5000)"),
        (b"\r\n\r\n\0\r\nQUIX".to_vec(), "NotProxy"),
    ];
    for (buf, want) in cases {
        let got = format!("{:?}", parse(&buf).expect_err("must be rejected"));
        assert!(got.starts_with(want), "{got} vs {want}");
    }
}

/// Writes `input` to a fresh duplex stream (closing it if `close`) and reads a header.
async fn read_from(input: &[u8], close: bool, ms: u64) -> Result<Header, ProxyError> {
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(input).await?;
    if close {
        drop(client);
        return read_header(&mut server, Duration::from_millis(ms)).await;
    }
    read_header(&mut server, Duration::from_millis(ms)).await
}

type Header = (Option<SocketAddr>, Vec<u8>);

#[tokio::test]
async fn read_header_times_out_and_rejects() {
    let cases: [(&[u8], bool, &str); 5] = [
        // Silence, and a partial header followed by silence: a timeout, not a hang.
        (b"", false, "Timeout"),
        (b"PROXY TCP4 192.0", false, "Timeout"),
        (b"PROXY TCP4 192.0", true, "UnexpectedEof"),
        (b"GET / HTTP/1.1\r\n", false, "NotProxy"),
        (b"\r\n\r\n\0\r\nQUIT\n\x13", false, "V2Version(1)"),
    ];
    for (input, close, want) in cases {
        let res = read_from(input, close, 50).await;
        let got = format!("{res:?}");
        assert!(got.starts_with(&format!("Err({want}")), "{got}");
    }
    // LOCAL v2 with nothing after it: no source, nothing to replay.
    let res = read_from(&v2(0x20, 0x00, TLVS), false, 5000).await;
    assert_eq!(res.ok(), Some((None, Vec::new())));
}

/// The whole path: a PROXY header trickling in, then hyper serving the request whose first
/// bytes `read_header` over-read, replayed through `Prefixed`.
#[tokio::test]
async fn hyper_serves_over_prefixed_stream() {
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper_util::rt::TokioIo;

    let (mut client, mut server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        let hello = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n\
                      GET /hi HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        for piece in hello.chunks(7) {
            client.write_all(piece).await.expect("write");
            tokio::task::yield_now().await;
        }
        let mut resp = Vec::new();
        client.read_to_end(&mut resp).await.expect("response");
        String::from_utf8_lossy(&resp).into_owned()
    });
    let secs = Duration::from_secs(5);
    let (source, rest) = read_header(&mut server, secs).await.expect("header");
    assert_eq!(source, sa("[2001:db8::7]:40000"));
    assert!(rest.len() <= 64 && !rest.starts_with(b"PROXY"), "{rest:?}");
    let io = TokioIo::new(Prefixed::new(rest, server));
    let port = source.map_or(0, |s| s.port());
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let body = format!("{} from {port}", req.uri().path());
        let resp = http::Response::new(Full::new(Bytes::from(body)));
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    conn.await.expect("connection served");
    let resp = writer.await.expect("client");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("/hi from 40000"), "{resp}");
}
