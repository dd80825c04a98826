//! One SMTP server session of the trap, without I/O.
//!
//! The caller feeds bytes as they arrive and acts on each [`Step`]. Commands are parsed by
//! `smtp-proto`; message data goes through its `DataReceiver` (end-of-data detection and
//! dot-unstuffing). Decisions that need state beyond one connection (may this login succeed?
//! is the message on disk?) are handed back to the caller as steps, so the protocol stays pure
//! and every reply that promises something is written only after the promise is kept.
//!
//! Two modes share the code: [`Mode::Trap`] faces bots (AUTH, STARTTLS, accepts any relay
//! attempt), [`Mode::Capture`] faces the local Postfix, which hands over honey accounts' mail
//! (XFORWARD, so the bot's address and HELO are kept).

use crate::sasl::{self, Credentials, LOGIN_PASS_CHALLENGE, LOGIN_USER_CHALLENGE};
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{Error as ProtoError, Request, AUTH_LOGIN, AUTH_PLAIN};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Trap,
    Capture,
}

/// What one session may do. Limits exist because the peer is hostile.
#[derive(Debug, Clone)]
pub struct Limits {
    pub hostname: String,
    pub mode: Mode,
    /// Largest message accepted (advertised in `SIZE`); a bigger one is read and dropped.
    pub max_size: usize,
    pub max_rcpts: usize,
    /// Longest command line. RFC 5321 says 512; Postfix's XFORWARD and long AUTH lines need more.
    pub max_line: usize,
    /// Protocol errors before the session is closed (Postfix's `smtpd_hard_error_limit`).
    pub max_errors: u32,
    /// Offer STARTTLS (the listener has a certificate and is not already TLS).
    pub starttls: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hostname: "mail.localdomain".into(),
            mode: Mode::Trap,
            max_size: 10 << 20,
            max_rcpts: 100,
            max_line: 2048,
            max_errors: 10,
            starttls: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// XFORWARD attributes from Postfix (capture mode): NAME, ADDR, PROTO, HELO, SOURCE, IDENT.
    pub xforward: Vec<(String, String)>,
    /// The login this session authenticated as, if any, and the password it used: the
    /// credential the message was sent with.
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    /// The message arrived over TLS.
    pub tls: bool,
}

impl Envelope {
    pub fn xforward(&self, key: &str) -> Option<&str> {
        self.xforward
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every byte given was consumed; read more (after flushing pending replies).
    NeedMore,
    /// Queue this reply and keep feeding.
    Reply(String),
    /// A login attempt: decide, then queue [`Session::login_result`]'s reply.
    Login(Credentials),
    /// A whole message: make it durable, then queue [`Session::delivered`]'s reply.
    Deliver(Envelope, Vec<u8>),
    /// Send this reply, flush, then start TLS and call [`Session::tls_started`]. Bytes the
    /// client pipelined after STARTTLS must be dropped (CVE-2011-0411).
    StartTls(String),
    /// Send this reply and close the connection.
    Close(String),
}

enum State {
    Command,
    /// Between `AUTH PLAIN` without an initial response and the client's response.
    AuthPlain,
    AuthLoginUser,
    AuthLoginPass(String),
    Data(Box<DataReceiver>),
    /// The message grew past `max_size`: read to its end, keep nothing.
    DataDiscard(Box<DummyDataReceiver>),
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Command => "command",
            State::AuthPlain => "auth-plain",
            State::AuthLoginUser => "auth-login-user",
            State::AuthLoginPass(_) => "auth-login-pass",
            State::Data(_) => "data",
            State::DataDiscard(_) => "data-discard",
        })
    }
}

pub struct Session {
    limits: Limits,
    state: State,
    env: Envelope,
    /// A MAIL command opened a transaction (the null sender leaves `mail_from` empty).
    mail: bool,
    /// Whether EHLO/HELO was seen (reset by STARTTLS).
    greeted: bool,
    line: Vec<u8>,
    data: Vec<u8>,
    errors: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("env", &self.env)
            .finish()
    }
}

fn reply(s: &str) -> Step {
    Step::Reply(format!("{s}\r\n"))
}

impl Session {
    pub fn new(limits: Limits) -> Self {
        Session {
            limits,
            state: State::Command,
            env: Envelope::default(),
            mail: false,
            greeted: false,
            line: Vec::new(),
            data: Vec::new(),
            errors: 0,
        }
    }

    /// The banner. Postfix's wording, because a trap that looks like a trap catches nothing.
    pub fn greeting(&self) -> String {
        format!("220 {} ESMTP Postfix\r\n", self.limits.hostname)
    }

    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_) | State::DataDiscard(_))
    }

    pub fn envelope(&self) -> &Envelope {
        &self.env
    }

    /// The reply once the message is durable, naming the id it was stored under.
    pub fn delivered(&self, id: &str) -> String {
        format!("250 2.0.0 Ok: queued as {id}\r\n")
    }

    /// The reply when storing failed: the client keeps the message and retries later. A full
    /// disk is Postfix's `452 4.3.1 Insufficient system storage` (RFC 3463 X.3.1), anything
    /// else its `451 4.3.0` queue file write error.
    pub fn store_failed(&self, e: &std::io::Error) -> String {
        let full = e.kind() == std::io::ErrorKind::StorageFull
            || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        match full {
            true => "452 4.3.1 Insufficient system storage\r\n".into(),
            false => "451 4.3.0 Error: queue file write error\r\n".into(),
        }
    }

    /// The reply to a [`Step::Login`], once the caller decided.
    pub fn login_result(&mut self, creds: &Credentials, accepted: bool) -> String {
        if accepted {
            self.env.auth_user = Some(creds.username.clone());
            self.env.auth_password = Some(creds.password.clone());
            "235 2.7.0 Authentication successful\r\n".into()
        } else {
            self.error();
            "535 5.7.8 Error: authentication failed: authentication failure\r\n".into()
        }
    }

    /// TLS is up: RFC 3207 says forget everything learnt before it.
    pub fn tls_started(&mut self) {
        self.env = Envelope {
            tls: true,
            ..Default::default()
        };
        self.mail = false;
        self.greeted = false;
        self.line.clear();
        self.limits.starttls = false;
    }

    pub fn set_tls(&mut self) {
        self.env.tls = true;
        self.limits.starttls = false;
    }

    fn error(&mut self) {
        self.errors += 1;
    }

    /// Consumes bytes from `input` until one step results.
    pub fn feed(&mut self, input: &mut &[u8]) -> Step {
        if self.in_data() {
            return self.data(input);
        }
        let Some(pos) = input.iter().position(|b| *b == b'\n') else {
            if self.line.len() + input.len() > self.limits.max_line {
                *input = &[];
                return Step::Close("500 5.5.2 Error: line too long\r\n".into());
            }
            self.line.extend_from_slice(input);
            *input = &[];
            return Step::NeedMore;
        };
        if self.line.len() + pos > self.limits.max_line {
            *input = &[];
            return Step::Close("500 5.5.2 Error: line too long\r\n".into());
        }
        self.line.extend_from_slice(&input[..pos]);
        *input = &input[pos + 1..];
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let step = self.line_step(&line);
        line.clear();
        self.line = line;
        if self.errors >= self.limits.max_errors {
            return Step::Close(
                "421 4.7.0 Error: too many errors; closing transmission channel\r\n".into(),
            );
        }
        step
    }

    fn line_step(&mut self, line: &[u8]) -> Step {
        // A NUL or other binary control byte in a command line is not a confused client; it is
        // garbage (or an attack on a parser). Close rather than guess.
        if line.iter().any(|b| *b == 0 || (*b < 0x20 && *b != b'\t')) {
            return Step::Close("500 5.5.2 Error: bad syntax\r\n".into());
        }
        match std::mem::replace(&mut self.state, State::Command) {
            State::Command => self.command(line),
            State::AuthPlain => self.auth_plain_response(line),
            State::AuthLoginUser => self.auth_login_user(line),
            State::AuthLoginPass(user) => self.auth_login_pass(user, line),
            s @ (State::Data(_) | State::DataDiscard(_)) => {
                self.state = s;
                Step::NeedMore
            }
        }
    }

    fn data(&mut self, input: &mut &[u8]) -> Step {
        let mut it = input.iter();
        let done = match &mut self.state {
            State::Data(rx) => {
                let done = rx.ingest(&mut it, &mut self.data);
                if !done && self.data.len() > self.limits.max_size {
                    let dummy = DummyDataReceiver::new_data(rx);
                    self.data = Vec::new();
                    self.state = State::DataDiscard(Box::new(dummy));
                }
                done
            }
            State::DataDiscard(rx) => rx.ingest(&mut it),
            _ => false,
        };
        *input = it.as_slice();
        if !done {
            return Step::NeedMore;
        }
        let discarded = matches!(self.state, State::DataDiscard(_));
        self.state = State::Command;
        self.mail = false;
        let env = Envelope {
            helo: self.env.helo.clone(),
            auth_user: self.env.auth_user.clone(),
            auth_password: self.env.auth_password.clone(),
            tls: self.env.tls,
            xforward: std::mem::take(&mut self.env.xforward),
            mail_from: std::mem::take(&mut self.env.mail_from),
            rcpt_to: std::mem::take(&mut self.env.rcpt_to),
        };
        let data = std::mem::take(&mut self.data);
        if discarded || data.len() > self.limits.max_size {
            return reply("552 5.3.4 Error: message file too big");
        }
        Step::Deliver(env, data)
    }

    fn command(&mut self, line: &[u8]) -> Step {
        if self.limits.mode == Mode::Capture && starts_with_ci(line, b"XFORWARD") {
            return self.xforward(line);
        }
        let mut with_crlf = Vec::with_capacity(line.len() + 2);
        with_crlf.extend_from_slice(line);
        with_crlf.extend_from_slice(b"\r\n");
        let parsed = match Request::parse(&mut with_crlf.iter()) {
            // smtp-proto is stricter than Postfix about paths: it refuses address literals
            // (`user@[192.0.2.1]`) and source routes, which are exactly what relay probes
            // send. Accept what Postfix accepts, so the probe is recorded, not bounced.
            Err(e @ (ProtoError::InvalidSenderAddress | ProtoError::InvalidRecipientAddress)) => {
                match lenient_path(line) {
                    Some((true, address)) => Ok(Request::Mail {
                        from: smtp_proto::MailFrom {
                            address,
                            ..Default::default()
                        },
                    }),
                    Some((false, address)) => Ok(Request::Rcpt {
                        to: smtp_proto::RcptTo {
                            address,
                            ..Default::default()
                        },
                    }),
                    None => Err(e),
                }
            }
            other => other.map(Request::into_owned),
        };
        match parsed {
            Ok(req) => self.request(req),
            Err(e) => {
                self.error();
                match e {
                    ProtoError::UnknownCommand => reply("502 5.5.2 Error: command not recognized"),
                    ProtoError::InvalidSenderAddress => {
                        reply("501 5.1.7 Bad sender address syntax")
                    }
                    ProtoError::InvalidRecipientAddress => {
                        reply("501 5.1.3 Bad recipient address syntax")
                    }
                    ProtoError::SyntaxError { syntax } => {
                        Step::Reply(format!("501 5.5.4 Syntax: {syntax}\r\n"))
                    }
                    ProtoError::InvalidParameter { param } => {
                        Step::Reply(format!("501 5.5.4 Bad {param} parameter syntax\r\n"))
                    }
                    ProtoError::UnsupportedParameter { param } => Step::Reply(format!(
                        "555 5.5.4 Unsupported option: {}\r\n",
                        param.chars().take(64).collect::<String>()
                    )),
                    _ => reply("500 5.5.2 Error: bad syntax"),
                }
            }
        }
    }

    fn xforward(&mut self, line: &[u8]) -> Step {
        let text = String::from_utf8_lossy(line);
        for kv in text.split_whitespace().skip(1) {
            if let Some((k, v)) = kv.split_once('=') {
                if self.env.xforward.len() < 16 {
                    self.env
                        .xforward
                        .push((k.to_ascii_uppercase(), v.to_string()));
                }
            }
        }
        reply("250 2.0.0 Ok")
    }

    fn ehlo(&self) -> String {
        let l = &self.limits;
        let mut r = String::with_capacity(256);
        let _ = write!(
            r,
            "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n",
            l.hostname, l.max_size
        );
        if l.starttls {
            r.push_str("250-STARTTLS\r\n");
        }
        match l.mode {
            Mode::Trap => r.push_str("250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"),
            Mode::Capture => r.push_str("250-XFORWARD NAME ADDR PROTO HELO SOURCE IDENT\r\n"),
        }
        r.push_str("250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
        r
    }

    fn reset(&mut self) {
        self.mail = false;
        self.env.mail_from.clear();
        self.env.rcpt_to.clear();
    }

    fn request(&mut self, req: Request<String>) -> Step {
        match req {
            Request::Ehlo { host } | Request::Lhlo { host } => {
                self.reset();
                self.greeted = true;
                self.env.helo = host;
                Step::Reply(self.ehlo())
            }
            Request::Helo { host } => {
                self.reset();
                self.greeted = true;
                self.env.helo = host;
                Step::Reply(format!("250 {}\r\n", self.limits.hostname))
            }
            Request::StartTls if self.limits.mode == Mode::Trap => {
                if self.env.tls {
                    self.error();
                    reply("554 5.5.1 Error: TLS already active")
                } else if !self.limits.starttls {
                    self.error();
                    reply("502 5.5.1 Error: command not implemented")
                } else {
                    Step::StartTls("220 2.0.0 Ready to start TLS\r\n".into())
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } if self.limits.mode == Mode::Trap => self.auth(mechanism, initial_response),
            Request::Mail { from } => {
                if !self.greeted {
                    self.error();
                    return reply("503 5.5.1 Error: send HELO/EHLO first");
                }
                if self.mail {
                    self.error();
                    return reply("503 5.5.1 Error: nested MAIL command");
                }
                if from.size > self.limits.max_size {
                    return reply("552 5.3.4 Message size exceeds fixed limit");
                }
                self.mail = true;
                self.env.mail_from = from.address;
                self.env.rcpt_to.clear();
                reply("250 2.1.0 Ok")
            }
            Request::Rcpt { to } => {
                if !self.mail {
                    self.error();
                    return reply("503 5.5.1 Error: need MAIL command");
                }
                if self.env.rcpt_to.len() >= self.limits.max_rcpts {
                    return reply("452 4.5.3 Error: too many recipients");
                }
                self.env.rcpt_to.push(to.address);
                reply("250 2.1.5 Ok")
            }
            Request::Data => {
                if !self.mail {
                    self.error();
                    return reply("503 5.5.1 Error: need MAIL command");
                }
                if self.env.rcpt_to.is_empty() {
                    self.error();
                    return reply("554 5.5.1 Error: no valid recipients");
                }
                let mut rx = DataReceiver::new();
                // The CRLF that ended the DATA command counts towards a `CRLF . CRLF`: an empty
                // message is `DATA\r\n.\r\n`. The receiver starts with no history, so prime it.
                let mut scratch = Vec::new();
                rx.ingest(&mut b"\r\n".iter(), &mut scratch);
                self.state = State::Data(Box::new(rx));
                self.data = Vec::new();
                reply("354 End data with <CR><LF>.<CR><LF>")
            }
            Request::Rset => {
                self.reset();
                reply("250 2.0.0 Ok")
            }
            Request::Noop { .. } => reply("250 2.0.0 Ok"),
            Request::Quit => Step::Close("221 2.0.0 Bye\r\n".into()),
            Request::Vrfy { .. } => reply("252 2.0.0 Send some mail, I'll try my best"),
            Request::Bdat { .. } => {
                self.error();
                reply("502 5.5.1 Error: command not implemented")
            }
            _ => {
                self.error();
                reply("502 5.5.2 Error: command not recognized")
            }
        }
    }

    fn auth(&mut self, mechanism: u64, initial: String) -> Step {
        if self.env.auth_user.is_some() {
            self.error();
            return reply("503 5.5.1 Error: already authenticated");
        }
        if self.mail {
            self.error();
            return reply("503 5.5.1 Error: MAIL transaction in progress");
        }
        if !self.greeted {
            self.error();
            return reply("503 5.5.1 Error: send HELO/EHLO first");
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.state = State::AuthPlain;
                reply("334 ")
            }
            AUTH_PLAIN => self.auth_plain_response(initial.as_bytes()),
            AUTH_LOGIN if initial.is_empty() => {
                self.state = State::AuthLoginUser;
                Step::Reply(format!("334 {LOGIN_USER_CHALLENGE}\r\n"))
            }
            AUTH_LOGIN => self.auth_login_user(initial.as_bytes()),
            _ => {
                self.error();
                reply("535 5.7.8 Error: authentication failed: Invalid authentication mechanism")
            }
        }
    }

    fn cancelled(line: &[u8]) -> bool {
        line == b"*"
    }

    fn auth_plain_response(&mut self, line: &[u8]) -> Step {
        if Self::cancelled(line) {
            return reply("501 5.7.0 Authentication aborted");
        }
        match sasl::decode(&String::from_utf8_lossy(line)).and_then(|d| sasl::plain(&d)) {
            Ok(c) => Step::Login(c),
            Err(_) => {
                self.error();
                reply("501 5.5.2 Error: authentication failed: Invalid base64 data in initial response")
            }
        }
    }

    fn auth_login_user(&mut self, line: &[u8]) -> Step {
        if Self::cancelled(line) {
            return reply("501 5.7.0 Authentication aborted");
        }
        match sasl::decode(&String::from_utf8_lossy(line)) {
            Ok(u) => {
                self.state = State::AuthLoginPass(sasl::lossy(&u));
                Step::Reply(format!("334 {LOGIN_PASS_CHALLENGE}\r\n"))
            }
            Err(_) => {
                self.error();
                reply("501 5.5.2 Error: authentication failed: Invalid base64 data in continued response")
            }
        }
    }

    fn auth_login_pass(&mut self, user: String, line: &[u8]) -> Step {
        if Self::cancelled(line) {
            return reply("501 5.7.0 Authentication aborted");
        }
        match sasl::decode(&String::from_utf8_lossy(line)) {
            Ok(p) => Step::Login(Credentials {
                mechanism: "LOGIN",
                authzid: String::new(),
                username: user,
                password: sasl::lossy(&p),
            }),
            Err(_) => {
                self.error();
                reply("501 5.5.2 Error: authentication failed: Invalid base64 data in continued response")
            }
        }
    }
}

/// `MAIL FROM:<path>` / `RCPT TO:<path>` read loosely: whatever lies between the brackets,
/// if it is printable and of sane length. Returns (is MAIL, path).
fn lenient_path(line: &[u8]) -> Option<(bool, String)> {
    let text = std::str::from_utf8(line).ok()?;
    let prefixed = |p: &str| {
        text.get(..p.len())
            .filter(|h| h.eq_ignore_ascii_case(p))
            .map(|_| &text[p.len()..])
    };
    let (is_mail, rest) = match (prefixed("MAIL FROM:"), prefixed("RCPT TO:")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        (None, None) => return None,
    };
    let inner = rest.trim_start().strip_prefix('<')?;
    let end = inner.find('>')?;
    let path = &inner[..end];
    (path.len() <= 256 && path.chars().all(|c| !c.is_control() && c != ' '))
        .then(|| (is_mail, path.to_string()))
}

fn starts_with_ci(line: &[u8], word: &[u8]) -> bool {
    line.len() >= word.len()
        && line[..word.len()].eq_ignore_ascii_case(word)
        && line.get(word.len()).is_none_or(|b| *b == b' ')
}

#[cfg(test)]
mod tests;
