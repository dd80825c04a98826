use std::path::PathBuf;

/// What can go wrong opening or running the reporter. Per-report problems (a refused API call,
/// an SMTP error, a missing abuse contact) are not errors: they are recorded outcomes.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report config: {0}")]
    Config(String),
    #[error("report database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("report database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RDAP bootstrap {file}: {reason}")]
    Bootstrap { file: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error(transparent)]
    Dns(#[from] moat_dns::HostError),
}
