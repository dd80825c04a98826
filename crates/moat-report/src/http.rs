//! A small HTTP(S) client for the report targets and RDAP: one request at a time, a timeout
//! on the whole exchange, and answers capped (a hostile or broken server cannot make us buffer
//! more than `max_body` bytes). Host names are resolved by moat-dns ([`HostResolver`]), not by
//! libc's `getaddrinfo`, so a static binary can reach them too.
//!
//! A request never reaches an address outside the public internet (loopback, private,
//! link-local, carrier-grade NAT, …) unless its host is one the operator named ([`Reach`]):
//! the hosts Moat talks to are partly chosen by others (an RDAP server's redirect, registry
//! data looked up for what a captured message contained), and none of them may turn the
//! reporter into a way to probe the owner's own network.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use moat_dns::HostResolver;

use crate::ReportError;

pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// What a server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most `max_body` bytes of the body.
    pub body: Bytes,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad request: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Network(String),
}

/// Parses an absolute http or https URL.
pub fn parse_url(url: &str) -> Result<Uri, HttpError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| HttpError::Request(format!("{url}: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.authority().is_some() => Ok(uri),
        _ => Err(HttpError::Request(format!("{url}: not an http(s) URL"))),
    }
}

/// The hosts that may be reached at addresses outside the public internet: those the operator
/// wrote in the config (report targets) or in the RDAP bootstrap files. Everything else must
/// resolve to public addresses only.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    named: Arc<HashSet<String>>,
}

impl Reach {
    /// Only public addresses, for every host.
    pub fn public_only() -> Self {
        Reach::default()
    }

    /// Public addresses, and any address for the hosts of `urls` and for `hosts`.
    pub fn naming<'a>(
        urls: impl IntoIterator<Item = &'a str>,
        hosts: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut named: HashSet<String> = hosts.into_iter().map(|h| bare_host(&h)).collect();
        named.extend(
            urls.into_iter()
                .filter_map(|u| parse_url(u).ok())
                .filter_map(|u| u.host().map(bare_host)),
        );
        Reach {
            named: Arc::new(named),
        }
    }

    /// Whether `host` (a name or an address, as in a URL) may be reached at `ip`.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        is_public(ip) || self.named.contains(&bare_host(host))
    }
}

/// A URL's host as compared by [`Reach`]: lowercase, without IPv6 brackets or a final dot.
pub fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// An address on the public internet: not loopback, private, link-local, carrier-grade NAT,
/// multicast, broadcast, unspecified or "this network" (the same test that keeps such
/// addresses out of reports).
pub fn is_public(ip: IpAddr) -> bool {
    crate::incident::is_reportable(ip)
}

/// A host outside the public internet that nobody named: refused before connecting.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses outside the public internet ({addrs}); only hosts named in the config may")]
pub struct NotPublic {
    host: String,
    addrs: String,
}

/// [`HostResolver`] keeping, for hosts [`Reach`] does not name, only public addresses.
#[derive(Clone)]
struct ReachResolver {
    inner: HostResolver,
    reach: Reach,
}

impl tower_service::Service<Name> for ReachResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (mut inner, reach) = (self.inner.clone(), self.reach.clone());
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = inner.call(name).await?.collect();
            let kept: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| reach.allows(&host, a.ip()))
                .collect();
            if kept.is_empty() && !all.is_empty() {
                let addrs = all.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>();
                return Err(NotPublic {
                    host,
                    addrs: addrs.join(", "),
                }
                .into());
            }
            Ok(kept.into_iter())
        })
    }
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<ReachResolver>>, Full<Bytes>>,
    reach: Reach,
    timeout: Duration,
    max_body: usize,
    user_agent: HeaderValue,
}

impl HttpClient {
    /// A client trusting the system's roots (rustls with ring). No roots found is not an error:
    /// plain-http endpoints still work, and HTTPS ones fail per request.
    pub fn new(
        timeout: Duration,
        max_body: usize,
        user_agent: &str,
        reach: Reach,
    ) -> Result<Self, ReportError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ReportError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(ReachResolver {
            inner: HostResolver::system()?,
            reach: reach.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        let user_agent = HeaderValue::from_str(&crate::sanitize::text(user_agent, 100))
            .unwrap_or_else(|_| HeaderValue::from_static("Moat"));
        Ok(HttpClient {
            client,
            reach,
            timeout,
            max_body,
            user_agent,
        })
    }

    /// Sends one request and reads the answer (capped), all within the timeout.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, HttpError> {
        let uri = parse_url(url)?;
        // An address in the URL is connected to as it is, without the resolver: check it here.
        let host = uri.host().unwrap_or("");
        if let Ok(ip) = bare_host(host).parse::<IpAddr>() {
            if !self.reach.allows(host, ip) {
                return Err(HttpError::Request(format!(
                    "{url}: {ip} is outside the public internet; only hosts named in the config may be"
                )));
            }
        }
        let mut req = Request::builder().method(method).uri(uri);
        let h = req.headers_mut().expect("fresh builder");
        h.insert(http::header::USER_AGENT, self.user_agent.clone());
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| HttpError::Request(format!("header {k:?}: {e}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|e| HttpError::Request(format!("header {k:?}: {e}")))?;
            h.insert(name, value);
        }
        let payload = match body {
            Some((content_type, bytes)) => {
                let ct = HeaderValue::from_str(content_type)
                    .map_err(|e| HttpError::Request(e.to_string()))?;
                h.insert(http::header::CONTENT_TYPE, ct);
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| HttpError::Request(e.to_string()))?;
        let max = self.max_body;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| HttpError::Network(error_chain(&e)))?;
            let (parts, mut body) = resp.into_parts();
            let mut buf = Vec::new();
            let mut truncated = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| HttpError::Network(error_chain(&e)))?;
                if let Ok(data) = frame.into_data() {
                    let room = max - buf.len();
                    if data.len() > room {
                        buf.extend_from_slice(&data[..room]);
                        truncated = true;
                        break;
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: Bytes::from(buf),
                truncated,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }
}

/// An error with its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    crate::sanitize::text(&s, 300)
}
