//! Recursive-descent parser from tokens to the compiled tree.
//!
//! Precedence follows Cloudflare: `not` binds tightest, then `and`, then `xor`, then `or`;
//! comparisons are atoms. Fields and types are resolved while parsing so every error can point
//! at the token that caused it.

use crate::ast::{Cmp, Node, Operand, Quant, Span, StrTest, Test};
use crate::compile::{describe, LitKind};
use crate::error::ParseError;
use crate::lexer::{tokenize, Tok, Token};

/// Deep enough for any hand-written rule, shallow enough that a pathological one cannot
/// overflow the stack while parsing, evaluating or dropping.
const MAX_DEPTH: usize = 64;

const KEYWORDS: &[&str] = &[
    "and", "or", "xor", "not", "eq", "ne", "lt", "le", "gt", "ge", "contains", "matches",
    "wildcard", "strict", "in", "true", "false",
];

pub(crate) struct Parsed {
    pub root: Node,
    pub needs_body: bool,
    pub reads_cohort: bool,
}

pub(crate) fn parse(src: &str) -> Result<Parsed, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        prev_end: 0,
        depth: 0,
        in_quant: false,
        needs_body: false,
        reads_cohort: false,
    };
    let root = p.or()?;
    if p.peek().tok != Tok::Eof {
        let what = p.what();
        return Err(p.err(
            p.peek().start,
            format!("unexpected {what}; expected `and`, `or`, `xor` or the end of the rule"),
        ));
    }
    Ok(Parsed {
        root,
        needs_body: p.needs_body,
        reads_cohort: p.reads_cohort,
    })
}

/// The value side of a comparison as parsed, with where it was written.
pub(crate) struct Lhs {
    pub op: Operand,
    pub span: Span,
    /// Written with `[*]`, which only `any()` / `all()` accept.
    pub star: bool,
}

pub(crate) struct Parser<'s> {
    pub(crate) src: &'s str,
    pub(crate) toks: Vec<Token<'s>>,
    pub(crate) pos: usize,
    pub(crate) prev_end: usize,
    pub(crate) depth: usize,
    pub(crate) in_quant: bool,
    pub(crate) needs_body: bool,
    pub(crate) reads_cohort: bool,
}

impl<'s> Parser<'s> {
    pub(crate) fn peek(&self) -> &Token<'s> {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    pub(crate) fn peek2(&self) -> &Tok<'s> {
        &self.toks[(self.pos + 1).min(self.toks.len() - 1)].tok
    }

    pub(crate) fn bump(&mut self) -> Token<'s> {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
            self.prev_end = t.end;
        }
        t
    }

    pub(crate) fn err(&self, at: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, at, msg)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek().tok, Tok::Word(x) if x == w)
    }

    /// The next token as the user wrote it, for messages.
    pub(crate) fn what(&self) -> String {
        let t = self.peek();
        match t.tok {
            Tok::Eof => "end of rule".to_string(),
            _ => format!("`{}`", &self.src[t.start..t.end]),
        }
    }

    pub(crate) fn expect(
        &mut self,
        want: Tok<'static>,
        shown: &str,
        context: &str,
    ) -> Result<(), ParseError> {
        if self.peek().tok == want {
            self.bump();
            return Ok(());
        }
        let what = self.what();
        Err(self.err(
            self.peek().start,
            format!("expected `{shown}` {context}, found {what}"),
        ))
    }

    pub(crate) fn text(&self, s: Span) -> &'s str {
        &self.src[s.start..s.end]
    }

    pub(crate) fn nest(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(at, "expression nested too deeply"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut xs = vec![self.xor()?];
        while self.is_word("or") || self.peek().tok == Tok::OrOr {
            self.bump();
            xs.push(self.xor()?);
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Node::Or(xs)
        })
    }

    fn xor(&mut self) -> Result<Node, ParseError> {
        let mut xs = vec![self.and()?];
        while self.is_word("xor") || self.peek().tok == Tok::XorXor {
            self.bump();
            xs.push(self.and()?);
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Node::Xor(xs)
        })
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut xs = vec![self.unary()?];
        while self.is_word("and") || self.peek().tok == Tok::AndAnd {
            self.bump();
            xs.push(self.unary()?);
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Node::And(xs)
        })
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        if self.is_word("not") || self.peek().tok == Tok::Bang {
            let start = self.bump().start;
            self.nest(start)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Not(
                Box::new(inner),
                Span {
                    start,
                    end: self.prev_end,
                },
            ));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::LParen => {
                self.bump();
                self.nest(t.start)?;
                let inner = self.or()?;
                self.depth -= 1;
                let open = ParseError::at(self.src, t.start, "");
                let ctx = format!(
                    "to close the `(` at line {}, column {}",
                    open.line, open.column
                );
                self.expect(Tok::RParen, ")", &ctx)?;
                Ok(inner)
            }
            Tok::Word("any" | "all") if *self.peek2() == Tok::LParen => self.quantifier(),
            Tok::Word(w @ ("starts_with" | "ends_with")) if *self.peek2() == Tok::LParen => {
                Ok(Node::Cmp(Box::new(self.affix(w == "starts_with")?)))
            }
            Tok::Word(w) if KEYWORDS.contains(&w) => Err(self.err(
                t.start,
                format!("unexpected `{w}`; expected a field, a function or `(`"),
            )),
            Tok::Word(_) => Ok(Node::Cmp(Box::new(self.comparison()?))),
            _ => {
                let what = self.what();
                Err(self.err(
                    t.start,
                    format!("unexpected {what}; expected a field, a function or `(`"),
                ))
            }
        }
    }

    /// `any(LIST[*] op value)` / `all(...)`: the inner comparison, applied per element.
    fn quantifier(&mut self) -> Result<Node, ParseError> {
        let name = self.bump();
        self.bump();
        let outer = self.in_quant;
        self.in_quant = true;
        let body = match self.peek().tok {
            Tok::Word(w @ ("starts_with" | "ends_with")) if *self.peek2() == Tok::LParen => {
                self.affix(w == "starts_with")
            }
            _ => self.comparison(),
        };
        self.in_quant = outer;
        let mut cmp = body?;
        if !matches!(cmp.lhs, Operand::List { .. }) {
            let msg = format!(
                "{}() needs a list such as `http.request.headers.names[*]`, but `{}` is {}",
                self.text(name_span(&name)),
                self.text(cmp.lhs_span),
                describe(&cmp.lhs)
            );
            return Err(self.err(cmp.lhs_span.start, msg));
        }
        let ctx = format!("to close {}(", self.text(name_span(&name)));
        self.expect(Tok::RParen, ")", &ctx)?;
        cmp.quant = if name.tok == Tok::Word("all") {
            Quant::All
        } else {
            Quant::Any
        };
        cmp.span = Span {
            start: name.start,
            end: self.prev_end,
        };
        Ok(Node::Cmp(Box::new(cmp)))
    }

    /// `starts_with(x, "p")` / `ends_with(x, "s")`.
    fn affix(&mut self, starts: bool) -> Result<Cmp, ParseError> {
        let name = self.bump();
        self.bump();
        let lhs = self.operand()?;
        let fname = self.text(name_span(&name));
        if !matches!(lhs.op, Operand::Str { .. } | Operand::List { .. }) {
            let msg = format!(
                "{fname}() takes a string, but `{}` is {}",
                self.text(lhs.span),
                describe(&lhs.op)
            );
            return Err(self.err(lhs.span.start, msg));
        }
        self.expect(
            Tok::Comma,
            ",",
            &format!("between the arguments of {fname}()"),
        )?;
        let lit = self.literal("a string")?;
        let LitKind::Str(s) = lit.kind else {
            return Err(self.err(lit.at, format!("{fname}() compares with a string literal")));
        };
        self.expect(Tok::RParen, ")", &format!("to close {fname}("))?;
        let b = s.into_bytes().into_boxed_slice();
        let test = if starts {
            StrTest::StartsWith(b)
        } else {
            StrTest::EndsWith(b)
        };
        Ok(Cmp {
            lhs: lhs.op,
            quant: Quant::Any,
            negate: false,
            test: Test::Str(test),
            span: Span {
                start: name.start,
                end: self.prev_end,
            },
            lhs_span: lhs.span,
        })
    }
}

fn name_span(t: &Token<'_>) -> Span {
    Span {
        start: t.start,
        end: t.end,
    }
}
