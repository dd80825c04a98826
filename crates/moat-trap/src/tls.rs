//! The trap's TLS: configured certificate files, or a self-signed one generated on first start.
//!
//! Bots do not check certificates (they want to send, not to be safe), but many refuse to
//! authenticate without TLS, so the trap must offer it from the first minute with no setup. The
//! generated pair is kept in the state directory so a restart does not change the certificate,
//! which a scanner could notice.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not a PEM certificate chain / private key: {1}")]
    Pem(PathBuf, String),
    #[error("certificate generation: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub const CERT_FILE: &str = "trap-cert.pem";
pub const KEY_FILE: &str = "trap-key.pem";

/// Loads `state_dir/trap-{cert,key}.pem`, generating a self-signed pair for `hostname` first if
/// they do not exist.
pub fn self_signed(state_dir: &Path, hostname: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let cert = state_dir.join(CERT_FILE);
    let key = state_dir.join(KEY_FILE);
    if !cert.is_file() || !key.is_file() {
        std::fs::create_dir_all(state_dir).map_err(|e| TlsError::Io(state_dir.into(), e))?;
        let ck = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(&key, ck.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, ck.cert.pem()).map_err(|e| TlsError::Io(cert.clone(), e))?;
    }
    from_files(&cert, &key)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| TlsError::Io(path.into(), e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| TlsError::Io(path.into(), e))
}

/// A server configuration from PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError::Io(p.into(), e));
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(cert.into(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Pem(cert.into(), "no certificate".into()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Pem(key.into(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path(), "mail.example.com").unwrap();
        let first = std::fs::read(dir.path().join(CERT_FILE)).unwrap();
        self_signed(dir.path(), "mail.example.com").unwrap();
        assert_eq!(std::fs::read(dir.path().join(CERT_FILE)).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            from_files(&dir.path().join(KEY_FILE), &dir.path().join(KEY_FILE)),
            Err(TlsError::Pem(..))
        ));
    }
}
