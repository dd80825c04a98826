//! Prints the ARF report Moat would send for a fixed sample incident, for checking it with
//! other parsers (the e2e suite feeds it to Python's `email` package):
//!
//! ```sh
//! cargo run -q -p moat-report --example arf > report.eml
//! ```

use std::io::Write;

use moat_report::arf::{self, ArfParams};
use moat_report::Incident;

fn main() {
    let raw = b"Received: from WIN-BOT (unknown [203.0.113.7])\r\n\
        \tby trap.example with ESMTPSA; Mon, 1 Jan 2024 12:00:00 +0000\r\n\
        From: \"Pharmacy\" <deals@victim-brand.example>\r\n\
        To: alice@private.example, bob@private.example\r\n\
        Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= - cheap pills\r\n\
        Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n\
        Message-ID: <spam-1@win-bot>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        Gr\xc3\xbc\xc3\x9fe! Buy now at https://spam.example/buy?x=1\r\n\
        .\r\n\
        Unsubscribe: https://spam.example/u\r\n"
        .to_vec();
    let inc = Incident {
        message_id: "20240101T120000Z-0001".into(),
        received_ms: 1_704_110_400_000,
        source_ip: Some("203.0.113.7".parse().unwrap()),
        helo: "WIN-BOT".into(),
        mail_from: "deals@victim-brand.example".into(),
        rcpt_to: vec!["alice@private.example".into(), "bob@private.example".into()],
        auth_user: Some("info".into()),
        urls: vec![
            "https://spam.example/buy?x=1".into(),
            "https://spam.example/u".into(),
        ],
        domains: vec!["spam.example".into()],
        raw,
    };
    let boundary = arf::boundary(&inc.raw, 0x5eed);
    let report = arf::build(
        &inc,
        &ArfParams {
            from: "abuse-reports@trap.example",
            to: "abuse@hosting.example",
            reporting_mta: "trap.example",
            user_agent: "Moat/0.1",
            date_ms: 1_704_110_460_000,
            unique: "1704110460000.sample",
            boundary: &boundary,
            dry_run_note: None,
        },
    );
    std::io::stdout().write_all(&report).expect("stdout");
}
