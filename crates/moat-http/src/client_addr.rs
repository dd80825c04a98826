//! Who is the client: resolving the real client address behind trusted proxies, and rewriting
//! the forwarding headers sent upstream.
//!
//! Every ban, rate limit and log line keys on the client address, so this is a security
//! boundary. Forwarding headers are attacker-controlled unless they were written by a proxy we
//! trust, so they are only read when the socket (or PROXY-protocol) peer is trusted, and chains
//! are walked right-to-left: the rightmost entries are the ones our trusted proxies appended,
//! while anything further left may have been made up by the client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::header::{HeaderMap, HeaderName, HeaderValue, FORWARDED};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
const CF_CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");

/// The networks whose connections (and forwarding headers) we believe, e.g. the load balancer.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// IPv4-mapped IPv6 addresses match IPv4 networks, since dual-stack sockets report IPv4
    /// peers that way and a trusted 10.0.0.0/8 must still be trusted there.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.nets
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// A header a trusted proxy may use to tell us the client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientIpSource {
    /// `X-Forwarded-For`, the de-facto standard chain.
    XForwardedFor,
    /// `Forwarded` (RFC 7239), the standard chain.
    Forwarded,
    /// `Fly-Client-IP`, set by Fly.io's edge.
    FlyClientIp,
    /// `CF-Connecting-IP`, set by Cloudflare.
    CfConnectingIp,
}

impl ClientIpSource {
    /// The configuration name, which is also the header name.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::FlyClientIp => "fly-client-ip",
            Self::CfConnectingIp => "cf-connecting-ip",
        }
    }
}

impl FromStr for ClientIpSource {
    type Err = String;

    /// Parses the configuration spelling (`client_ip_headers`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::XForwardedFor,
            Self::Forwarded,
            Self::FlyClientIp,
            Self::CfConnectingIp,
        ]
        .into_iter()
        .find(|src| src.name().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| {
            format!(
                "unknown client IP header {s:?} (expected x-forwarded-for, forwarded, \
                 fly-client-ip or cf-connecting-ip)"
            )
        })
    }
}

/// How to find the client address: whom to trust, and which headers to read, in order.
#[derive(Clone, Debug, Default)]
pub struct ClientAddrPolicy {
    pub trusted: TrustedProxies,
    pub sources: Vec<ClientIpSource>,
}

/// Returns the client address for a request arriving from `peer` (the socket or PROXY-protocol
/// address). Headers are only consulted when `peer` is trusted, because otherwise the client
/// wrote them. Sources are tried in order; the first that yields an address wins, else `peer`.
pub fn resolve(policy: &ClientAddrPolicy, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = peer.to_canonical();
    if !policy.trusted.contains(peer) {
        return peer;
    }
    policy
        .sources
        .iter()
        .find_map(|&src| match src {
            ClientIpSource::XForwardedFor => walk(&policy.trusted, xff_hops(headers)),
            ClientIpSource::Forwarded => walk(&policy.trusted, forwarded_hops(headers)),
            ClientIpSource::FlyClientIp => single(headers, &FLY_CLIENT_IP),
            ClientIpSource::CfConnectingIp => single(headers, &CF_CONNECTING_IP),
        })
        .map_or(peer, |ip| ip.to_canonical())
}

/// Walks hops right-to-left (the iterator yields them in that order). The first untrusted hop
/// is the client: everything left of it was supplied by that client and is not believed. If all
/// hops are trusted, the leftmost is the best we know. An unusable hop (malformed, `unknown`,
/// obfuscated) ends the walk at the last good hop, since nothing beyond it can be attributed.
fn walk(trusted: &TrustedProxies, hops: impl Iterator<Item = Option<IpAddr>>) -> Option<IpAddr> {
    let mut last_good = None;
    for hop in hops {
        let Some(ip) = hop else { break };
        let ip = ip.to_canonical();
        if !trusted.contains(ip) {
            return Some(ip);
        }
        last_good = Some(ip);
    }
    last_good
}

/// All `X-Forwarded-For` lines joined (repeated headers are one list per RFC 9110), reversed.
/// A line that is not visible ASCII poisons its entries instead of being silently dropped.
fn xff_hops(headers: &HeaderMap) -> impl Iterator<Item = Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        match value.to_str() {
            Ok(line) => hops.extend(
                line.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(|e| parse_node(e, true)),
            ),
            Err(_) => hops.push(None),
        }
    }
    hops.into_iter().rev()
}

/// The `for=` node of every `Forwarded` element, across all lines, reversed. Each line is
/// tokenised on its own so an unbalanced quote a client slipped into an earlier line cannot
/// swallow the elements our proxy appended on a later one.
fn forwarded_hops(headers: &HeaderMap) -> impl Iterator<Item = Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        match value.to_str().ok().and_then(split_quoted(',')) {
            Some(elements) => hops.extend(
                elements
                    .iter()
                    .filter(|e| !e.trim().is_empty())
                    .map(|e| forwarded_for(e)),
            ),
            None => hops.push(None),
        }
    }
    hops.into_iter().rev()
}

/// Extracts and parses the single `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_quoted(';')(element)? {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None; // RFC 7239: a parameter must not repeat within an element.
        }
        found = Some(unquote(value.trim())?);
    }
    parse_node(&found?, false)
}

/// Splits on `sep` outside quoted strings; `None` if a quote is left open.
fn split_quoted(sep: char) -> impl Fn(&str) -> Option<Vec<&str>> {
    move |s| {
        let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        (!quoted).then_some(parts)
    }
}

/// Decodes a token or quoted-string value; `None` for stray quotes.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains('"') && !v.is_empty()).then(|| v.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let (mut out, mut chars) = (String::with_capacity(inner.len()), inner.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Parses a hop: `v4`, `v4:port`, `[v6]`, `[v6]:port` and, where `bare_v6` (X-Forwarded-For,
/// which has no quoting), a bare `v6`. `unknown` and obfuscated `_names` yield `None`.
fn parse_node(node: &str, bare_v6: bool) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return port_ok.then(|| ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return (ip.is_ipv4() || bare_v6).then_some(ip);
    }
    let (ip, port) = node.split_once(':')?;
    valid_port(port).then(|| ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?
}

/// A numeric port, or an RFC 7239 obfuscated port (`_abc`), which does not hide the address.
fn valid_port(p: &str) -> bool {
    let numeric = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = p.len() > 1
        && p.starts_with('_')
        && p.bytes()
            .skip(1)
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    (numeric && p.parse::<u16>().is_ok()) || obfuscated
}

/// A lone address header (Fly-Client-IP, CF-Connecting-IP). Repeated lines are ambiguous and
/// ignored, as is anything that is not exactly an address.
fn single(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let mut values = headers.get_all(name).iter();
    let (value, None) = (values.next()?, values.next()) else {
        return None;
    };
    value.to_str().ok()?.trim().parse().ok()
}

/// Rewrites forwarding headers towards the upstream. Whatever the client or an earlier hop sent
/// is dropped, so the app sees exactly one answer — ours — and cannot be fooled by a spoofed
/// header that a naive framework would read first.
pub fn rewrite_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    https: bool,
    host: Option<&str>,
) {
    let ours = [
        X_FORWARDED_FOR,
        FORWARDED,
        X_REAL_IP,
        FLY_CLIENT_IP,
        CF_CONNECTING_IP,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
    ];
    // One pass over the (few) headers a request has instead of seven hashed removals: most
    // requests carry none of these, and this runs for every request forwarded.
    if headers.keys().any(|k| ours.contains(k)) {
        for name in ours {
            headers.remove(name);
        }
    }
    let client = client.to_canonical();
    let v = forwarding_values(client, https, host);
    headers.insert(X_FORWARDED_FOR, v.for_);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    if let Some(h) = v.host {
        headers.insert(X_FORWARDED_HOST, h);
    }
    if let Some(f) = v.forwarded {
        headers.insert(FORWARDED, f);
    }
}

/// The forwarding header values for one client, protocol and host.
#[derive(Clone)]
struct ForwardingValues {
    for_: HeaderValue,
    host: Option<HeaderValue>,
    forwarded: Option<HeaderValue>,
}

/// What the cached values were built for.
struct Cached {
    client: IpAddr,
    https: bool,
    host: Option<String>,
    values: ForwardingValues,
}

thread_local! {
    /// The last values built on this thread. A keep-alive connection sends request after
    /// request from one client to one host, so formatting them again each time is wasted;
    /// cloning a `HeaderValue` only counts a reference.
    static LAST_FORWARDING: std::cell::RefCell<Option<Cached>> =
        const { std::cell::RefCell::new(None) };
}

fn forwarding_values(client: IpAddr, https: bool, host: Option<&str>) -> ForwardingValues {
    let hit = LAST_FORWARDING.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|c| c.client == client && c.https == https && c.host.as_deref() == host)
            .map(|c| c.values.clone())
    });
    if let Some(v) = hit {
        return v;
    }
    let proto = if https { "https" } else { "http" };
    // A host that is not a legal header value is dropped rather than failing the request.
    let host_value = host.and_then(|h| HeaderValue::from_str(h).ok().map(|v| (h, v)));
    let mut forwarded = match client {
        IpAddr::V4(v4) => format!("for={v4};proto={proto}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto={proto}"),
    };
    if let Some((h, _)) = &host_value {
        forwarded.push_str(";host=");
        forwarded.push_str(&quote_if_needed(h));
    }
    let values = ForwardingValues {
        for_: ip_value(client),
        host: host_value.map(|(_, v)| v),
        forwarded: HeaderValue::from_str(&forwarded).ok(),
    };
    LAST_FORWARDING.with(|c| {
        *c.borrow_mut() = Some(Cached {
            client,
            https,
            host: host.map(str::to_string),
            values: values.clone(),
        })
    });
    values
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    // An address's text form is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// RFC 7239 values are tokens or quoted-strings; `host:port` has a colon, so it needs quoting.
fn quote_if_needed(v: &str) -> String {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !v.is_empty() && v.chars().all(tchar) {
        return v.to_owned();
    }
    let escaped: String = v
        .chars()
        .flat_map(|c| {
            (matches!(c, '"' | '\\').then_some('\\'))
                .into_iter()
                .chain([c])
        })
        .collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(parse_node("192.0.2.1", false), Some(v4));
        assert_eq!(parse_node("192.0.2.1:8080", false), Some(v4));
        assert_eq!(parse_node("192.0.2.1:_hidden", false), Some(v4));
        assert_eq!(parse_node("[2001:db8::1]:443", false), Some(v6));
        assert_eq!(parse_node("[2001:db8::1]", false), Some(v6));
        assert_eq!(parse_node("2001:db8::1", true), Some(v6));
        assert_eq!(parse_node("2001:db8::1", false), None);
        for bad in [
            "unknown",
            "_gazonk",
            "192.0.2.1:99999",
            "[192.0.2.1]",
            "[::1]x",
            "1.2.3",
        ] {
            assert_eq!(parse_node(bad, true), None, "{bad}");
        }
    }

    #[test]
    fn source_names_parse_from_config() {
        let names = "X-Forwarded-For forwarded fly-client-ip CF-Connecting-IP";
        let parsed: Result<Vec<ClientIpSource>, _> = names.split(' ').map(str::parse).collect();
        use ClientIpSource::*;
        let all = [XForwardedFor, Forwarded, FlyClientIp, CfConnectingIp];
        assert_eq!(parsed.as_deref(), Ok(&all[..]));
        assert!("x-real-ip".parse::<ClientIpSource>().is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(unquote(r#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(unquote(r#""a"b""#), None);
        assert_eq!(unquote(r#""[::1]:80""#).as_deref(), Some("[::1]:80"));
        assert_eq!(unquote(r#""a\\b""#).as_deref(), Some("a\\b"));
        assert_eq!(unquote("tok").as_deref(), Some("tok"));
        assert_eq!(unquote("\"open"), None);
        assert_eq!(quote_if_needed("example.com"), "example.com");
        assert_eq!(quote_if_needed("example.com:8443"), "\"example.com:8443\"");
        assert_eq!(quote_if_needed("a\"b"), r#""a\"b""#);
        assert_eq!(
            split_quoted(',')(r#"for="a,b", for=c"#).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(split_quoted(',')(r#"for="a,b"#), None);
    }
}
