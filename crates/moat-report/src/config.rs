//! The reporter's settings: plain structs with defaults, mapped from Moat's config by the caller.
//!
//! A target is on when its section is present (`Some`). It is *live* only when `send = true` and
//! its section has what sending needs ([`ArfConfig::is_ready`] and friends); otherwise its
//! reports are written to the outbox and recorded as `dry-run`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ReportError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Actually send. Off by default: everything goes to the outbox.
    pub send: bool,
    /// Where dry-run reports (and X-ARF documents without a URL) are written. A relative path
    /// is taken relative to the report database's folder.
    pub outbox: PathBuf,
    /// A (target, indicator) pair is reported at most once per this many seconds.
    pub dedupe_window_secs: u64,
    /// Allow RDAP look-ups while not sending, so dry-run ARF files carry real abuse contacts.
    /// Off by default: a dry run then sends nothing at all, and its ARF is addressed to
    /// `abuse@<unknown>`.
    pub rdap_in_dry_run: bool,
    /// Timeout of every HTTP request and SMTP session, seconds.
    pub timeout_secs: u64,
    pub reporter: ReporterIdentity,
    pub retry: RetryConfig,
    pub rdap: RdapConfig,
    pub arf: Option<ArfConfig>,
    pub xarf: Option<XarfConfig>,
    pub abuseipdb: Option<AbuseIpdbConfig>,
    pub spamhaus: Option<SpamhausConfig>,
    pub webhook: Option<WebhookConfig>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            send: false,
            outbox: PathBuf::from("report-outbox"),
            dedupe_window_secs: 24 * 3600,
            rdap_in_dry_run: false,
            timeout_secs: 20,
            reporter: ReporterIdentity::default(),
            retry: RetryConfig::default(),
            rdap: RdapConfig::default(),
            arf: None,
            xarf: None,
            abuseipdb: None,
            spamhaus: None,
            webhook: None,
        }
    }
}

/// Who is reporting: goes into ARF (`User-Agent`, `Reporting-MTA`) and X-ARF (`ReporterInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReporterIdentity {
    pub org: String,
    pub email: String,
    pub domain: Option<String>,
    /// Host name of the trap, for `Reporting-MTA` and the report's Message-ID.
    pub reporting_mta: String,
    pub user_agent: String,
}

impl Default for ReporterIdentity {
    fn default() -> Self {
        ReporterIdentity {
            org: "Moat".into(),
            email: String::new(),
            domain: None,
            reporting_mta: "localhost".into(),
            user_agent: format!("Moat/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Retries after network errors, 5xx and 429: `base · 2^(attempt−1)`, capped at `max_secs`,
/// at most `max_attempts` attempts in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub base_secs: u64,
    pub max_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 6,
            base_secs: 60,
            max_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RdapConfig {
    /// A folder whose `ipv4.json`, `ipv6.json`, `dns.json`, `asn.json` replace the shipped IANA
    /// bootstrap files (each one that exists).
    pub bootstrap_dir: Option<PathBuf>,
    /// How long abuse contacts found by RDAP are kept, seconds.
    pub cache_ttl_secs: u64,
    /// How long "no abuse contact" answers are kept, seconds.
    pub negative_ttl_secs: u64,
}

impl Default for RdapConfig {
    fn default() -> Self {
        RdapConfig {
            bootstrap_dir: None,
            cache_ttl_secs: 7 * 24 * 3600,
            negative_ttl_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, not opportunistic).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// EHLO name; defaults to `reporter.reporting_mta`.
    pub hello_name: Option<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            hello_name: None,
        }
    }
}

/// ARF reports by mail to the abuse contacts RDAP names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArfConfig {
    /// The reports' From address and envelope sender.
    pub from: String,
    pub smtp: SmtpConfig,
    pub max_per_hour: u32,
    /// At most this many abuse contacts are written to per incident.
    pub max_contacts: usize,
}

impl Default for ArfConfig {
    fn default() -> Self {
        ArfConfig {
            from: String::new(),
            smtp: SmtpConfig::default(),
            max_per_hour: 60,
            max_contacts: 10,
        }
    }
}

impl ArfConfig {
    pub fn is_ready(&self) -> bool {
        crate::sanitize::email(&self.from).is_some() && !self.smtp.host.is_empty()
    }
}

/// X-ARF v3 JSON documents, POSTed to `url` when set, else written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XarfConfig {
    pub url: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// Attach the message (base64) as a sample.
    pub include_sample: bool,
    pub max_per_hour: u32,
}

impl Default for XarfConfig {
    fn default() -> Self {
        XarfConfig {
            url: None,
            headers: BTreeMap::new(),
            include_sample: true,
            max_per_hour: 60,
        }
    }
}

impl XarfConfig {
    pub fn is_ready(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseIpdbConfig {
    pub key: String,
    pub base_url: String,
    /// AbuseIPDB category ids: 11 Email Spam, 18 Brute-Force.
    pub categories: Vec<u16>,
    /// Send the time the trap received the message (else AbuseIPDB uses the time of the report).
    pub include_timestamp: bool,
    pub max_per_hour: u32,
}

impl Default for AbuseIpdbConfig {
    fn default() -> Self {
        AbuseIpdbConfig {
            key: String::new(),
            base_url: "https://api.abuseipdb.com".into(),
            categories: vec![11, 18],
            include_timestamp: true,
            // The free plan allows 1000 reports a day.
            max_per_hour: 40,
        }
    }
}

impl AbuseIpdbConfig {
    pub fn is_ready(&self) -> bool {
        !self.key.is_empty() && !self.base_url.is_empty()
    }
}

/// Spamhaus Submission Portal (`https://submit.spamhaus.org/portal/api/v1/…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamhausConfig {
    pub token: String,
    pub base_url: String,
    /// A code from `GET lookup/threats-types`.
    pub threat_type: String,
    pub submit_ip: bool,
    pub submit_domains: bool,
    pub submit_urls: bool,
    /// Submit the whole message (`submissions/add/email`). Off by default: the message names
    /// its recipients.
    pub submit_email: bool,
    pub max_per_hour: u32,
}

impl Default for SpamhausConfig {
    fn default() -> Self {
        SpamhausConfig {
            token: String::new(),
            base_url: "https://submit.spamhaus.org/portal".into(),
            threat_type: "source-of-spam".into(),
            submit_ip: true,
            submit_domains: true,
            submit_urls: false,
            submit_email: false,
            max_per_hour: 60,
        }
    }
}

impl SpamhausConfig {
    pub fn is_ready(&self) -> bool {
        !self.token.is_empty() && !self.base_url.is_empty()
    }
}

/// A JSON summary of each incident POSTed to a URL of the operator's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub max_per_hour: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            headers: BTreeMap::new(),
            max_per_hour: 600,
        }
    }
}

impl WebhookConfig {
    pub fn is_ready(&self) -> bool {
        !self.url.is_empty()
    }
}

impl ReportConfig {
    /// The URLs of the configured report targets (empty ones included): their hosts are the
    /// operator's choice, so they may be on a private network (`crate::http::Reach`).
    pub fn target_urls(&self) -> impl Iterator<Item = &str> {
        let xarf = self.xarf.as_ref().and_then(|x| x.url.as_deref());
        let abuseipdb = self.abuseipdb.as_ref().map(|a| a.base_url.as_str());
        let spamhaus = self.spamhaus.as_ref().map(|s| s.base_url.as_str());
        let webhook = self.webhook.as_ref().map(|w| w.url.as_str());
        [xarf, abuseipdb, spamhaus, webhook].into_iter().flatten()
    }

    /// Every problem at once, so `moat check` can list them.
    pub fn validate(&self) -> Result<(), ReportError> {
        let mut errs = Vec::new();
        let mut url = |name: &str, u: &str| {
            if !u.is_empty() && crate::http::parse_url(u).is_err() {
                errs.push(format!("{name}: not an http(s) URL: {u}"));
            }
        };
        if let Some(x) = &self.xarf {
            url("xarf.url", x.url.as_deref().unwrap_or(""));
        }
        if let Some(a) = &self.abuseipdb {
            url("abuseipdb.base_url", &a.base_url);
        }
        if let Some(s) = &self.spamhaus {
            url("spamhaus.base_url", &s.base_url);
        }
        if let Some(w) = &self.webhook {
            url("webhook.url", &w.url);
        }
        let mut headers = |name: &str, h: &BTreeMap<String, String>| {
            for (k, v) in h {
                if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || http::HeaderValue::from_str(v).is_err()
                {
                    errs.push(format!("{name}: invalid header {k:?}"));
                }
            }
        };
        if let Some(x) = &self.xarf {
            headers("xarf.headers", &x.headers);
        }
        if let Some(w) = &self.webhook {
            headers("webhook.headers", &w.headers);
        }
        if let Some(a) = &self.arf {
            if !a.from.is_empty() && crate::sanitize::email(&a.from).is_none() {
                errs.push(format!("arf.from: not an address: {}", a.from));
            }
        }
        if self.retry.max_attempts == 0 {
            errs.push("retry.max_attempts must be at least 1".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ReportError::Config(errs.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_round_trip() {
        let c = ReportConfig::default();
        assert!(!c.send && !c.rdap_in_dry_run);
        assert_eq!(c.dedupe_window_secs, 86_400);
        let back: ReportConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let partial: ReportConfig =
            serde_json::from_str(r#"{"send": true, "abuseipdb": {"key": "k"}}"#).unwrap();
        let a = partial.abuseipdb.unwrap();
        assert_eq!(a.base_url, "https://api.abuseipdb.com");
        assert_eq!(a.categories, vec![11, 18]);
        assert!(serde_json::from_str::<ReportConfig>(r#"{"sned": true}"#).is_err());
        assert!(serde_json::from_str::<ReportConfig>(r#"{"webhook": {"uri": "x"}}"#).is_err());
    }

    #[test]
    fn validate_lists_every_problem() {
        let c = ReportConfig {
            webhook: Some(WebhookConfig {
                url: "ftp://x".into(),
                headers: [("bad header".to_string(), "v".to_string())].into(),
                ..Default::default()
            }),
            arf: Some(ArfConfig {
                from: "not an address".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("webhook.url"), "{e}");
        assert!(e.contains("webhook.headers"), "{e}");
        assert!(e.contains("arf.from"), "{e}");
        assert!(ReportConfig::default().validate().is_ok());
    }
}
