//! RDAP look-ups over HTTP, cached in the report database.

use std::net::IpAddr;

use http::Method;

use super::bootstrap::{pick_base, Bootstrap};
use super::contacts::abuse_emails;
use crate::http::HttpClient;
use crate::store::Store;

const MAX_REDIRECTS: usize = 3;

/// What is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Ip(IpAddr),
    Domain(String),
}

impl Query {
    /// The cache key, also the report indicator: `ip:…` or `domain:…`.
    pub fn key(&self) -> String {
        match self {
            Query::Ip(ip) => format!("ip:{ip}"),
            Query::Domain(d) => format!("domain:{d}"),
        }
    }

    fn path(&self) -> String {
        match self {
            Query::Ip(ip) => format!("ip/{ip}"),
            Query::Domain(d) => format!("domain/{d}"),
        }
    }
}

pub struct RdapClient {
    bootstrap: Bootstrap,
    http: HttpClient,
    ttl_ms: u64,
    negative_ttl_ms: u64,
}

impl RdapClient {
    pub fn new(bootstrap: Bootstrap, http: HttpClient, ttl_ms: u64, negative_ttl_ms: u64) -> Self {
        RdapClient {
            bootstrap,
            http,
            ttl_ms,
            negative_ttl_ms,
        }
    }

    /// The abuse contacts for `q`: from the cache, else from the RDAP server the bootstrap
    /// names. An empty list means the registry answered and named none (or does not know the
    /// object); `Err` means no answer, and nothing is cached.
    pub async fn abuse_contacts(
        &self,
        store: &Store,
        q: &Query,
        now_ms: u64,
    ) -> Result<Vec<String>, String> {
        let key = q.key();
        if let Ok(Some(hit)) = store.rdap_get(&key, now_ms) {
            return Ok(hit);
        }
        let servers = match q {
            Query::Ip(ip) => self.bootstrap.ip_servers(*ip),
            Query::Domain(d) => self.bootstrap.domain_servers(d),
        };
        let base = servers
            .and_then(pick_base)
            .ok_or_else(|| format!("no RDAP server for {key} in the bootstrap files"))?;
        let mut url = format!("{base}{}", q.path());
        let headers = [("accept".to_string(), "application/rdap+json".to_string())];
        for _ in 0..=MAX_REDIRECTS {
            let ans = self
                .http
                .send(Method::GET, &url, &headers, None)
                .await
                .map_err(|e| format!("RDAP {url}: {e}"))?;
            match ans.status {
                200 => {
                    if ans.truncated {
                        return Err(format!("RDAP {url}: answer too large"));
                    }
                    let v: serde_json::Value = serde_json::from_slice(&ans.body)
                        .map_err(|e| format!("RDAP {url}: not JSON: {e}"))?;
                    let found = abuse_emails(&v);
                    let ttl = if found.is_empty() {
                        self.negative_ttl_ms
                    } else {
                        self.ttl_ms
                    };
                    let _ = store.rdap_put(&key, &found, now_ms, ttl);
                    return Ok(found);
                }
                301 | 302 | 303 | 307 | 308 => {
                    let next = ans
                        .header("location")
                        .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
                        .ok_or_else(|| format!("RDAP {url}: redirect without an absolute URL"))?;
                    url = next.to_string();
                }
                404 => {
                    let _ = store.rdap_put(&key, &[], now_ms, self.negative_ttl_ms);
                    return Ok(Vec::new());
                }
                s => {
                    return Err(format!(
                        "RDAP {url}: HTTP {s}: {}",
                        crate::sanitize::excerpt(&ans.body, 120)
                    ))
                }
            }
        }
        Err(format!("RDAP {url}: too many redirects"))
    }
}
