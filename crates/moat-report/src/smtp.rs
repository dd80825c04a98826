//! Sending a finished ARF message through the configured relay with lettre.

use std::net::IpAddr;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use moat_dns::HostResolver;

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

/// The relay's settings, ready to open a session to any of its addresses.
///
/// The relay's name is resolved here (moat-dns, not libc: a static binary has no NSS) and
/// lettre is handed an address; TLS still checks the certificate against the name.
#[derive(Clone)]
pub struct SmtpSender {
    host: String,
    port: u16,
    tls: Tls,
    hello: ClientId,
    timeout: Duration,
    credentials: Option<Credentials>,
    resolver: HostResolver,
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
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
            _ => None,
        };
        Ok(SmtpSender {
            host: cfg.host.clone(),
            port: cfg.port,
            tls,
            hello: ClientId::Domain(hello),
            timeout,
            credentials,
            resolver: HostResolver::system()?,
        })
    }

    /// A transport to one of the relay's addresses (lettre connects to it as given, with no
    /// lookup of its own).
    fn transport(&self, ip: IpAddr) -> AsyncSmtpTransport<Tokio1Executor> {
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
            .port(self.port)
            .tls(self.tls.clone())
            .timeout(Some(self.timeout))
            .hello_name(self.hello.clone());
        if let Some(c) = &self.credentials {
            b = b.credentials(c.clone());
        }
        b.build()
    }

    /// Sends `message` from `from` to `to` (envelope addresses). A bad address is permanent.
    ///
    /// The relay's addresses are tried in turn until one answers with an SMTP reply code; an
    /// error without one (refused, unreachable, timed out, TLS) moves on to the next address,
    /// as lettre does itself over the addresses it resolves.
    pub async fn send(&self, from: &str, to: &str, message: &[u8]) -> SmtpOutcome {
        let envelope = match (from.parse::<Address>(), to.parse::<Address>()) {
            (Ok(f), Ok(t)) => Envelope::new(Some(f), vec![t]).map_err(|e| e.to_string()),
            _ => Err(format!("bad envelope address {from:?} or {to:?}")),
        };
        let envelope = match envelope {
            Ok(e) => e,
            Err(reply) => return SmtpOutcome::Permanent { code: None, reply },
        };
        let addrs = match self.resolver.lookup(&self.host).await {
            Ok(a) => a,
            Err(e) => {
                return SmtpOutcome::Transient {
                    code: None,
                    reply: crate::sanitize::text(&e.to_string(), 300),
                }
            }
        };
        let mut last = None;
        for ip in addrs {
            match self.transport(ip).send_raw(&envelope, message).await {
                Ok(resp) => {
                    return SmtpOutcome::Accepted {
                        code: u16::from(resp.code()),
                        reply: crate::sanitize::text(
                            &resp.message().collect::<Vec<_>>().join(" "),
                            300,
                        ),
                    }
                }
                Err(e) => {
                    let code = e.status().map(u16::from);
                    let reply = crate::sanitize::text(&e.to_string(), 300);
                    if e.is_permanent() {
                        return SmtpOutcome::Permanent { code, reply };
                    }
                    let answered = code.is_some();
                    last = Some(SmtpOutcome::Transient { code, reply });
                    if answered {
                        break;
                    }
                }
            }
        }
        last.unwrap_or_else(|| SmtpOutcome::Transient {
            code: None,
            reply: format!("{} has no address", self.host),
        })
    }
}
