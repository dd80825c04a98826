//! TLS termination by Moat's proxy with certificate files, over HTTP/1.1 and HTTP/2 (ALPN),
//! and what the rules see of it (`ssl`, `moat.secure_context`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::net::TcpStream;

const RULES: &str = r#"
[[rule]]
id = "tls-only"
expression = 'ssl and http.request.uri.path eq "/tls-only"'
action = "block"
status = 418
body = "tls only\n"

[[rule]]
id = "secure-context"
expression = 'moat.secure_context and http.request.uri.path eq "/secure"'
action = "block"
status = 409
body = "secure context\n"
"#;

/// A rustls client trusting exactly `root`, offering `alpn`.
fn client_config(root: CertificateDer<'static>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(c)
}

/// One HTTPS request for `path` with `Host: host` over HTTP/1.1 or HTTP/2 (chosen by ALPN).
async fn https(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    h2: bool,
    host: &str,
    path: &str,
) -> Resp {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let connector = tokio_rustls::TlsConnector::from(client_config(root.clone(), alpn));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio::time::timeout(
        STEP,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake in time")
    .expect("TLS handshake with Moat, verifying its certificate");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(alpn),
        "negotiated ALPN"
    );
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("https://{host}{path}"))
            .body(full(Bytes::new()))
            .unwrap();
        tokio::time::timeout(STEP, sender.send_request(req))
            .await
            .unwrap()
            .unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", host)
            .body(full(Bytes::new()))
            .unwrap();
        tokio::time::timeout(STEP, sender.send_request(req))
            .await
            .unwrap()
            .unwrap()
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// Issue 2: TLS termination with certificate files works over HTTP/1.1 and HTTP/2 (ALPN h2);
/// the upstream is told the request was HTTPS, and rules on `ssl` and `moat.secure_context`
/// see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_termination_over_http1_and_h2() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let root = ck.cert.der().clone();

    let mut cfg = config(&up, dir.path(), RULES);
    cfg.tls = Some(moat_config::Tls {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cert: Some(cert_path),
        key: Some(key_path),
    });
    let moat = start(cfg).await;
    let tls_addr = moat.tls_addrs[0];
    let plain = moat.http_addrs[0];

    for h2 in [false, true] {
        let v = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let path = if h2 { "/hello-h2" } else { "/hello-h1" };
        let r = https(tls_addr, &root, h2, "example.com", path).await;
        assert_eq!(r.status, StatusCode::OK, "{v:?}");
        assert_eq!(r.version, v);
        assert_eq!(r.text(), "upstream ok");
        let seen = up.last(path);
        assert_eq!(seen.version, Version::HTTP_11);
        assert_eq!(seen.header("host"), Some("example.com"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{v:?}");
        assert!(seen
            .header("forwarded")
            .is_some_and(|f| f.contains("proto=https")));

        let r = https(tls_addr, &root, h2, "example.com", "/tls-only").await;
        assert_eq!(r.status.as_u16(), 418, "{v:?}: `ssl` is true over TLS");
        assert_eq!(r.text(), "tls only\n");
        let r = https(tls_addr, &root, h2, "example.com", "/secure").await;
        assert_eq!(r.status.as_u16(), 409, "{v:?}: TLS is a secure context");
    }
    assert!(up.with_path("/tls-only").is_empty());

    // The same paths over plain HTTP with a public host name: neither rule fires.
    let r = get_with(plain, "/tls-only", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "`ssl` must be false without TLS");
    let r = send(
        plain,
        Request::get("/secure")
            .header("host", "example.com")
            .body(full(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "plain HTTP to example.com is not secure"
    );
    assert_eq!(
        up.last("/tls-only").header("x-forwarded-proto"),
        Some("http")
    );
    moat.shutdown().await;
}
