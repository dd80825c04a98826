//! HAProxy PROXY protocol, versions 1 (text) and 2 (binary).
//!
//! When Moat sits behind a TCP load balancer (AWS NLB, HAProxy, Fly's TCP handler) the socket
//! peer is the balancer, not the client. The balancer then prefixes the connection with a PROXY
//! header naming the real source address. This module turns those bytes into an address.
//!
//! The parser is pure ([`parse`]) so it can be tested exhaustively and can never block; the only
//! I/O is [`read_header`], which reads just enough of a stream to parse and hands back anything it
//! over-read so [`Prefixed`] can replay it to hyper (or to a TLS acceptor).
//!
//! The parser is deliberately strict: a listener configured for the PROXY protocol must only be
//! reachable from the balancer, so anything malformed is a misconfiguration or an attack and the
//! connection is refused rather than guessed at.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The v1 spec caps a header line (CRLF included) at 107 bytes; beyond that it is not PROXY v1.
pub const V1_MAX_LEN: usize = 107;
/// The v2 signature that starts every binary header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Largest v2 address+TLV block we accept. The format allows 64 KiB, but real senders use a few
/// hundred bytes; a cap keeps a hostile or broken peer from making us buffer much per connection.
pub const V2_MAX_PAYLOAD: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_FIXED_LEN: usize = 16;
const SHORT: &str = "length too short for the address family";

/// Why a PROXY header was refused. Every variant ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connection does not start with a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header is longer than {V1_MAX_LEN} bytes without CRLF")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("unsupported PROXY v2 version {0} (only 2 is defined)")]
    V2Version(u8),
    #[error("unsupported PROXY v2 command {0} (only LOCAL=0 and PROXY=1 are defined)")]
    V2Command(u8),
    #[error("unsupported PROXY v2 address family/transport byte {0:#04x}")]
    V2Family(u8),
    #[error("PROXY v2 payload of {0} bytes exceeds the {V2_MAX_PAYLOAD}-byte limit")]
    V2TooLong(usize),
    #[error("malformed PROXY v2 header: {0}")]
    V2Malformed(&'static str),
    #[error("timed out waiting for the PROXY protocol header")]
    Timeout,
    #[error("connection closed before the PROXY protocol header was complete")]
    UnexpectedEof,
    #[error("I/O error while reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Outcome of parsing the start of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Everything so far is a valid prefix of a header; read more bytes.
    Incomplete,
    /// A complete header of `len` bytes. `source` is `None` when the sender did not disclose an
    /// internet address (v1 `UNKNOWN`, v2 `LOCAL`, `AF_UNSPEC`, `AF_UNIX`): callers then fall
    /// back to the socket peer, as the spec asks.
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Parses a PROXY v1 or v2 header at the start of `buf`. Never panics, whatever the input.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let more = || match buf.len() >= V1_MAX_LEN {
        true => Err(ProxyError::V1TooLong),
        false => Ok(Parsed::Incomplete),
    };
    // Printable ASCII up to CR LF; anything else fails as soon as it arrives, not at 107 bytes.
    let Some(cr) = window
        .iter()
        .position(|&b| b != b' ' && !b.is_ascii_graphic())
    else {
        return more();
    };
    match (window[cr], window.get(cr + 1)) {
        (b'\r', None) => return more(),
        (b'\r', Some(b'\n')) => {}
        _ => {
            return Err(ProxyError::V1Malformed(
                "expected printable ASCII ending in CRLF",
            ))
        }
    }
    let line = std::str::from_utf8(&window[..cr])
        .map_err(|_| ProxyError::V1Malformed("header is not ASCII"))?;
    let len = cr + 2;
    let mut fields = line.split(' ').skip(1);
    let family = fields.next().unwrap_or_default();
    let v4 = match family {
        // The spec says a receiver must ignore whatever follows UNKNOWN.
        "UNKNOWN" => return Ok(Parsed::Header { len, source: None }),
        "TCP4" => true,
        "TCP6" => false,
        _ => {
            return Err(ProxyError::V1Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let parts: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = parts[..] else {
        return Err(ProxyError::V1Malformed("expected: src dst sport dport"));
    };
    let (src, _dst) = (v1_addr(src, v4)?, v1_addr(dst, v4)?);
    let (sport, _dport) = (v1_port(sport)?, v1_port(dport)?);
    let source = Some(SocketAddr::new(src, sport));
    Ok(Parsed::Header { len, source })
}

/// The address must be of the declared family: a TCP4 line carrying IPv6 is corrupt.
fn v1_addr(s: &str, v4: bool) -> Result<IpAddr, ProxyError> {
    let ip = s.parse::<IpAddr>().ok().filter(|ip| ip.is_ipv4() == v4);
    ip.ok_or(ProxyError::V1Malformed(
        "address invalid or of the wrong family",
    ))
}

/// Ports are plain decimal: no sign, no leading zeros (senders format with `%u`), at most 65535.
fn v1_port(s: &str) -> Result<u16, ProxyError> {
    let canonical = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let port = s.parse::<u16>().ok().filter(|_| canonical);
    port.ok_or(ProxyError::V1Malformed("invalid port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::NotProxy);
    }
    if buf.len() < V2_FIXED_LEN {
        // Validate the version/command byte as soon as it arrives.
        if let Some(&vc) = buf.get(12) {
            check_ver_cmd(vc)?;
        }
        return Ok(Parsed::Incomplete);
    }
    let local = check_ver_cmd(buf[12])?;
    let fam = buf[13];
    let payload_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload_len > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2TooLong(payload_len));
    }
    let len = V2_FIXED_LEN + payload_len;
    let Some(payload) = buf.get(V2_FIXED_LEN..len) else {
        return Ok(Parsed::Incomplete);
    };
    if local {
        // LOCAL: the balancer speaking for itself (health checks). The spec says to skip the
        // whole block, family included, and use the real socket endpoints.
        return Ok(Parsed::Header { len, source: None });
    }
    // (family, transport) nibbles. UNSPEC transport means "unknown protocol": keep the peer.
    let (addr_len, source) = match (fam >> 4, fam & 0x0f) {
        (0, 0) => (0, None),
        (1, 0) => (12, None),
        (2, 0) => (36, None),
        (3, 0..=2) => (216, None),
        (1, 1) => {
            let (src, sport) = (v2_bytes::<4>(payload, 0)?, v2_port(payload, 8)?);
            (12, Some(SocketAddr::new(Ipv4Addr::from(src).into(), sport)))
        }
        (2, 1) => {
            let (src, sport) = (v2_bytes::<16>(payload, 0)?, v2_port(payload, 32)?);
            (36, Some(SocketAddr::new(Ipv6Addr::from(src).into(), sport)))
        }
        // Datagram transports and undefined values: not something an HTTP listener can serve.
        _ => return Err(ProxyError::V2Family(fam)),
    };
    let tlvs = payload
        .get(addr_len..)
        .ok_or(ProxyError::V2Malformed(SHORT))?;
    check_tlvs(tlvs)?;
    Ok(Parsed::Header { len, source })
}

/// Returns whether the command is LOCAL (true) or PROXY (false).
fn check_ver_cmd(vc: u8) -> Result<bool, ProxyError> {
    match (vc >> 4, vc & 0x0f) {
        (2, 0) => Ok(true),
        (2, 1) => Ok(false),
        (2, cmd) => Err(ProxyError::V2Command(cmd)),
        (ver, _) => Err(ProxyError::V2Version(ver)),
    }
}

fn v2_bytes<const N: usize>(payload: &[u8], at: usize) -> Result<[u8; N], ProxyError> {
    payload
        .get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(ProxyError::V2Malformed(SHORT))
}

fn v2_port(payload: &[u8], at: usize) -> Result<u16, ProxyError> {
    v2_bytes::<2>(payload, at).map(u16::from_be_bytes)
}

/// TLVs carry optional metadata we do not use, but their framing must be sound: a header whose
/// length disagrees with its contents is corrupt and nothing in it can be trusted.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_, hi, lo, rest @ ..] = tlvs else {
            return Err(ProxyError::V2Malformed("truncated TLV"));
        };
        let value_len = usize::from(u16::from_be_bytes([*hi, *lo]));
        tlvs = rest
            .get(value_len..)
            .ok_or(ProxyError::V2Malformed("TLV overruns the header"))?;
    }
    Ok(())
}

/// Reads a PROXY header from the start of `stream`, within `timeout`.
///
/// Returns the disclosed source address (`None`: use the socket peer) and any bytes read past
/// the header — the start of the client's real traffic — which must be replayed, e.g. with
/// [`Prefixed`]. A peer that stalls or trickles gets [`ProxyError::Timeout`], so the PROXY
/// listener cannot be used to pin connections open.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyError> {
    tokio::time::timeout(timeout, read_header_inner(stream))
        .await
        .map_err(|_| ProxyError::Timeout)?
}

async fn read_header_inner<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyError> {
    // `parse` decides within V2_FIXED_LEN + V2_MAX_PAYLOAD bytes, so this loop is bounded.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if let Parsed::Header { len, source } = parse(&buf)? {
            let rest = buf.get(len..).unwrap_or_default().to_vec();
            return Ok((source, rest));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ProxyError::UnexpectedEof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A stream that first yields `prefix`, then reads from `inner`; writes go straight to `inner`.
///
/// Lets the bytes [`read_header`] over-read be handed back to whoever speaks next (hyper, or a
/// TLS acceptor) without peeking or re-reading the socket.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: impl Into<Bytes>, inner: S) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Returns the inner stream and whatever of the prefix has not been read yet.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() && buf.remaining() > 0 {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random, truncated and bit-flipped inputs must produce a result, never a panic, and every
    /// prefix of a valid header must be `Incomplete` (not an error).
    #[test]
    fn parse_never_panics() {
        let seeds: [&[u8]; 4] = [
            b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\r\nGET",
            b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0f\xc0\x00\x02\x01\xc6\x33\x64\x02\x13\x88\x01\xbb\x04\x00\x00",
            b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00",
        ];
        for seed in seeds {
            let Ok(Parsed::Header { len, .. }) = parse(seed) else {
                panic!("seed must parse: {seed:?}");
            };
            for cut in 0..len {
                assert_eq!(parse(&seed[..cut]).ok(), Some(Parsed::Incomplete), "{cut}");
            }
        }
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as u32
        };
        for round in 0..20_000u32 {
            let mut buf = seeds[round as usize % seeds.len()].to_vec();
            let len = next() as usize % 300;
            buf.truncate(len);
            while buf.len() < len {
                buf.push(next() as u8);
            }
            let flips = if round % 7 == 0 {
                buf.len()
            } else {
                next() as usize % 6
            };
            for _ in 0..flips.min(buf.len()) {
                let i = next() as usize % buf.len();
                buf[i] = next() as u8;
            }
            let _ = parse(&buf);
        }
    }
}
