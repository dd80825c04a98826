//! Reading `postconf` output the way Postfix itself reads its configuration: `name = value`
//! lines, `master.cf` services with their `-o` overrides, `$name` expansion against a service's
//! overrides first and `main.cf` second, and the comma/space lists with `{ … }` groups that
//! restriction and milter settings use. Everything here takes text and returns values.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

/// How deep `$name` references may nest before a value is declared unreadable: Postfix stops
/// at 100, real configurations use two or three levels, and a loop must not hang the audit.
const MAX_DEPTH: usize = 32;
/// How many `$name` lookups one value may cost: nesting is bounded by [`MAX_DEPTH`], but
/// `a = $b $b`, `b = $c $c`, … would still double at each level.
const MAX_LOOKUPS: u32 = 10_000;

/// `name = value` lines of `postconf` (`-p` or `-P` style), in order. A line starting with
/// whitespace continues the previous value, so folded (`-f`) output reads the same.
pub fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with(|c: char| c.is_whitespace()) {
            if let Some((_, v)) = out.last_mut() {
                let more = line.trim();
                if !more.is_empty() {
                    if !v.is_empty() {
                        v.push(' ');
                    }
                    v.push_str(more);
                }
            }
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.starts_with('#') || name.contains(char::is_whitespace) {
            continue;
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
    out
}

/// One `master.cf` service as `postconf -M` and `-P` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service name (`submission`, `127.0.0.1:10025`, `smtpd`).
    pub name: String,
    /// `inet`, `unix`, `pass`, …
    pub kind: String,
    /// The chroot column: `Some(true)` for `y`, `None` for `-` (the default).
    pub chroot: Option<bool>,
    /// The command's base name (`smtpd`, `postscreen`, …).
    pub command: String,
    /// Its `-o name=value` overrides (unexpanded, the last one of a name wins).
    pub overrides: BTreeMap<String, String>,
}

impl Service {
    /// The name `postconf -P` gives it: `submission/inet`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.name, self.kind)
    }
}

/// Services from `postconf -M` (one per line; folded `-Mf` continuation lines are skipped,
/// since the overrides come from `-P`), with their overrides from `postconf -P`.
pub fn parse_master(m: &str, p: &str) -> Vec<Service> {
    let mut services: Vec<Service> = m
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_whitespace()) && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some(Service {
                name: f[0].to_string(),
                kind: f[1].to_string(),
                chroot: match f[4] {
                    "y" => Some(true),
                    "n" => Some(false),
                    _ => None,
                },
                command: f[7].rsplit('/').next().unwrap_or(f[7]).to_string(),
                overrides: BTreeMap::new(),
            })
        })
        .collect();
    for (key, value) in parse_params(p) {
        let mut parts = key.rsplitn(3, '/');
        let (Some(param), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(s) = services
            .iter_mut()
            .find(|s| s.name == name && s.kind == kind)
        {
            s.overrides.insert(param.to_string(), value);
        }
    }
    services
}

/// Why a value could not be read; the audit then treats it as "not verified".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

/// The parameters one service sees: its `-o` overrides over `main.cf` (defaults included).
pub struct Scope<'a> {
    over: Option<&'a BTreeMap<String, String>>,
    /// The service's name, which is what `$service_name` means inside it.
    service: Option<&'a str>,
    main: &'a HashMap<String, String>,
    lookups: Cell<u32>,
}

impl<'a> Scope<'a> {
    /// `main.cf` alone.
    pub fn main(main: &'a HashMap<String, String>) -> Self {
        Scope {
            over: None,
            service: None,
            main,
            lookups: Cell::new(0),
        }
    }

    /// What `svc` sees.
    pub fn service(svc: &'a Service, main: &'a HashMap<String, String>) -> Self {
        Scope {
            over: Some(&svc.overrides),
            service: Some(&svc.name),
            main,
            lookups: Cell::new(0),
        }
    }

    /// The unexpanded value, and whether it comes from the service's override.
    pub fn raw(&self, name: &str) -> Option<(&str, bool)> {
        if let Some(v) = self.over.and_then(|o| o.get(name)) {
            return Some((v, true));
        }
        if let (Some(svc), "service_name") = (self.service, name) {
            return Some((svc, false));
        }
        self.main.get(name).map(|v| (v.as_str(), false))
    }

    /// The effective value of `name`, `$`-references expanded (undefined names are empty, as
    /// in Postfix).
    pub fn get(&self, name: &str) -> Result<String, Unreadable> {
        self.lookups.set(0);
        match self.raw(name) {
            Some((v, _)) => self.exp(v, 0),
            None => Ok(String::new()),
        }
    }

    /// Expands `$name`, `${name}`, `$(name)`, `${name?text}`, `${name:text}`,
    /// `${name?{a}:{b}}`, `${{x} OP {y} ? {a} : {b}}` and `$$`, as Postfix's mac_expand does.
    fn exp(&self, text: &str, depth: usize) -> Result<String, Unreadable> {
        if depth > MAX_DEPTH {
            return Err(Unreadable(format!(
                "`$` references nest deeper than {MAX_DEPTH}"
            )));
        }
        let b = text.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            let Some(off) = text[i..].find('$') else {
                out.push_str(&text[i..]);
                break;
            };
            out.push_str(&text[i..i + off]);
            i += off + 1;
            match b.get(i) {
                Some(b'$') => {
                    out.push('$');
                    i += 1;
                }
                Some(&open @ (b'{' | b'(')) => {
                    let close = if open == b'{' { b'}' } else { b')' };
                    let end = matching(b, i, open, close)
                        .ok_or_else(|| Unreadable(format!("unbalanced `$` in `{text}`")))?;
                    out.push_str(&self.braced(&text[i + 1..end], depth)?);
                    i = end + 1;
                }
                _ => {
                    let n = text[i..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(text.len() - i);
                    if n == 0 {
                        out.push('$');
                        continue;
                    }
                    out.push_str(&self.lookup(&text[i..i + n], depth)?);
                    i += n;
                }
            }
        }
        Ok(out)
    }

    fn lookup(&self, name: &str, depth: usize) -> Result<String, Unreadable> {
        let n = self.lookups.get() + 1;
        self.lookups.set(n);
        if n > MAX_LOOKUPS {
            return Err(Unreadable(format!("`${name}` expands to too much")));
        }
        match self.raw(name) {
            Some((v, _)) => self.exp(v, depth + 1),
            None => Ok(String::new()),
        }
    }

    /// The inside of `${…}`.
    fn braced(&self, inner: &str, depth: usize) -> Result<String, Unreadable> {
        let bad = || Unreadable(format!("cannot read `${{{inner}}}`"));
        let t = inner.trim_start();
        if t.starts_with('{') {
            return self.relational(t, depth).ok_or_else(bad)?;
        }
        let n = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        let (name, rest) = inner.split_at(n);
        if name.is_empty() {
            return Err(bad());
        }
        let Some(op) = rest.chars().next() else {
            return self.lookup(name, depth);
        };
        let set = !self.lookup(name, depth)?.is_empty();
        let rest = &rest[1..];
        match op {
            '?' | ':' => {
                let (then, otherwise) = branches(rest).ok_or_else(bad)?;
                let pick = if (op == '?') == set {
                    Some(then)
                } else if op == '?' {
                    otherwise
                } else {
                    None
                };
                pick.map_or(Ok(String::new()), |t| self.exp(t, depth + 1))
            }
            _ => Err(bad()),
        }
    }

    /// `{x} OP {y} ? {a} : {b}`; `None` when it does not parse or compare.
    fn relational(&self, t: &str, depth: usize) -> Option<Result<String, Unreadable>> {
        let b = t.as_bytes();
        let e1 = matching(b, 0, b'{', b'}')?;
        let rest = t[e1 + 1..].trim_start();
        let op_len = rest.find(|c: char| c.is_whitespace() || c == '{')?;
        let (op, rest) = rest.split_at(op_len);
        let rest = rest.trim_start();
        let e2 = matching(rest.as_bytes(), 0, b'{', b'}')?;
        let tail = rest[e2 + 1..].trim_start().strip_prefix('?')?;
        let (then, otherwise) = branches(tail)?;
        let x = match self.exp(&t[1..e1], depth + 1) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let y = match self.exp(&rest[1..e2], depth + 1) {
            Ok(y) => y,
            Err(e) => return Some(Err(e)),
        };
        let ord = match op {
            "==" | "!=" => None,
            _ if op.ends_with("level") => Some(level(&x)?.cmp(&level(&y)?)),
            _ => Some(
                x.trim()
                    .parse::<i64>()
                    .ok()?
                    .cmp(&y.trim().parse::<i64>().ok()?),
            ),
        };
        use std::cmp::Ordering::*;
        let truth = match (op.trim_end_matches("level"), ord) {
            ("==", _) => x == y,
            ("!=", _) => x != y,
            ("<", Some(o)) => o == Less,
            ("<=", Some(o)) => o != Greater,
            (">", Some(o)) => o == Greater,
            (">=", Some(o)) => o != Less,
            _ => return None,
        };
        let pick = if truth { Some(then) } else { otherwise };
        Some(pick.map_or(Ok(String::new()), |p| self.exp(p, depth + 1)))
    }
}

/// A compatibility level (`3.6`, `2`) as comparable numbers.
fn level(s: &str) -> Option<Vec<u32>> {
    s.trim().split('.').map(|p| p.parse().ok()).collect()
}

/// The branches after `?` or `:`: `{a}` optionally followed by `: {b}`, or plain text.
fn branches(rest: &str) -> Option<(&str, Option<&str>)> {
    let t = rest.trim_start();
    if !t.starts_with('{') {
        return Some((rest, None));
    }
    let e = matching(t.as_bytes(), 0, b'{', b'}')?;
    let then = &t[1..e];
    let after = t[e + 1..].trim();
    if after.is_empty() {
        return Some((then, None));
    }
    let other = after.strip_prefix(':')?.trim();
    let e2 = matching(other.as_bytes(), 0, b'{', b'}')?;
    if !other[e2 + 1..].trim().is_empty() {
        return None;
    }
    Some((then, Some(&other[1..e2])))
}

/// Index of the bracket closing the one at `at`.
fn matching(b: &[u8], at: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(at) {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Splits a Postfix list on commas and whitespace, keeping each `{ … }` group whole (braces
/// included), as `mystrtokq` does for restriction and milter lists.
pub fn tokens(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in list.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' | ' ' | '\t' | '\r' | '\n' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A `{ name, attr=value, … }` group: its first element and its attributes. A plain token is
/// a name without attributes.
pub fn group(token: &str) -> (String, Vec<(String, String)>) {
    let Some(inner) = token.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return (token.to_string(), Vec::new());
    };
    let mut parts = tokens(inner).into_iter();
    let name = parts.next().unwrap_or_default();
    let attrs = parts
        .filter_map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    (name, attrs)
}
