//! A plain-text mail to the operator (the daily digest), sent through the report relay: one
//! outgoing mail path for everything Moat writes. The body holds text an attacker chose (link
//! domains, networks), so every line is made safe here: no bare CR or LF, no control
//! characters, no line past 998 bytes (RFC 5322), and the headers come only from fixed text and
//! sanitised addresses.

use crate::sanitize;
use mail_parser::DateTime;

/// The whole message: `From`, `To`, `Date`, `Subject`, `Message-ID`, 8-bit UTF-8 text.
pub fn plain(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    date_ms: u64,
    unique: &str,
) -> Vec<u8> {
    let from = sanitize::email(from).unwrap_or_else(|| "postmaster@localhost".into());
    let to = sanitize::email(to).unwrap_or_else(|| "postmaster@localhost".into());
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let date = DateTime::from_timestamp((date_ms / 1000) as i64).to_rfc822();
    let mut m = String::with_capacity(body.len() + 512);
    for (name, value) in [
        ("From", from.as_str()),
        ("To", to.as_str()),
        ("Date", date.as_str()),
        ("Subject", &sanitize::text(subject, 200)),
        (
            "Message-ID",
            &format!("<{}@{domain}>", sanitize::text(unique, 64).replace(' ', "")),
        ),
        ("MIME-Version", "1.0"),
        ("Auto-Submitted", "auto-generated"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ] {
        m.push_str(&format!("{name}: {value}\r\n"));
    }
    m.push_str("\r\n");
    for line in body.lines() {
        let clean: String = line
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        let mut end = clean.len().min(998);
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        m.push_str(&clean[..end]);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_cannot_add_headers_or_break_lines() {
        let body = format!("ok\nevil.example\rBcc: x@y\u{0}\n{}", "é".repeat(800));
        let m = plain(
            "moat@blog.example",
            "owner@blog.example",
            "Digest\r\nBcc: victim@example.org",
            &body,
            1_800_000_000_000,
            "digest-1",
        );
        let text = String::from_utf8(m).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("\r\nBcc"), "{head}");
        assert!(head.contains("Message-ID: <digest-1@blog.example>"));
        assert!(head.contains("Date: "));
        // Every line ends in CRLF, none longer than 998 bytes, no bare CR or LF.
        for line in body.split("\r\n") {
            assert!(
                line.len() <= 998 && !line.contains(['\r', '\n', '\0']),
                "{line:?}"
            );
        }
        assert!(
            body.starts_with("ok\r\nevil.example Bcc: x@y \r\n"),
            "{body:?}"
        );
    }
}
