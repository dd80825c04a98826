use std::net::IpAddr;

/// One message the trap captured, with what the trap and the extractor learned about it.
///
/// Everything here except `message_id` and `received_ms` came from the bot and is hostile input:
/// the builders sanitize every field before it reaches a header, a form or a JSON document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incident {
    /// The quarantine id.
    pub message_id: String,
    /// When the trap received the message, Unix milliseconds.
    pub received_ms: u64,
    /// The bot's address as seen by the trap.
    pub source_ip: Option<IpAddr>,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// SASL login the bot used, if any.
    pub auth_user: Option<String>,
    /// Normalised URLs promoted by the message.
    pub urls: Vec<String>,
    /// Registrable domains of those URLs.
    pub domains: Vec<String>,
    /// The original message bytes.
    pub raw: Vec<u8>,
}

impl Incident {
    /// The source address, if it is one worth reporting: loopback, private, link-local,
    /// carrier-grade NAT, multicast and unspecified addresses identify nobody outside this
    /// network, and AbuseIPDB rejects them.
    pub fn reportable_ip(&self) -> Option<IpAddr> {
        self.source_ip.filter(|ip| is_reportable(*ip))
    }

    /// The promoted domains, lowercased, deduplicated and capped at `max`, in first-seen order;
    /// names that are not plausible host names are dropped.
    pub fn clean_domains(&self, max: usize) -> Vec<String> {
        clean(&self.domains, max, crate::sanitize::domain)
    }

    /// The promoted URLs, sanitized, deduplicated and capped at `max`.
    pub fn clean_urls(&self, max: usize) -> Vec<String> {
        clean(&self.urls, max, crate::sanitize::url)
    }
}

/// The values `sanitize` accepts, deduplicated, at most `max`, in first-seen order.
fn clean(values: &[String], max: usize, sanitize: fn(&str) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if let Some(v) = sanitize(v) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Whether an address is globally meaningful enough to report.
pub fn is_reportable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_reportable(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_reported() {
        for a in [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_reportable(a.parse().unwrap()), "{a}");
        }
        for a in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "2a00:1450::1"] {
            assert!(is_reportable(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn domains_are_cleaned_deduplicated_and_capped() {
        let inc = Incident {
            domains: vec![
                "Spam.Example".into(),
                "spam.example".into(),
                "bad domain".into(),
                "b.example".into(),
                "c.example".into(),
            ],
            ..Default::default()
        };
        assert_eq!(inc.clean_domains(2), vec!["spam.example", "b.example"]);
    }
}
