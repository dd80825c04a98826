//! Spamhaus Submission Portal API, free of I/O.
//!
//! Documented at submit.spamhaus.org/api: `POST {base}/api/v1/submissions/add/{ip|domain|url|email}`
//! with `Authorization: Bearer TOKEN` and a JSON body
//! `{"threat_type": CODE, "reason": TEXT (max 255), "source": {"object": VALUE}}`, where the
//! value is the address, domain, URL or the raw message. The answer is the stored submission
//! (with an `id`), or `{"status":208,"message":"submission already reported"}` with HTTP 208,
//! which counts as success; errors carry `status` and `message`.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::sanitize;
use crate::Incident;

pub const MAX_REASON: usize = 255;
/// Larger messages are not submitted whole: clients of the API cap the payload near 150 kB.
pub const MAX_EMAIL_BYTES: usize = 150_000;

/// What is submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    Ip(IpAddr),
    Domain(String),
    Url(String),
    Email(String),
}

impl Submission {
    /// The path segment after `submissions/add/`.
    pub fn kind(&self) -> &'static str {
        match self {
            Submission::Ip(_) => "ip",
            Submission::Domain(_) => "domain",
            Submission::Url(_) => "url",
            Submission::Email(_) => "email",
        }
    }

    pub fn path(&self) -> String {
        format!("/api/v1/submissions/add/{}", self.kind())
    }

    fn object(&self) -> String {
        match self {
            Submission::Ip(ip) => ip.to_string(),
            Submission::Domain(d) | Submission::Url(d) | Submission::Email(d) => d.clone(),
        }
    }
}

/// The request body.
pub fn body(threat_type: &str, reason: &str, sub: &Submission) -> Value {
    json!({
        "threat_type": threat_type,
        "reason": sanitize::truncate(&sanitize::text(reason, MAX_REASON), MAX_REASON),
        "source": { "object": sub.object() },
    })
}

/// Why this object is reported; nothing about the recipients.
pub fn reason(inc: &Incident, sub: &Submission) -> String {
    let from = inc
        .source_ip
        .map(|ip| format!(" from {ip}"))
        .unwrap_or_default();
    let r = match sub {
        Submission::Ip(_) => "Spam bot: logged in to an SMTP AUTH spam trap with guessed \
             credentials and relayed spam (captured, not delivered)"
            .to_string(),
        Submission::Domain(_) | Submission::Url(_) => format!(
            "Promoted in spam sent{from} through an SMTP AUTH spam trap with guessed credentials"
        ),
        Submission::Email(_) => {
            format!("Spam sent{from} through an SMTP AUTH spam trap with guessed credentials")
        }
    };
    sanitize::truncate(&r, MAX_REASON).to_string()
}

/// The submissions an incident yields under the given switches.
pub fn submissions(
    inc: &Incident,
    ip: bool,
    domains: bool,
    urls: bool,
    email: bool,
) -> Vec<Submission> {
    let mut out = Vec::new();
    if ip {
        if let Some(ip) = inc.reportable_ip() {
            out.push(Submission::Ip(ip));
        }
    }
    if domains {
        out.extend(inc.clean_domains(10).into_iter().map(Submission::Domain));
    }
    if urls {
        out.extend(inc.clean_urls(10).into_iter().map(Submission::Url));
    }
    // The API takes the message as a JSON string: bytes that are not UTF-8 become U+FFFD.
    if email && !inc.raw.is_empty() && inc.raw.len() <= MAX_EMAIL_BYTES {
        out.push(Submission::Email(
            String::from_utf8_lossy(&inc.raw).into_owned(),
        ));
    }
    out
}

/// A one-line summary of an answer.
pub fn summarize(status: u16, body: &[u8]) -> String {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(|x| x.as_str())
            .map(|s| sanitize::text(s, 200))
    };
    if status == 208 {
        return format!(
            "HTTP 208: {}",
            field("message").unwrap_or_else(|| "submission already reported".into())
        );
    }
    if let Some(id) = field("id") {
        return format!("HTTP {status}: submission id {id}");
    }
    if let Some(msg) = field("message") {
        return format!("HTTP {status}: {msg}");
    }
    format!("HTTP {status}: {}", sanitize::excerpt(body, 200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_follows_the_documented_shape() {
        let sub = Submission::Ip("221.22.34.2".parse().unwrap());
        let b = body("source-of-spam", "found on a forum", &sub);
        assert_eq!(
            b,
            json!({"threat_type":"source-of-spam","reason":"found on a forum","source":{"object":"221.22.34.2"}})
        );
        assert_eq!(sub.path(), "/api/v1/submissions/add/ip");
    }

    #[test]
    fn the_reason_is_at_most_255_bytes() {
        let b = body(
            "x",
            &"é".repeat(400),
            &Submission::Domain("a.example".into()),
        );
        assert!(b["reason"].as_str().unwrap().len() <= MAX_REASON);
    }

    #[test]
    fn already_reported_is_read() {
        assert_eq!(
            summarize(
                208,
                br#"{"status":208,"message":"submission already reported"}"#
            ),
            "HTTP 208: submission already reported"
        );
        assert_eq!(
            summarize(200, br#"{"id":"b0f6","submission_type":"ip"}"#),
            "HTTP 200: submission id b0f6"
        );
        assert_eq!(
            summarize(401, br#"{"status":401,"message":"user is not authorized"}"#),
            "HTTP 401: user is not authorized"
        );
    }

    #[test]
    fn the_switches_choose_the_submissions() {
        let inc = Incident {
            source_ip: Some("10.0.0.1".parse().unwrap()),
            domains: vec!["spam.example".into()],
            urls: vec!["https://spam.example/x".into()],
            raw: b"x".to_vec(),
            ..Default::default()
        };
        // A private source address is never submitted.
        assert_eq!(
            submissions(&inc, true, true, false, false),
            vec![Submission::Domain("spam.example".into())]
        );
        assert_eq!(submissions(&inc, true, true, true, true).len(), 3);
    }
}
