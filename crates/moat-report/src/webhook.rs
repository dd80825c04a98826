//! The incident summary POSTed to the operator's webhook, free of I/O. The webhook is the
//! operator's own, so it gets the whole envelope (recipients included), but not the message.

use mail_parser::DateTime;
use serde_json::{json, Value};

use crate::Incident;

pub fn summary(inc: &Incident) -> Value {
    json!({
        "event": "moat.trap.incident",
        "message_id": inc.message_id,
        "received": DateTime::from_timestamp((inc.received_ms / 1000) as i64).to_rfc3339(),
        "received_ms": inc.received_ms,
        "source_ip": inc.source_ip.map(|ip| ip.to_string()),
        "helo": inc.helo,
        "mail_from": inc.mail_from,
        "rcpt_to": inc.rcpt_to,
        "auth_user": inc.auth_user,
        "urls": inc.urls,
        "domains": inc.domains,
        "size": inc.raw.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_the_envelope() {
        let inc = Incident {
            message_id: "q9".into(),
            received_ms: 1_704_110_400_123,
            source_ip: Some("2001:db8::5".parse().unwrap()),
            rcpt_to: vec!["a@b.example".into()],
            raw: vec![0; 42],
            ..Default::default()
        };
        let v = summary(&inc);
        assert_eq!(v["message_id"], "q9");
        assert_eq!(v["received"], "2024-01-01T12:00:00Z");
        assert_eq!(v["source_ip"], "2001:db8::5");
        assert_eq!(v["rcpt_to"][0], "a@b.example");
        assert_eq!(v["size"], 42);
        assert!(v["auth_user"].is_null());
    }
}
