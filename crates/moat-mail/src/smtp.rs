//! The SMTP server side of the capture listener, without I/O.
//!
//! Postfix hands a honey account's mail here (`FILTER smtp:[127.0.0.1]:PORT`); the session
//! accepts it like any MTA would and gives the caller the message to make durable *before* the
//! `250` goes back (see [`Step::Deliver`]). Only what Postfix's SMTP client uses is spoken:
//! EHLO/HELO, XFORWARD (so the original client and HELO are recorded), MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT. Anything else gets an error reply; a line over the limit closes the session.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// XFORWARD attributes from Postfix: NAME, ADDR, PROTO, HELO, SOURCE, IDENT.
    pub xforward: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this reply and carry on.
    Reply(String),
    /// Nothing to send yet (a line of message data).
    Continue,
    /// A whole message: store it durably, then send [`Session::delivered`]'s reply.
    Deliver(Envelope, Vec<u8>),
    /// Send this reply and close.
    Close(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Command,
    Data,
}

#[derive(Debug)]
pub struct Session {
    hostname: String,
    max_size: usize,
    max_rcpts: usize,
    state: State,
    env: Envelope,
    data: Vec<u8>,
    too_big: bool,
    /// A MAIL command opened a transaction (the null sender leaves `mail_from` empty).
    mail: bool,
}

/// The longest command line accepted (RFC 5321 says 512; XFORWARD lines run longer).
pub const MAX_COMMAND: usize = 2048;
/// The longest data line accepted (RFC 5321 says 1000).
pub const MAX_DATA_LINE: usize = 64 * 1024;

impl Session {
    pub fn new(hostname: &str, max_size: usize) -> Self {
        Session {
            hostname: hostname.to_string(),
            max_size,
            max_rcpts: 1000,
            state: State::Command,
            env: Envelope::default(),
            data: Vec::new(),
            too_big: false,
            mail: false,
        }
    }

    pub fn greeting(&self) -> String {
        format!("220 {} Moat capture ESMTP\r\n", self.hostname)
    }

    pub fn in_data(&self) -> bool {
        self.state == State::Data
    }

    /// The longest line the reader should accept in the current state.
    pub fn max_line(&self) -> usize {
        match self.state {
            State::Command => MAX_COMMAND,
            State::Data => MAX_DATA_LINE,
        }
    }

    /// The reply after the message was stored, with the id it was stored under.
    pub fn delivered(&mut self, id: &str) -> String {
        format!("250 2.0.0 Ok: captured as {id}\r\n")
    }

    /// One line, without its CRLF.
    pub fn line(&mut self, line: &[u8]) -> Step {
        match self.state {
            State::Data => self.data_line(line),
            State::Command => self.command(line),
        }
    }

    fn data_line(&mut self, line: &[u8]) -> Step {
        if line == b"." {
            self.state = State::Command;
            self.mail = false;
            let data = std::mem::take(&mut self.data);
            let env = std::mem::take(&mut self.env);
            if std::mem::take(&mut self.too_big) {
                return Step::Reply("552 5.3.4 Message too big\r\n".into());
            }
            return Step::Deliver(env, data);
        }
        // Dot-unstuffing (RFC 5321 4.5.2).
        let line = line.strip_prefix(b".").unwrap_or(line);
        if self.data.len() + line.len() + 2 > self.max_size {
            self.too_big = true;
            self.data.clear();
        } else if !self.too_big {
            self.data.extend_from_slice(line);
            self.data.extend_from_slice(b"\r\n");
        }
        Step::Continue
    }

    fn command(&mut self, line: &[u8]) -> Step {
        let text = String::from_utf8_lossy(line);
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (text.trim().to_ascii_uppercase(), String::new()),
        };
        let ok = |s: &str| Step::Reply(format!("{s}\r\n"));
        match verb.as_str() {
            "EHLO" => {
                self.mail = false;
                self.env = Envelope {
                    helo: arg,
                    ..Default::default()
                };
                Step::Reply(format!(
                    "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-XFORWARD NAME ADDR PROTO HELO SOURCE IDENT\r\n250 SMTPUTF8\r\n",
                    self.hostname, self.max_size
                ))
            }
            "HELO" => {
                self.mail = false;
                self.env = Envelope {
                    helo: arg,
                    ..Default::default()
                };
                Step::Reply(format!("250 {}\r\n", self.hostname))
            }
            "XFORWARD" => {
                for kv in arg.split_whitespace() {
                    if let Some((k, v)) = kv.split_once('=') {
                        if self.env.xforward.len() < 16 {
                            self.env
                                .xforward
                                .push((k.to_ascii_uppercase(), v.to_string()));
                        }
                    }
                }
                ok("250 2.0.0 Ok")
            }
            "MAIL" => match path_arg(&arg, "FROM:") {
                Some(from) => {
                    self.mail = true;
                    self.env.mail_from = from;
                    self.env.rcpt_to.clear();
                    ok("250 2.1.0 Ok")
                }
                None => ok("501 5.5.4 Syntax: MAIL FROM:<address>"),
            },
            "RCPT" => match path_arg(&arg, "TO:") {
                _ if !self.mail => ok("503 5.5.1 Error: need MAIL command"),
                Some(_) if self.env.rcpt_to.len() >= self.max_rcpts => {
                    ok("452 4.5.3 Error: too many recipients")
                }
                Some(to) => {
                    self.env.rcpt_to.push(to);
                    ok("250 2.1.5 Ok")
                }
                None => ok("501 5.5.4 Syntax: RCPT TO:<address>"),
            },
            "DATA" => {
                if self.env.rcpt_to.is_empty() {
                    return ok("554 5.5.1 Error: no valid recipients");
                }
                self.state = State::Data;
                self.data.clear();
                ok("354 End data with <CR><LF>.<CR><LF>")
            }
            "RSET" => {
                self.mail = false;
                let helo = std::mem::take(&mut self.env.helo);
                self.env = Envelope {
                    helo,
                    ..Default::default()
                };
                ok("250 2.0.0 Ok")
            }
            "NOOP" => ok("250 2.0.0 Ok"),
            "QUIT" => Step::Close("221 2.0.0 Bye\r\n".into()),
            _ => ok("502 5.5.2 Error: command not recognized"),
        }
    }
}

/// `FROM:<a@b> SIZE=10` → `a@b` (and `<>` → ``, which callers treat as the null sender).
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let rest = arg.get(..prefix.len())?;
    if !rest.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Session, lines: &[&str]) -> Vec<Step> {
        lines.iter().map(|l| s.line(l.as_bytes())).collect()
    }

    #[test]
    fn a_postfix_delivery_with_xforward() {
        let mut s = Session::new("capture.moat", 1 << 20);
        assert!(s.greeting().starts_with("220 "));
        let steps = run(
            &mut s,
            &[
                "EHLO mx.moat.test",
                "XFORWARD NAME=bot.example ADDR=127.10.0.5 PROTO=ESMTP HELO=bot",
                "MAIL FROM:<info@moat.test> SIZE=42",
                "RCPT TO:<victim1@example.org>",
                "RCPT TO:<victim2@example.net>",
                "DATA",
                "Subject: hi",
                "",
                "..leading dot",
                "body",
                ".",
                "QUIT",
            ],
        );
        assert!(matches!(&steps[0], Step::Reply(r) if r.contains("XFORWARD")));
        let Step::Deliver(env, data) = &steps[10] else {
            panic!("{steps:?}");
        };
        assert_eq!(env.mail_from, "info@moat.test");
        assert_eq!(env.rcpt_to, ["victim1@example.org", "victim2@example.net"]);
        assert!(env.xforward.contains(&("ADDR".into(), "127.10.0.5".into())));
        assert_eq!(data, b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");
        assert_eq!(steps[11], Step::Close("221 2.0.0 Bye\r\n".into()));
    }

    #[test]
    fn out_of_order_and_unknown_commands_get_errors() {
        let mut s = Session::new("c", 1 << 20);
        let steps = run(
            &mut s,
            &[
                "RCPT TO:<a@b>",
                "DATA",
                "MAIL FROM:broken",
                "VRFY x",
                "NOOP",
            ],
        );
        let codes: Vec<&str> = steps
            .iter()
            .map(|s| match s {
                Step::Reply(r) => &r[..3],
                _ => "?",
            })
            .collect();
        assert_eq!(codes, ["503", "554", "501", "502", "250"]);
    }

    #[test]
    fn oversized_messages_are_refused_whole() {
        let mut s = Session::new("c", 10);
        run(&mut s, &["HELO x", "MAIL FROM:<>", "RCPT TO:<a@b>", "DATA"]);
        assert_eq!(s.line(b"0123456789abc"), Step::Continue);
        assert_eq!(
            s.line(b"."),
            Step::Reply("552 5.3.4 Message too big\r\n".into())
        );
        assert!(!s.in_data());
    }
}
