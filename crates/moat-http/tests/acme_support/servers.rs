//! Stand-ins for the proxy's listeners: an HTTP server answering only ACME HTTP-01 tokens and
//! a TLS listener using `tls::server_config`, each counting the validations it answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use moat_http::acme::{http01_response, Http01Tokens};
use moat_http::tls::{is_acme_tls_alpn, server_config, CertStore};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Binds a loopback listener on a random port (pebble is then told to validate there).
pub async fn bind() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("listener address").port();
    (listener, port)
}

/// Serves `GET /.well-known/acme-challenge/{token}` from `tokens`; counts 200 answers.
pub fn spawn_http01(listener: TcpListener, tokens: Http01Tokens) -> Arc<AtomicUsize> {
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tokens, counter) = (tokens.clone(), counter.clone());
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = http01_response(&tokens, req.uri().path());
                let response = match body {
                    Some(key_authorization) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        Response::new(Full::new(Bytes::from(key_authorization)))
                    }
                    None => {
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = StatusCode::NOT_FOUND;
                        response
                    }
                };
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    answered
}

/// Terminates TLS with `server_config(store)`; counts `acme-tls/1` handshakes, which it closes
/// right after the handshake as the real listener must.
pub fn spawn_tls(listener: TcpListener, store: Arc<CertStore>) -> Arc<AtomicUsize> {
    let config = server_config(store).expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let validations = Arc::new(AtomicUsize::new(0));
    let counter = validations.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if is_acme_tls_alpn(&tls) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    validations
}

/// Handshakes with `addr` as `sni` trusting only `root`; returns the presented chain and the
/// negotiated ALPN. An error means the certificate did not verify (or no certificate).
pub async fn fetch_chain(
    addr: SocketAddr,
    sni: &str,
    root: CertificateDer<'static>,
) -> std::io::Result<(Vec<CertificateDer<'static>>, Option<Vec<u8>>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).map_err(std::io::Error::other)?;
    let config = super::pebble::client_config(roots, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    handshake(addr, sni, config).await
}

/// Like a TLS-ALPN-01 validator: offers only `alpn` and accepts whatever certificate comes
/// (the challenge certificate is self-signed by design), so the test can inspect it.
pub async fn fetch_chain_unverified(
    addr: SocketAddr,
    sni: &str,
    alpn: &[u8],
) -> std::io::Result<(Vec<CertificateDer<'static>>, Option<Vec<u8>>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    handshake(addr, sni, Arc::new(config)).await
}

async fn handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(Vec<CertificateDer<'static>>, Option<Vec<u8>>)> {
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let conn = tls.get_ref().1;
    let chain = conn.peer_certificates().unwrap_or_default().to_vec();
    Ok((chain, conn.alpn_protocol().map(<[u8]>::to_vec)))
}

/// Test-only verifier that accepts any certificate and signature.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
