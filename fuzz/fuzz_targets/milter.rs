//! The milter's codec and session on arbitrary bytes from "Postfix", split into reads where the
//! input says. Beyond "never panics":
//!
//! - framing: what the [`Decoder`] yields, read by read, equals a one-pass reference walk of the
//!   whole stream (so it cannot depend on where reads split), it consumes exactly each packet's
//!   `4 + len` bytes, an error is sticky and consumes nothing, and after an error-free
//!   `Ok(None)` it holds less than one largest packet and its header (`MAX_PACKET + 4`);
//! - the session agrees with a small model of its decisions: who gets a reply (the negotiated
//!   `SMFIP_NR_*` flags), a stranger gets `Continue` for every recipient (valid or not: nothing
//!   to enumerate) while unknown ones are counted and deleted at the end of the message, only a
//!   honey login's mail is captured, and `DelRcpt` / `Discard` come out as the model says;
//! - every reply encodes to one well-formed packet.
//!
//! Input: a control byte whose low two bits are a number of splits, then that many big-endian
//! u16 split offsets, then the byte stream. The same file runs on stable as a plain test
//! (`crates/moat-mail/tests/milter_garbage.rs` includes it) over random and mutated inputs, and
//! generates the seeds in `fuzz/seeds/milter` ([`conversations`]).
#![cfg_attr(not(test), no_main)]
// The seed generator is used by the stable test only.
#![cfg_attr(not(test), allow(dead_code))]

use moat_mail::milter::codec::{
    action::{DELRCPT, SETSYMLIST},
    encode_command, parse,
    proto::NOCONNECT,
    CodecError, Command, Decoder, Reply, MAX_PACKET, VERSION,
};
use moat_mail::milter::session::{
    bare, MilterPolicy, Outcome, RcptClass, Session, MAX_CAPTURE, MAX_FILTERED, WANT_ACTIONS,
    WANT_MACROS, WANT_PROTOCOL,
};
use std::cell::Cell;
use std::net::IpAddr;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// What a run reached, for the stable test to check that the seeds go where they should.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub commands: usize,
    pub accepted: usize,
    pub refused: usize,
    pub captured: usize,
    pub deleted: usize,
    pub discarded: usize,
    pub closed: bool,
}

const TRUSTED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

/// Honey login "honey", mailboxes alice and bob at moat.test, 192.0.2.1 allowlisted.
#[derive(Default)]
struct Policy {
    unknown: Cell<u64>,
}

impl MilterPolicy for Policy {
    fn is_honey(&self, login: &str) -> bool {
        login == "honey"
    }
    fn is_trusted(&self, client: IpAddr) -> bool {
        client == TRUSTED
    }
    fn classify(&self, r: &str) -> RcptClass {
        match bare(r).to_ascii_lowercase().as_str() {
            "alice@moat.test" | "bob@moat.test" => RcptClass::Known,
            a if a.ends_with("@moat.test") => RcptClass::UnknownLocal,
            _ => RcptClass::Foreign,
        }
    }
    fn hide_recipients(&self) -> bool {
        true
    }
    fn unknown_recipient(&self, _: IpAddr, _: &str) {
        self.unknown.set(self.unknown.get() + 1);
    }
    fn captured(&self, _: IpAddr, _: &str, _: &str) {}
}

/// What one packet of the whole stream is, by a plain walk (the reference for the decoder).
enum Expect {
    Cmd(Command, usize),
    Err(CodecError),
}

/// Every packet of `stream` in one pass, up to the first error; plus the bytes left undecoded.
fn reference(stream: &[u8]) -> (Vec<Expect>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while stream.len() - at >= 4 {
        let len = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            out.push(Expect::Err(CodecError::Empty));
            break;
        }
        if len > MAX_PACKET {
            out.push(Expect::Err(CodecError::TooLarge(len)));
            break;
        }
        if stream.len() - at < 4 + len {
            break;
        }
        match parse(stream[at + 4], &stream[at + 5..at + 4 + len]) {
            Ok(c) => out.push(Expect::Cmd(c, 4 + len)),
            Err(e) => {
                out.push(Expect::Err(e));
                break;
            }
        }
        at += 4 + len;
    }
    (out, stream.len() - at)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Pass,
    Honey,
    Filter,
}

/// The session's decisions, restated.
struct Model {
    protocol: u32,
    actions: u32,
    client: Option<IpAddr>,
    mode: Mode,
    in_data: bool,
    /// Every recipient given, in order (duplicates too).
    rcpts: Vec<String>,
    /// The hidden ones, once each.
    dropped: Vec<String>,
}

impl Model {
    fn reset_message(&mut self) {
        self.mode = Mode::Pass;
        self.in_data = false;
        self.rcpts.clear();
        self.dropped.clear();
    }

    /// DATA, or the first content from an MTA that sends none.
    fn enter_data(&mut self) {
        if !self.in_data {
            self.in_data = true;
            if self.mode == Mode::Pass && !self.dropped.is_empty() {
                self.mode = Mode::Filter;
            }
        }
    }

    fn left(&self) -> usize {
        self.rcpts
            .iter()
            .filter(|r| !self.dropped.contains(r))
            .count()
    }
}

/// One reply as one packet: length, code, NUL-terminated strings where there are strings.
fn check_encoding(r: &Reply) {
    let mut out = Vec::new();
    r.encode(&mut out);
    assert!(out.len() >= 5, "{r:?}");
    let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
    assert_eq!(len, out.len() - 4, "{r:?}");
    let (code, strings) = match r {
        Reply::OptNeg { .. } => (b'O', 0),
        Reply::Continue => (b'c', 0),
        Reply::Accept => (b'a', 0),
        Reply::Reject => (b'r', 0),
        Reply::TempFail => (b't', 0),
        Reply::Discard => (b'd', 0),
        Reply::Progress => (b'p', 0),
        Reply::ReplyCode(_) => (b'y', 1),
        Reply::DelRcpt(_) => (b'-', 1),
        Reply::AddHeader { .. } => (b'h', 2),
    };
    assert_eq!(out[4], code, "{r:?}");
    match strings {
        0 if matches!(r, Reply::OptNeg { macros, .. } if macros.is_empty()) => assert_eq!(len, 13),
        0 if matches!(r, Reply::OptNeg { .. }) => assert!(len > 13 && out.last() == Some(&0)),
        0 => assert_eq!(len, 1, "{r:?}"),
        n => {
            assert_eq!(out.last(), Some(&0), "{r:?}");
            assert_eq!(out[5..].iter().filter(|&&b| b == 0).count(), n, "{r:?}");
        }
    }
}

/// One command through the session, checked against the model.
fn step(s: &mut Session, m: &mut Model, p: &Policy, cmd: Command, seen: &mut Seen) {
    let no_reply = cmd.no_reply_flag().is_some_and(|f| m.protocol & f != 0);
    let silent = cmd.is_silent();
    let auth = s.auth().to_string();
    let honest = !auth.is_empty() || m.client == Some(TRUSTED);
    let counted = p.unknown.get();
    // What the model expects of this command, computed before the session sees it.
    let rcpt_class = match &cmd {
        Command::Rcpt(a) => Some(p.classify(a.first().map_or("", String::as_str))),
        _ => None,
    };
    let rcpt = match &cmd {
        Command::Rcpt(a) => a.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let kind = name(&cmd);
    let (is_mail, is_rcpt, is_data, is_eom) = (
        matches!(cmd, Command::Mail(_)),
        matches!(cmd, Command::Rcpt(_)),
        matches!(cmd, Command::Data),
        matches!(cmd, Command::EndOfMessage),
    );
    let offer = match &cmd {
        Command::OptNeg {
            actions, protocol, ..
        } => Some((*actions, *protocol)),
        _ => None,
    };
    let connect = match &cmd {
        Command::Connect(c) => Some(c.addr),
        _ => None,
    };
    // The client's address as a macro (instead of CONNECT) counts where none is known yet.
    let macro_client = match &cmd {
        Command::Macro { pairs, .. } if m.client.is_none() => pairs
            .iter()
            .filter(|(k, _)| k == "{client_addr}")
            .find_map(|(_, v)| v.parse::<IpAddr>().ok()),
        _ => None,
    };
    let quit_nc = matches!(cmd, Command::QuitNewConnection);
    let abort = matches!(cmd, Command::Abort);
    let content = matches!(
        cmd,
        Command::Header { .. } | Command::EndOfHeaders | Command::Body(_)
    );

    let out = s.handle(cmd, p);

    // Replies: exactly the commands that are neither silent nor negotiated as no-reply.
    match &out {
        Outcome::Silent => assert!(silent || no_reply, "{kind} unanswered"),
        Outcome::Close => assert!(kind == "QUIT", "{kind} closed the session"),
        _ => assert!(!silent && !no_reply, "{kind} answered: {out:?}"),
    }
    if p.unknown.get() != counted {
        assert_eq!(p.unknown.get(), counted + 1);
        assert!(
            is_rcpt && !honest && m.mode != Mode::Honey,
            "counted outside a stranger's RCPT"
        );
        assert_eq!(rcpt_class, Some(RcptClass::UnknownLocal));
    }

    if let Some((actions, protocol)) = offer {
        let Outcome::Reply(Reply::OptNeg {
            version,
            actions: a,
            protocol: pr,
            ref macros,
        }) = out
        else {
            panic!("OPTNEG answered {out:?}")
        };
        assert_eq!(version, VERSION);
        let symlist = actions & SETSYMLIST != 0;
        assert_eq!(a & !SETSYMLIST, actions & WANT_ACTIONS);
        assert_eq!(a & SETSYMLIST != 0, symlist);
        assert_eq!(macros.len(), if symlist { WANT_MACROS.len() } else { 0 });
        // CONNECT is skipped only where macro lists bring the client's address with MAIL.
        let keep = if symlist { 0 } else { NOCONNECT };
        assert_eq!(pr, protocol & WANT_PROTOCOL & !keep);
        m.protocol = pr;
        m.actions = a;
    } else if let Some(addr) = connect {
        m.client = addr;
    } else if macro_client.is_some() {
        m.client = macro_client;
    } else if quit_nc {
        m.client = None;
        m.reset_message();
        assert_eq!(s.auth(), "", "a new SMTP session starts without a login");
    } else if abort {
        m.reset_message();
    } else if is_mail {
        m.reset_message();
        if auth == "honey" {
            m.mode = Mode::Honey;
        }
    } else if is_rcpt {
        let class = rcpt_class.unwrap();
        // Every recipient gets the same answer; a stranger's unknown local one is hidden
        // (counted when the client's address is known, dropped at the end), once, and only if
        // the MTA granted DELRCPT. Users and allowlisted clients are never hidden from.
        let hidden = m.mode != Mode::Honey
            && !honest
            && class == RcptClass::UnknownLocal
            && m.actions & DELRCPT != 0
            && !m.dropped.contains(&rcpt);
        if hidden {
            let count = u64::from(m.client.is_some());
            assert_eq!(
                p.unknown.get(),
                counted + count,
                "hidden recipient counted wrongly"
            );
            m.dropped.push(rcpt.clone());
        } else {
            assert_eq!(p.unknown.get(), counted, "{rcpt} counted but not hidden");
        }
        m.rcpts.push(rcpt);
        match &out {
            Outcome::Reply(Reply::Continue) | Outcome::Silent => {}
            o => panic!("RCPT ({class:?}, honest {honest}, {:?}): {o:?}", m.mode),
        }
    } else if is_data {
        m.enter_data();
        let want = if m.mode == Mode::Pass {
            Reply::Accept
        } else {
            Reply::Continue
        };
        assert_eq!(out, Outcome::Reply(want));
    } else if is_eom {
        m.enter_data();
        match (&out, m.mode) {
            (Outcome::Capture(c), Mode::Honey) => {
                assert!(c.data.len() <= MAX_CAPTURE);
                assert_eq!(c.meta.listener, "milter");
                assert_eq!(c.meta.rcpt_to.len(), m.rcpts.len());
            }
            (Outcome::Reply(Reply::ReplyCode(t)), Mode::Honey) => assert!(t.starts_with("452 ")),
            (Outcome::Drop(replies, b), Mode::Filter) => {
                assert!(b.message.len() <= MAX_FILTERED);
                assert_eq!(b.recipients.len(), m.dropped.len());
                let dels = replies
                    .iter()
                    .filter(|r| matches!(r, Reply::DelRcpt(_)))
                    .count();
                if m.left() == 0 {
                    assert_eq!(replies.as_slice(), [Reply::Discard], "nobody left");
                } else {
                    assert_eq!(dels, m.dropped.len());
                    assert_eq!(replies.len(), dels + 1);
                    assert_eq!(replies.last(), Some(&Reply::Continue));
                }
            }
            (Outcome::Reply(Reply::Continue), Mode::Pass) => {}
            (o, mode) => panic!("end of message in {mode:?}: {o:?}"),
        }
        m.reset_message();
    } else if content {
        m.enter_data();
    }

    seen.commands += 1;
    match &out {
        Outcome::Reply(r) => {
            check_encoding(r);
            seen.accepted += usize::from(*r == Reply::Accept);
            seen.refused += usize::from(matches!(r, Reply::ReplyCode(_)));
        }
        Outcome::Drop(rs, _) => {
            rs.iter().for_each(check_encoding);
            seen.deleted += rs.iter().filter(|r| matches!(r, Reply::DelRcpt(_))).count();
            seen.discarded += usize::from(rs.contains(&Reply::Discard));
        }
        Outcome::Capture(_) => seen.captured += 1,
        Outcome::Close => seen.closed = true,
        Outcome::Silent => {}
    }
}

/// The fuzz body: split points from the input's head, then the stream through decoder and session.
pub fn run(data: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let Some((&ctl, rest)) = data.split_first() else {
        return seen;
    };
    let splits = usize::from(ctl & 3);
    if rest.len() < 2 * splits {
        return seen;
    }
    let (head, stream) = rest.split_at(2 * splits);
    let mut cuts: Vec<usize> = head
        .chunks(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());

    let (expected, left) = reference(stream);
    let mut expected = expected.into_iter();
    let mut dec = Decoder::new();
    let policy = Policy::default();
    let mut session = Session::new();
    let mut model = Model {
        protocol: 0,
        actions: 0,
        client: None,
        mode: Mode::Pass,
        in_data: false,
        rcpts: Vec::new(),
        dropped: Vec::new(),
    };
    let mut from = 0;
    for cut in cuts {
        let before = dec.pending();
        dec.feed(&stream[from..cut]);
        assert_eq!(dec.pending(), before + (cut - from));
        from = cut;
        loop {
            let before = dec.pending();
            match dec.decode() {
                Ok(Some(cmd)) => {
                    let Some(Expect::Cmd(want, size)) = expected.next() else {
                        panic!("decoded {cmd:?} where the reference has none");
                    };
                    assert_eq!(cmd, want);
                    assert_eq!(dec.pending(), before - size, "consumed the wrong amount");
                    let quit = matches!(cmd, Command::Quit);
                    step(&mut session, &mut model, &policy, cmd, &mut seen);
                    if quit {
                        return seen;
                    }
                }
                Ok(None) => {
                    assert_eq!(dec.pending(), before);
                    assert!(
                        dec.pending() < MAX_PACKET + 4,
                        "{} bytes held",
                        dec.pending()
                    );
                    break;
                }
                Err(e) => {
                    let Some(Expect::Err(want)) = expected.next() else {
                        panic!("error {e:?} where the reference has none");
                    };
                    assert_eq!(e, want);
                    assert_eq!(dec.pending(), before, "an error consumed input");
                    assert_eq!(dec.decode(), Err(e), "errors are sticky");
                    // The server closes the connection here.
                    return seen;
                }
            }
        }
    }
    assert!(expected.next().is_none(), "the decoder stopped short");
    assert_eq!(dec.pending(), left);
    seen
}

fn name(c: &Command) -> &'static str {
    match c {
        Command::OptNeg { .. } => "OPTNEG",
        Command::Macro { .. } => "MACRO",
        Command::Connect(_) => "CONNECT",
        Command::Helo(_) => "HELO",
        Command::Mail(_) => "MAIL",
        Command::Rcpt(_) => "RCPT",
        Command::Data => "DATA",
        Command::Header { .. } => "HEADER",
        Command::EndOfHeaders => "EOH",
        Command::Body(_) => "BODY",
        Command::EndOfMessage => "EOM",
        Command::Abort => "ABORT",
        Command::Quit => "QUIT",
        Command::QuitNewConnection => "QUIT_NC",
        Command::Unknown(_) => "UNKNOWN",
    }
}

fn macros(stage: u8, pairs: &[(&str, &str)], out: &mut Vec<u8>) {
    let mut d = vec![stage];
    for (k, v) in pairs {
        d.extend_from_slice(k.as_bytes());
        d.push(0);
        d.extend_from_slice(v.as_bytes());
        d.push(0);
    }
    encode_command(b'D', &d, out);
}

fn cstrs(parts: &[&str]) -> Vec<u8> {
    let mut d = Vec::new();
    for p in parts {
        d.extend_from_slice(p.as_bytes());
        d.push(0);
    }
    d
}

/// One SMTP session as Postfix 3.7 sends it to a milter (after OPTNEG): connect, helo, then
/// one message per `(login, sender, recipients, body)`.
fn smtp_session(out: &mut Vec<u8>, client: &str, messages: &[(&str, &str, &[&str], &str)]) {
    let v6 = client.contains(':');
    macros(
        b'C',
        &[
            ("j", "mx.moat.test"),
            ("{daemon_name}", "smtpd"),
            ("{daemon_addr}", "127.0.0.1"),
            ("v", "Postfix 3.7.11"),
            ("_", "client.example [127.0.0.9]"),
            ("{client_addr}", client),
            ("{client_name}", "client.example"),
        ],
        out,
    );
    let mut c = b"client.example\0".to_vec();
    c.push(if v6 { b'6' } else { b'4' });
    c.extend_from_slice(&40123u16.to_be_bytes());
    if v6 {
        c.extend_from_slice(format!("IPv6:{client}\0").as_bytes());
    } else {
        c.extend_from_slice(format!("{client}\0").as_bytes());
    }
    encode_command(b'C', &c, out);
    macros(b'H', &[("{tls_version}", "TLSv1.3")], out);
    encode_command(b'H', &cstrs(&["client.example"]), out);
    for (login, sender, rcpts, body) in messages {
        let mut m = vec![("i", "4Xq1Zr3kQmz9"), ("{mail_addr}", *sender)];
        if !login.is_empty() {
            m.push(("{auth_type}", "PLAIN"));
            m.push(("{auth_authen}", login));
        }
        macros(b'M', &m, out);
        let from = format!("<{sender}>");
        encode_command(b'M', &cstrs(&[&from, "BODY=8BITMIME", "SIZE=512"]), out);
        for r in *rcpts {
            macros(b'R', &[("{rcpt_addr}", r)], out);
            encode_command(b'R', &cstrs(&[&format!("<{r}>"), "ORCPT=rfc822;x"]), out);
        }
        encode_command(b'T', &[], out);
        for (n, v) in [
            ("Received", "from client.example (client.example [127.0.0.9])\n\tby mx.moat.test (Postfix) with ESMTPS id 4Xq1Zr3kQmz9"),
            ("From", sender),
            ("To", rcpts.first().copied().unwrap_or("")),
            ("Subject", "Hello there"),
            ("Message-ID", "<1@client.example>"),
        ] {
            encode_command(b'L', &cstrs(&[n, &format!(" {v}")]), out);
        }
        encode_command(b'N', &[], out);
        encode_command(b'B', body.as_bytes(), out);
        macros(b'E', &[("{msg_id}", "<1@client.example>")], out);
        encode_command(b'E', &[], out);
    }
}

fn optneg(out: &mut Vec<u8>) {
    let mut d = Vec::new();
    for v in [6u32, 0x1ff, 0x1f_ffff] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    encode_command(b'O', &d, out);
}

/// Realistic conversations, each as a fuzz input (control byte: no splits, or a few): the
/// seeds in `fuzz/seeds/milter`.
pub fn conversations() -> Vec<(String, Vec<u8>)> {
    let body = "Hi Alice,\r\n\r\nthe minutes are attached.\r\n\r\n-- \r\nBob\r\n";
    let mut seeds = Vec::new();

    // Ordinary mail, accepted at DATA (Postfix would stop after DATA; the rest is still valid).
    let mut s = Vec::new();
    optneg(&mut s);
    smtp_session(
        &mut s,
        "127.0.0.9",
        &[("", "bob@good.test", &["alice@moat.test"], body)],
    );
    encode_command(b'Q', &[], &mut s);
    seeds.push(("ordinary-v4", s));

    // A stranger over IPv6 with one unknown recipient among real ones: DELRCPT at the end.
    let mut s = Vec::new();
    optneg(&mut s);
    smtp_session(
        &mut s,
        "2001:db8::25",
        &[(
            "",
            "news@good.test",
            &["alice@moat.test", "typo@moat.test", "far@else.example"],
            body,
        )],
    );
    encode_command(b'K', &[], &mut s);
    seeds.push(("unknown-recipient-v6-quit-nc", s));

    // A honey login: captured whole; then a second session on the same connection.
    let mut s = Vec::new();
    optneg(&mut s);
    smtp_session(
        &mut s,
        "127.0.0.66",
        &[(
            "honey",
            "bot@spam.example",
            &["victim@far.example", "x@moat.test"],
            body,
        )],
    );
    encode_command(b'K', &[], &mut s);
    smtp_session(
        &mut s,
        "127.0.0.67",
        &[(
            "",
            "bot@spam.example",
            &["y@moat.test", "z@moat.test"],
            body,
        )],
    );
    encode_command(b'Q', &[], &mut s);
    seeds.push(("honey-then-only-unknown", s));

    // A user who logged in, an honest 550, then an aborted transaction and another message.
    let mut s = Vec::new();
    optneg(&mut s);
    smtp_session(
        &mut s,
        "127.0.0.10",
        &[(
            "alice",
            "alice@moat.test",
            &["typo@moat.test", "bob@moat.test"],
            body,
        )],
    );
    macros(b'M', &[("{mail_addr}", "alice@moat.test")], &mut s);
    encode_command(b'M', &cstrs(&["<alice@moat.test>"]), &mut s);
    encode_command(b'R', &cstrs(&["<nobody@moat.test>"]), &mut s);
    encode_command(b'A', &[], &mut s);
    encode_command(b'Q', &[], &mut s);
    seeds.push(("login-550-abort", s));

    // The allowlisted client, and an old MTA that negotiates no no-reply steps (version 2).
    let mut s = Vec::new();
    let mut d = Vec::new();
    for v in [2u32, 0x3f, 0x7f] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    encode_command(b'O', &d, &mut s);
    smtp_session(
        &mut s,
        "192.0.2.1",
        &[(
            "",
            "ops@partner.example",
            &["who@moat.test", "bob@moat.test"],
            body,
        )],
    );
    encode_command(b'U', b"XCLIENT\0", &mut s);
    encode_command(b'Q', &[], &mut s);
    seeds.push(("allowlisted-old-protocol", s));

    // Each conversation also split into reads at awkward places (mid-header, mid-packet).
    let mut out = Vec::new();
    for (name, stream) in seeds {
        let mut plain = vec![0u8];
        plain.extend_from_slice(&stream);
        out.push((name.to_string(), plain));
        let name = format!("{name}-split");
        let mut split = vec![3u8];
        for cut in [3usize, stream.len() / 3, stream.len() / 2 + 1] {
            split.extend_from_slice(&(cut as u16).to_be_bytes());
        }
        split.extend_from_slice(&stream);
        out.push((name, split));
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (name, d))| (format!("{i:02}-{name}"), d))
        .collect()
}
