//! A corpus of messages built in code, each with the exact set of URLs a human analyst would
//! extract from it. Every encoding and hiding trick the extractor claims to handle appears at
//! least once, alongside decoys (relative links, `mailto:`, version numbers, e-mail addresses)
//! that must not become URLs. Precision and recall are measured over the whole corpus.

use std::collections::BTreeSet;

use base64::Engine as _;
use moat_intel::{extract, Source};

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    expected: &'static [&'static str],
}

/// Joins header and body lines with CRLF, as they travel over SMTP.
fn crlf(lines: &[&str]) -> Vec<u8> {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s.into_bytes()
}

fn b64(s: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(s);
    // Wrapped at 76 columns, as MIME requires.
    enc.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn corpus() -> Vec<Case> {
    let html = r#"<html><head>
<meta http-equiv="Refresh" content="0; URL='https://refresh.example/go'">
<style>body { background: url("https://css-block.example/bg.png"); }
@import 'https://css-import.example/x.css';</style>
<link rel="stylesheet" href="https://link.example/s.css">
</head><body style="background-image:url(https://css-attr.example/i.png)">
<a HREF="https://click.example/offer?id=1&amp;u=2">Click</a>
<a href='http:&#x2F;&#x2F;entity.example&#47;p'>entities</a>
<a href=/relative>decoy</a> <a href="mailto:x@decoy.example">mail</a>
<a href="javascript:void(0)">js</a> <img src="cid:part1@decoy.example">
<img src="https://pixel.example/open.gif" srcset="https://set.example/a.png 1x, https://set.example/b.png 2x">
<form action="https://form.example/submit" method=post><input name=q></form>
<table background="//bg.example/t.png"><tr><td>Visit www.textnode.example today!</td></tr></table>
<!--[if mso]><v:roundrect href="https://mso.example/"></v:roundrect><![endif]-->
<p>Version 2.0.1 &middot; contact@decoy.example</p>
</body></html>"#;

    let nested_html = "<p>Deal: <a href=\"https://nested-html.example/d\">here</a></p>";
    let attachment = "Invoice details: https://attached.example/invoice.pdf\r\nThanks.";

    vec![
        Case {
            name: "plain text",
            raw: crlf(&[
                "From: Bot <bot@spam.example>",
                "To: victim@example.org",
                "Subject: plain",
                "",
                "Hi, see http://Plain.EXAMPLE:80/a?b=1, and (https://paren.example/x).",
                "Short: https://bit.ly/3abc! Also <http://angle.example/y> and www.bare.example.",
                "Wiki: https://wiki.example/W_(x) ok",
                "Not links: version 1.2.3, file.txt, bob@example.com, www. and http:// alone.",
            ]),
            expected: &[
                "http://plain.example/a?b=1",
                "https://paren.example/x",
                "https://bit.ly/3abc",
                "http://angle.example/y",
                "http://www.bare.example/",
                "https://wiki.example/W_(x)",
            ],
        },
        Case {
            name: "html with every attribute kind",
            raw: {
                let mut m = crlf(&[
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: html",
                    "Content-Type: text/html; charset=utf-8",
                    "",
                ]);
                m.extend_from_slice(html.as_bytes());
                m
            },
            expected: &[
                "https://refresh.example/go",
                "https://css-block.example/bg.png",
                "https://css-import.example/x.css",
                "https://link.example/s.css",
                "https://css-attr.example/i.png",
                "https://click.example/offer?id=1&u=2",
                "http://entity.example/p",
                "https://pixel.example/open.gif",
                "https://set.example/a.png",
                "https://set.example/b.png",
                "https://form.example/submit",
                "http://bg.example/t.png",
                "http://www.textnode.example/",
                "https://mso.example/",
            ],
        },
        Case {
            name: "quoted-printable with soft breaks",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: qp",
                "Content-Type: text/plain; charset=us-ascii",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                "Your parcel is waiting: https://very-long-tracking-domain-name.example/tr=",
                "ack?id=3D12345&session=3Dabcdef soon.",
            ]),
            expected: &[
                "https://very-long-tracking-domain-name.example/track?id=12345&session=abcdef",
            ],
        },
        Case {
            name: "base64 html",
            raw: {
                let body = b64(
                    b"<a href=\"https://b64.example/win\">You won</a> https://b64-text.example/",
                );
                let mut lines = vec![
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: b64",
                    "Content-Type: text/html; charset=utf-8",
                    "Content-Transfer-Encoding: base64",
                    "",
                ];
                lines.push(&body);
                crlf(&lines)
            },
            expected: &["https://b64.example/win", "https://b64-text.example/"],
        },
        Case {
            name: "nested multipart with text attachment",
            raw: {
                let att = b64(attachment.as_bytes());
                crlf(&[
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: nested",
                    "MIME-Version: 1.0",
                    "Content-Type: multipart/mixed; boundary=\"outer\"",
                    "",
                    "preamble",
                    "--outer",
                    "Content-Type: multipart/alternative; boundary=\"inner\"",
                    "",
                    "--inner",
                    "Content-Type: text/plain; charset=utf-8",
                    "",
                    "Deal: https://nested-text.example/d",
                    "--inner",
                    "Content-Type: text/html; charset=utf-8",
                    "",
                    nested_html,
                    "--inner--",
                    "--outer",
                    "Content-Type: text/plain; charset=utf-8; name=\"invoice.txt\"",
                    "Content-Disposition: attachment; filename=\"invoice.txt\"",
                    "Content-Transfer-Encoding: base64",
                    "",
                    &att,
                    "--outer--",
                ])
            },
            expected: &[
                "https://nested-text.example/d",
                "https://nested-html.example/d",
                "https://attached.example/invoice.pdf",
            ],
        },
        Case {
            name: "obfuscated links",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: defanged",
                "",
                "Go to hxxps://defanged[.]example/login now",
                "or hxxp[:]//second(.)example/x or http :// spaced.example/y",
                "or https://dotted [dot] example/z.",
                "Ordinary text: a (.) b [.] c... http is a protocol: // comment",
            ]),
            expected: &[
                "https://defanged.example/login",
                "http://second.example/x",
                "http://spaced.example/y",
                "https://dotted.example/z",
            ],
        },
        Case {
            name: "iso-8859-1 body",
            raw: {
                let mut m = crlf(&[
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: latin1",
                    "Content-Type: text/plain; charset=iso-8859-1",
                    "Content-Transfer-Encoding: 8bit",
                    "",
                ]);
                // "Café: http://latin.example/café" in ISO-8859-1.
                m.extend_from_slice(b"Caf\xe9: http://latin.example/caf\xe9 \xbb\r\n");
                m
            },
            expected: &["http://latin.example/caf%C3%A9"],
        },
        Case {
            name: "windows-1252 body",
            raw: {
                let mut m = crlf(&[
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: cp1252",
                    "Content-Type: text/plain; charset=windows-1252",
                    "Content-Transfer-Encoding: 8bit",
                    "",
                ]);
                // Smart quotes and a euro sign (0x80), which only exists in windows-1252.
                m.extend_from_slice(b"Only \x93http://cp1252.example/price-\x80\x94 today\r\n");
                m
            },
            expected: &["http://cp1252.example/price-%E2%82%AC"],
        },
        Case {
            name: "idn host",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: idn",
                "Content-Type: text/plain; charset=utf-8",
                "",
                "Books: http://bücher.example/ and https://BÜCHER.example/angebot",
            ]),
            expected: &[
                "http://xn--bcher-kva.example/",
                "https://xn--bcher-kva.example/angebot",
            ],
        },
        Case {
            name: "more defanging and entity-spelled links",
            raw: {
                let mut m = crlf(&[
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: defanged 2",
                    "MIME-Version: 1.0",
                    "Content-Type: multipart/alternative; boundary=\"d\"",
                    "",
                    "--d",
                    "Content-Type: text/plain; charset=utf-8",
                    "",
                    "Mirrors: hXXps[://]mirror{.}example[/]path, https: //gap.example/ok and",
                    "login at secure (dot) portal (dot) example/verify today.",
                    "--d",
                    "Content-Type: text/html; charset=utf-8",
                    "",
                ]);
                m.extend_from_slice(
                    b"<p>Visit https&#58;&#47;&#47;entity-text&period;example&sol;x&quest;a&equals;1 now\r\n\
                      or <a href=\"https://folded.exa\r\n\tmple/path\">this</a>.</p>\r\n--d--\r\n",
                );
                m
            },
            expected: &[
                "https://mirror.example/path",
                "https://gap.example/ok",
                "https://entity-text.example/x?a=1",
                "https://folded.example/path",
            ],
        },
        Case {
            name: "more html attributes",
            raw: {
                let mut m = crlf(&[
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: attributes",
                    "Content-Type: text/html; charset=utf-8",
                    "Content-Transfer-Encoding: quoted-printable",
                    "",
                ]);
                m.extend_from_slice(
                    b"<link rel=3Dpreload as=3Dimage imagesrcset=3D\"https://preload.example/a.png =\r\n\
                      1x\"><style>@import url( 'https://import-url.example/s.css' );</style>=\r\n\
                      <video poster=3Dhttps://poster.example/p.jpg></video>=\r\n\
                      <img data-src=3D\"https://lazy.example/l.png\" lowsrc=3D'https://low.example/l.gif'>=\r\n\
                      <map><area shape=3Drect href=3Dhttps://area.example/a></map>=\r\n\
                      <form><button formaction=3D\"https://formaction.example/go\">Go</button></form>=\r\n\
                      <img src=3D\"data:image/png;base64,iVBORw0KGgo=3D\"> <a href=3D\"tel:+15551234\">call</a>=\r\n\
                      <img src=3D\"//protocol-relative.example/x.gif\">\r\n",
                );
                m
            },
            expected: &[
                "https://preload.example/a.png",
                "https://import-url.example/s.css",
                "https://poster.example/p.jpg",
                "https://lazy.example/l.png",
                "https://low.example/l.gif",
                "https://area.example/a",
                "https://formaction.example/go",
                "http://protocol-relative.example/x.gif",
            ],
        },
        Case {
            name: "ports, addresses and shorteners",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: ports",
                "Content-Type: text/html; charset=utf-8",
                "",
                "<a href=\"HTTPS://Port.Example:443/x\">a</a> <a href=\"http://port.example:8080/y\">b</a>",
                "<a href=\"http://192.0.2.44/login\">ip</a> <a href=\"http://[2001:DB8::1]/v6\">v6</a>",
                "<a href=\"https://TinyURL.com/abc123\">t</a> https://T.CO/xyz and https://www.bit.ly/Q",
                "Decoys: http://localhost/, http://intranet/x, example.com, a@b.example, www. alone.",
            ]),
            expected: &[
                "https://port.example/x",
                "http://port.example:8080/y",
                "http://192.0.2.44/login",
                "http://[2001:db8::1]/v6",
                "https://tinyurl.com/abc123",
                "https://t.co/xyz",
                "https://www.bit.ly/Q",
            ],
        },
        Case {
            name: "koi8-r base64 with idn hosts",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: =?koi8-r?b?4cvDydE=?=",
                "Content-Type: text/plain; charset=koi8-r",
                "Content-Transfer-Encoding: base64",
                "",
                "4cvDydEhIPPBytQ6IGh0dHA6Ly/Q0snNxdIu0sYvwcvDydEgySBodHRwczovL83Bx8Hayc4uZXhh",
                "bXBsZS/Ty8nEy8kg08XHz8TO0Q==",
            ]),
            expected: &[
                "http://xn--e1afmkfd.xn--p1ai/%D0%B0%D0%BA%D1%86%D0%B8%D1%8F",
                "https://xn--80aairftm.example/%D1%81%D0%BA%D0%B8%D0%B4%D0%BA%D0%B8",
            ],
        },
        Case {
            name: "iso-2022-jp text",
            raw: {
                let mut m = crlf(&[
                    "From: bot@spam.example",
                    "To: victim@example.org",
                    "Subject: jis",
                    "Content-Type: text/plain; charset=iso-2022-jp",
                    "Content-Transfer-Encoding: 7bit",
                    "",
                ]);
                m.extend_from_slice(
                    b"\x1b$B:#$9$0$3$A$i$X!'\x1b(Bhttp://jp-spam.example/entry?id=7 \x1b$B$43NG'$/$@$5$$!#\x1b(B\r\n",
                );
                m
            },
            expected: &["http://jp-spam.example/entry?id=7"],
        },
        Case {
            name: "shift_jis quoted-printable html",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: sjis",
                "Content-Type: text/html; charset=shift_jis",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                "<p>=8F=DA=82=B5=82=AD=82=CD<a href=3D\"https://sjis.example/=83y=81[=83W\">=",
                "=82=B1=82=BF=82=E7</a>=81A=82=DC=82=BD=82=CD http://=97=E1=82=A6.jp/ =82=D6=",
                "</p>",
            ]),
            expected: &[
                "https://sjis.example/%E3%83%9A%E3%83%BC%E3%82%B8",
                "http://xn--r8jz45g.jp/",
            ],
        },
        Case {
            name: "gb2312 base64 in a forwarded message",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: fwd",
                "MIME-Version: 1.0",
                "Content-Type: multipart/mixed; boundary=\"f\"",
                "",
                "--f",
                "Content-Type: text/plain; charset=utf-8",
                "",
                "See the forwarded offer.",
                "--f",
                "Content-Type: message/rfc822",
                "",
                "From: other@spam.example",
                "Subject: inner",
                "Content-Type: text/plain; charset=gb2312",
                "Content-Transfer-Encoding: base64",
                "",
                "teO79yBodHRwczovL2diLXNwYW0uZXhhbXBsZS/B7MihIMHsyKG9sca3",
                "--f--",
            ]),
            expected: &["https://gb-spam.example/%E9%A2%86%E5%8F%96"],
        },
        Case {
            name: "list-unsubscribe",
            raw: crlf(&[
                "From: bot@spam.example",
                "To: victim@example.org",
                "Subject: unsub",
                "List-Unsubscribe: <mailto:unsub@list.example?subject=x>,",
                " <https://list.example/unsub?u=1>",
                "",
                "Body without links.",
            ]),
            expected: &["https://list.example/unsub?u=1"],
        },
    ]
}

#[test]
fn the_corpus_is_extracted_with_full_precision_and_recall() {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let cases = corpus();
    for case in &cases {
        let found: BTreeSet<String> = extract(&case.raw).urls.into_iter().map(|u| u.url).collect();
        let expected: BTreeSet<String> = case.expected.iter().map(|s| s.to_string()).collect();
        let extra: Vec<_> = found.difference(&expected).collect();
        let missed: Vec<_> = expected.difference(&found).collect();
        if !extra.is_empty() || !missed.is_empty() {
            println!(
                "{}: false positives {extra:?}, missed {missed:?}",
                case.name
            );
        }
        tp += found.intersection(&expected).count();
        fp += extra.len();
        fn_ += missed.len();
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    println!(
        "corpus: {} messages, {} expected URLs; precision {:.1}%, recall {:.1}%",
        cases.len(),
        tp + fn_,
        precision * 100.0,
        recall * 100.0
    );
    assert_eq!((fp, fn_), (0, 0), "precision and recall must both be 100%");
}

#[test]
fn sources_domains_and_shorteners_are_reported() {
    let cases = corpus();
    let html = extract(&cases[1].raw);
    let source = |u: &str| html.urls.iter().find(|f| f.url == u).map(|f| f.source);
    assert_eq!(
        source("https://refresh.example/go"),
        Some(Source::MetaRefresh)
    );
    assert_eq!(
        source("https://css-block.example/bg.png"),
        Some(Source::Css)
    );
    assert_eq!(source("https://css-attr.example/i.png"), Some(Source::Css));
    assert_eq!(
        source("https://click.example/offer?id=1&u=2"),
        Some(Source::HtmlHref)
    );
    assert_eq!(
        source("https://pixel.example/open.gif"),
        Some(Source::HtmlSrc)
    );
    assert_eq!(
        source("https://set.example/b.png"),
        Some(Source::HtmlSrcset)
    );
    assert_eq!(
        source("https://form.example/submit"),
        Some(Source::HtmlAction)
    );
    assert_eq!(source("http://www.textnode.example/"), Some(Source::Text));

    let nested = extract(&cases[4].raw);
    let att = nested
        .urls
        .iter()
        .find(|u| u.url.contains("attached"))
        .unwrap();
    assert_eq!(att.source, Source::Attachment);

    let unsub = extract(&cases[cases.len() - 1].raw);
    assert_eq!(unsub.urls[0].source, Source::ListUnsubscribe);

    let plain = extract(&cases[0].raw);
    let short: Vec<_> = plain
        .urls
        .iter()
        .filter(|u| u.shortener)
        .map(|u| &u.url)
        .collect();
    assert_eq!(short, ["https://bit.ly/3abc"]);
    assert_eq!(plain.domains[0], "plain.example");
    assert!(plain.domains.contains(&"bit.ly".to_string()));
    assert_eq!(plain.senders, ["bot@spam.example"]);
    assert_eq!(plain.recipients, ["victim@example.org"]);
    assert_eq!(plain.subject, "plain");

    let idn = extract(&cases[8].raw);
    assert_eq!(idn.domains, ["xn--bcher-kva.example"]);
}

/// The `extract` fuzz target's seeds (`fuzz/seeds/extract`, which `scripts/fuzz.sh` copies into
/// its working corpus) are this corpus, byte for byte: a case added here without its seed, or a
/// seed left stale, fails. `MOAT_WRITE_FUZZ_SEEDS=1 cargo test -p moat-intel --test corpus
/// fuzz_seeds` rewrites them.
#[test]
fn fuzz_seeds_match_the_corpus() {
    // The manifest directory as cargo names it when running the test, not as baked in at
    // compile time: another checkout sharing the target directory may have built this binary.
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = std::path::Path::new(&manifest).join("../../fuzz/seeds/extract");
    let write = std::env::var_os("MOAT_WRITE_FUZZ_SEEDS").is_some();
    let cases = corpus();
    for (i, case) in cases.iter().enumerate() {
        let slug: String = case
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = dir.join(format!("{i:02}-{slug}.eml"));
        if write {
            std::fs::write(&path, &case.raw).expect("seed directory is writable");
        }
        let seed = std::fs::read(&path).unwrap_or_default();
        assert!(seed == case.raw, "{} is missing or stale", path.display());
    }
    let seeds = std::fs::read_dir(&dir)
        .expect("fuzz/seeds/extract exists")
        .count();
    assert_eq!(
        seeds,
        cases.len(),
        "a seed without a corpus case in {}",
        dir.display()
    );
}
