//! Is the envelope sender of a message real? Only then does it get a DSN for a dropped
//! recipient: SPF `pass` for the connecting address, or a DKIM signature that passes and aligns
//! with the `From:` domain under DMARC. Forged senders (the usual case for probes and spam)
//! therefore get no backscatter. Uses `mail-auth`, the crate the reports already rely on.

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{
    dmarc::verify::DmarcParameters, spf::verify::SpfParameters, AuthenticatedMessage, DkimResult,
    DmarcResult, MessageAuthenticator, SpfResult,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why a sender was (not) believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Spf,
    DkimAligned,
    Unproven(String),
}

impl Verdict {
    pub fn authentic(&self) -> bool {
        !matches!(self, Verdict::Unproven(_))
    }
}

/// As the log says it: `spf pass`, `dkim aligned`, or why not (`spf softfail, no passing DKIM`).
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Spf => f.write_str("spf pass"),
            Verdict::DkimAligned => f.write_str("dkim aligned"),
            Verdict::Unproven(why) => f.write_str(why),
        }
    }
}

/// An SPF result by its RFC 7208 name (section 2.6), as Received-SPF writes it.
fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

#[derive(Clone)]
pub struct SenderCheck {
    auth: MessageAuthenticator,
    hostname: String,
}

impl SenderCheck {
    /// `dns`: a server to ask (tests, split-horizon setups); `None`: the host's nameservers
    /// as moat-dns reads them (/etc/resolv.conf, else the configured fallback), so that a
    /// host without the file still checks senders, and no lookup goes through libc.
    pub fn new(dns: Option<SocketAddr>, hostname: &str) -> Result<Self, String> {
        let (config, opts) = match dns {
            Some(a) => {
                let mut opts = ResolverOpts::default();
                opts.timeout = Duration::from_secs(5);
                opts.attempts = 2;
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                let ns = NameServerConfig::new(a.ip(), true, vec![udp, tcp]);
                (ResolverConfig::from_parts(None, vec![], vec![ns]), opts)
            }
            None => moat_dns::host::system().hickory(),
        };
        // Built by moat-dns rather than `MessageAuthenticator::new`, which fails on a host
        // without CA certificates (see `build_resolver`).
        let auth = moat_dns::host::build_resolver(config, opts)
            .map(MessageAuthenticator)
            .map_err(|e| e.to_string())?;
        Ok(SenderCheck {
            auth,
            hostname: hostname.to_string(),
        })
    }

    /// SPF first (cheap: DNS only); DKIM and DMARC only if SPF did not pass and the whole
    /// message was kept.
    pub async fn check(
        &self,
        client: IpAddr,
        helo: &str,
        sender: &str,
        message: Option<&[u8]>,
    ) -> Verdict {
        if sender.is_empty() || !sender.contains('@') {
            return Verdict::Unproven("null or local sender".into());
        }
        let spf = self
            .auth
            .verify_spf(SpfParameters::verify_mail_from(
                client,
                helo,
                &self.hostname,
                sender,
            ))
            .await;
        if spf.result() == SpfResult::Pass {
            return Verdict::Spf;
        }
        let Some(raw) = message else {
            return Verdict::Unproven(format!("spf {}", spf_name(spf.result())));
        };
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return Verdict::Unproven(format!(
                "spf {}, message unparsable",
                spf_name(spf.result())
            ));
        };
        let dkim = self.auth.verify_dkim(&msg).await;
        if !dkim.iter().any(|d| d.result() == &DkimResult::Pass) {
            return Verdict::Unproven(format!("spf {}, no passing DKIM", spf_name(spf.result())));
        }
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(&msg, &dkim, domain, &spf))
            .await;
        if dmarc.dkim_result() == &DmarcResult::Pass {
            Verdict::DkimAligned
        } else {
            Verdict::Unproven(format!("spf {}, DKIM not aligned", spf_name(spf.result())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_as_words_not_rust() {
        assert_eq!(Verdict::Spf.to_string(), "spf pass");
        assert_eq!(Verdict::DkimAligned.to_string(), "dkim aligned");
        let why = format!("spf {}, no passing DKIM", spf_name(SpfResult::SoftFail));
        assert_eq!(
            Verdict::Unproven(why).to_string(),
            "spf softfail, no passing DKIM"
        );
        assert_eq!(spf_name(SpfResult::TempError), "temperror");
        assert_eq!(spf_name(SpfResult::None), "none");
    }
}
