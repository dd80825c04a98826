//! Sending a finished ARF message through the configured relay with lettre.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};
use crate::ReportError;

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpOutcome {
    /// The relay accepted the message.
    Accepted { code: u16, reply: String },
    /// The relay refused it for good (5xx).
    Permanent { code: Option<u16>, reply: String },
    /// Worth another try: 4xx, connection or TLS trouble, timeout.
    Transient { code: Option<u16>, reply: String },
}

#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpSender {
    pub fn new(cfg: &SmtpConfig, hello: &str, timeout: Duration) -> Result<Self, ReportError> {
        let tls = || {
            TlsParameters::new(cfg.host.clone())
                .map_err(|e| ReportError::Tls(format!("smtp {}: {e}", cfg.host)))
        };
        let tls = match cfg.tls {
            SmtpTls::Starttls => Tls::Required(tls()?),
            SmtpTls::Implicit => Tls::Wrapper(tls()?),
            SmtpTls::None => Tls::None,
        };
        let hello = cfg.hello_name.clone().unwrap_or_else(|| hello.to_string());
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(ClientId::Domain(hello));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(SmtpSender {
            transport: b.build(),
        })
    }

    /// Sends `message` from `from` to `to` (envelope addresses). A bad address is permanent.
    pub async fn send(&self, from: &str, to: &str, message: &[u8]) -> SmtpOutcome {
        let envelope = match (from.parse::<Address>(), to.parse::<Address>()) {
            (Ok(f), Ok(t)) => Envelope::new(Some(f), vec![t]).map_err(|e| e.to_string()),
            _ => Err(format!("bad envelope address {from:?} or {to:?}")),
        };
        let envelope = match envelope {
            Ok(e) => e,
            Err(reply) => return SmtpOutcome::Permanent { code: None, reply },
        };
        match self.transport.send_raw(&envelope, message).await {
            Ok(resp) => SmtpOutcome::Accepted {
                code: u16::from(resp.code()),
                reply: crate::sanitize::text(&resp.message().collect::<Vec<_>>().join(" "), 300),
            },
            Err(e) => {
                let code = e.status().map(u16::from);
                let reply = crate::sanitize::text(&e.to_string(), 300);
                if e.is_permanent() {
                    SmtpOutcome::Permanent { code, reply }
                } else {
                    SmtpOutcome::Transient { code, reply }
                }
            }
        }
    }
}
