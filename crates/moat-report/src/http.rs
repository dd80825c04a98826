//! A small HTTP(S) client for the report targets and RDAP: one request at a time, a timeout
//! on the whole exchange, and answers capped (a hostile or broken server cannot make us buffer
//! more than `max_body` bytes). Host names are resolved by moat-dns ([`HostResolver`]), not by
//! libc's `getaddrinfo`, so a static binary can reach them too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
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

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<HostResolver>>, Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
    user_agent: HeaderValue,
}

impl HttpClient {
    /// A client trusting the system's roots (rustls with ring). No roots found is not an error:
    /// plain-http endpoints still work, and HTTPS ones fail per request.
    pub fn new(timeout: Duration, max_body: usize, user_agent: &str) -> Result<Self, ReportError> {
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
        let mut http = HttpConnector::new_with_resolver(HostResolver::system()?);
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
