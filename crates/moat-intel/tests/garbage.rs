//! Captured spam is written by adversaries: no input may panic the extractor. Random bytes and
//! mutated versions of a realistic multipart message, biased towards the bytes the MIME, HTML
//! and URL code cares about.

use moat_intel::extract;

const SEED: &str = "From: \"Bot\" <bot@spam.example>\r\n\
To: a@x.example, Group: b@y.example;\r\n\
Return-Path: <r@z.example>\r\n\
Received: from a\r\n by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
List-Unsubscribe: <mailto:u@l.example>, <https://l.example/u>\r\n\
Subject: =?utf-8?b?aGk=?=\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n\
--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
hxxps://a[.]example/x=\r\ny http :// b.example (www.c.example).\r\n\
--b2\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PGEgaHJlZj0iaHR0cHM6Ly9kLmV4YW1wbGUvIj54PC9hPg==\r\n\
--b2\r\nContent-Type: text/html\r\n\r\n\
<meta http-equiv=refresh content=\"0;url='http://e.example'\"><style>a{b:url(//f.example)}</style>\
<img srcset=\"https://g.example/1 1x, h.png 2x\" style=\"x:url('http://&#x68;.example')\"><!-- -->\r\n\
--b2--\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhttp://i.example\r\n\
--b1\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nhttp://j.example\r\n--b1--\r\n";

const INTERESTING: &[&[u8]] = &[
    b"<",
    b">",
    b"\"",
    b"'",
    b"=",
    b"&#",
    b"&#x",
    b"&amp",
    b"url(",
    b"http://",
    b"https://",
    b"hxxp",
    b"[.]",
    b"(dot)",
    b"www.",
    b"--b1",
    b"--b2",
    b"\r\n",
    b"\r\n\r\n",
    b"=\r\n",
    b"<a href=",
    b"srcset=\"",
    b"<style>",
    b"<!--",
    b"-->",
    b"\xc3",
    b"\xff",
    b"\x80",
    b"%",
    b"[",
    b"(",
    b")",
    b"\\",
    b"@",
    b":",
    b"//",
    b"=?utf-8?b?",
    b"?=",
    b"xn--",
];

fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..rng.usize(1..12) {
        let at = rng.usize(..=m.len());
        match rng.u8(..5) {
            0 => {
                let end = (at + rng.usize(..40)).min(m.len());
                m.drain(at..end);
            }
            1 => {
                let ins = INTERESTING[rng.usize(..INTERESTING.len())];
                m.splice(at..at, ins.iter().copied());
            }
            2 if at < m.len() => m[at] = rng.u8(..),
            3 => {
                // Duplicate a slice somewhere else: repeats boundaries and tags.
                let from = rng.usize(..=m.len());
                let end = (from + rng.usize(..60)).min(m.len());
                let chunk = m[from..end].to_vec();
                m.splice(at..at, chunk);
            }
            _ => m.truncate(at),
        }
    }
    m
}

#[test]
fn the_seed_message_yields_its_links() {
    let i = extract(SEED.as_bytes());
    let urls: Vec<&str> = i.urls.iter().map(|u| u.url.as_str()).collect();
    for u in [
        "https://l.example/u",
        "https://a.example/xy",
        "http://b.example/",
        "http://www.c.example/",
        "https://d.example/",
        "http://e.example/",
        "http://f.example/",
        "https://g.example/1",
        "http://h.example/",
        "http://i.example/",
        "http://j.example/",
    ] {
        assert!(urls.contains(&u), "{u} missing from {urls:?}");
    }
}

/// mail-parser's debug assertions fire (and are caught inside `extract`) on some mutated
/// structures; keep their reports out of the test output while any other panic still reports.
fn quiet_mail_parser_asserts() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let from_mail_parser = info
            .location()
            .is_some_and(|l| l.file().contains("mail-parser"));
        if !from_mail_parser {
            default(info);
        }
    }));
}

#[test]
fn mutated_messages_never_panic() {
    quiet_mail_parser_asserts();
    let mut rng = fastrand::Rng::with_seed(23);
    for _ in 0..20_000 {
        let m = mutate(&mut rng, SEED.as_bytes());
        let _ = extract(&m);
    }
}

#[test]
fn random_bytes_never_panic() {
    quiet_mail_parser_asserts();
    let mut rng = fastrand::Rng::with_seed(29);
    for _ in 0..20_000 {
        let n = rng.usize(..400);
        let m: Vec<u8> = (0..n)
            .flat_map(|_| {
                if rng.u8(..4) == 0 {
                    INTERESTING[rng.usize(..INTERESTING.len())].to_vec()
                } else {
                    vec![rng.u8(..)]
                }
            })
            .collect();
        let _ = extract(&m);
    }
}

/// Shapes an adversary can send that would be quadratic in a careless implementation: a
/// subject repeating the recipient's address, a `To:` with thousands of addresses and an
/// endless display name, thousands of links, one huge HTML text node. Each is a few hundred
/// KB; linear code takes well under a second even in a debug build, quadratic code minutes.
#[test]
fn hostile_shapes_stay_linear() {
    let started = std::time::Instant::now();
    let mut m = String::from("To: \"");
    m.push_str(&"name ".repeat(20_000));
    m.push_str("\" <victim@target.example>");
    for i in 0..5_000 {
        m.push_str(&format!(", u{i}@x{i}.example"));
    }
    m.push_str("\r\nSubject: ");
    m.push_str(&"victim@target.example ".repeat(20_000));
    m.push_str("\r\nContent-Type: text/html\r\n\r\n<p>");
    for i in 0..5_000 {
        m.push_str(&format!(
            "<a href=\"https://h{i}.example/victim/{i}?q=http://r{i}.example/\">x</a>"
        ));
    }
    m.push_str(&"word ".repeat(100_000));
    let ind = extract(m.as_bytes());
    assert_eq!(ind.urls.len(), 5_000);
    assert!(ind.fingerprint.subject_skeleton.starts_with("* * *"));
    let took = started.elapsed();
    assert!(took.as_secs() < 30, "took {took:?}");
}
