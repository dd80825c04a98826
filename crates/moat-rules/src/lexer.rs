//! Turns rule source into tokens with byte spans.
//!
//! Cloudflare's syntax writes IP addresses and CIDRs bare (`10.0.0.0/8`, `2001:db8::/32`), and an
//! IPv6 address can start with letters, so words are lexed greedily over identifier, digit, `.`,
//! `:` and `/` characters and classified afterwards rather than by their first character.

use crate::error::ParseError;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'s> {
    /// A field, function or keyword name.
    Word(&'s str),
    /// A decoded string literal (plain or raw).
    Str(String),
    Int(i64),
    /// `a..b` inside an integer set, inclusive as in Cloudflare.
    Range(i64, i64),
    /// An address; `prefixed` tells `10.0.0.0/8` from `10.0.0.0`.
    Ip {
        net: IpNet,
        prefixed: bool,
    },
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Star,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Tilde,
    AndAnd,
    OrOr,
    XorXor,
    Bang,
    Eof,
}

#[derive(Debug, Clone)]
pub(crate) struct Token<'s> {
    pub tok: Tok<'s>,
    pub start: usize,
    pub end: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/')
}

/// Splits the whole source up front; rules are short and the parser then gets cheap lookahead.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b'#' {
            i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n);
            continue;
        }
        let two = bytes.get(i + 1).copied();
        let (tok, len) = match (b, two) {
            (b'"', _) => {
                let (s, end) = plain_string(src, i)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    start,
                    end,
                });
                i = end;
                continue;
            }
            (b'r', Some(b'"' | b'#')) => {
                let (s, end) = raw_string(src, i)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    start,
                    end,
                });
                i = end;
                continue;
            }
            (b'=', Some(b'=')) => (Tok::EqEq, 2),
            (b'!', Some(b'=')) => (Tok::NotEq, 2),
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'&', Some(b'&')) => (Tok::AndAnd, 2),
            (b'|', Some(b'|')) => (Tok::OrOr, 2),
            (b'^', Some(b'^')) => (Tok::XorXor, 2),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'!', _) => (Tok::Bang, 1),
            (b'~', _) => (Tok::Tilde, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'*', _) => (Tok::Star, 1),
            _ if is_word_byte(b) || (b == b'-' && two.is_some_and(|d| d.is_ascii_digit())) => {
                let mut end = i + 1;
                while end < bytes.len() && is_word_byte(bytes[end]) {
                    end += 1;
                }
                let tok = classify(src, start, &src[start..end])?;
                out.push(Token { tok, start, end });
                i = end;
                continue;
            }
            _ => {
                let c = src[i..].chars().next().unwrap_or('?');
                return Err(ParseError::at(
                    src,
                    i,
                    format!("unexpected character `{c}`"),
                ));
            }
        };
        out.push(Token {
            tok,
            start,
            end: i + len,
        });
        i += len;
    }
    out.push(Token {
        tok: Tok::Eof,
        start: src.len(),
        end: src.len(),
    });
    Ok(out)
}

fn classify<'s>(src: &str, at: usize, w: &'s str) -> Result<Tok<'s>, ParseError> {
    let first = w.as_bytes()[0];
    let looks_numeric = first.is_ascii_digit() || first == b'-';
    if w.contains(':') || w.contains('/') || (looks_numeric && w.contains('.')) {
        if let Ok(ip) = w.parse::<IpAddr>() {
            return Ok(Tok::Ip {
                net: IpNet::from(ip),
                prefixed: false,
            });
        }
        if let Ok(net) = w.parse::<IpNet>() {
            return Ok(Tok::Ip {
                net,
                prefixed: true,
            });
        }
        if let Some((a, b)) = w.split_once("..") {
            if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                return Ok(Tok::Range(a, b));
            }
        }
        if looks_numeric || w.contains('/') || w.contains(':') {
            return Err(ParseError::at(
                src,
                at,
                format!("invalid number or IP address `{w}`"),
            ));
        }
    }
    if looks_numeric {
        return w
            .parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| ParseError::at(src, at, format!("invalid integer `{w}`")));
    }
    Ok(Tok::Word(w))
}

/// `"..."` where only `\"` and `\\` are escapes, as in Cloudflare; anything else after a
/// backslash is rejected so a regex written with single backslashes fails loudly instead of
/// silently meaning something else.
fn plain_string(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut s = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        let at = start + 1 + i;
        match c {
            '"' => return Ok((s, at + 1)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => s.push(e),
                Some((_, e)) => {
                    return Err(ParseError::at(
                        src,
                        at,
                        format!(
                            "unknown escape `\\{e}` (only \\\" and \\\\ are allowed; \
                             write regexes as raw strings r\"...\")"
                        ),
                    ))
                }
                None => break,
            },
            c => s.push(c),
        }
    }
    Err(ParseError::at(src, start, "unterminated string"))
}

/// `r"..."`, `r#"..."#`, ...: no escapes at all, closed by a quote and as many hashes.
fn raw_string(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let bytes = src.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] == b'#' {
        i += 1;
    }
    let hashes = i - start - 1;
    if bytes.get(i) != Some(&b'"') {
        return Err(ParseError::at(
            src,
            start,
            "expected `\"` to open the raw string",
        ));
    }
    let body = i + 1;
    let mut closing = String::with_capacity(hashes + 1);
    closing.push('"');
    closing.extend(std::iter::repeat_n('#', hashes));
    match src[body..].find(&closing) {
        Some(n) => Ok((src[body..body + n].to_string(), body + n + closing.len())),
        None => Err(ParseError::at(src, start, "unterminated string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok<'_>> {
        tokenize(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_ips_ints_and_symbols() {
        let net: IpNet = "2001:db8::/32".parse().unwrap();
        assert_eq!(
            toks("ip.src in {2001:db8::/32 10.1.2.3 7 -2 1..5} && x!=y #c\n"),
            vec![
                Tok::Word("ip.src"),
                Tok::Word("in"),
                Tok::LBrace,
                Tok::Ip {
                    net,
                    prefixed: true
                },
                Tok::Ip {
                    net: "10.1.2.3/32".parse().unwrap(),
                    prefixed: false
                },
                Tok::Int(7),
                Tok::Int(-2),
                Tok::Range(1, 5),
                Tok::RBrace,
                Tok::AndAnd,
                Tok::Word("x"),
                Tok::NotEq,
                Tok::Word("y"),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn strings_plain_and_raw() {
        assert_eq!(
            toks(r##""a\"b\\c" r"x\d" r#"q"x"# r"""##),
            vec![
                Tok::Str("a\"b\\c".into()),
                Tok::Str("x\\d".into()),
                Tok::Str("q\"x".into()),
                Tok::Str(String::new()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn bad_input_points_at_the_problem() {
        let e = tokenize("x eq \"abc").unwrap_err();
        assert_eq!((e.message.as_str(), e.column), ("unterminated string", 6));
        let e = tokenize("x eq r#\"abc\"").unwrap_err();
        assert_eq!((e.message.as_str(), e.column), ("unterminated string", 6));
        let e = tokenize("x eq \"a\\d\"").unwrap_err();
        assert!(
            e.message.starts_with("unknown escape `\\d`"),
            "{}",
            e.message
        );
        assert_eq!(e.column, 8);
        let e = tokenize("x eq 1.2.3").unwrap_err();
        assert_eq!(e.column, 6);
        assert!(tokenize("x $ y").unwrap_err().message.contains('$'));
        assert!(tokenize("x eq 99999999999999999999").is_err());
    }
}
