//! Delivery status notifications (RFC 3464) for recipients the milter dropped: the message a
//! sender who mistyped an address gets instead of Postfix's immediate `550`, so probes learn
//! nothing at `RCPT` time and real senders still learn of their mistake. I/O-free.

/// Everything a DSN says.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// Our name (`Reporting-MTA`, the `From:` domain).
    pub hostname: &'a str,
    /// Who gets it: the envelope sender of the failed message.
    pub to: &'a str,
    pub recipients: &'a [String],
    pub queue_id: &'a str,
    /// The failed message's header section, returned as `text/rfc822-headers`.
    pub headers: &'a [u8],
    /// RFC 5322 date and a unique id, given so the builder stays deterministic.
    pub date: &'a str,
    pub message_id: &'a str,
}

/// The DSN as RFC 5322 text with CRLF line ends. Sent with the null envelope sender `<>`, so
/// it can never bounce back and loop.
pub fn build(d: &DsnInput) -> Vec<u8> {
    let boundary = format!("moat-dsn-{}", d.message_id.trim_matches(['<', '>']));
    let mut m = String::with_capacity(2048);
    let list = d.recipients.join(", ");
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: {mid}\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host {host}.\r\n\
         \r\n\
         Your message could not be delivered to the following recipient(s),\r\n\
         because no such mailbox exists here: {list}\r\n\
         \r\n\
         Please check the address for typing errors. Your message was delivered\r\n\
         to the other recipients, if any.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Postfix-Queue-ID: {qid}\r\n\
         \r\n",
        host = d.hostname,
        to = d.to,
        date = d.date,
        mid = d.message_id,
        qid = if d.queue_id.is_empty() { "unknown" } else { d.queue_id },
    ));
    for r in d.recipients {
        m.push_str(&format!(
            "Final-Recipient: rfc822; {r}\r\n\
             Original-Recipient: rfc822; {r}\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown\r\n\
             \r\n"
        ));
    }
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(header_section(d.headers));
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The header section of a message (up to the first empty line), at most 64 KiB.
pub fn header_section(message: &[u8]) -> &[u8] {
    let end = memfind(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    &message[..end.min(64 * 1024)]
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_names_each_recipient_and_returns_only_the_headers() {
        let rcpts = vec!["typo@moat.test".to_string(), "other@moat.test".to_string()];
        let msg = b"From: a@good.test\r\nSubject: hi\r\n\r\nsecret body\r\n";
        let dsn = build(&DsnInput {
            hostname: "mx.moat.test",
            to: "a@good.test",
            recipients: &rcpts,
            queue_id: "4ABC",
            headers: msg,
            date: "Sun, 6 Dec 2026 13:00:00 +0000",
            message_id: "<1.2@mx.moat.test>",
        });
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; typo@moat.test\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; other@moat.test\r\n"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Subject: hi\r\n"));
        assert!(!text.contains("secret body"), "only headers go back");
        assert!(text.ends_with("--moat-dsn-1.2@mx.moat.test--\r\n"));
        assert!(!text.contains("\n\n") && !text.replace("\r\n", "").contains('\n'));
    }
}
