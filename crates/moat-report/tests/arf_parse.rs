//! The ARF we build, read back by independent parsers: mail-parser for the MIME structure and
//! the feedback-report fields, mail-auth's ARF parser for the fields again.

mod common;

use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use moat_report::arf::{self, ArfParams, UNKNOWN_RECIPIENT};
use moat_report::Incident;

fn build(inc: &Incident, to: &str, note: Option<&str>) -> Vec<u8> {
    let boundary = arf::boundary(&inc.raw, 42);
    arf::build(
        inc,
        &ArfParams {
            from: "abuse-reports@trap.example",
            to,
            reporting_mta: "trap.example",
            user_agent: "Moat/test",
            date_ms: 1_704_110_460_000,
            unique: "u1",
            boundary: &boundary,
            dry_run_note: note,
        },
    )
}

/// The raw values of every field named `name` in a header block.
fn fields(block: &[u8], name: &str) -> Vec<String> {
    let msg = MessageParser::new().parse_headers(block).expect("headers");
    let raw = msg.raw_message();
    msg.headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| {
            String::from_utf8_lossy(&raw[h.offset_start() as usize..h.offset_end() as usize])
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn the_report_parses_back_with_the_same_fields() {
    let inc = incident("q-7");
    let bytes = build(&inc, "abuse@hosting.example", None);
    let msg = MessageParser::new().parse(&bytes).expect("parses");

    // The envelope: multipart/report; report-type=feedback-report, three parts.
    let ct = msg.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("feedback-report"));
    assert_eq!(
        msg.to().unwrap().first().unwrap().address(),
        Some("abuse@hosting.example")
    );
    assert_eq!(
        msg.from().unwrap().first().unwrap().address(),
        Some("abuse-reports@trap.example")
    );
    assert_eq!(msg.subject(), Some("Abuse report: spam from 203.0.113.7"));
    let root = msg.part(0).unwrap();
    let kids = root.sub_parts().expect("multipart");
    assert_eq!(kids.len(), 3);
    let part = |i: usize| msg.part(kids[i]).unwrap();
    let ctype = |i: usize| {
        let c = part(i).content_type().unwrap();
        format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))
    };
    assert_eq!(ctype(0), "text/plain");
    assert_eq!(ctype(1), "message/feedback-report");
    assert_eq!(ctype(2), "message/rfc822");
    let human = part(0).text_contents().unwrap();
    assert!(human.contains("203.0.113.7"), "{human}");

    // The machine-readable fields.
    let fr = part(1).contents();
    assert_eq!(fields(fr, "Feedback-Type"), vec!["abuse"]);
    assert_eq!(fields(fr, "User-Agent"), vec!["Moat/test"]);
    assert_eq!(fields(fr, "Version"), vec!["1"]);
    assert_eq!(fields(fr, "Source-IP"), vec![BOT_IP]);
    assert_eq!(
        fields(fr, "Original-Mail-From"),
        vec!["<deals@victim-brand.example>"]
    );
    assert_eq!(
        fields(fr, "Original-Rcpt-To"),
        vec!["<alice@private.example>", "<bob@private.example>"]
    );
    assert_eq!(
        fields(fr, "Arrival-Date"),
        vec!["Mon, 1 Jan 2024 12:00:00 +0000"]
    );
    assert_eq!(fields(fr, "Reporting-MTA"), vec!["dns;trap.example"]);
    assert_eq!(fields(fr, "Reported-Domain"), vec!["spam.example"]);
    assert_eq!(
        fields(fr, "Reported-URI"),
        vec!["https://spam.example/buy?x=1"]
    );

    // The original message, byte for byte, and readable as a message.
    let original = part(2);
    assert_eq!(original.contents(), inc.raw.as_slice());
    let inner = original
        .message()
        .expect("message/rfc822 is parsed as a message");
    assert_eq!(inner.subject(), Some("Grüße cheap pills"));
    assert_eq!(inner.message_id(), Some("spam-1@bot"));

    // mail-auth's own ARF parser agrees.
    let fb = mail_auth::report::Feedback::parse_rfc5322(&bytes).expect("mail-auth parses it");
    assert_eq!(fb.feedback_type(), mail_auth::report::FeedbackType::Abuse);
    assert_eq!(fb.source_ip(), Some(BOT_IP.parse().unwrap()));
    assert_eq!(fb.user_agent(), Some("Moat/test"));
    assert_eq!(fb.reported_domain(), ["spam.example"]);
    assert_eq!(fb.arrival_date(), Some(1_704_110_400));
}

#[test]
fn hostile_message_bytes_stay_inside_their_part() {
    let mut inc = incident("q-8");
    // Bare LFs, NUL, invalid UTF-8, a fake closing boundary of ours, very long lines.
    let fake_boundary = arf::boundary(b"", 42);
    inc.raw = format!(
        "Subject: x\n\n--{fake_boundary}--\nA\0B\n{}\n",
        "z".repeat(5000)
    )
    .into_bytes();
    inc.raw.extend_from_slice(b"\xff\xfe\r\nend");
    let bytes = build(&inc, "abuse@hosting.example", None);
    let msg = MessageParser::new().parse(&bytes).expect("parses");
    let kids = msg.part(0).unwrap().sub_parts().unwrap().to_vec();
    assert_eq!(
        kids.len(),
        3,
        "the fake boundary in the message did not split it"
    );
    let original = msg.part(kids[2]).unwrap();
    let (expected, cte) = arf::original_message(&inc.raw);
    assert_eq!(cte, "8bit");
    assert_eq!(original.contents(), expected.as_slice());
}

#[test]
fn a_dry_run_without_rdap_is_addressed_to_the_placeholder_and_says_so() {
    let inc = incident("q-9");
    let bytes = build(&inc, UNKNOWN_RECIPIENT, Some("RDAP not consulted"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("To: abuse@<unknown>\r\n"));
    assert!(text.contains("X-Moat-Dry-Run: RDAP not consulted\r\n"));
    assert!(text.contains("DRY RUN: RDAP not consulted"));
    let msg = MessageParser::new().parse(&bytes).expect("parses");
    assert_eq!(msg.part(0).unwrap().sub_parts().unwrap().len(), 3);
}

#[test]
fn an_incident_with_nothing_known_still_makes_a_valid_report() {
    let inc = Incident {
        message_id: "bare".into(),
        ..Default::default()
    };
    let bytes = build(&inc, "abuse@hosting.example", None);
    let fb = mail_auth::report::Feedback::parse_rfc5322(&bytes).expect("parses");
    assert_eq!(fb.feedback_type(), mail_auth::report::FeedbackType::Abuse);
    assert_eq!(fb.source_ip(), None);
    let msg = MessageParser::new().parse(&bytes).unwrap();
    assert_eq!(msg.subject(), Some("Abuse report: spam message bare"));
}
