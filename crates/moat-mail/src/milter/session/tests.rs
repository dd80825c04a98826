use super::*;
use crate::milter::codec::Connect;
use std::cell::RefCell;

#[derive(Default)]
struct Policy {
    counted: RefCell<Vec<String>>,
}

impl MilterPolicy for Policy {
    fn is_honey(&self, login: &str) -> bool {
        login == "honey"
    }
    fn is_trusted(&self, client: IpAddr) -> bool {
        client == IpAddr::from([192, 0, 2, 1])
    }
    fn classify(&self, r: &str) -> RcptClass {
        match bare(r) {
            "alice@moat.test" | "bob@moat.test" => RcptClass::Known,
            a if a.ends_with("@moat.test") => RcptClass::UnknownLocal,
            _ => RcptClass::Foreign,
        }
    }
    fn hide_recipients(&self) -> bool {
        true
    }
    fn unknown_recipient(&self, _: IpAddr, sender: &str) {
        self.counted.borrow_mut().push(sender.into());
    }
    fn captured(&self, _: IpAddr, _: &str, _: &str) {}
}

/// A session negotiated as Postfix 3.7 offers (everything), connected from `ip`: no CONNECT
/// (negotiated away), the client's address in the macros that come with MAIL, as Postfix
/// sends them for Moat's macro list.
fn session(p: &Policy, ip: [u8; 4]) -> Session {
    let mut s = Session::new();
    let r = s.handle(
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        },
        p,
    );
    let Outcome::Reply(Reply::OptNeg {
        version: 6,
        actions,
        protocol,
        macros,
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(actions, WANT_ACTIONS | action::SETSYMLIST);
    assert_eq!(protocol, WANT_PROTOCOL);
    assert_ne!(protocol & proto::NOCONNECT, 0);
    let (_, mail) = macros.iter().find(|(st, _)| *st == stage::ENVFROM).unwrap();
    for m in [
        "{auth_authen}",
        "{client_addr}",
        "{client_port}",
        "{tls_version}",
    ] {
        assert!(mail.split(' ').any(|x| x == m), "{m} comes with MAIL");
    }
    assert_eq!(s.handle(Command::Helo("bot".into()), p), Outcome::Silent);
    let pairs = vec![
        ("{client_addr}".to_string(), IpAddr::from(ip).to_string()),
        ("{client_port}".to_string(), "4000".to_string()),
    ];
    assert_eq!(
        s.handle(Command::Macro { stage: b'M', pairs }, p),
        Outcome::Silent
    );
    s
}

fn login(s: &mut Session, p: &Policy, user: &str) {
    let pairs = vec![("{auth_authen}".to_string(), user.to_string())];
    assert_eq!(
        s.handle(Command::Macro { stage: b'M', pairs }, p),
        Outcome::Silent
    );
}

fn envelope(s: &mut Session, p: &Policy, rcpts: &[&str]) -> Vec<Outcome> {
    let mut out = vec![s.handle(Command::Mail(vec!["<s@good.test>".into()]), p)];
    for r in rcpts {
        out.push(s.handle(Command::Rcpt(vec![format!("<{r}>")]), p));
    }
    out.push(s.handle(Command::Data, p));
    out
}

fn content(s: &mut Session, p: &Policy) -> Outcome {
    for c in [
        Command::Header {
            name: "Subject".into(),
            value: " hi\n\tthere".into(),
        },
        Command::EndOfHeaders,
        Command::Body(b"spam\r\n".to_vec()),
    ] {
        assert_eq!(
            s.handle(c, p),
            Outcome::Silent,
            "no-reply steps stay silent"
        );
    }
    s.handle(Command::EndOfMessage, p)
}

#[test]
fn a_honey_login_is_captured_whole_on_any_recipient() {
    let p = Policy::default();
    let mut s = session(&p, [127, 0, 0, 9]);
    let tls = vec![("{tls_version}".to_string(), "TLSv1.3".to_string())];
    s.handle(
        Command::Macro {
            stage: b'H',
            pairs: tls,
        },
        &p,
    );
    login(&mut s, &p, "honey");
    let steps = envelope(&mut s, &p, &["victim@outside.example", "nobody@moat.test"]);
    assert_eq!(
        steps,
        [
            Outcome::Silent,
            Outcome::Silent,
            Outcome::Silent,
            Outcome::Reply(Reply::Continue)
        ],
        "MAIL and RCPT are no-reply steps; DATA goes on"
    );
    let Outcome::Capture(c) = content(&mut s, &p) else {
        panic!("not captured")
    };
    assert_eq!(c.data, b"Subject: hi\r\n\tthere\r\n\r\nspam\r\n");
    assert_eq!(c.meta.auth_user.as_deref(), Some("honey"));
    assert_eq!(c.meta.client_ip, "127.0.0.9");
    assert_eq!(c.meta.client_port, 4000);
    assert_eq!(c.meta.helo, "bot");
    assert!(c.meta.tls);
    assert_eq!(c.meta.mail_from, "s@good.test");
    assert_eq!(
        c.meta.rcpt_to,
        ["victim@outside.example", "nobody@moat.test"]
    );
    assert!(p.counted.borrow().is_empty(), "honey is not enumeration");
}

#[test]
fn strangers_get_the_same_answer_for_every_recipient_and_unknown_ones_are_dropped() {
    let p = Policy::default();
    let mut s = session(&p, [127, 0, 0, 9]);
    let steps = envelope(
        &mut s,
        &p,
        &[
            "alice@moat.test",
            "typo@moat.test",
            "bob@moat.test",
            "typo@moat.test",
        ],
    );
    assert_eq!(steps.last(), Some(&Outcome::Reply(Reply::Continue)));
    let Outcome::Drop(replies, bounce) = content(&mut s, &p) else {
        panic!("nothing dropped")
    };
    assert_eq!(
        replies,
        [Reply::DelRcpt("<typo@moat.test>".into()), Reply::Continue]
    );
    assert_eq!(bounce.recipients, ["typo@moat.test"]);
    assert_eq!(bounce.sender, "s@good.test");
    assert!(bounce.complete && bounce.message.ends_with(b"spam\r\n"));
    assert_eq!(*p.counted.borrow(), ["s@good.test"]);
    // Only unknown recipients: the whole message is discarded.
    let steps = envelope(&mut s, &p, &["x@moat.test", "y@moat.test"]);
    assert_eq!(steps.last(), Some(&Outcome::Reply(Reply::Continue)));
    let Outcome::Drop(replies, _) = content(&mut s, &p) else {
        panic!()
    };
    assert_eq!(replies, [Reply::Discard]);
}

/// Users and allowlisted clients are never hidden from: Postfix answers for their
/// recipients itself, as without Moat.
#[test]
fn ordinary_mail_users_and_allowlisted_clients_are_accepted_at_data() {
    let p = Policy::default();
    let mut s = session(&p, [127, 0, 0, 9]);
    let steps = envelope(&mut s, &p, &["alice@moat.test", "far@outside.example"]);
    assert_eq!(steps.last(), Some(&Outcome::Reply(Reply::Accept)));
    login(&mut s, &p, "alice");
    let steps = envelope(&mut s, &p, &["typo@moat.test"]);
    assert_eq!(
        steps.last(),
        Some(&Outcome::Reply(Reply::Accept)),
        "authenticated"
    );
    let mut t = session(&p, [192, 0, 2, 1]);
    let steps = envelope(&mut t, &p, &["typo@moat.test"]);
    assert_eq!(
        steps.last(),
        Some(&Outcome::Reply(Reply::Accept)),
        "allowlisted"
    );
    assert!(p.counted.borrow().is_empty());
}

/// An MTA that sends no DATA command (milter protocol 2 and 3) still has its unknown
/// recipients dropped; one that did not grant DELRCPT has nothing hidden at all.
#[test]
fn hiding_needs_delrcpt_and_does_not_need_data() {
    let p = Policy::default();
    let mut s = Session::new();
    let old = Command::OptNeg {
        version: 2,
        actions: action::DELRCPT,
        protocol: 0,
    };
    s.handle(old, &p);
    let c = Connect {
        hostname: "h".into(),
        addr: Some(IpAddr::from([127, 0, 0, 9])),
        port: 1,
    };
    s.handle(Command::Connect(c.clone()), &p);
    s.handle(Command::Mail(vec!["<s@good.test>".into()]), &p);
    s.handle(Command::Rcpt(vec!["<typo@moat.test>".into()]), &p);
    s.handle(Command::Rcpt(vec!["<alice@moat.test>".into()]), &p);
    let h = Command::Header {
        name: "Subject".into(),
        value: "x".into(),
    };
    assert_eq!(s.handle(h, &p), Outcome::Reply(Reply::Continue));
    let Outcome::Drop(replies, _) = s.handle(Command::EndOfMessage, &p) else {
        panic!("not dropped without DATA")
    };
    assert_eq!(replies[0], Reply::DelRcpt("<typo@moat.test>".into()));

    let mut s = Session::new();
    let no_delrcpt = Command::OptNeg {
        version: 6,
        actions: action::ADDHDRS,
        protocol: 0x1f_ffff,
    };
    s.handle(no_delrcpt, &p);
    s.handle(Command::Connect(c), &p);
    let steps = envelope(&mut s, &p, &["typo@moat.test"]);
    assert_eq!(steps.last(), Some(&Outcome::Reply(Reply::Accept)));
}

#[test]
fn an_abort_forgets_the_message_and_a_new_session_forgets_the_login() {
    let p = Policy::default();
    let mut s = session(&p, [127, 0, 0, 9]);
    login(&mut s, &p, "honey");
    envelope(&mut s, &p, &["v@outside.example"]);
    assert_eq!(s.handle(Command::Abort, &p), Outcome::Silent);
    assert_eq!(
        s.handle(Command::EndOfMessage, &p),
        Outcome::Reply(Reply::Continue)
    );
    assert_eq!(s.handle(Command::QuitNewConnection, &p), Outcome::Silent);
    assert_eq!(s.auth(), "");
    let steps = envelope(&mut s, &p, &["v@outside.example"]);
    assert_eq!(steps.last(), Some(&Outcome::Reply(Reply::Accept)));
}

#[test]
fn without_no_reply_flags_every_step_is_answered() {
    let p = Policy::default();
    let mut s = Session::new();
    s.handle(
        Command::OptNeg {
            version: 2,
            actions: 0x3f,
            protocol: 0x7f,
        },
        &p,
    );
    let c = Connect {
        hostname: "h".into(),
        addr: Some(IpAddr::from([198, 51, 100, 7])),
        port: 0,
    };
    assert_eq!(
        s.handle(Command::Connect(c), &p),
        Outcome::Reply(Reply::Continue),
        "without macro lists CONNECT is kept: it alone gives the client's address"
    );
    login(&mut s, &p, "honey");
    envelope(&mut s, &p, &["v@outside.example"]);
    let h = Command::Header {
        name: "Subject".into(),
        value: "x".into(),
    };
    assert_eq!(s.handle(h, &p), Outcome::Reply(Reply::Continue));
    assert_eq!(
        s.handle(Command::EndOfHeaders, &p),
        Outcome::Reply(Reply::Continue)
    );
    let Outcome::Capture(c) = s.handle(Command::EndOfMessage, &p) else {
        panic!()
    };
    assert_eq!(c.data, b"Subject: x\r\n\r\n", "a space after the colon");
    assert_eq!(c.meta.client_ip, "198.51.100.7");
}

#[test]
fn connect_is_skipped_only_where_macro_lists_bring_the_address() {
    let p = Policy::default();
    for (actions, skipped) in [(0x1ff, true), (0x0ff, false)] {
        let mut s = Session::new();
        let r = s.handle(
            Command::OptNeg {
                version: 6,
                actions,
                protocol: 0x1f_ffff,
            },
            &p,
        );
        let Outcome::Reply(Reply::OptNeg { protocol, .. }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            protocol & proto::NOCONNECT != 0,
            skipped,
            "actions {actions:#x}"
        );
    }
}
