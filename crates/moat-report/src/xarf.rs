//! X-ARF v3 as JSON, free of I/O: the legacy format of the XARF project
//! (`schemas/v3/xarf-v3-legacy.json` in github.com/xarf/xarf-spec), which abuse desks that
//! speak X-ARF still accept. The schema forbids additional properties, so only its own fields
//! are written, and each within its documented limits.

use base64::Engine as _;
use mail_parser::DateTime;
use serde_json::{json, Map, Value};

use crate::config::ReporterIdentity;
use crate::sanitize;
use crate::Incident;

/// Messages larger than this are not attached as a sample (the document would be unwieldy and
/// a cut message is no evidence).
pub const MAX_SAMPLE_BYTES: usize = 1 << 20;

/// The document for one incident.
pub fn build(inc: &Incident, reporter: &ReporterIdentity, include_sample: bool) -> Value {
    let mut info = Map::new();
    info.insert(
        "ReporterOrg".into(),
        Value::String(sanitize::text(&reporter.org, 200)),
    );
    info.insert(
        "ReporterOrgEmail".into(),
        Value::String(sanitize::email(&reporter.email).unwrap_or_default()),
    );
    if let Some(d) = reporter.domain.as_deref().and_then(sanitize::domain) {
        info.insert("ReporterOrgDomain".into(), Value::String(d));
    }

    let mut report = Map::new();
    report.insert("ReportClass".into(), json!("Activity"));
    report.insert("ReportType".into(), json!("Spam"));
    report.insert(
        "Date".into(),
        json!(DateTime::from_timestamp((inc.received_ms / 1000) as i64).to_rfc3339()),
    );
    if let Some(ip) = inc.source_ip {
        report.insert("SourceIp".into(), json!(ip.to_string()));
    }
    report.insert("Protocol".into(), json!("smtp"));
    if let Some(from) = sanitize::email(&inc.mail_from) {
        report.insert("SmtpMailFromAddress".into(), json!(from));
    }
    if let Some(subject) = subject(&inc.raw) {
        report.insert("SmtpMessageSubject".into(), json!(subject));
    }
    if let Some(url) = inc.clean_urls(1).into_iter().next() {
        report.insert("Url".into(), json!(url));
    }
    let domains = inc.clean_domains(10);
    let mut desc = String::from(
        "Spam relayed through an SMTP AUTH spam trap with guessed credentials; captured, not delivered.",
    );
    if !domains.is_empty() {
        desc.push_str(" Promoted domains: ");
        desc.push_str(&domains.join(", "));
        desc.push('.');
    }
    report.insert(
        "AttackDescription".into(),
        json!(sanitize::truncate(&desc, 1000)),
    );
    report.insert("AttackCount".into(), json!(1));
    if include_sample && !inc.raw.is_empty() && inc.raw.len() <= MAX_SAMPLE_BYTES {
        report.insert(
            "Samples".into(),
            json!([{
                "ContentType": "message/rfc822",
                "Payload": base64::engine::general_purpose::STANDARD.encode(&inc.raw),
                "Description": "Original spam message",
            }]),
        );
    }

    json!({
        "Version": "3",
        "ReporterInfo": Value::Object(info),
        "Report": Value::Object(report),
    })
}

/// The message's Subject, decoded, as one line of at most 500 bytes.
fn subject(raw: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::new().parse_headers(raw)?;
    let s = sanitize::text(msg.subject()?, 500);
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_v3_schema_fields() {
        let inc = Incident {
            message_id: "q".into(),
            received_ms: 1_704_110_400_000,
            source_ip: Some("192.0.2.1".parse().unwrap()),
            mail_from: "spam@example.com".into(),
            urls: vec!["https://spam.example/x".into()],
            domains: vec!["spam.example".into()],
            raw: b"Subject: Buy now!\r\n\r\nx\r\n".to_vec(),
            ..Default::default()
        };
        let who = ReporterIdentity {
            org: "Example Security".into(),
            email: "abuse@example.com".into(),
            ..Default::default()
        };
        let v = build(&inc, &who, true);
        assert_eq!(v["Version"], "3");
        assert_eq!(v["ReporterInfo"]["ReporterOrgEmail"], "abuse@example.com");
        let r = &v["Report"];
        assert_eq!(r["ReportClass"], "Activity");
        assert_eq!(r["ReportType"], "Spam");
        assert_eq!(r["Date"], "2024-01-01T12:00:00Z");
        assert_eq!(r["SourceIp"], "192.0.2.1");
        assert_eq!(r["SmtpMessageSubject"], "Buy now!");
        let payload = r["Samples"][0]["Payload"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .unwrap(),
            inc.raw
        );
        let allowed = [
            "ReportClass",
            "ReportType",
            "Date",
            "SourceIp",
            "SourcePort",
            "DestinationIp",
            "DestinationPort",
            "Protocol",
            "SmtpMailFromAddress",
            "SmtpRcptToAddress",
            "SmtpMessageSubject",
            "Url",
            "UserAgent",
            "AttackDescription",
            "AttackCount",
            "Samples",
        ];
        for k in r.as_object().unwrap().keys() {
            assert!(allowed.contains(&k.as_str()), "{k} is not in the v3 schema");
        }
    }

    #[test]
    fn no_sample_for_huge_messages() {
        let inc = Incident {
            raw: vec![b'a'; MAX_SAMPLE_BYTES + 1],
            ..Default::default()
        };
        let v = build(&inc, &ReporterIdentity::default(), true);
        assert!(v["Report"].get("Samples").is_none());
    }
}
