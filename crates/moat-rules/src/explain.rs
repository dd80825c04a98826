//! Human-readable account of why a rule did or did not match one request.
//!
//! Operators debugging a false positive need the values the rule actually saw, not just the
//! verdict. The walk mirrors `eval` (including short-circuiting) so the lines shown are exactly
//! the comparisons that decided the result.

use crate::ast::{Cmp, Node, Operand, Span};
use crate::eval;
use crate::Request;

/// Longest value quoted in full; user agents and cookies can be long and a log line should not.
const MAX_VALUE_CHARS: usize = 200;
const MAX_LIST_ITEMS: usize = 16;

pub(crate) fn explain(root: &Node, src: &str, req: &Request<'_>) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, src, req, &mut out);
    out
}

fn walk(n: &Node, src: &str, req: &Request<'_>, out: &mut Vec<String>) -> bool {
    match n {
        Node::And(xs) => xs.iter().all(|x| walk(x, src, req, out)),
        Node::Or(xs) => xs.iter().any(|x| walk(x, src, req, out)),
        Node::Xor(xs) => xs
            .iter()
            .fold(false, |acc, x| acc != walk(x, src, req, out)),
        Node::Not(x, span) => {
            let v = !walk(x, src, req, out);
            out.push(format!("{} -> {v}", text(src, *span)));
            v
        }
        Node::Cmp(c) => {
            let v = eval::cmp(c, req);
            out.push(leaf(c, src, req, v));
            v
        }
    }
}

fn leaf(c: &Cmp, src: &str, req: &Request<'_>, result: bool) -> String {
    let whole = text(src, c.span);
    if c.span == c.lhs_span {
        // A bare bool field: its value is the result, so repeating it adds nothing.
        return format!("{whole} -> {result}");
    }
    let lhs = text(src, c.lhs_span);
    format!("{whole} ({lhs} = {}) -> {result}", value(&c.lhs, req))
}

/// The source of a span on one line, so a rule spread over several lines explains compactly.
fn text(src: &str, s: Span) -> String {
    src.get(s.start..s.end)
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn value(op: &Operand, req: &Request<'_>) -> String {
    match op {
        Operand::Str { base, case } => eval::with_str(base, *case, req, quote),
        Operand::List { base, case } => {
            let mut parts: Vec<String> = Vec::new();
            let mut it = base.iter(req);
            for e in it.by_ref().take(MAX_LIST_ITEMS) {
                parts.push(eval::with_case(e, *case, quote));
            }
            if it.next().is_some() {
                parts.push("…".to_string());
            }
            format!("[{}]", parts.join(", "))
        }
        Operand::Len(of) => eval::len(of, req).to_string(),
        Operand::Bool(f) => f.read(req).to_string(),
        Operand::Ip => req.ip.to_string(),
    }
}

fn quote(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() <= MAX_VALUE_CHARS {
        return format!("{s:?}");
    }
    let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
    format!("{cut:?}…")
}
