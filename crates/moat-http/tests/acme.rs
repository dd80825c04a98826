//! ACME against a real local ACME server (pebble): obtain through HTTP-01 and TLS-ALPN-01,
//! serve the result over TLS, reuse it across restarts, renew with the stored account.
//!
//! Needs the `pebble` binary (`apt-get install -y pebble`, or PEBBLE_BIN); without it these
//! tests fail with that advice instead of passing silently.

mod acme_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_support::{dns, pebble::Pebble, servers};
use moat_http::acme::{AcmeChallenge, AcmeManager, AcmeSettings, Http01Tokens};
use moat_http::tls::{cert_info, CertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Pebble, our two listeners and the shared state the manager writes into.
struct Harness {
    pebble: Pebble,
    store: Arc<CertStore>,
    tokens: Http01Tokens,
    tls_addr: SocketAddr,
    http01_answers: Arc<std::sync::atomic::AtomicUsize>,
    alpn_validations: Arc<std::sync::atomic::AtomicUsize>,
}

async fn harness() -> Harness {
    let dns = dns::spawn_dns().await;
    let (http_listener, http_port) = servers::bind().await;
    let (tls_listener, tls_port) = servers::bind().await;
    let pebble = Pebble::start(http_port, tls_port, dns);
    let store = Arc::new(CertStore::new());
    let tokens = Http01Tokens::new();
    Harness {
        http01_answers: servers::spawn_http01(http_listener, tokens.clone()),
        alpn_validations: servers::spawn_tls(tls_listener, store.clone()),
        tls_addr: SocketAddr::from(([127, 0, 0, 1], tls_port)),
        pebble,
        store,
        tokens,
    }
}

impl Harness {
    fn settings(&self, domain: &str, challenge: AcmeChallenge, state: &Path) -> AcmeSettings {
        let mut settings = AcmeSettings::new(vec![domain.to_owned()], state.to_owned());
        settings.directory_url = self.pebble.directory_url.clone();
        settings.extra_roots_pem = Some(self.pebble.https_ca_pem.clone());
        settings.contact_email = Some("ops@example.com".to_owned());
        settings.challenge = challenge;
        settings
    }

    fn manager(&self, settings: AcmeSettings) -> AcmeManager {
        AcmeManager::new(settings, self.store.clone(), self.tokens.clone()).expect("manager")
    }

    async fn ensure(&self, manager: &AcmeManager) {
        let result = tokio::time::timeout(Duration::from_secs(90), manager.ensure()).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("ensure failed: {e}\npebble log:\n{}", self.pebble.log()),
            Err(_) => panic!("ensure timed out\npebble log:\n{}", self.pebble.log()),
        }
    }

    /// Handshakes as `domain`, trusting only pebble's issuing root, and checks the leaf.
    async fn assert_serves(&self, domain: &str) -> CertificateDer<'static> {
        let root = self.pebble.issuing_root();
        let (chain, alpn) = servers::fetch_chain(self.tls_addr, domain, root)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake as {domain} did not verify: {e}"));
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "normal clients get h2");
        let leaf = chain.first().expect("server sent a certificate").clone();
        let info = cert_info(&leaf).expect("parseable leaf");
        assert_eq!(info.dns_names, vec![domain.to_owned()]);
        assert!(info.not_after > SystemTime::now() + Duration::from_secs(31 * 86_400));
        leaf
    }
}

fn stored_leaf(manager: &AcmeManager) -> CertificateDer<'static> {
    let pem = std::fs::read(manager.cert_path()).expect("stored certificate");
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .expect("valid PEM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_obtains_serves_and_reuses_after_restart() {
    let h = harness().await;
    let state = tempfile::tempdir().expect("state dir");
    let domain = "moat-http01.example.com";
    let settings = h.settings(domain, AcmeChallenge::Http01, state.path());
    let manager = h.manager(settings.clone());

    h.ensure(&manager).await;
    assert!(
        h.http01_answers.load(Ordering::SeqCst) >= 1,
        "pebble fetched the token"
    );
    let served = h.assert_serves(domain).await;
    assert_eq!(served, stored_leaf(&manager), "serves what it stored");
    let acme_dir = state.path().join("acme");
    assert!(acme_dir.join("account.json").is_file());
    #[cfg(unix)]
    for file in ["account.json", "moat-http01.example.com.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(acme_dir.join(file))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} must be private");
    }
    assert!(!acme_dir.read_dir().expect("acme dir").any(|e| e
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));

    // Restart: pebble is gone, so any order attempt would fail; the stored cert must do.
    let Harness { pebble, .. } = h;
    drop(pebble);
    let fresh_store = Arc::new(CertStore::new());
    let restarted = AcmeManager::new(settings, fresh_store.clone(), Http01Tokens::new())
        .expect("manager after restart");
    restarted
        .ensure()
        .await
        .expect("stored certificate reused without the CA");
    let installed = fresh_store
        .lookup(Some(domain))
        .expect("installed on restart");
    assert_eq!(installed.cert[0], served);
    let default = fresh_store
        .lookup(None)
        .expect("ACME cert also serves SNI-less clients");
    assert_eq!(default.cert[0], served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_obtains_serves_and_renews_with_same_account() {
    let h = harness().await;
    let state = tempfile::tempdir().expect("state dir");
    let domain = "moat-alpn.example.com";
    let settings = h.settings(domain, AcmeChallenge::TlsAlpn01, state.path());
    let manager = h.manager(settings.clone());

    h.ensure(&manager).await;
    assert!(
        h.alpn_validations.load(Ordering::SeqCst) >= 1,
        "pebble used acme-tls/1"
    );
    assert_eq!(
        h.http01_answers.load(Ordering::SeqCst),
        0,
        "no HTTP-01 involved"
    );
    assert!(
        h.store.challenge(domain).is_none(),
        "challenge cert withdrawn"
    );
    let first = h.assert_serves(domain).await;

    // A second ensure with a fresh cert is a no-op.
    h.ensure(&manager).await;
    assert_eq!(stored_leaf(&manager), first);

    // Renewal window wider than the validity: a new order, through the stored account.
    let account_path = state.path().join("acme/account.json");
    let account_before = std::fs::read(&account_path).expect("account.json");
    let mut renewing = settings;
    renewing.renew_before = Duration::from_secs(100 * 365 * 86_400);
    h.ensure(&h.manager(renewing)).await;
    let renewed = h.assert_serves(domain).await;
    assert_ne!(renewed, first, "renewal installed a new certificate");
    assert_eq!(stored_leaf(&manager), renewed);
    assert_eq!(
        std::fs::read(&account_path).expect("account.json"),
        account_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_obtains_then_stops_on_shutdown() {
    let h = harness().await;
    let state = tempfile::tempdir().expect("state dir");
    let domain = "moat-run.example.com";
    let manager = h.manager(h.settings(domain, AcmeChallenge::Http01, state.path()));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(manager.run(shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.store.lookup(Some(domain)).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "run() installed nothing:\n{}",
            h.pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.assert_serves(domain).await;
    stop.send(true).expect("run() still listening");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run() returns on shutdown")
        .expect("run() did not panic");
}
