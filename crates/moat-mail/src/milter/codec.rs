//! The Sendmail/Postfix milter wire protocol (version 6), free of I/O.
//!
//! Written here rather than taken from a crate: the only Rust milter implementation is GPL, and
//! the codec is small. Facts from Postfix's MILTER_README and libmilter's documented protocol
//! (`mfdef.h`), checked against Postfix 3.7's `milter8.c` behaviour in the e2e tests:
//!
//! - every packet is a 4-byte big-endian length (counting the command byte), one command byte,
//!   then the data;
//! - strings are NUL-terminated; `SMFIC_MAIL`/`SMFIC_RCPT` carry the address then ESMTP
//!   arguments, each NUL-terminated;
//! - the MTA opens with `SMFIC_OPTNEG` (version, actions it allows, protocol steps it can skip);
//!   the milter answers with the subset it wants;
//! - `SMFIC_MACRO` precedes the command whose macros it carries and gets no reply, nor do
//!   `SMFIC_ABORT` and the quits; every other command gets exactly one reply unless a
//!   `SMFIP_NR_*` flag was negotiated for it.
//!
//! [`Decoder`] turns a byte stream into [`Command`]s; [`Reply::encode`] writes replies. Input is
//! untrusted only in theory (Postfix talks to us over loopback), but the decoder is fuzzed all
//! the same: any byte string yields commands or an error, never a panic or an unbounded buffer.

use std::net::IpAddr;

/// Largest packet accepted. Postfix sends body chunks of at most 64 KiB (`MILTER_CHUNK_SIZE`);
/// header values are bounded by `header_size_limit` (100 KiB by default).
pub const MAX_PACKET: usize = 1 << 20;

/// The protocol version spoken (Postfix's `milter_protocol = 6`, its default).
pub const VERSION: u32 = 6;

/// `SMFIF_*`: what the milter may do to a message.
pub mod action {
    pub const ADDHDRS: u32 = 0x01;
    pub const CHGBODY: u32 = 0x02;
    pub const ADDRCPT: u32 = 0x04;
    pub const DELRCPT: u32 = 0x08;
    pub const CHGHDRS: u32 = 0x10;
    pub const QUARANTINE: u32 = 0x20;
    /// The milter names the macros it wants per stage (appended to its OPTNEG reply).
    pub const SETSYMLIST: u32 = 0x100;
}

/// `SMFIM_*`: the stages a macro list is for.
pub mod stage {
    pub const CONNECT: u32 = 0;
    pub const HELO: u32 = 1;
    pub const ENVFROM: u32 = 2;
    pub const ENVRCPT: u32 = 3;
    pub const DATA: u32 = 4;
    pub const EOM: u32 = 5;
    pub const EOH: u32 = 6;
}

/// `SMFIP_*`: protocol steps the milter does not need (`NO*`) or will not answer (`NR_*`).
pub mod proto {
    pub const NOCONNECT: u32 = 0x1;
    pub const NOHELO: u32 = 0x2;
    pub const NOMAIL: u32 = 0x4;
    pub const NORCPT: u32 = 0x8;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NODATA: u32 = 0x200;
    pub const SKIP: u32 = 0x400;
    pub const RCPT_REJ: u32 = 0x800;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_UNKN: u32 = 0x20000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
    pub const HDR_LEADSPC: u32 = 0x100000;
}

/// The client as `SMFIC_CONNECT` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub hostname: String,
    /// `None` for a unix-socket or unknown client.
    pub addr: Option<IpAddr>,
    pub port: u16,
}

/// One command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// Macros for the command `stage` (its command byte) that follows.
    Macro {
        stage: u8,
        pairs: Vec<(String, String)>,
    },
    Connect(Connect),
    Helo(String),
    /// The envelope sender (brackets kept) and ESMTP arguments.
    Mail(Vec<String>),
    Rcpt(Vec<String>),
    Data,
    Header {
        name: String,
        value: String,
    },
    EndOfHeaders,
    Body(Vec<u8>),
    EndOfMessage,
    Abort,
    Quit,
    /// Quit this session; a new one follows on the same connection.
    QuitNewConnection,
    Unknown(Vec<u8>),
}

impl Command {
    /// The `SMFIP_NR_*` flag that, once negotiated, means this command gets no reply.
    pub fn no_reply_flag(&self) -> Option<u32> {
        Some(match self {
            Command::Connect(_) => proto::NR_CONN,
            Command::Helo(_) => proto::NR_HELO,
            Command::Mail(_) => proto::NR_MAIL,
            Command::Rcpt(_) => proto::NR_RCPT,
            Command::Data => proto::NR_DATA,
            Command::Header { .. } => proto::NR_HDR,
            Command::EndOfHeaders => proto::NR_EOH,
            Command::Body(_) => proto::NR_BODY,
            Command::Unknown(_) => proto::NR_UNKN,
            _ => return None,
        })
    }

    /// Commands that never get a reply, whatever was negotiated.
    pub fn is_silent(&self) -> bool {
        matches!(
            self,
            Command::Macro { .. } | Command::Abort | Command::Quit | Command::QuitNewConnection
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("packet of {0} bytes exceeds the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    #[error("empty packet")]
    Empty,
    #[error("unknown command byte {0:#04x}")]
    UnknownCommand(u8),
    #[error("malformed {0} packet")]
    Malformed(&'static str),
}

/// Splits a byte stream into commands. Feed it what the socket gave; take commands until
/// `decode` returns `Ok(None)`.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Gives back the memory a large packet (a 64 KiB body chunk) left behind once nothing is
    /// pending: thousands of idle sessions must not each keep one.
    pub fn shrink(&mut self) {
        if self.start == self.buf.len() && self.buf.capacity() > 4096 {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Bytes received but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole command, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Command>, CodecError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len == 0 {
            return Err(CodecError::Empty);
        }
        if len > MAX_PACKET {
            return Err(CodecError::TooLarge(len));
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let cmd = parse(avail[4], &avail[5..4 + len])?;
        self.start += 4 + len;
        if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(cmd))
    }
}

/// Parses one packet's command byte and data.
pub fn parse(code: u8, data: &[u8]) -> Result<Command, CodecError> {
    Ok(match code {
        b'O' => {
            if data.len() < 12 {
                return Err(CodecError::Malformed("OPTNEG"));
            }
            let u = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            Command::OptNeg {
                version: u(0),
                actions: u(4),
                protocol: u(8),
            }
        }
        b'D' => {
            let (&stage, rest) = data.split_first().ok_or(CodecError::Malformed("MACRO"))?;
            let strings = strings(rest);
            let mut pairs = Vec::with_capacity(strings.len() / 2);
            let mut it = strings.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Command::Macro { stage, pairs }
        }
        b'C' => Command::Connect(connect(data)?),
        b'H' => Command::Helo(strings(data).into_iter().next().unwrap_or_default()),
        b'M' => Command::Mail(strings(data)),
        b'R' => Command::Rcpt(strings(data)),
        b'T' => Command::Data,
        b'L' => {
            let mut s = strings(data).into_iter();
            let name = s.next().ok_or(CodecError::Malformed("HEADER"))?;
            Command::Header {
                name,
                value: s.next().unwrap_or_default(),
            }
        }
        b'N' => Command::EndOfHeaders,
        b'B' => Command::Body(data.to_vec()),
        b'E' => Command::EndOfMessage,
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitNewConnection,
        b'U' => Command::Unknown(data.to_vec()),
        other => return Err(CodecError::UnknownCommand(other)),
    })
}

/// NUL-terminated strings; a final unterminated one counts too. Invalid UTF-8 is replaced:
/// addresses and header names are ASCII in practice, and a lossy value only affects logging.
fn strings(data: &[u8]) -> Vec<String> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn connect(data: &[u8]) -> Result<Connect, CodecError> {
    let nul = data
        .iter()
        .position(|&b| b == 0)
        .ok_or(CodecError::Malformed("CONNECT"))?;
    let hostname = String::from_utf8_lossy(&data[..nul]).into_owned();
    let rest = &data[nul + 1..];
    let Some((&family, rest)) = rest.split_first() else {
        return Err(CodecError::Malformed("CONNECT"));
    };
    if !matches!(family, b'4' | b'6') {
        // 'L' (unix socket) or 'U' (unknown): no address worth keeping.
        return Ok(Connect {
            hostname,
            addr: None,
            port: 0,
        });
    }
    if rest.len() < 2 {
        return Err(CodecError::Malformed("CONNECT"));
    }
    let port = u16::from_be_bytes([rest[0], rest[1]]);
    let text = strings(&rest[2..]).into_iter().next().unwrap_or_default();
    let text = text.strip_prefix("IPv6:").unwrap_or(&text);
    let addr = text.parse::<IpAddr>().ok().map(|a| a.to_canonical());
    Ok(Connect {
        hostname,
        addr,
        port,
    })
}

/// One reply to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
        /// Macro names wanted per stage (`SMFIM_*`), sent only with `SETSYMLIST`.
        macros: Vec<(u32, String)>,
    },
    Continue,
    /// Accept the message; no more callbacks for it.
    Accept,
    Reject,
    TempFail,
    /// Claim success to the client, deliver nothing.
    Discard,
    /// An SMTP reply such as `550 5.1.1 <a@b>: Recipient address rejected`.
    ReplyCode(String),
    /// Remove a recipient (brackets included, as it was given); only at end of message.
    DelRcpt(String),
    AddHeader {
        name: String,
        value: String,
    },
    Progress,
}

impl Reply {
    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (code, payload): (u8, Vec<u8>) = match self {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            } => {
                let mut p = Vec::with_capacity(12);
                for v in [version, actions, protocol] {
                    p.extend_from_slice(&v.to_be_bytes());
                }
                for (stage, names) in macros {
                    p.extend_from_slice(&stage.to_be_bytes());
                    p.extend(cstr(&[names]));
                }
                (b'O', p)
            }
            Reply::Continue => (b'c', Vec::new()),
            Reply::Accept => (b'a', Vec::new()),
            Reply::Reject => (b'r', Vec::new()),
            Reply::TempFail => (b't', Vec::new()),
            Reply::Discard => (b'd', Vec::new()),
            Reply::Progress => (b'p', Vec::new()),
            Reply::ReplyCode(text) => (b'y', cstr(&[text])),
            Reply::DelRcpt(r) => (b'-', cstr(&[r])),
            Reply::AddHeader { name, value } => (b'h', cstr(&[name, value])),
        };
        out.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
        out.push(code);
        out.extend_from_slice(&payload);
    }
}

/// NUL-terminated strings; embedded NULs (never in what we send) are dropped, not sent.
fn cstr(parts: &[&String]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend(p.bytes().filter(|&b| b != 0));
        v.push(0);
    }
    v
}

/// Encodes a command the way an MTA does: for tests, the load generator and the fuzzer's seeds.
pub fn encode_command(code: u8, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    out.push(code);
    out.extend_from_slice(data);
}

/// The milter's answer to the MTA's offer: what it wants, limited to what was offered; the
/// macro lists only if the MTA lets the milter choose them.
pub fn negotiate(
    offer_actions: u32,
    offer_protocol: u32,
    want_actions: u32,
    want_protocol: u32,
    want_macros: &[(u32, &str)],
) -> Reply {
    let symlist = offer_actions & action::SETSYMLIST != 0 && !want_macros.is_empty();
    Reply::OptNeg {
        version: VERSION,
        actions: offer_actions & want_actions | if symlist { action::SETSYMLIST } else { 0 },
        protocol: offer_protocol & want_protocol,
        macros: if symlist {
            want_macros
                .iter()
                .map(|(s, n)| (*s, n.to_string()))
                .collect()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests;
