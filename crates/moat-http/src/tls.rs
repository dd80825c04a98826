//! TLS termination: certificates loaded from PEM files or obtained through ACME, chosen per
//! SNI name at handshake time, plus the TLS-ALPN-01 (RFC 8737) challenge answers.
//!
//! Everything here uses the `ring` provider explicitly so the process never depends on a
//! process-default `CryptoProvider` having been installed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol id of TLS-ALPN-01 validation connections (RFC 8737 section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why a certificate or key could not be loaded; every variant names the file involved so an
/// operator can fix the right one.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate found (expected a BEGIN CERTIFICATE block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key found (expected PKCS#8, PKCS#1 or SEC1 key)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: malformed PEM: {detail}", path.display())]
    BadPem { path: PathBuf, detail: String },
    #[error("{}: unusable private key: {source}", path.display())]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("private key {} does not belong to certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("building the TLS configuration failed: {0}")]
    Config(rustls::Error),
    #[error("building the TLS-ALPN-01 certificate for {domain} failed: {detail}")]
    ChallengeCert { domain: String, detail: String },
}

/// Loads a certificate chain (leaf first) and its private key from PEM files.
pub fn load_certified_key(cert_pem: &Path, key_pem: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let certs = read(cert_pem)?;
    let key = read(key_pem)?;
    certified_key_from_pem(&certs, cert_pem, &key, key_pem).map(Arc::new)
}

/// Same as [`load_certified_key`] for PEM already in memory; the paths only label errors
/// (ACME validates a fresh chain with this before it is written to those paths).
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let bad_pem = |path: &Path, e: rustls_pki_types::pem::Error| TlsError::BadPem {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(cert_path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.to_owned(),
        },
        other => bad_pem(key_path, other),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        },
        source => TlsError::BadKey {
            path: key_path.to_owned(),
            source,
        },
    })
}

/// Certificates per SNI name plus a default, swappable while connections are being accepted
/// (renewals replace entries in place), and the pending TLS-ALPN-01 challenge certificates.
///
/// A `RwLock` is enough: handshakes only take a short read lock, writes happen on renewal.
#[derive(Default)]
pub struct CertStore {
    certs: RwLock<Certs>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

#[derive(Default)]
struct Certs {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// Lower-cases and drops a trailing dot, since SNI and configured names may differ in both.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

// A poisoned lock only means a writer panicked mid-insert of a whole value; the map is still
// consistent, so keep serving rather than failing every handshake.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key` for SNI `name`; `*.example.com` covers one label below `example.com`.
    pub fn insert(&self, name: &str, key: Arc<CertifiedKey>) {
        write(&self.certs).by_name.insert(normalize(name), key);
    }

    pub fn remove(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        write(&self.certs).by_name.remove(&normalize(name))
    }

    /// The certificate for clients that send no SNI or an unknown name.
    pub fn set_default(&self, key: Option<Arc<CertifiedKey>>) {
        write(&self.certs).default = key;
    }

    /// Serves `key` for all `names` in one step (used for ACME installs and renewals). It also
    /// becomes the default if there is none or the default was the certificate being replaced,
    /// so SNI-less clients follow renewals without an operator-chosen default being overridden.
    pub fn replace(&self, names: &[String], key: Arc<CertifiedKey>) {
        let mut certs = write(&self.certs);
        let previous = names
            .first()
            .and_then(|name| certs.by_name.get(&normalize(name)).cloned());
        let owns_default = match (&certs.default, &previous) {
            (None, _) => true,
            (Some(current), Some(previous)) => Arc::ptr_eq(current, previous),
            (Some(_), None) => false,
        };
        for name in names {
            certs.by_name.insert(normalize(name), key.clone());
        }
        if owns_default {
            certs.default = Some(key);
        }
    }

    /// The certificate a normal (non-challenge) handshake with this SNI would get.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certs = read(&self.certs);
        if let Some(name) = sni.map(normalize) {
            if let Some(key) = certs.by_name.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(key) = certs.by_name.get(&format!("*.{parent}")) {
                    return Some(key.clone());
                }
            }
        }
        certs.default.clone()
    }

    /// Installs the RFC 8737 challenge certificate for `name` until [`Self::clear_challenge`].
    pub fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        write(&self.challenges).insert(normalize(name), key);
    }

    pub fn clear_challenge(&self, name: &str) {
        write(&self.challenges).remove(&normalize(name));
    }

    pub fn challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.challenges).get(&normalize(name)).cloned()
    }
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let certs = read(&self.certs);
        f.debug_struct("CertStore")
            .field("names", &certs.by_name.keys().collect::<Vec<_>>())
            .field("has_default", &certs.default.is_some())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737: a validation client offers exactly `acme-tls/1`. Such a handshake gets the
        // challenge certificate or nothing, never the real one.
        let mut alpn = hello.alpn().into_iter().flatten();
        let acme_only = alpn.next() == Some(ACME_TLS_ALPN) && alpn.next().is_none();
        if acme_only {
            return hello.server_name().and_then(|name| self.challenge(name));
        }
        self.lookup(hello.server_name())
    }
}

/// A server config for `store` offering ALPN `h2`, `http/1.1` and `acme-tls/1`.
///
/// Connections that negotiate `acme-tls/1` only exist to validate a challenge: check
/// [`is_acme_tls_alpn`] after the handshake and close them without reading HTTP.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// True if the handshake negotiated `acme-tls/1`; the caller must then close the connection.
pub fn is_acme_tls_alpn<IO>(conn: &tokio_rustls::server::TlsStream<IO>) -> bool {
    conn.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN)
}

/// The RFC 8737 challenge certificate for `domain`: self-signed, SAN = `domain`, and the
/// critical acmeIdentifier extension holding `digest` (SHA-256 of the key authorization).
pub fn acme_challenge_cert(domain: &str, digest: &[u8]) -> Result<CertifiedKey, TlsError> {
    let fail = |e: &dyn std::fmt::Display| TlsError::ChallengeCert {
        domain: domain.to_owned(),
        detail: e.to_string(),
    };
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| fail(&e))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let cert = params.self_signed(&key).map_err(|e| fail(&e))?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `CertifiedKey::from_der`: its key/cert consistency check parses the certificate
    // with webpki, which rejects the critical acmeIdentifier extension RFC 8737 requires.
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| fail(&e))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

/// The parts of an X.509 certificate renewal decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_after: SystemTime,
    /// dNSName entries of the subjectAltName extension.
    pub dns_names: Vec<String>,
}

/// Extracts notAfter and the DNS SANs from a DER certificate, or `None` if it is malformed.
///
/// A deliberately small DER walk: pulling in a full X.509 parser for two fields is not worth
/// the dependency; signature checking is rustls' and the client's business, not ours.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (cert, _) = der_expect(der, 0x30)?;
    let (tbs, _) = der_expect(cert, 0x30)?;
    let (tag, _, after_version) = der_next(tbs)?;
    let rest = if tag == 0xa0 { after_version } else { tbs };
    let (_serial, rest) = der_expect(rest, 0x02)?;
    let (_sig_alg, rest) = der_expect(rest, 0x30)?;
    let (_issuer, rest) = der_expect(rest, 0x30)?;
    let (validity, rest) = der_expect(rest, 0x30)?;
    let (_subject, rest) = der_expect(rest, 0x30)?;
    let (_spki, mut rest) = der_expect(rest, 0x30)?;
    let (_, _, after_not_before) = der_next(validity)?;
    let (tag, not_after, _) = der_next(after_not_before)?;
    let not_after = der_time(tag, not_after)?;

    let mut dns_names = Vec::new();
    while let Some((tag, content, next)) = der_next(rest) {
        rest = next;
        if tag != 0xa3 {
            continue;
        }
        let (mut exts, _) = der_expect(content, 0x30)?;
        while let Some((ext, next)) = der_expect(exts, 0x30) {
            exts = next;
            let (oid, mut body) = der_expect(ext, 0x06)?;
            if oid != [0x55, 0x1d, 0x11] {
                continue;
            }
            if let Some((_critical, after)) = der_expect(body, 0x01) {
                body = after;
            }
            let (value, _) = der_expect(body, 0x04)?;
            let (mut names, _) = der_expect(value, 0x30)?;
            while let Some((tag, name, next)) = der_next(names) {
                names = next;
                if tag == 0x82 {
                    dns_names.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
    Some(CertInfo {
        not_after,
        dns_names,
    })
}

/// One TLV: (tag, content, rest). Only definite lengths, as DER requires.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn der_expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = der_next(input)?;
    (tag == want).then_some((content, rest))
}

/// UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
fn der_time(tag: u8, bytes: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}
