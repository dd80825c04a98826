//! Parsing of one comparison: the value side (fields, `[...]`, `lower`/`upper`/`len`), the
//! operator and the literal or set after it.
//!
//! Split from `parser.rs`, which handles the logical structure, so that each stays readable;
//! this half is where field names and types are resolved.

use crate::ast::{Case, Cmp, JsonStep, LenOf, ListBase, Operand, OrdOp, Quant, Span};
use crate::ast::{StrBase, Test};
use crate::compile::{self, describe, Lit, LitKind, Op, Rhs};
use crate::error::ParseError;
use crate::fields::{self, FieldDef};
use crate::lexer::Tok;
use crate::parser::{Lhs, Parser};

impl<'s> Parser<'s> {
    pub(crate) fn comparison(&mut self) -> Result<Cmp, ParseError> {
        let lhs = self.operand()?;
        let lhs_text = self.text(lhs.span);
        let Some(op) = self.operator() else {
            if let Operand::Bool(_) = lhs.op {
                let (span, lhs_span) = (lhs.span, lhs.span);
                let test = Test::Bool(true);
                return Ok(Cmp {
                    lhs: lhs.op,
                    quant: Quant::Any,
                    negate: false,
                    test,
                    span,
                    lhs_span,
                });
            }
            let what = self.what();
            let msg = format!(
                "expected an operator (eq, ne, contains, matches, in, ...) after `{lhs_text}` \
                 ({}), found {what}",
                describe(&lhs.op)
            );
            return Err(self.err(self.peek().start, msg));
        };
        let op_at = self.bump().start;
        if op == (Op::Wildcard { strict: true }) {
            self.bump();
        }
        let rhs = if op == Op::In {
            let ctx = format!("after `{}`", &self.src[op_at..self.prev_end]);
            self.expect(Tok::LBrace, "{", &ctx)?;
            let mut members = Vec::new();
            while !matches!(self.peek().tok, Tok::RBrace | Tok::Eof) {
                if self.peek().tok == Tok::Comma {
                    self.bump();
                    continue;
                }
                members.push(self.literal("a set member")?);
            }
            self.expect(Tok::RBrace, "}", "to close the set")?;
            Rhs::Set(members)
        } else {
            let lit = self.literal("a value")?;
            if let LitKind::Range(..) = lit.kind {
                return Err(self.err(lit.at, "a range is only allowed inside `in {...}`"));
            }
            Rhs::One(lit)
        };
        let (test, negate) = compile::test(self.src, &lhs.op, lhs_text, op, op_at, rhs)?;
        let span = Span {
            start: lhs.span.start,
            end: self.prev_end,
        };
        // `headers["x"] ne "1"` should read as "no value is 1" (true when the header is
        // absent), not "some value is not 1": every element unequal. Inside any()/all() the
        // caller replaces the quantifier, keeping the per-element meaning there.
        let quant = if negate { Quant::All } else { Quant::Any };
        Ok(Cmp {
            lhs: lhs.op,
            quant,
            negate,
            test,
            span,
            lhs_span: lhs.span,
        })
    }

    /// The comparison operator at the cursor, without consuming it.
    fn operator(&self) -> Option<Op> {
        Some(match self.peek().tok {
            Tok::EqEq | Tok::Word("eq") => Op::Eq,
            Tok::NotEq | Tok::Word("ne") => Op::Ne,
            Tok::Lt | Tok::Word("lt") => Op::Ord(OrdOp::Lt),
            Tok::Le | Tok::Word("le") => Op::Ord(OrdOp::Le),
            Tok::Gt | Tok::Word("gt") => Op::Ord(OrdOp::Gt),
            Tok::Ge | Tok::Word("ge") => Op::Ord(OrdOp::Ge),
            Tok::Tilde | Tok::Word("matches") => Op::Matches,
            Tok::Word("contains") => Op::Contains,
            Tok::Word("wildcard") => Op::Wildcard { strict: false },
            Tok::Word("strict") if *self.peek2() == Tok::Word("wildcard") => {
                Op::Wildcard { strict: true }
            }
            Tok::Word("in") => Op::In,
            _ => return None,
        })
    }

    pub(crate) fn literal(&mut self, what: &str) -> Result<Lit, ParseError> {
        let t = self.peek().clone();
        let kind = match t.tok {
            Tok::Str(s) => LitKind::Str(s),
            Tok::Int(n) => LitKind::Int(n),
            Tok::Range(a, b) => LitKind::Range(a, b),
            Tok::Ip { net, prefixed } => LitKind::Ip { net, prefixed },
            Tok::Word("true") => LitKind::Bool(true),
            Tok::Word("false") => LitKind::Bool(false),
            _ => {
                let found = self.what();
                let msg = format!(
                    "expected {what} (a string, number, IP address, true or false), found {found}"
                );
                return Err(self.err(t.start, msg));
            }
        };
        self.bump();
        Ok(Lit { kind, at: t.start })
    }

    /// A field (with any `[...]` after it) or `lower()` / `upper()` / `len()` of one.
    pub(crate) fn operand(&mut self) -> Result<Lhs, ParseError> {
        let t = self.peek().clone();
        let Tok::Word(name) = t.tok else {
            let what = self.what();
            return Err(self.err(t.start, format!("expected a field, found {what}")));
        };
        if *self.peek2() == Tok::LParen {
            return self.call(name);
        }
        let def = fields::lookup(name)
            .ok_or_else(|| self.err(t.start, format!("unknown field `{name}`")))?;
        self.bump();
        let mut star = false;
        let op = match def {
            FieldDef::Str(f) => {
                self.reads_cohort |= f == crate::fields::StrField::Cohort;
                Operand::Str {
                    base: StrBase::Field(f),
                    case: Case::Keep,
                }
            }
            FieldDef::Bool(f) => Operand::Bool(f),
            FieldDef::Ip => Operand::Ip,
            FieldDef::Headers => {
                self.expect(
                    Tok::LBracket,
                    "[",
                    &format!("after `{name}` (e.g. {name}[\"accept\"])"),
                )?;
                let at = self.peek().start;
                let hname = match self.literal("a header name")?.kind {
                    LitKind::Str(s) => http::HeaderName::from_bytes(s.as_bytes())
                        .map_err(|_| self.err(at, format!("invalid header name {s:?}")))?,
                    _ => return Err(self.err(at, "a header name must be a string literal")),
                };
                self.expect(Tok::RBracket, "]", "after the header name")?;
                self.list_suffix(ListBase::Header(hname), &mut star)?
            }
            FieldDef::HeaderNames => self.list_suffix(ListBase::HeaderNames, &mut star)?,
            FieldDef::Json => {
                let mut steps = Vec::new();
                while self.peek().tok == Tok::LBracket {
                    self.bump();
                    let lit = self.literal("a key or index")?;
                    steps.push(match lit.kind {
                        LitKind::Str(s) => JsonStep::Key(s.into()),
                        LitKind::Int(n) if n >= 0 => JsonStep::Index(n as usize),
                        _ => return Err(self.err(lit.at, "expected a string key or an index")),
                    });
                    self.expect(Tok::RBracket, "]", "after the key")?;
                }
                if steps.is_empty() {
                    let msg = format!("`{name}` needs a key, e.g. {name}[\"email\"]");
                    return Err(self.err(self.peek().start, msg));
                }
                self.needs_body = true;
                Operand::Str {
                    base: StrBase::Json(steps.into()),
                    case: Case::Keep,
                }
            }
        };
        if self.peek().tok == Tok::LBracket {
            return Err(self.err(
                self.peek().start,
                format!("`{name}` cannot be indexed here"),
            ));
        }
        Ok(Lhs {
            op,
            span: Span {
                start: t.start,
                end: self.prev_end,
            },
            star,
        })
    }

    /// `[*]` (every element, inside any()/all()) or `[n]` (one element) after a list field.
    fn list_suffix(&mut self, base: ListBase, star: &mut bool) -> Result<Operand, ParseError> {
        if self.peek().tok != Tok::LBracket {
            return Ok(Operand::List {
                base,
                case: Case::Keep,
            });
        }
        self.bump();
        let t = self.peek().clone();
        let op = match t.tok {
            Tok::Star if self.in_quant => {
                *star = true;
                Operand::List {
                    base,
                    case: Case::Keep,
                }
            }
            Tok::Star => {
                return Err(self.err(t.start, "`[*]` is only allowed inside any() or all()"))
            }
            Tok::Int(n) if n >= 0 => Operand::Str {
                base: StrBase::Index(base, n as usize),
                case: Case::Keep,
            },
            _ => return Err(self.err(t.start, "expected `*` or an index inside `[...]`")),
        };
        self.bump();
        self.expect(Tok::RBracket, "]", "after the index")?;
        Ok(op)
    }

    fn call(&mut self, name: &'s str) -> Result<Lhs, ParseError> {
        let start = self.bump().start;
        let case = match name {
            "lower" => Some(Case::Lower),
            "upper" => Some(Case::Upper),
            "len" => None,
            "any" | "all" | "starts_with" | "ends_with" => {
                let msg = format!("{name}() gives a bool and cannot be used as a value here");
                return Err(self.err(start, msg));
            }
            _ => return Err(self.err(start, format!("unknown function `{name}`"))),
        };
        self.bump();
        self.nest(start)?;
        let inner = self.operand()?;
        self.depth -= 1;
        self.expect(Tok::RParen, ")", &format!("to close {name}("))?;
        let span = Span {
            start,
            end: self.prev_end,
        };
        let op = match (inner.op, case) {
            (Operand::Str { base, .. }, Some(case)) => Operand::Str { base, case },
            (Operand::List { base, .. }, Some(case)) => Operand::List { base, case },
            (Operand::Str { base, .. }, None) => Operand::Len(LenOf::Str(base)),
            (Operand::List { base, .. }, None) if !inner.star => Operand::Len(LenOf::List(base)),
            (op, _) => {
                let msg = format!(
                    "{name}() takes a string or a list, but `{}` is {}",
                    self.text(inner.span),
                    if inner.star {
                        "one element of a list"
                    } else {
                        describe(&op)
                    }
                );
                return Err(self.err(inner.span.start, msg));
            }
        };
        Ok(Lhs {
            op,
            span,
            star: inner.star,
        })
    }
}
