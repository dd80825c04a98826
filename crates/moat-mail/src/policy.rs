//! Postfix's SMTP access policy delegation protocol (SMTPD_POLICY_README), without I/O.
//!
//! A request is `name=value` lines ended by an empty line; the reply is one `action=…` line and
//! an empty line. Connections are persistent, one request at a time. Anything that is not that
//! (an over-long line, too many attributes, a line without `=`, a NUL) is an error: the caller
//! logs it and closes the connection, which Postfix handles by reconnecting (and, if Moat keeps
//! failing, by its `default_action`, which the docs recommend setting to `DUNNO`).

/// Bounds on what one request may hold. Postfix sends about 30 attributes; certificate subjects
/// are the longest values, well under 1 KiB.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line: usize,
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4096,
            max_attrs: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("more than {0} attributes")]
    TooManyAttributes(usize),
    #[error("a line without `=`")]
    NoEquals,
    #[error("a NUL byte")]
    Nul,
    #[error("an empty request")]
    Empty,
}

/// One policy request: the attributes as Postfix sent them (unknown names kept, as the protocol
/// says to ignore rather than reject them). Stored as one text buffer and offsets, so a request
/// of 30 attributes costs two allocations, not sixty: this runs for every SMTP command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    text: String,
    /// (start of name, position of `=`, end of value) in `text`.
    spans: Vec<(u32, u32, u32)>,
}

impl PolicyRequest {
    /// The value of `name`, `""` when absent (the last one wins if Postfix repeated it).
    pub fn get(&self, name: &str) -> &str {
        self.spans
            .iter()
            .rev()
            .find(|&&(s, e, _)| &self.text[s as usize..e as usize] == name)
            .map_or("", |&(_, e, end)| &self.text[e as usize + 1..end as usize])
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut r = PolicyRequest::default();
        for (k, v) in pairs {
            r.push(k.as_bytes(), v.as_bytes());
        }
        r
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.text.len() as u32;
        self.text.push_str(&String::from_utf8_lossy(name));
        let eq = self.text.len() as u32;
        self.text.push('=');
        self.text.push_str(&String::from_utf8_lossy(value));
        self.spans.push((start, eq, self.text.len() as u32));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Collects lines into requests.
#[derive(Debug, Default)]
pub struct Parser {
    limits: Limits,
    current: PolicyRequest,
}

impl Parser {
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            current: PolicyRequest {
                text: String::with_capacity(1024),
                spans: Vec::with_capacity(40),
            },
        }
    }

    /// Feeds one line, without its `\n` (a trailing `\r` is tolerated). Returns the request
    /// when the line was the empty one that ends it.
    pub fn line(&mut self, line: &[u8]) -> Result<Option<PolicyRequest>, PolicyError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.limits.max_line {
            return Err(PolicyError::LineTooLong(self.limits.max_line));
        }
        if line.contains(&0) {
            return Err(PolicyError::Nul);
        }
        if line.is_empty() {
            if self.current.is_empty() {
                return Err(PolicyError::Empty);
            }
            let next = PolicyRequest {
                text: String::with_capacity(self.current.text.len()),
                spans: Vec::with_capacity(self.current.spans.len()),
            };
            return Ok(Some(std::mem::replace(&mut self.current, next)));
        }
        let eq = line
            .iter()
            .position(|&b| b == b'=')
            .ok_or(PolicyError::NoEquals)?;
        if self.current.len() >= self.limits.max_attrs {
            return Err(PolicyError::TooManyAttributes(self.limits.max_attrs));
        }
        self.current.push(&line[..eq], &line[eq + 1..]);
        Ok(None)
    }

    /// The longest line the reader should accept before giving up (the limit plus `\r\n`).
    pub fn max_line(&self) -> usize {
        self.limits.max_line + 2
    }
}

/// The reply for `action` (`DUNNO`, `450 4.7.1 text`, `FILTER smtp:[127.0.0.1]:10026`, …).
/// Line breaks in the action would end the reply early, so they are replaced.
pub fn reply(action: &str) -> String {
    let clean: String = action
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("action={clean}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut Parser, text: &[u8]) -> Vec<Result<Option<PolicyRequest>, PolicyError>> {
        // Lines end with `\n`; what follows the last one is not a line.
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        body.split(|&b| b == b'\n').map(|l| p.line(l)).collect()
    }

    #[test]
    fn requests_on_a_persistent_connection() {
        let mut p = Parser::new(Limits::default());
        let text = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\nrecipient=a@b.example\nx=y=z\n\nrequest=smtpd_access_policy\nprotocol_state=DATA\r\n\r\n";
        let out = feed(&mut p, text);
        let reqs: Vec<_> = out.into_iter().filter_map(|r| r.unwrap()).collect();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].get("recipient"), "a@b.example");
        assert_eq!(reqs[0].get("x"), "y=z", "values may hold =");
        assert_eq!(reqs[0].get("absent"), "");
        assert_eq!(reqs[1].get("protocol_state"), "DATA");
        assert_eq!(
            reqs[1].get("recipient"),
            "",
            "nothing leaks between requests"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let mut p = Parser::new(Limits {
            max_line: 10,
            max_attrs: 2,
        });
        assert_eq!(p.line(b"GET / HTTP/1.1"), Err(PolicyError::LineTooLong(10)));
        assert_eq!(p.line(b"hello"), Err(PolicyError::NoEquals));
        assert_eq!(p.line(b"a=\0"), Err(PolicyError::Nul));
        let mut p = Parser::new(Limits {
            max_line: 10,
            max_attrs: 2,
        });
        assert_eq!(p.line(b""), Err(PolicyError::Empty));
        p.line(b"a=1").unwrap();
        p.line(b"b=1").unwrap();
        assert_eq!(p.line(b"c=1"), Err(PolicyError::TooManyAttributes(2)));
    }

    #[test]
    fn replies_are_one_line() {
        assert_eq!(reply("DUNNO"), "action=DUNNO\n\n");
        assert_eq!(reply("REJECT a\nb"), "action=REJECT a b\n\n");
    }
}
