//! Extraction throughput over a realistic mix of captured spam, in bytes of raw MIME per second.
//!
//! The SMTP trap extracts indicators from every message it captures, so the issue sets a floor
//! of 50 MB/s of MIME on one core: far above what a trap receives, so that extraction never
//! becomes the reason to drop or defer a capture. The mix covers what spam actually looks like:
//! plain text, link-heavy HTML newsletters, quoted-printable and base64 bodies, nested
//! multiparts with binary and text attachments, defanged links, a legacy charset; from a few KB
//! to about 100 KB each. `cargo bench -p moat-intel --bench extract`

use std::hint::black_box;

use base64::Engine as _;
use divan::counter::BytesCount;
use divan::Bencher;

fn main() {
    divan::main();
}

const WORDS: &[&str] = &[
    "account",
    "verify",
    "your",
    "payment",
    "offer",
    "limited",
    "today",
    "click",
    "below",
    "security",
    "update",
    "invoice",
    "the",
    "and",
    "to",
    "of",
    "we",
    "have",
    "received",
    "order",
    "shipping",
    "delivery",
    "exclusive",
    "deal",
    "bonus",
    "free",
    "winner",
    "claim",
    "prize",
    "immediately",
    "access",
    "suspended",
    "confirm",
    "details",
    "information",
    "customer",
    "service",
    "team",
    "regards",
    "thank",
    "you",
    "for",
    "choosing",
    "us",
    "please",
    "review",
];

/// Prose of about `bytes` bytes, deterministic for a seed.
fn prose(rng: &mut fastrand::Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 16);
    let mut line = 0;
    while s.len() < bytes {
        let w = WORDS[rng.usize(..WORDS.len())];
        s.push_str(w);
        line += w.len() + 1;
        if line > 70 {
            s.push_str("\r\n");
            line = 0;
        } else {
            s.push(' ');
        }
    }
    s
}

/// A link-heavy HTML newsletter of about `bytes` bytes: tables, inline styles, tracking
/// redirects with long query strings, images with srcset, a style block.
fn newsletter(rng: &mut fastrand::Rng, bytes: usize) -> String {
    let mut s = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>\
         body{margin:0;background:url(https://cdn.promo.example/bg.png)} \
         .btn{color:#fff;background:#e33;padding:12px}</style></head>\
         <body style=\"font-family:Arial,sans-serif\"><table width=\"100%\">",
    );
    let mut i = 0;
    while s.len() < bytes {
        let token: u64 = rng.u64(..);
        s.push_str(&format!(
            "<tr><td style=\"padding:8px;background-image:url('https://img.promo.example/row{i}.jpg')\">\
             <a href=\"https://click.promo.example/r?u={token:016x}&amp;id={i}&amp;utm_source=mail\" \
             class=\"btn\">{}</a><img src=\"https://img.promo.example/p{i}.png\" \
             srcset=\"https://img.promo.example/p{i}@2x.png 2x, https://img.promo.example/p{i}@3x.png 3x\" \
             alt=\"{}\" width=\"120\"> {} &nbsp;&middot; www.promo{}.example</td></tr>\r\n",
            prose(rng, 40).trim(),
            WORDS[rng.usize(..WORDS.len())],
            prose(rng, 200),
            i % 7
        ));
        i += 1;
    }
    s.push_str(
        "</table><img src=\"https://t.promo.example/open.gif\" width=1 height=1></body></html>",
    );
    s
}

/// Quoted-printable encoding, lines wrapped at 76 with soft breaks.
fn qp(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 11 / 10);
    let mut col = 0;
    for &b in s.as_bytes() {
        let enc = match b {
            b'\r' | b'\n' => {
                out.push(b as char);
                col = 0;
                continue;
            }
            b'=' | 0x80.. => format!("={b:02X}"),
            _ => (b as char).to_string(),
        };
        if col + enc.len() > 75 {
            out.push_str("=\r\n");
            col = 0;
        }
        col += enc.len();
        out.push_str(&enc);
    }
    out
}

fn b64(bytes: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    enc.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn headers(subject: &str, content_type: &str, extra: &str) -> String {
    format!(
        "Received: from mx.sender.example (mx.sender.example [198.51.100.7])\r\n\
         \tby trap.moat.test with ESMTP id 4QzX1; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         Received: from [10.0.0.3] (unknown [203.0.113.9]) by mx.sender.example; Mon, 1 Jan 2024\r\n\
         From: \"Security Team\" <no-reply@sender.example>\r\n\
         Reply-To: claims@replies.example\r\n\
         To: \"Alice\" <alice@moat.test>, bob@moat.test\r\n\
         Subject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         Message-ID: <abc.123@sender.example>\r\n\
         List-Unsubscribe: <mailto:unsub@sender.example>, <https://sender.example/unsub?u=42>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n{extra}\r\n"
    )
}

/// The mix: (name, raw message).
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = Vec::new();

    // Plain text, 4 KB, a few links, one defanged.
    let mut body = prose(&mut rng, 4000);
    body.push_str("\r\nVerify now: https://verify.phish.example/login?acct=99 or hxxps://backup[.]phish.example/x\r\n");
    let m = headers("Account notice", "text/plain; charset=utf-8", "") + &body;
    out.push(("text_4k", m.into_bytes()));

    // HTML newsletter, 40 KB, 8 bit.
    let html = newsletter(&mut rng, 40_000);
    let m = headers("Weekly deals", "text/html; charset=utf-8", "") + &html;
    out.push(("html_40k", m.into_bytes()));

    // Quoted-printable HTML, 20 KB decoded.
    let html = newsletter(&mut rng, 20_000);
    let m = headers(
        "=?utf-8?q?Your_=E2=82=AC50_bonus?=",
        "text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable\r\n",
    ) + &qp(&html);
    out.push(("qp_html_20k", m.into_bytes()));

    // multipart/alternative, both halves base64, 30 KB decoded HTML.
    let text = prose(&mut rng, 6000) + " https://alt.promo.example/t\r\n";
    let html = newsletter(&mut rng, 30_000);
    let m = headers(
        "Invoice 38812",
        "multipart/alternative; boundary=\"alt\"",
        "",
    ) + &format!(
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--alt--\r\n",
        b64(text.as_bytes()),
        b64(html.as_bytes())
    );
    out.push(("b64_alternative_50k", m.into_bytes()));

    // Nested: mixed > related > alternative (text qp, html), a 40 KB binary image, a text
    // attachment with links, a forwarded message/rfc822. About 100 KB.
    let text = prose(&mut rng, 3000) + " https://nested.promo.example/a\r\n";
    let html = newsletter(&mut rng, 15_000);
    let image: Vec<u8> = (0..40_000).map(|_| rng.u8(..)).collect();
    let attachment =
        prose(&mut rng, 5000) + "\r\nPay at https://pay.attached.example/invoice/38812\r\n";
    let inner = headers("Fwd: original", "text/plain; charset=utf-8", "")
        + &prose(&mut rng, 3000)
        + "\r\nhttps://inner.forwarded.example/x\r\n";
    let m = headers(
        "Re: your order",
        "multipart/mixed; boundary=\"mix\"",
        "",
    ) + &format!(
        "This is a multi-part message in MIME format.\r\n\
         --mix\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n\
         --rel\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}\r\n--alt--\r\n\
         --rel\r\nContent-Type: image/png\r\nContent-ID: <img1>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--rel--\r\n\
         --mix\r\nContent-Type: text/plain; name=\"invoice.txt\"\r\nContent-Disposition: attachment; filename=\"invoice.txt\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --mix\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--mix--\r\n",
        qp(&text),
        html,
        b64(&image),
        b64(attachment.as_bytes()),
        inner
    );
    out.push(("nested_100k", m.into_bytes()));

    // Legacy charset with defanged links, 8 KB.
    let mut m = headers(
        "Oferta",
        "text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: 8bit\r\n",
    )
    .into_bytes();
    let latin = prose(&mut rng, 8000).replace("free", "gr\u{e1}tis");
    m.extend(
        latin
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
    );
    m.extend_from_slice(b"\r\nhxxp://oferta(.)phish.example/caf\xe9 and www.oferta.example\r\n");
    out.push(("latin1_8k", m));

    // HTML-only phishing page, 100 KB, one big document.
    let html = newsletter(&mut rng, 100_000);
    let m = headers("Action required", "text/html; charset=utf-8", "") + &html;
    out.push(("html_100k", m.into_bytes()));

    out
}

/// Each message alone: shows which shape is slow.
#[divan::bench(args = ["text_4k", "html_40k", "qp_html_20k", "b64_alternative_50k", "nested_100k", "latin1_8k", "html_100k"])]
fn message(bencher: Bencher, name: &str) {
    let corpus = corpus();
    let raw = corpus
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m)
        .unwrap_or_default();
    bencher
        .counter(BytesCount::new(raw.len()))
        .bench(|| moat_intel::extract(black_box(&raw)));
}

/// The whole mix, one message after another: the headline figure.
#[divan::bench]
fn mix(bencher: Bencher) {
    let corpus = corpus();
    let total: usize = corpus.iter().map(|(_, m)| m.len()).sum();
    bencher.counter(BytesCount::new(total)).bench(|| {
        for (_, m) in &corpus {
            black_box(moat_intel::extract(black_box(m)));
        }
    });
}
