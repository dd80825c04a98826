//! Runs Debian's `pebble` (Let's Encrypt's test ACME server) on random loopback ports.
//!
//! The Debian package ships no test certificates, so pebble's HTTPS listener gets a leaf from
//! a CA generated here; that CA's PEM is what `AcmeSettings::extra_roots_pem` trusts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

pub struct Pebble {
    child: Child,
    pub dir: tempfile::TempDir,
    pub directory_url: String,
    /// PEM of the CA that signed pebble's own HTTPS certificate.
    pub https_ca_pem: PathBuf,
    management: SocketAddr,
    https_ca: String,
}

/// A loopback port that was free a moment ago (pebble binds it itself).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind probe port");
    listener.local_addr().expect("probe address").port()
}

/// `$PEBBLE_BIN`, else `pebble` on `$PATH`. Panics with install advice when absent: these
/// tests must fail loudly, never pass by skipping, when the ACME server is missing.
pub fn pebble_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PEBBLE_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("pebble"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pebble (Let's Encrypt's test ACME server) is not installed: the ACME tests need \
                 it. Install it with `apt-get install -y pebble` or set PEBBLE_BIN=/path/to/pebble"
            )
        })
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`, resolving
    /// every name through `dns` (see `dns::spawn_dns`), and waits until it accepts connections.
    pub fn start(http_port: u16, tls_port: u16, dns: SocketAddr) -> Pebble {
        let binary = pebble_binary();
        let dir = tempfile::tempdir().expect("pebble temp dir");
        let pki = super::test_pki(&["127.0.0.1", "localhost"]);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write pebble file");
            path
        };
        let https_ca_pem = write("https-ca.pem", &pki.ca_pem);
        let cert = write("cert.pem", &pki.leaf_pem);
        let key = write("key.pem", &pki.leaf_key_pem);
        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = write("pebble-config.json", &config.to_string());
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("pebble log");
        let child = Command::new(&binary)
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut pebble = Pebble {
            child,
            dir,
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            https_ca_pem,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            https_ca: pki.ca_pem,
        };
        pebble.wait_listening(&[listen, management]);
        pebble
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("pebble exited ({status}) at startup:\n{}", self.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "pebble not listening:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The root that issues this pebble instance's certificates (random per run), fetched from
    /// the management interface's `/roots/0`.
    pub fn issuing_root(&self) -> CertificateDer<'static> {
        let body = self.management_get("/roots/0");
        CertificateDer::from_pem_slice(&body).expect("PEM root from /roots/0")
    }

    /// A blocking HTTP/1.0 GET over TLS (trusting our HTTPS CA): HTTP/1.0 keeps Go from
    /// chunking the body, so the body is simply everything after the header.
    fn management_get(&self, path: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.https_ca.as_bytes()).expect("HTTPS CA");
        roots.add(ca).expect("add HTTPS CA");
        let config = client_config(roots, vec![]);
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let mut conn = rustls::ClientConnection::new(config, name).expect("TLS client");
        let mut tcp = TcpStream::connect(self.management).expect("connect management port");
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        write!(tls, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send request");
        let mut response = Vec::new();
        // Go may close without close_notify; what arrived before that is the full response.
        let _ = tls.read_to_end(&mut response);
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP response header");
        assert!(response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"));
        response[split + 4..].to_vec()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ring-provider rustls client config trusting exactly `roots`.
pub fn client_config(
    roots: rustls::RootCertStore,
    alpn: Vec<Vec<u8>>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Arc::new(config)
}
