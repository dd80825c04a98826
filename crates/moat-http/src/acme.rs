//! Automatic certificates the way Caddy does it: name the domains, Moat obtains and renews.
//!
//! State lives in `state_dir/acme/`: `account.json` (ACME account key, reused so the CA sees
//! one account, not one per restart) and `<first-domain>.crt`/`.key`. A still-valid stored
//! certificate is loaded without talking to the CA, so restarts never burn rate limits.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::tls::{self, CertStore, TlsError};

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// How often [`AcmeManager::run`] re-checks expiry when everything is fine.
const CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// How long to wait for the CA to validate or issue before giving up on this attempt.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Which challenge proves control of the domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeChallenge {
    /// `GET http://<domain>/.well-known/acme-challenge/<token>` on port 80.
    #[default]
    Http01,
    /// A TLS handshake with ALPN `acme-tls/1` on port 443 (RFC 8737).
    TlsAlpn01,
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// Names on the certificate; the first one names the files.
    pub domains: Vec<String>,
    pub contact_email: Option<String>,
    pub directory_url: String,
    pub challenge: AcmeChallenge,
    pub state_dir: PathBuf,
    /// Renew when the certificate expires sooner than this.
    pub renew_before: Duration,
    /// PEM CA certificate to trust (instead of the system roots) for the directory's HTTPS,
    /// for private CAs and tests. Only the first certificate in the file is used.
    pub extra_roots_pem: Option<PathBuf>,
}

impl AcmeSettings {
    /// Settings with the defaults: Let's Encrypt production, HTTP-01, renew 30 days ahead.
    pub fn new(domains: Vec<String>, state_dir: PathBuf) -> Self {
        Self {
            domains,
            contact_email: None,
            directory_url: LETS_ENCRYPT_PRODUCTION.to_owned(),
            challenge: AcmeChallenge::Http01,
            state_dir,
            renew_before: Duration::from_secs(30 * 86_400),
            extra_roots_pem: None,
        }
    }
}

/// Pending HTTP-01 answers (token to key authorization), shared between the ACME manager and
/// the HTTP listener, which must answer them before any rule runs.
#[derive(Debug, Clone, Default)]
pub struct Http01Tokens(Arc<RwLock<HashMap<String, String>>>);

impl Http01Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, token: &str) -> Option<String> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(token).cloned()
    }

    pub fn insert(&self, token: String, key_authorization: String) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert(token, key_authorization);
    }

    pub fn remove(&self, token: &str) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.remove(token);
    }
}

/// The plain-text body for `path` if it is `/.well-known/acme-challenge/<pending token>`.
pub fn http01_response(tokens: &Http01Tokens, path: &str) -> Option<String> {
    let token = path.strip_prefix("/.well-known/acme-challenge/")?;
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if token.is_empty() || !token.chars().all(base64url) {
        return None;
    }
    tokens.get(token)
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME needs at least one domain")]
    NoDomains,
    #[error("unsupported ACME domain {0:?}: only plain DNS names (no wildcards) work with HTTP-01/TLS-ALPN-01")]
    BadDomain(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA roots {}: {source}", path.display())]
    Roots {
        path: PathBuf,
        source: instant_acme::Error,
    },
    #[error("ACME {step} failed: {source}")]
    Protocol {
        step: &'static str,
        source: instant_acme::Error,
    },
    /// The CA refused something: no usable challenge, authorization or order not valid.
    #[error("ACME order not fulfilled: {0}")]
    Rejected(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
    move |source| AcmeError::Io {
        path: path.to_owned(),
        source,
    }
}

fn protocol(step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
    move |source| AcmeError::Protocol { step, source }
}

/// The account file's content: credentials plus the directory they belong to, so switching
/// CAs (staging to production) registers a new account instead of failing forever.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

/// Obtains, stores, installs and renews the certificate for [`AcmeSettings::domains`].
pub struct AcmeManager {
    settings: AcmeSettings,
    store: Arc<CertStore>,
    tokens: Http01Tokens,
}

impl AcmeManager {
    /// Validates the domains (lower-cased) up front so a typo fails at startup, not at 3am.
    pub fn new(
        mut settings: AcmeSettings,
        store: Arc<CertStore>,
        tokens: Http01Tokens,
    ) -> Result<Self, AcmeError> {
        if settings.domains.is_empty() {
            return Err(AcmeError::NoDomains);
        }
        for domain in &mut settings.domains {
            *domain = domain.trim_end_matches('.').to_ascii_lowercase();
            let label_ok =
                |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !domain.split('.').all(label_ok) {
                return Err(AcmeError::BadDomain(domain.clone()));
            }
        }
        Ok(Self {
            settings,
            store,
            tokens,
        })
    }

    pub fn tokens(&self) -> &Http01Tokens {
        &self.tokens
    }

    fn dir(&self) -> PathBuf {
        self.settings.state_dir.join("acme")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir().join(format!("{}.crt", self.settings.domains[0]))
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir().join(format!("{}.key", self.settings.domains[0]))
    }

    /// Makes sure a valid certificate is installed: the stored one if it covers all domains
    /// and is not due for renewal, otherwise a freshly ordered one.
    pub async fn ensure(&self) -> Result<(), AcmeError> {
        if let Some(not_after) = self.install_stored() {
            let due = SystemTime::now() + self.settings.renew_before;
            if not_after > due {
                return Ok(());
            }
            tracing::info!(domain = %self.settings.domains[0], "certificate due for renewal");
        }
        self.obtain().await
    }

    /// Loads and installs the stored certificate; returns its expiry, or `None` if there is
    /// none usable (an expiring one stays installed while the renewal runs). Called at start-up
    /// before the TLS listener accepts, so a restart serves the stored certificate from its
    /// first handshake, CA reachable or not.
    pub fn install_stored(&self) -> Option<SystemTime> {
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        if !cert_path.exists() {
            return None;
        }
        let loaded = tls::load_certified_key(&cert_path, &key_path).map_err(|e| e.to_string());
        let checked = loaded.and_then(|key| {
            let leaf = key.cert.first().ok_or("empty chain")?;
            let info = tls::cert_info(leaf).ok_or("unparseable certificate")?;
            let names = &info.dns_names;
            match self.settings.domains.iter().all(|d| names.contains(d)) {
                true => Ok((key, info.not_after)),
                false => Err(format!("covers only {names:?}")),
            }
        });
        match checked {
            Ok((key, not_after)) => {
                if not_after > SystemTime::now() {
                    self.store.replace(&self.settings.domains, key);
                }
                Some(not_after)
            }
            Err(error) => {
                tracing::warn!(%error, path = %cert_path.display(), "ignoring stored certificate");
                None
            }
        }
    }

    /// instant-acme's own client (hyper-rustls, HTTPS only, HTTP/1.1 and 2), except that the
    /// directory's name is resolved by moat-dns instead of libc's `getaddrinfo`, which a
    /// static binary cannot use. Roots: the platform's (rustls-platform-verifier, as
    /// instant-acme does), or the configured PEM file's first certificate.
    fn account_builder(&self) -> Result<AccountBuilder, AcmeError> {
        use hyper_util::client::legacy::{connect::HttpConnector, Client};
        use rustls_pki_types::{pem::PemObject, CertificateDer};

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = match &self.settings.extra_roots_pem {
            Some(path) => {
                let roots_err = |source| AcmeError::Roots {
                    path: path.clone(),
                    source,
                };
                let cert = CertificateDer::from_pem_file(path)
                    .map_err(|e| roots_err(instant_acme::Error::Other(e.into())))?;
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(cert)
                    .map_err(|e| roots_err(instant_acme::Error::Other(e.into())))?;
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| roots_err(instant_acme::Error::Other(e.into())))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
            }
            None => hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_platform_verifier(provider)
                .map_err(|e| protocol("HTTP client setup")(instant_acme::Error::Other(e.into())))?,
        };
        let resolver = moat_dns::HostResolver::system()
            .map_err(|e| protocol("HTTP client setup")(instant_acme::Error::Other(e.into())))?;
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        let connector = https
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client: Client<_, instant_acme::BodyWrapper<bytes::Bytes>> =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Account::builder_with_http(Box::new(client)))
    }

    /// The stored account for this directory, or a newly registered (and stored) one.
    async fn account(&self) -> Result<Account, AcmeError> {
        let path = self.dir().join("account.json");
        match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StoredAccount>(&bytes) {
                Ok(stored) if stored.directory_url == self.settings.directory_url => {
                    return self
                        .account_builder()?
                        .from_credentials(stored.credentials)
                        .await
                        .map_err(protocol("account restore"));
                }
                Ok(_) => tracing::info!("stored ACME account is for another CA; registering"),
                Err(error) => tracing::warn!(%error, "unreadable account.json; registering anew"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        let email = self.settings.contact_email.as_ref();
        let contact: Vec<String> = email.map(|e| format!("mailto:{e}")).into_iter().collect();
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let terms_of_service_agreed = true;
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed,
            only_return_existing: false,
        };
        let directory_url = self.settings.directory_url.clone();
        let (account, credentials) = self
            .account_builder()?
            .create(&new, directory_url.clone(), None)
            .await
            .map_err(protocol("account registration"))?;
        let stored = StoredAccount {
            directory_url,
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| io_err(&path)(e.into()))?;
        write_atomic(&path, &json, 0o600)?;
        tracing::info!(id = account.id(), "registered ACME account");
        Ok(account)
    }

    async fn obtain(&self) -> Result<(), AcmeError> {
        let dir = self.dir();
        create_private_dir(&dir)?;
        let account = self.account().await?;
        let domains = &self.settings.domains;
        let ids: Vec<_> = domains.iter().cloned().map(Identifier::Dns).collect();
        tracing::info!(?domains, "ordering certificate");
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(protocol("new order"))?;
        // Dropped on every exit path, including cancellation by shutdown.
        let (tokens, store) = (&self.tokens, &*self.store);
        let mut cleanup = Cleanup {
            tokens,
            store,
            http: vec![],
            tls: vec![],
        };
        let kind = match self.settings.challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(protocol("authorization fetch"))?;
            let domain = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Rejected(format!("{domain}: {other:?}"))),
            }
            let Some(mut challenge) = authz.challenge(kind.clone()) else {
                let kind = self.settings.challenge;
                return Err(AcmeError::Rejected(format!(
                    "{domain}: no {kind:?} challenge"
                )));
            };
            let key_auth = challenge.key_authorization();
            match self.settings.challenge {
                AcmeChallenge::Http01 => {
                    let token = challenge.token.clone();
                    self.tokens
                        .insert(token.clone(), key_auth.as_str().to_owned());
                    cleanup.http.push(token);
                }
                AcmeChallenge::TlsAlpn01 => {
                    let cert = tls::acme_challenge_cert(&domain, key_auth.digest().as_ref())?;
                    self.store.set_challenge(&domain, Arc::new(cert));
                    cleanup.tls.push(domain);
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(protocol("challenge ready"))?;
        }
        let retry = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        let status = order
            .poll_ready(&retry)
            .await
            .map_err(protocol("validation"))?;
        if status != OrderStatus::Ready {
            let detail = order.state().error.as_ref().map(|p| p.to_string());
            let detail = detail.unwrap_or_else(|| "see the authorizations".to_owned());
            return Err(AcmeError::Rejected(format!("order {status:?}: {detail}")));
        }
        // instant-acme generates a fresh key pair (rcgen, P-256) for every finalization.
        let key_pem = order.finalize().await.map_err(protocol("finalize"))?;
        let chain_pem = order
            .poll_certificate(&retry)
            .await
            .map_err(protocol("download"))?;
        drop(cleanup);

        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        let (chain, key) = (chain_pem.as_bytes(), key_pem.as_bytes());
        let certified = tls::certified_key_from_pem(chain, &cert_path, key, &key_path)?;
        // Key first: a crash between the two renames leaves a mismatched pair, which the next
        // start rejects and re-orders, rather than a new cert with a lost key.
        write_atomic(&key_path, key, 0o600)?;
        write_atomic(&cert_path, chain, 0o644)?;
        self.store.replace(domains, Arc::new(certified));
        tracing::info!(?domains, path = %cert_path.display(), "certificate installed");
        Ok(())
    }

    /// Runs until `shutdown` turns true (or its sender is dropped): ensures a certificate now,
    /// re-checks every 12h, and retries failures with capped exponential backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        while !*shutdown.borrow() {
            let result = tokio::select! {
                result = self.ensure() => result,
                _ = shutdown.changed() => return,
            };
            let wait = match result {
                Ok(()) => {
                    failures = 0;
                    CHECK_INTERVAL
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let wait = retry_delay(failures);
                    tracing::warn!(%error, retry_in_secs = wait.as_secs(), "ACME certificate check failed");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// 1 min, 2, 4, ... capped at 1h, plus up to 10% jitter so many instances don't align.
fn retry_delay(failures: u32) -> Duration {
    let base = 60u64
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(3600);
    Duration::from_secs(base + fastrand::u64(0..=base / 10))
}

/// Withdraws challenge answers once the order is done or abandoned.
struct Cleanup<'a> {
    tokens: &'a Http01Tokens,
    store: &'a CertStore,
    http: Vec<String>,
    tls: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for token in &self.http {
            self.tokens.remove(token);
        }
        for name in &self.tls {
            self.store.clear_challenge(name);
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), AcmeError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err(dir))
}

/// [`crate::state_file::write_atomic`], its error naming the file.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), AcmeError> {
    crate::state_file::write_atomic(path, data, mode).map_err(io_err(path))
}
