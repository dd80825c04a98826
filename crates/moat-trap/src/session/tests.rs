use super::*;

/// Feeds a whole transcript, answering logins with `accept` and deliveries with an id; returns
/// the concatenated replies and the delivered messages.
fn run(s: &mut Session, input: &[u8], accept: bool) -> (String, Vec<(Envelope, Vec<u8>)>, bool) {
    let mut out = String::new();
    let mut got = Vec::new();
    let mut input = input;
    loop {
        match s.feed(&mut input) {
            Step::NeedMore => return (out, got, false),
            Step::Reply(r) => out.push_str(&r),
            Step::Login(c) => out.push_str(&s.login_result(&c, accept)),
            Step::Deliver(e, d) => {
                got.push((e, d));
                out.push_str(&s.delivered("ID1"));
            }
            Step::StartTls(r) => {
                out.push_str(&r);
                return (out, got, false);
            }
            Step::Close(r) => {
                out.push_str(&r);
                return (out, got, true);
            }
        }
    }
}

fn codes(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect()
}

#[test]
fn a_pipelined_transaction_with_auth_plain() {
    let mut s = Session::new(Limits::default());
    let auth = sasl::encode(b"\x00bob@example.com\x00123456");
    let script = format!(
        "EHLO bot\r\nAUTH PLAIN {auth}\r\nMAIL FROM:<bob@example.com> SIZE=20\r\nRCPT TO:<a@victim.test>\r\nRCPT TO:<b@victim.test>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"
    );
    let (out, got, closed) = run(&mut s, script.as_bytes(), true);
    assert!(closed);
    assert!(out.contains("250-AUTH PLAIN LOGIN\r\n"), "{out}");
    assert!(out.contains("250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"));
    assert_eq!(
        codes(&out),
        ["250", "235", "250", "250", "250", "354", "250", "221"]
    );
    assert!(out.contains("250 2.0.0 Ok: queued as ID1\r\n"));
    let (env, data) = &got[0];
    assert_eq!(env.auth_user.as_deref(), Some("bob@example.com"));
    assert_eq!(env.rcpt_to, ["a@victim.test", "b@victim.test"]);
    assert_eq!(data, b"Subject: x\r\n\r\n.dot\r\nbody\r\n");
}

#[test]
fn auth_login_both_ways_and_a_refusal() {
    let mut s = Session::new(Limits::default());
    let u = sasl::encode(b"admin");
    let p = sasl::encode(b"hunter2");
    let (out, _, _) = run(
        &mut s,
        format!("EHLO x\r\nAUTH LOGIN\r\n{u}\r\n{p}\r\n").as_bytes(),
        false,
    );
    assert!(
        out.contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8"),
        "{out}"
    );
    let (out, _, _) = run(
        &mut s,
        format!("AUTH LOGIN {u}\r\n{p}\r\n").as_bytes(),
        true,
    );
    assert_eq!(codes(&out), ["334", "235"]);
    assert_eq!(s.envelope().auth_user.as_deref(), Some("admin"));
    let (out, _, _) = run(&mut s, b"AUTH PLAIN\r\n", true);
    assert_eq!(codes(&out), ["503"]);
}

#[test]
fn bytes_split_anywhere_give_the_same_result() {
    let script = b"EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\nDATA\r\nhello\r\n.\r\n";
    let mut whole = Session::new(Limits::default());
    let (want, wgot, _) = run(&mut whole, script, true);
    for cut in 1..script.len() {
        let mut s = Session::new(Limits::default());
        let (mut out, mut got, _) = run(&mut s, &script[..cut], true);
        let (o2, g2, _) = run(&mut s, &script[cut..], true);
        out.push_str(&o2);
        got.extend(g2);
        assert_eq!(out, want, "cut at {cut}");
        assert_eq!(got, wgot, "cut at {cut}");
    }
    assert_eq!(wgot[0].1, b"hello\r\n");
}

#[test]
fn an_empty_message_ends_at_once() {
    let mut s = Session::new(Limits::default());
    let (out, got, _) = run(
        &mut s,
        b"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\nDATA\r\n.\r\n",
        true,
    );
    assert_eq!(codes(&out), ["250", "250", "250", "354", "250"]);
    assert_eq!(got[0].1, b"");
}

#[test]
fn limits_hold() {
    let mut s = Session::new(Limits {
        max_rcpts: 2,
        max_size: 16,
        ..Limits::default()
    });
    let (out, got, _) = run(
        &mut s,
        b"EHLO a\r\nMAIL FROM:<f@x>\r\nRCPT TO:<1@y>\r\nRCPT TO:<2@y>\r\nRCPT TO:<3@y>\r\nDATA\r\n0123456789abcdef0123\r\n.\r\nMAIL FROM:<f@x> SIZE=99\r\n",
        true,
    );
    assert_eq!(
        codes(&out),
        ["250", "250", "250", "250", "452", "354", "552", "552"]
    );
    assert!(got.is_empty());
    // A long command line closes the session.
    let mut s = Session::new(Limits::default());
    let long = format!("EHLO {}\r\n", "a".repeat(5000));
    let (out, _, closed) = run(&mut s, long.as_bytes(), true);
    assert!(closed && out.starts_with("500 "), "{out}");
}

#[test]
fn garbage_closes_and_errors_are_counted() {
    let mut s = Session::new(Limits::default());
    let (out, _, closed) = run(&mut s, b"EHLO a\r\n\x00\x01\x02binary\r\nNOOP\r\n", true);
    assert!(closed);
    assert_eq!(codes(&out), ["250", "500"]);
    let mut s = Session::new(Limits::default());
    let (out, _, closed) = run(&mut s, "FOO\r\n".repeat(20).as_bytes(), true);
    assert!(closed);
    assert_eq!(codes(&out).len(), 10);
    assert!(out.ends_with("421 4.7.0 Error: too many errors; closing transmission channel\r\n"));
}

#[test]
fn starttls_drops_state_and_is_offered_once() {
    let mut s = Session::new(Limits {
        starttls: true,
        ..Limits::default()
    });
    let (out, _, _) = run(&mut s, b"EHLO a\r\nSTARTTLS\r\n", true);
    assert!(out.contains("250-STARTTLS"));
    assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"));
    s.tls_started();
    let (out, _, _) = run(&mut s, b"MAIL FROM:<a@b>\r\nEHLO a\r\nSTARTTLS\r\n", true);
    assert_eq!(codes(&out), ["503", "250", "554"]);
    assert!(!out.contains("STARTTLS\r\n"));
    assert!(s.envelope().tls);
}

#[test]
fn capture_mode_takes_xforward_and_refuses_auth() {
    let mut s = Session::new(Limits {
        mode: Mode::Capture,
        ..Limits::default()
    });
    let (out, got, _) = run(
        &mut s,
        b"EHLO mx\r\nXFORWARD NAME=bot.example ADDR=127.10.0.5 HELO=bot\r\nAUTH PLAIN AGEAYg==\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n",
        true,
    );
    assert!(out.contains("250-XFORWARD"));
    assert!(!out.contains("AUTH"));
    assert_eq!(
        codes(&out),
        ["250", "250", "502", "250", "250", "354", "250"]
    );
    assert_eq!(got[0].0.xforward("ADDR"), Some("127.10.0.5"));
}

#[test]
fn relay_probe_paths_are_accepted_like_postfix_does() {
    let mut s = Session::new(Limits::default());
    let (out, got, _) = run(
        &mut s,
        b"EHLO p\r\nMAIL FROM:<a@[127.0.0.1]>\r\nRCPT TO:<victim@[127.0.0.1]>\r\nRCPT TO:<@[127.0.0.1]:v@example.org>\r\nRCPT TO:<v%x@[IPv6:::1]>\r\nRCPT TO:<sp ace@x>\r\nDATA\r\nx\r\n.\r\n",
        true,
    );
    assert_eq!(
        codes(&out),
        ["250", "250", "250", "250", "250", "501", "354", "250"]
    );
    assert_eq!(
        got[0].0.rcpt_to,
        [
            "victim@[127.0.0.1]",
            "@[127.0.0.1]:v@example.org",
            "v%x@[IPv6:::1]"
        ]
    );
    assert_eq!(got[0].0.mail_from, "a@[127.0.0.1]");
}

#[test]
fn a_full_disk_is_452_anything_else_451() {
    let s = Session::new(Limits::default());
    let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
    assert_eq!(
        s.store_failed(&enospc),
        "452 4.3.1 Insufficient system storage\r\n"
    );
    let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "full");
    assert!(s.store_failed(&full).starts_with("452 4.3.1 "));
    let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
    assert!(s.store_failed(&quota).starts_with("452 4.3.1 "));
    let eio = std::io::Error::from_raw_os_error(libc::EIO);
    assert_eq!(
        s.store_failed(&eio),
        "451 4.3.0 Error: queue file write error\r\n"
    );
    assert!(s
        .store_failed(&std::io::Error::other("writer stopped"))
        .starts_with("451 4.3.0 "));
}
