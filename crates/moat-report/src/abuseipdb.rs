//! AbuseIPDB's `POST /api/v2/report`, free of I/O: the form, and reading the answer.
//!
//! Documented at docs.abuseipdb.com: headers `Key` and `Accept: application/json`; form fields
//! `ip`, `categories` (comma-separated ids), `comment` (AbuseIPDB keeps 1024 characters),
//! `timestamp` (ISO 8601). Success is `{"data":{"ipAddress":…,"abuseConfidenceScore":N}}`,
//! errors are `{"errors":[{"detail":…,"status":N}]}`; 429 means a rate limit (daily quota, or
//! the same address reported within 15 minutes).

use std::net::IpAddr;

use mail_parser::DateTime;
use serde::Deserialize;

use crate::sanitize;
use crate::Incident;

pub const REPORT_PATH: &str = "/api/v2/report";
pub const MAX_COMMENT: usize = 1024;

/// The report's form fields, in order.
pub fn form(
    inc: &Incident,
    ip: IpAddr,
    categories: &[u16],
    include_timestamp: bool,
) -> Vec<(&'static str, String)> {
    let cats = categories
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut f = vec![
        ("ip", ip.to_string()),
        ("categories", cats),
        ("comment", comment(inc)),
    ];
    if include_timestamp {
        f.push((
            "timestamp",
            DateTime::from_timestamp((inc.received_ms / 1000) as i64).to_rfc3339(),
        ));
    }
    f
}

/// `application/x-www-form-urlencoded` body of the form.
pub fn encode(fields: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// What is said about the incident: no recipient addresses, no sender local part, no login
/// name. AbuseIPDB publishes comments, and the recipients are victims.
pub fn comment(inc: &Incident) -> String {
    let mut c = String::from(
        "Email spam: logged in to an SMTP AUTH spam trap with guessed credentials and tried to relay spam (captured, not delivered).",
    );
    let helo = sanitize::text(&inc.helo, 80);
    if !helo.is_empty() {
        c.push_str(&format!(" HELO {helo}."));
    }
    if let Some(dom) = inc
        .mail_from
        .rsplit_once('@')
        .and_then(|(_, d)| sanitize::domain(d))
    {
        c.push_str(&format!(" Envelope sender domain {dom}."));
    }
    if !inc.rcpt_to.is_empty() {
        c.push_str(&format!(" {} recipient(s).", inc.rcpt_to.len()));
    }
    let domains = inc.clean_domains(10);
    if !domains.is_empty() {
        c.push_str(&format!(" Promoted domains: {}.", domains.join(", ")));
    }
    sanitize::truncate(&c, MAX_COMMENT).to_string()
}

#[derive(Debug, Deserialize)]
struct Answer {
    data: Option<AnswerData>,
    #[serde(default)]
    errors: Vec<AnswerError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerData {
    ip_address: Option<String>,
    abuse_confidence_score: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct AnswerError {
    detail: Option<String>,
}

/// A one-line summary of an answer: the confidence score, or the error details.
pub fn summarize(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<Answer>(body) {
        Ok(a) if !a.errors.is_empty() => {
            let details: Vec<String> = a
                .errors
                .iter()
                .filter_map(|e| e.detail.as_deref())
                .map(|d| sanitize::text(d, 200))
                .collect();
            format!("HTTP {status}: {}", details.join("; "))
        }
        Ok(Answer {
            data:
                Some(AnswerData {
                    abuse_confidence_score: Some(score),
                    ip_address,
                }),
            ..
        }) => format!(
            "HTTP {status}: reported {}, abuseConfidenceScore {score}",
            sanitize::text(ip_address.as_deref().unwrap_or("?"), 64)
        ),
        _ => format!("HTTP {status}: {}", sanitize::excerpt(body, 200)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            message_id: "q".into(),
            received_ms: 1_704_110_400_000,
            source_ip: Some("203.0.113.7".parse().unwrap()),
            helo: "win-bot\r\nX: y".into(),
            mail_from: "ceo@victim.example".into(),
            rcpt_to: vec!["alice@private.example".into(), "bob@private.example".into()],
            auth_user: Some("office".into()),
            domains: vec!["spam.example".into()],
            ..Default::default()
        }
    }

    #[test]
    fn the_comment_names_no_person() {
        let c = comment(&incident());
        assert!(!c.contains("alice") && !c.contains("bob") && !c.contains("ceo@"));
        assert!(!c.contains("office"));
        assert!(c.contains("2 recipient(s)"));
        assert!(c.contains("victim.example"));
        assert!(c.contains("spam.example"));
        assert!(!c.contains('\n'));
    }

    #[test]
    fn the_comment_is_capped() {
        let mut inc = incident();
        inc.helo = "h".repeat(5000);
        inc.domains = (0..200)
            .map(|i| format!("d{i}-{}.example", "x".repeat(50)))
            .collect();
        assert!(comment(&inc).len() <= MAX_COMMENT);
    }

    #[test]
    fn the_form_has_the_documented_fields() {
        let inc = incident();
        let f = form(&inc, inc.source_ip.unwrap(), &[11, 18], true);
        let body = encode(&f);
        let back: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back[0], ("ip".into(), "203.0.113.7".into()));
        assert_eq!(back[1], ("categories".into(), "11,18".into()));
        assert_eq!(back[2].0, "comment");
        assert_eq!(back[3], ("timestamp".into(), "2024-01-01T12:00:00Z".into()));
    }

    #[test]
    fn answers_are_summarized() {
        let ok = br#"{"data":{"ipAddress":"127.0.0.1","abuseConfidenceScore":52}}"#;
        assert_eq!(
            summarize(200, ok),
            "HTTP 200: reported 127.0.0.1, abuseConfidenceScore 52"
        );
        let err = br#"{"errors":[{"detail":"Daily rate limit of 1000 requests exceeded for this endpoint.","status":429}]}"#;
        assert!(summarize(429, err).contains("Daily rate limit"));
        assert!(summarize(502, b"<html>bad gateway</html>").starts_with("HTTP 502: <html>"));
    }
}
