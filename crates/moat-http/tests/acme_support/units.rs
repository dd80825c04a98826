//! Tests of the TLS/ACME building blocks that need no ACME server. They live here (compiled
//! into the `acme` test binary) to keep `src/tls.rs` and `src/acme.rs` within size limits.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moat_http::acme::{http01_response, AcmeError, AcmeManager, AcmeSettings, Http01Tokens};
use moat_http::tls::{self, cert_info, load_certified_key, CertStore, TlsError};
use rcgen::{CertificateParams, KeyPair};
use rustls::sign::CertifiedKey;

use super::test_pki;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

fn self_signed(names: &[&str]) -> Arc<CertifiedKey> {
    let pki = test_pki(names);
    let (cert, key) = (pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes());
    let label = Path::new("mem");
    Arc::new(tls::certified_key_from_pem(cert, label, key, label).expect("test key"))
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = test_pki(&["a.example"]);
    let cert = write(dir.path(), "good.crt", &pki.leaf_pem);
    let key = write(dir.path(), "good.key", &pki.leaf_key_pem);
    let garbage = write(dir.path(), "garbage.pem", "this is not PEM\n");
    let missing = dir.path().join("missing.crt");

    let loaded = load_certified_key(&cert, &key).expect("good pair loads");
    assert_eq!(loaded.cert.len(), 1);

    let err = load_certified_key(&missing, &key).expect_err("missing cert");
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.crt"), "{err}");

    let err = load_certified_key(&garbage, &key).expect_err("garbage cert");
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    let err = load_certified_key(&cert, &garbage).expect_err("garbage key");
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    let other = write(
        dir.path(),
        "other.key",
        &test_pki(&["b.example"]).leaf_key_pem,
    );
    let err = load_certified_key(&cert, &other).expect_err("key of another cert");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("other.key") && err.to_string().contains("good.crt"));
}

#[test]
fn cert_store_picks_by_sni() {
    let store = CertStore::new();
    let (a, b, wild, default) = (
        self_signed(&["a.example"]),
        self_signed(&["b.example"]),
        self_signed(&["*.c.example"]),
        self_signed(&["default.example"]),
    );
    assert!(
        store.lookup(Some("a.example")).is_none(),
        "empty store serves nothing"
    );
    store.insert("a.example", a.clone());
    store.insert("B.Example", b.clone());
    store.insert("*.c.example", wild.clone());
    store.set_default(Some(default.clone()));

    let pick = |sni: Option<&str>| store.lookup(sni).expect("some certificate");
    assert!(Arc::ptr_eq(&pick(Some("a.example")), &a));
    assert!(
        Arc::ptr_eq(&pick(Some("b.example.")), &b),
        "case and trailing dot ignored"
    );
    assert!(Arc::ptr_eq(&pick(Some("x.c.example")), &wild));
    assert!(
        Arc::ptr_eq(&pick(Some("y.x.c.example")), &default),
        "wildcard is one label"
    );
    assert!(Arc::ptr_eq(&pick(Some("unknown.example")), &default));
    assert!(Arc::ptr_eq(&pick(None), &default));

    // replace() keeps an operator default but follows its own renewals.
    let renewed = self_signed(&["a.example"]);
    store.replace(&["a.example".to_owned()], renewed.clone());
    assert!(Arc::ptr_eq(&pick(Some("a.example")), &renewed));
    assert!(Arc::ptr_eq(&pick(None), &default));
    let acme_only = CertStore::new();
    acme_only.replace(&["a.example".to_owned()], a.clone());
    acme_only.replace(&["a.example".to_owned()], renewed.clone());
    assert!(Arc::ptr_eq(
        &acme_only.lookup(None).expect("default"),
        &renewed
    ));
}

#[tokio::test]
async fn handshake_gets_cert_for_sni_and_challenge_only_for_acme_alpn() {
    let pki = test_pki(&["a.example"]);
    let label = Path::new("mem");
    let (cert, key) = (pki.leaf_pem.as_bytes(), pki.leaf_key_pem.as_bytes());
    let a = Arc::new(tls::certified_key_from_pem(cert, label, key, label).expect("key"));
    let store = Arc::new(CertStore::new());
    store.insert("a.example", a.clone());
    let challenge = Arc::new(tls::acme_challenge_cert("a.example", &[7; 32]).expect("cert"));
    store.set_challenge("a.example", challenge.clone());

    let (listener, port) = super::servers::bind().await;
    super::servers::spawn_tls(listener, store.clone());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let root = rustls_pki_types::pem::PemObject::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA");
    let (chain, _) = super::servers::fetch_chain(addr, "a.example", root)
        .await
        .expect("verified handshake");
    assert_eq!(chain[0], a.cert[0], "normal ALPN gets the real certificate");
    assert_ne!(chain[0], challenge.cert[0]);

    let acme = tls::ACME_TLS_ALPN;
    let (chain, alpn) = super::servers::fetch_chain_unverified(addr, "a.example", acme)
        .await
        .expect("validation handshake");
    assert_eq!(
        chain[0], challenge.cert[0],
        "acme-tls/1 gets the challenge certificate"
    );
    assert_eq!(alpn.as_deref(), Some(acme));
    store.clear_challenge("a.example");
    let no_challenge = super::servers::fetch_chain_unverified(addr, "a.example", acme).await;
    assert!(
        no_challenge.is_err(),
        "no pending challenge: acme-tls/1 never gets the real cert"
    );
    let info = cert_info(&challenge.cert[0]).expect("challenge cert parses");
    assert_eq!(info.dns_names, vec!["a.example".to_owned()]);
}

#[test]
fn cert_info_reads_expiry_and_names() {
    for (year, month, day, unix) in [
        (2031, 5, 17, 1_936_742_400u64),
        (2051, 2, 28, 2_561_155_200),
    ] {
        let mut params =
            CertificateParams::new(vec!["x.example".to_owned(), "y.example".to_owned()])
                .expect("params");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let cert = params
            .self_signed(&KeyPair::generate().expect("key"))
            .expect("cert");
        let info = cert_info(cert.der()).expect("parses");
        assert_eq!(
            info.not_after,
            SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
        );
        assert_eq!(info.dns_names, ["x.example", "y.example"]);
    }
    assert_eq!(cert_info(b"\x30\x03\x02\x01\x00"), None);
    assert_eq!(cert_info(b""), None);
}

#[test]
fn http01_response_matches_only_pending_tokens() {
    let tokens = Http01Tokens::new();
    tokens.insert("tok-EN_1".to_owned(), "tok-EN_1.thumb".to_owned());
    let answer = |path: &str| http01_response(&tokens, path);
    assert_eq!(
        answer("/.well-known/acme-challenge/tok-EN_1").as_deref(),
        Some("tok-EN_1.thumb")
    );
    assert_eq!(answer("/.well-known/acme-challenge/other"), None);
    assert_eq!(answer("/.well-known/acme-challenge/"), None);
    assert_eq!(answer("/.well-known/acme-challenge/tok-EN_1/x"), None);
    assert_eq!(answer("/x/.well-known/acme-challenge/tok-EN_1"), None);
    tokens.remove("tok-EN_1");
    assert_eq!(answer("/.well-known/acme-challenge/tok-EN_1"), None);
}

#[test]
fn manager_rejects_unusable_domains() {
    let dir = tempfile::tempdir().expect("temp dir");
    let make = |domains: &[&str]| {
        let domains = domains.iter().map(|d| d.to_string()).collect();
        let settings = AcmeSettings::new(domains, dir.path().to_owned());
        AcmeManager::new(settings, Arc::new(CertStore::new()), Http01Tokens::new())
    };
    assert!(matches!(make(&[]), Err(AcmeError::NoDomains)));
    assert!(matches!(
        make(&["*.example.com"]),
        Err(AcmeError::BadDomain(_))
    ));
    assert!(matches!(
        make(&["a..example.com"]),
        Err(AcmeError::BadDomain(_))
    ));
    assert!(matches!(make(&["../etc"]), Err(AcmeError::BadDomain(_))));
    let ok = make(&["WWW.Example.com."]).expect("plain name accepted");
    assert!(ok.cert_path().ends_with("acme/www.example.com.crt"));
}
