//! ACME through the whole app, configured the way an operator writes it: a `moat.toml` with
//! `[acme]` and `[tls]`, loaded by `moat_config::load` and started with `app::start`, against a
//! real pebble. Pebble validates HTTP-01 on Moat's own HTTP listener (ahead of the rules) and
//! TLS-ALPN-01 on Moat's own TLS listener, which then serves the certificate to HTTPS clients
//! and keeps serving it across a restart without asking the CA again.
//!
//! Needs the `pebble` binary (`apt-get install -y pebble`, or PEBBLE_BIN); without it these
//! tests fail with that advice instead of passing silently.

mod support;

/// The parts of `tests/acme_support` this binary needs; `acme_support/mod.rs` itself is not
/// included so its unit tests (`units`) are not compiled and run a second time here.
mod acme_support {
    pub mod dns;
    pub mod pebble;
    #[allow(dead_code)]
    pub mod servers;

    pub mod pki;
    pub use pki::test_pki;
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use acme_support::pebble::{free_port, Pebble};
use acme_support::{dns, servers};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use moat_config::{AcmeChallengeKind, Config};
use moat_http::app::Running;
use moat_http::tls::cert_info;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use support::{full, BoxError, Resp, Upstream, ADMIN_TOKEN, STEP};
use tokio::net::TcpStream;
use tokio::time::Instant;

const DOMAIN: &str = "moat-app.example.com";
/// How long the first certificate may take: account, order, validation, issuance.
const OBTAIN_LIMIT: Duration = Duration::from_secs(30);
/// Body of the rule that blocks every `/.well-known/` request: HTTP-01 only works if Moat
/// answers the pending token before it runs any rule.
const RULE_BODY: &str = "blocked by the well-known rule\n";

/// Pebble, a recording upstream, and a Moat config pointing at both.
struct Setup {
    /// `None` once the test stopped it.
    pebble: Option<Pebble>,
    up: Upstream,
    _dir: tempfile::TempDir,
    state_dir: PathBuf,
    cfg: Config,
    /// Pebble's issuing root: the only certificate the HTTPS clients here trust.
    root: CertificateDer<'static>,
}

/// Starts pebble and writes a `moat.toml` for `challenge`. Pebble validates HTTP-01 on Moat's
/// HTTP port and TLS-ALPN-01 on Moat's TLS port, but only for the configured challenge: the
/// other challenge's port points at nothing, so it could not have done the work.
async fn setup(challenge: AcmeChallengeKind) -> Setup {
    let dns = dns::spawn_dns().await;
    let up = Upstream::start().await;
    let (http_port, tls_port, unused_port) = (free_port(), free_port(), free_port());
    let pebble = match challenge {
        AcmeChallengeKind::Http01 => Pebble::start(http_port, unused_port, dns),
        AcmeChallengeKind::TlsAlpn01 => Pebble::start(unused_port, tls_port, dns),
    };
    let root = pebble.issuing_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let state_dir = dir.path().join("state");
    let challenge = match challenge {
        AcmeChallengeKind::Http01 => "http-01",
        AcmeChallengeKind::TlsAlpn01 => "tls-alpn-01",
    };
    let toml = format!(
        r#"presets = ["ghost"]

[server]
listen = ["127.0.0.1:{http_port}"]
upstream = "http://{upstream}"
state_dir = "{state_dir}"

[tls]
listen = ["127.0.0.1:{tls_port}"]

[acme]
domains = ["{DOMAIN}"]
email = "ops@example.com"
directory = "{directory}"
challenge = "{challenge}"
renew_before = "30d"
directory_ca = "{directory_ca}"

[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[[rule]]
id = "no-well-known"
expression = 'starts_with(http.request.uri.path, "/.well-known/")'
action = "block"
status = 403
body = "{body}"
"#,
        upstream = up.addr,
        state_dir = state_dir.display(),
        directory = pebble.directory_url,
        directory_ca = pebble.https_ca_pem.display(),
        body = RULE_BODY.escape_default(),
    );
    let config_path = dir.path().join("moat.toml");
    std::fs::write(&config_path, toml).expect("write moat.toml");
    let cfg = moat_config::load(Some(&config_path), &moat_config::Overrides::default())
        .unwrap_or_else(|e| panic!("moat.toml does not load:\n{e}"));
    let acme = cfg.acme.as_ref().expect("[acme] compiled");
    assert_eq!(acme.domains, [DOMAIN]);
    assert_eq!(acme.directory, pebble.directory_url);
    assert_eq!(acme.directory_ca.as_ref(), Some(&pebble.https_ca_pem));
    assert!(cfg.policy.rules.len() > 1, "ghost preset loaded");
    Setup {
        pebble: Some(pebble),
        up,
        _dir: dir,
        state_dir,
        cfg,
        root,
    }
}

impl Setup {
    async fn start(&self) -> Running {
        support::start(self.cfg.clone()).await
    }

    fn pebble_log(&self) -> String {
        match &self.pebble {
            Some(pebble) => pebble.log(),
            None => "<pebble was stopped by the test>".to_owned(),
        }
    }

    fn acme_file(&self, ext: &str) -> PathBuf {
        self.state_dir.join("acme").join(format!("{DOMAIN}.{ext}"))
    }

    /// Polls Moat's TLS listener until a handshake as `DOMAIN` verifies against pebble's root;
    /// returns the served leaf. Panics with pebble's log when `limit` passes first.
    async fn wait_for_certificate(&self, tls_addr: SocketAddr, limit: Duration) -> Served {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let handshake = servers::fetch_chain(tls_addr, DOMAIN, self.root.clone());
            let error = match tokio::time::timeout(STEP, handshake).await {
                Ok(Ok((chain, _))) if !chain.is_empty() => {
                    return Served {
                        leaf: chain[0].clone(),
                        attempts,
                        after: started.elapsed(),
                    }
                }
                Ok(Ok(_)) => "no certificate presented".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "handshake timed out".to_owned(),
            };
            if started.elapsed() >= limit {
                panic!(
                    "Moat's TLS listener {tls_addr} served no certificate for {DOMAIN} that \
                     verifies against pebble's root within {limit:?} ({attempts} attempts; last \
                     error: {error}).\nstate_dir/acme: {:?}\npebble log:\n{}",
                    list_dir(&self.state_dir.join("acme")),
                    self.pebble_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leaf of the certificate chain Moat stored under `state_dir/acme/`.
    fn stored_leaf(&self) -> CertificateDer<'static> {
        let path = self.acme_file("crt");
        let pem = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("no stored certificate at {}: {e}", path.display()));
        CertificateDer::pem_slice_iter(&pem)
            .next()
            .expect("a certificate in the stored chain")
            .expect("valid PEM")
    }

    /// HTTPS `GET path` through Moat as `DOMAIN`; checks the upstream got it as HTTPS.
    async fn assert_https_reaches_upstream(&self, tls_addr: SocketAddr, path: &str) {
        let (resp, leaf) = https_get(tls_addr, &self.root, DOMAIN, path)
            .await
            .unwrap_or_else(|e| panic!("HTTPS GET {path} through Moat failed: {e}"));
        assert_eq!(resp.status, StatusCode::OK, "{resp:?}");
        assert_eq!(resp.text(), "upstream ok", "the upstream answered");
        assert_eq!(leaf, self.stored_leaf(), "serves the stored certificate");
        let seen = self.up.last(path);
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{seen:?}");
        assert_eq!(seen.header("x-forwarded-host"), Some(DOMAIN), "{seen:?}");
    }
}

/// What a successful poll saw.
struct Served {
    leaf: CertificateDer<'static>,
    attempts: u32,
    after: Duration,
}

fn list_dir(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => vec![format!("<{e}>")],
    }
}

/// One HTTP/1.1 request over TLS with SNI and `Host` = `sni`, trusting only `root`; returns
/// the response and the leaf certificate the server presented.
async fn https_get(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    sni: &str,
    path: &str,
) -> Result<(Resp, CertificateDer<'static>), BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone())?;
    let config = acme_support::pebble::client_config(roots, vec![b"http/1.1".to_vec()]);
    let name = ServerName::try_from(sni.to_owned())?;
    let tcp = TcpStream::connect(addr).await?;
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let tls = tokio::time::timeout(STEP, connect).await??;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no server certificate")?
        .clone();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", sni)
        .body(full(Bytes::new()))?;
    let resp = tokio::time::timeout(STEP, sender.send_request(req)).await??;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await??
        .to_bytes();
    let resp = Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    };
    Ok((resp, leaf))
}

fn assert_leaf_for_domain(leaf: &CertificateDer<'_>) {
    let info = cert_info(leaf).expect("parseable leaf");
    assert_eq!(info.dns_names, [DOMAIN]);
    assert!(
        info.not_after > SystemTime::now() + Duration::from_secs(31 * 86_400),
        "a fresh certificate"
    );
}

async fn shutdown(running: Running) {
    tokio::time::timeout(Duration::from_secs(15), running.shutdown())
        .await
        .expect("Moat shuts down in time");
}

/// HTTP-01 answered by Moat's HTTP listener although a rule blocks every `/.well-known/` path
/// (and the ghost preset is active); the certificate is then served on the TLS listener and
/// HTTPS requests reach the upstream as HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_through_the_app() {
    let s = setup(AcmeChallengeKind::Http01).await;
    let moat = s.start().await;
    let (http_addr, tls_addr) = (moat.http_addrs[0], moat.tls_addrs[0]);

    let served = s.wait_for_certificate(tls_addr, OBTAIN_LIMIT).await;
    assert_leaf_for_domain(&served.leaf);
    assert!(s.acme_file("crt").is_file(), "certificate stored");
    assert!(s.acme_file("key").is_file(), "key stored");
    assert!(s.state_dir.join("acme/account.json").is_file());
    assert_eq!(served.leaf, s.stored_leaf(), "serves what it stored");

    s.assert_https_reaches_upstream(tls_addr, "/").await;

    // The rule really is active: only the pending token (now withdrawn) went around it.
    let blocked = support::get(http_addr, "/.well-known/acme-challenge/not-a-token").await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert_eq!(blocked.text(), RULE_BODY);
    // And plain HTTP is forwarded as such, so the `https` above came from the TLS listener.
    let plain = support::get(http_addr, "/plain").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(
        s.up.last("/plain").header("x-forwarded-proto"),
        Some("http")
    );
    shutdown(moat).await;
}

/// TLS-ALPN-01 answered by Moat's TLS listener; the challenge certificate is withdrawn after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_through_the_app() {
    let s = setup(AcmeChallengeKind::TlsAlpn01).await;
    let moat = s.start().await;
    let tls_addr = moat.tls_addrs[0];

    let served = s.wait_for_certificate(tls_addr, OBTAIN_LIMIT).await;
    assert_leaf_for_domain(&served.leaf);
    assert!(s.acme_file("crt").is_file(), "certificate stored");
    assert_eq!(served.leaf, s.stored_leaf(), "serves what it stored");

    s.assert_https_reaches_upstream(tls_addr, "/").await;

    let acme = moat_http::tls::ACME_TLS_ALPN;
    let validation = servers::fetch_chain_unverified(tls_addr, DOMAIN, acme).await;
    assert!(
        validation.is_err(),
        "no pending challenge: an acme-tls/1 handshake must get nothing, got {validation:?}"
    );
    shutdown(moat).await;
}

/// After a shutdown, Moat restarted on the same config and state directory serves the stored
/// certificate at once, with the CA gone, and rewrites none of the ACME files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_the_stored_certificate_without_the_ca() {
    let s = setup(AcmeChallengeKind::Http01).await;
    let moat = s.start().await;
    let first = s
        .wait_for_certificate(moat.tls_addrs[0], OBTAIN_LIMIT)
        .await;
    assert_eq!(first.leaf, s.stored_leaf());
    shutdown(moat).await;

    let files = ["crt", "key"].map(|ext| s.acme_file(ext));
    let account = s.state_dir.join("acme/account.json");
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let before: Vec<Vec<u8>> = files.iter().chain([&account]).map(|p| read(p)).collect();

    // Pebble is gone: a new order could only fail (and be retried a minute later), so a
    // certificate within the next second can only be the stored one.
    let mut s = s;
    s.pebble = None;
    let moat = s.start().await;
    let tls_addr = moat.tls_addrs[0];
    let again = s
        .wait_for_certificate(tls_addr, Duration::from_secs(1))
        .await;
    assert_eq!(
        again.leaf, first.leaf,
        "the same certificate after the restart"
    );
    assert_eq!(
        again.attempts, 1,
        "the first handshake after start() returned already had the certificate (took {:?})",
        again.after
    );
    s.assert_https_reaches_upstream(tls_addr, "/after-restart")
        .await;
    let after: Vec<Vec<u8>> = files.iter().chain([&account]).map(|p| read(p)).collect();
    assert!(before == after, "the ACME files were rewritten on restart");
    shutdown(moat).await;
}
