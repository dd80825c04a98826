//! One milter session's decisions, free of I/O: commands in, [`Outcome`]s out.
//!
//! What it decides, per message:
//! - **a honey login** (`{auth_authen}` names a honey account): every step continues, headers
//!   and body are collected, and at the end the message is handed back as [`Capture`] for the
//!   quarantine; the server answers `Discard` only once it is on disk, so the bot sees `250`
//!   and nothing is queued or delivered;
//! - **an unauthenticated stranger** (with `hide_recipients`): every recipient gets the same
//!   `Continue` at `RCPT`, so valid and unknown addresses are indistinguishable; unknown ones in
//!   our domains are remembered and deleted at the end of the message (`DelRcpt`, or `Discard`
//!   when none is left), and the sender may get a DSN ([`Bounce`]) if it proves to be real;
//! - **an authenticated user or an allowlisted client** is never hidden from: Postfix answers
//!   for its recipients as it would without Moat (the documented `reject_unlisted_recipient`
//!   after Moat's policy on port 25; a bounce to the authenticated sender on submission);
//! - **anything else** is accepted at `DATA`, so Postfix sends neither headers nor body.
//!
//! Postfix opens a milter connection per SMTP session and waits for every reply, so the
//! session answers only where it can say something else than "continue": the negotiation,
//! `DATA` (accept, or go on) and the end of the message. Everything else is negotiated as
//! no-reply.

use super::codec::{action, proto, stage, Command, Connect, Reply};
use moat_trap::quarantine::Meta;
use std::net::IpAddr;

/// What a recipient is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptClass {
    /// A real mailbox (or a catch-all covers it).
    Known,
    /// In one of our domains, but no such mailbox.
    UnknownLocal,
    /// Not one of our domains (Postfix's relay rules decide).
    Foreign,
}

/// What the session asks of the mail shield; memory lookups only, no I/O.
pub trait MilterPolicy {
    fn is_honey(&self, login: &str) -> bool;
    /// Allowlisted: treated like an authenticated user (honest answers).
    fn is_trusted(&self, client: IpAddr) -> bool;
    fn classify(&self, recipient: &str) -> RcptClass;
    fn hide_recipients(&self) -> bool;
    /// A hidden unknown recipient, for enumeration counting (offences, prefix bans).
    fn unknown_recipient(&self, client: IpAddr, sender: &str);
    /// A honey account's message is in the quarantine (under `id`): an event for the bus, so
    /// that the dashboard, the event stream and the digest count milter captures beside the
    /// trap's.
    fn captured(&self, client: IpAddr, login: &str, id: &str);
}

/// The milter's wishes at negotiation: remove recipients; skip what it never reads, and do
/// not answer steps where it would only say "continue" (fewer round trips per message).
pub const WANT_ACTIONS: u32 = action::DELRCPT;
/// `CONNECT` is skipped when the MTA takes macro lists: the client's address comes with `MAIL`
/// instead (see `WANT_MACROS`), one packet fewer per SMTP session.
pub const WANT_PROTOCOL: u32 = proto::NOUNKNOWN
    | proto::NOCONNECT
    | proto::NR_CONN
    | proto::NR_HELO
    | proto::NR_MAIL
    | proto::NR_RCPT
    | proto::NR_HDR
    | proto::NR_EOH
    | proto::NR_BODY
    | proto::HDR_LEADSPC;

/// Only the macros the session reads, each once and all in one packet with `MAIL` where
/// possible: Postfix then sends no macro packet at the other stages (one write and one
/// wake-up fewer each). `{auth_authen}` must come with MAIL, which is where Postfix's default
/// list has it too; Postfix evaluates the others whenever asked. The queue id is read only for
/// a DSN, so it comes with the end of the message, which an accepted message never reaches.
pub const WANT_MACROS: &[(u32, &str)] = &[
    (stage::CONNECT, ""),
    (stage::HELO, ""),
    (
        stage::ENVFROM,
        "{auth_authen} {tls_version} {client_addr} {client_port}",
    ),
    (stage::ENVRCPT, ""),
    (stage::DATA, ""),
    (stage::EOH, ""),
    (stage::EOM, "i"),
];

/// Honey mail is kept whole up to this size; past it the bot is told to retry (it never is
/// relayed either way).
pub const MAX_CAPTURE: usize = 64 << 20;
/// A message with dropped recipients is kept this far for the DKIM check of its sender.
pub const MAX_FILTERED: usize = 4 << 20;

/// A honey account's message, for the quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub meta: Meta,
    pub data: Vec<u8>,
}

/// Recipients dropped from a message, for a DSN if the sender is authentic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub client: Option<IpAddr>,
    pub helo: String,
    /// Without brackets; empty for the null sender (which never gets a DSN).
    pub sender: String,
    pub recipients: Vec<String>,
    pub queue_id: String,
    /// Headers and body as far as kept (for DKIM); may be cut at [`MAX_FILTERED`].
    pub message: Vec<u8>,
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No reply (macros, abort, or a step negotiated as no-reply).
    Silent,
    Reply(Reply),
    /// Store it, then answer `Discard` (or `TempFail` if it could not be stored).
    Capture(Box<Capture>),
    /// Answer these in order (deletions, then the final reply); then maybe send a DSN.
    Drop(Vec<Reply>, Box<Bounce>),
    /// The MTA ended the session.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// Accepted at DATA: nothing more to see.
    #[default]
    Pass,
    Honey,
    /// Unknown recipients were hidden: keep the message for the sender's DKIM check.
    Filter,
}

#[derive(Debug, Default)]
pub struct Session {
    /// `SMFIP_*` flags agreed at negotiation.
    protocol: u32,
    /// `SMFIF_*` actions the MTA granted: without `DELRCPT` nothing can be hidden.
    actions: u32,
    /// `DATA` (or, from an MTA that does not send it, the first header or the end) was seen.
    in_data: bool,
    client: Option<Connect>,
    helo: String,
    tls: bool,
    auth: String,
    queue_id: String,
    sender: String,
    rcpts: Vec<String>,
    dropped: Vec<String>,
    mode: Mode,
    data: Vec<u8>,
    overflow: bool,
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn handle(&mut self, cmd: Command, policy: &dyn MilterPolicy) -> Outcome {
        let no_reply = cmd.no_reply_flag().is_some_and(|f| self.protocol & f != 0);
        let reply = |r: Reply| {
            if no_reply {
                Outcome::Silent
            } else {
                Outcome::Reply(r)
            }
        };
        match cmd {
            Command::OptNeg {
                actions, protocol, ..
            } => {
                let r = super::codec::negotiate(
                    actions,
                    protocol,
                    WANT_ACTIONS,
                    WANT_PROTOCOL,
                    WANT_MACROS,
                );
                let r = match r {
                    // Without macro lists the client's address would never come.
                    Reply::OptNeg {
                        version,
                        actions,
                        protocol,
                        macros,
                    } if actions & action::SETSYMLIST == 0 => Reply::OptNeg {
                        version,
                        actions,
                        protocol: protocol & !proto::NOCONNECT,
                        macros,
                    },
                    r => r,
                };
                if let Reply::OptNeg {
                    protocol, actions, ..
                } = r
                {
                    self.protocol = protocol;
                    self.actions = actions;
                }
                Outcome::Reply(r)
            }
            Command::Macro { pairs, .. } => {
                for (k, v) in pairs {
                    match k.as_str() {
                        "{auth_authen}" => self.auth = v,
                        "i" => self.queue_id = v,
                        // Set once the client is on TLS (STARTTLS or port 465).
                        "{tls_version}" if !v.is_empty() => self.tls = true,
                        // Instead of CONNECT (negotiated away); a CONNECT, if one came, knew.
                        "{client_addr}" if self.client.as_ref().and_then(|c| c.addr).is_none() => {
                            self.client = Some(Connect {
                                hostname: String::new(),
                                addr: v.parse().ok(),
                                port: 0,
                            })
                        }
                        "{client_port}" => {
                            if let (Some(c), Ok(p)) = (self.client.as_mut(), v.parse()) {
                                if c.port == 0 {
                                    c.port = p;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Outcome::Silent
            }
            Command::Connect(c) => {
                self.client = Some(c);
                reply(Reply::Continue)
            }
            Command::Helo(h) => {
                self.helo = h;
                reply(Reply::Continue)
            }
            Command::Mail(args) => {
                self.reset_message();
                self.sender = args.into_iter().next().unwrap_or_default();
                if !self.auth.is_empty() && policy.is_honey(&self.auth) {
                    self.mode = Mode::Honey;
                }
                reply(Reply::Continue)
            }
            Command::Rcpt(args) => {
                let rcpt = args.into_iter().next().unwrap_or_default();
                self.rcpt(&rcpt, policy);
                self.rcpts.push(rcpt);
                reply(Reply::Continue)
            }
            Command::Data => {
                self.enter_data();
                reply(match self.mode {
                    Mode::Pass => Reply::Accept,
                    _ => Reply::Continue,
                })
            }
            Command::Header { name, value } => {
                self.enter_data();
                if self.mode != Mode::Pass {
                    let leadspc = self.protocol & proto::HDR_LEADSPC != 0;
                    let mut line = Vec::with_capacity(name.len() + value.len() + 4);
                    line.extend_from_slice(name.as_bytes());
                    line.push(b':');
                    if !leadspc {
                        line.push(b' ');
                    }
                    push_crlf(&mut line, value.as_bytes());
                    line.extend_from_slice(b"\r\n");
                    self.keep(&line);
                }
                reply(Reply::Continue)
            }
            Command::EndOfHeaders => {
                self.enter_data();
                if self.mode != Mode::Pass {
                    self.keep(b"\r\n");
                }
                reply(Reply::Continue)
            }
            Command::Body(chunk) => {
                self.enter_data();
                if self.mode != Mode::Pass {
                    self.keep(&chunk);
                }
                reply(Reply::Continue)
            }
            Command::EndOfMessage => {
                self.enter_data();
                self.end_of_message()
            }
            Command::Abort => {
                self.reset_message();
                Outcome::Silent
            }
            Command::Quit => Outcome::Close,
            Command::QuitNewConnection => {
                let (protocol, actions) = (self.protocol, self.actions);
                *self = Session {
                    protocol,
                    actions,
                    ..Session::default()
                };
                Outcome::Silent
            }
            Command::Unknown(_) => reply(Reply::Continue),
        }
    }

    /// The message's content begins: the moment to know whether it must be kept.
    fn enter_data(&mut self) {
        if self.in_data {
            return;
        }
        self.in_data = true;
        if self.mode == Mode::Pass && !self.dropped.is_empty() {
            self.mode = Mode::Filter;
        }
    }

    /// Every recipient gets the same `continue`; an unknown local one from a stranger is
    /// remembered, to be dropped at the end of the message.
    fn rcpt(&mut self, rcpt: &str, policy: &dyn MilterPolicy) {
        if self.mode == Mode::Honey
            || !policy.hide_recipients()
            || self.actions & action::DELRCPT == 0
            || self.dropped.iter().any(|d| d == rcpt)
        {
            return;
        }
        let client = self.client.as_ref().and_then(|c| c.addr);
        let honest = !self.auth.is_empty() || client.is_some_and(|c| policy.is_trusted(c));
        if honest || policy.classify(rcpt) != RcptClass::UnknownLocal {
            return;
        }
        if let Some(c) = client {
            policy.unknown_recipient(c, bare(&self.sender));
        }
        self.dropped.push(rcpt.to_string());
    }

    fn end_of_message(&mut self) -> Outcome {
        let data = std::mem::take(&mut self.data);
        let outcome = match self.mode {
            Mode::Honey if self.overflow => Outcome::Reply(Reply::ReplyCode(
                "452 4.3.4 Message too large for now, try again later".into(),
            )),
            Mode::Honey => {
                let c = self.client.as_ref();
                Outcome::Capture(Box::new(Capture {
                    meta: Meta {
                        client_ip: c
                            .and_then(|c| c.addr)
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        client_port: c.map_or(0, |c| c.port),
                        helo: self.helo.clone(),
                        mail_from: bare(&self.sender).to_string(),
                        rcpt_to: self.rcpts.iter().map(|r| bare(r).to_string()).collect(),
                        auth_user: Some(self.auth.clone()),
                        tls: self.tls,
                        listener: "milter".into(),
                        ..Meta::default()
                    },
                    data,
                }))
            }
            Mode::Filter => {
                let left = self
                    .rcpts
                    .iter()
                    .filter(|r| !self.dropped.contains(r))
                    .count();
                let mut replies: Vec<Reply> = if left == 0 {
                    Vec::new()
                } else {
                    self.dropped
                        .iter()
                        .map(|r| Reply::DelRcpt(r.clone()))
                        .collect()
                };
                replies.push(if left == 0 {
                    Reply::Discard
                } else {
                    Reply::Continue
                });
                Outcome::Drop(
                    replies,
                    Box::new(Bounce {
                        client: self.client.as_ref().and_then(|c| c.addr),
                        helo: self.helo.clone(),
                        sender: bare(&self.sender).to_string(),
                        recipients: self.dropped.iter().map(|r| bare(r).to_string()).collect(),
                        queue_id: self.queue_id.clone(),
                        message: data,
                        complete: !self.overflow,
                    }),
                )
            }
            Mode::Pass => Outcome::Reply(Reply::Continue),
        };
        self.reset_message();
        outcome
    }

    fn keep(&mut self, bytes: &[u8]) {
        let cap = if self.mode == Mode::Honey {
            MAX_CAPTURE
        } else {
            MAX_FILTERED
        };
        if self.data.len() + bytes.len() > cap {
            self.overflow = true;
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    fn reset_message(&mut self) {
        self.sender.clear();
        self.rcpts.clear();
        self.dropped.clear();
        self.mode = Mode::Pass;
        self.in_data = false;
        self.data = Vec::new();
        self.overflow = false;
    }

    /// The SASL login of the current transaction (empty if none).
    pub fn auth(&self) -> &str {
        &self.auth
    }
}

/// An address without its angle brackets.
pub fn bare(a: &str) -> &str {
    let a = a.trim();
    a.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(a)
}

/// Copies a header value, turning the bare `\n` of folded lines into `\r\n`.
fn push_crlf(out: &mut Vec<u8>, v: &[u8]) {
    let mut prev = 0u8;
    for &b in v {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

#[cfg(test)]
mod tests;
