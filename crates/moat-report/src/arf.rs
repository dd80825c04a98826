//! Abuse Reporting Format (RFC 5965, with the abuse-report practice of RFC 6650), free of I/O.
//!
//! The machine-readable `message/feedback-report` part comes from mail-auth's `Feedback`
//! builder. The MIME envelope around it is assembled here rather than by
//! `Feedback::write_rfc5322`, because that one takes the original message as a UTF-8 string and
//! may re-encode it as quoted-printable or base64; RFC 2046 allows only 7bit, 8bit or binary for
//! `message/rfc822`, and abuse desks want the message exactly as the bot sent it.

use mail_auth::report::{Feedback, FeedbackType};
use mail_parser::DateTime;

use crate::sanitize;
use crate::Incident;

/// Caps on what a hostile message can make us list.
const MAX_RCPT: usize = 50;
const MAX_DOMAINS: usize = 50;
const MAX_URIS: usize = 50;

/// The placeholder recipient of a dry-run ARF whose abuse contact was not looked up.
pub const UNKNOWN_RECIPIENT: &str = "abuse@<unknown>";

/// Everything about a report that does not come from the incident.
#[derive(Debug, Clone)]
pub struct ArfParams<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub reporting_mta: &'a str,
    pub user_agent: &'a str,
    /// When the report is written (its Date header), Unix ms.
    pub date_ms: u64,
    /// Unique part of the report's Message-ID.
    pub unique: &'a str,
    /// MIME boundary; must not occur in the message (see [`boundary`]).
    pub boundary: &'a str,
    /// Said in the text part and an `X-Moat-Dry-Run` header, for dry-run files.
    pub dry_run_note: Option<&'a str>,
}

/// A boundary that does not occur in `raw`, from `seed` (random in production, fixed in tests).
pub fn boundary(raw: &[u8], mut seed: u64) -> String {
    loop {
        let b = format!("moat-arf-{seed:016x}");
        if memfind(raw, b.as_bytes()).is_none() {
            return b;
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `message/feedback-report` fields for an incident, from mail-auth's builder. Multiple
/// `Original-Rcpt-To` fields are allowed by RFC 5965 but the builder takes one, so the others
/// are appended in the same form.
pub fn feedback_fields(inc: &Incident, reporting_mta: &str, user_agent: &str) -> String {
    let rcpts: Vec<String> = inc
        .rcpt_to
        .iter()
        .filter_map(|r| sanitize::email(r))
        .take(MAX_RCPT)
        .collect();
    let ua = sanitize::text(user_agent, 200);
    let mta = sanitize::domain(reporting_mta).unwrap_or_else(|| "localhost".into());
    let mut fb = Feedback::new(FeedbackType::Abuse)
        .with_version(1)
        .with_user_agent(ua.as_str())
        .with_arrival_date((inc.received_ms / 1000) as i64)
        .with_reporting_mta(mta.as_str());
    if let Some(ip) = inc.source_ip {
        fb = fb.with_source_ip(ip);
    }
    if let Some(from) = sanitize::email(&inc.mail_from) {
        fb = fb.with_original_mail_from(format!("<{from}>"));
    }
    if let Some(first) = rcpts.first() {
        fb = fb.with_original_rcpt_to(format!("<{first}>"));
    }
    for d in inc.clean_domains(MAX_DOMAINS) {
        fb = fb.with_reported_domain(d);
    }
    for u in inc.clean_urls(MAX_URIS) {
        fb = fb.with_reported_uri(u);
    }
    let mut arf = fb.to_arf();
    if let Some(first) = rcpts.first() {
        let more: String = rcpts
            .iter()
            .skip(1)
            .map(|r| format!("Original-Rcpt-To: <{r}>\r\n"))
            .collect();
        let line = format!("Original-Rcpt-To: <{first}>\r\n");
        match arf.find(&line) {
            Some(at) => arf.insert_str(at + line.len(), &more),
            None => arf.push_str(&more),
        }
    }
    arf
}

/// The original message as it goes into the report: line ends made CRLF (SMTP carries nothing
/// else), and the transfer encoding that describes it.
pub fn original_message(raw: &[u8]) -> (Vec<u8>, &'static str) {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    let long_line = out.split(|&b| b == b'\n').any(|l| l.len() > 999);
    let eight_bit = out.iter().any(|&b| b >= 0x80 || b == 0);
    let cte = if eight_bit || long_line {
        "8bit"
    } else {
        "7bit"
    };
    (out, cte)
}

/// The whole ARF message, ready for SMTP or the outbox.
pub fn build(inc: &Incident, p: &ArfParams<'_>) -> Vec<u8> {
    let from = sanitize::email(p.from).unwrap_or_else(|| "postmaster@localhost".into());
    let to = if p.to == UNKNOWN_RECIPIENT {
        UNKNOWN_RECIPIENT.to_string()
    } else {
        sanitize::email(p.to).unwrap_or_else(|| UNKNOWN_RECIPIENT.into())
    };
    let mta = sanitize::domain(p.reporting_mta).unwrap_or_else(|| "localhost".into());
    let date = DateTime::from_timestamp((p.date_ms / 1000) as i64).to_rfc822();
    let arrival = DateTime::from_timestamp((inc.received_ms / 1000) as i64).to_rfc822();
    let about = match inc.source_ip {
        Some(ip) => format!("spam from {ip}"),
        None => format!("spam message {}", sanitize::text(&inc.message_id, 64)),
    };

    let mut text = format!(
        "This is an abuse report (RFC 5965) for an email message received from IP address \
         {ip} on {arrival}.\r\n\r\nThe sender logged in to a spam trap with credentials it \
         guessed and tried to relay the attached message through it. The message was \
         captured and not delivered.\r\n",
        ip = inc
            .source_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "(unknown)".into()),
    );
    if let Some(note) = p.dry_run_note {
        text.push_str(&format!("\r\nDRY RUN: {}\r\n", sanitize::text(note, 300)));
    }

    let (original, cte) = original_message(&inc.raw);
    let b = p.boundary;
    let mut m = Vec::with_capacity(original.len() + 4096);
    let mut h = |name: &str, value: &str| {
        m.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    };
    h("From", &from);
    h("To", &to);
    h("Date", &date);
    h("Subject", &format!("Abuse report: {about}"));
    h(
        "Message-ID",
        &format!("<{}@{mta}>", sanitize::text(p.unique, 64).replace(' ', "")),
    );
    h("MIME-Version", "1.0");
    h("Auto-Submitted", "auto-generated");
    if let Some(note) = p.dry_run_note {
        h("X-Moat-Dry-Run", &sanitize::text(note, 300));
    }
    h(
        "Content-Type",
        &format!("multipart/report; report-type=feedback-report; boundary=\"{b}\""),
    );
    m.extend_from_slice(b"\r\nThis is a multi-part message in MIME format.\r\n");
    m.extend_from_slice(
        format!(
            "\r\n--{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n{text}"
        )
        .as_bytes(),
    );
    m.extend_from_slice(
        format!(
            "\r\n--{b}\r\nContent-Type: message/feedback-report\r\n\r\n{}",
            feedback_fields(inc, &mta, p.user_agent)
        )
        .as_bytes(),
    );
    m.extend_from_slice(
        format!(
            "\r\n--{b}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\
             Content-Transfer-Encoding: {cte}\r\n\r\n"
        )
        .as_bytes(),
    );
    m.extend_from_slice(&original);
    m.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            message_id: "q1".into(),
            received_ms: 1_700_000_000_000,
            source_ip: Some("203.0.113.7".parse().unwrap()),
            helo: "bot".into(),
            mail_from: "forged@victim.example".into(),
            rcpt_to: vec!["a@one.example".into(), "b@two.example".into()],
            auth_user: Some("info".into()),
            urls: vec!["https://spam.example/buy".into()],
            domains: vec!["spam.example".into()],
            raw: b"Subject: hi\r\n\r\nbuy\r\n".to_vec(),
        }
    }

    #[test]
    fn every_recipient_gets_an_original_rcpt_to_field() {
        let f = feedback_fields(&incident(), "trap.example", "Moat/1");
        assert!(f.contains("Original-Rcpt-To: <a@one.example>\r\n"), "{f}");
        assert!(f.contains("Original-Rcpt-To: <b@two.example>\r\n"), "{f}");
        assert!(f.contains("Feedback-Type: abuse\r\n"));
        assert!(f.contains("Source-IP: 203.0.113.7\r\n"));
        assert!(f.contains("Reporting-MTA: dns;trap.example\r\n"));
    }

    #[test]
    fn hostile_fields_cannot_add_header_lines() {
        let mut inc = incident();
        inc.mail_from = "x@y.example\r\nBcc: victim@z.example".into();
        inc.rcpt_to = vec!["a@b.example\r\nX-Evil: 1".into()];
        inc.urls = vec!["https://e.example/\r\nX-Evil: 2".into()];
        inc.domains = vec!["e.example\r\nX-Evil: 3".into()];
        let f = feedback_fields(&inc, "trap.example\r\nX-Evil: 4", "UA\r\nX-Evil: 5");
        for line in f.split("\r\n") {
            assert!(
                !line.starts_with("X-Evil") && !line.starts_with("Bcc"),
                "{f}"
            );
            assert!(!line.contains('\n') && !line.contains('\r'), "{f}");
        }
        assert!(f.contains("Reporting-MTA: dns;localhost\r\n"), "{f}");
        assert!(f.contains("User-Agent: UA X-Evil: 5\r\n"), "{f}");
    }

    #[test]
    fn bare_line_feeds_become_crlf_and_8bit_is_declared() {
        let (m, cte) = original_message(b"Subject: x\n\nh\xc3\xa9\r\nz\r");
        assert_eq!(m, b"Subject: x\r\n\r\nh\xc3\xa9\r\nz\r\n");
        assert_eq!(cte, "8bit");
        assert_eq!(original_message(b"a\r\n").1, "7bit");
    }

    #[test]
    fn the_boundary_avoids_the_message() {
        let first = boundary(b"", 1);
        let raw = format!("x {first} y");
        let b = boundary(raw.as_bytes(), 1);
        assert_ne!(b, first);
        assert!(!raw.contains(&b));
    }
}
