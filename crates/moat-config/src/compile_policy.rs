//! Rules, rate limits and decoys from every policy source (config, rule files, presets), compiled
//! in two passes: decoys first, because a rule may name a decoy defined in a later file.

use crate::compile::dur;
use crate::errors::{ConfigError, Sink};
use crate::model::*;
use crate::raw::*;
use moat_rules::Expr;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn policy(
    sources: &[(String, String, RawRuleFile)],
    errors: &mut Vec<ConfigError>,
) -> Policy {
    let mut p = Policy::default();
    let mut ids = HashSet::new();
    for (file, src, rf) in sources {
        let mut s = Sink { file, src, errors };
        for d in &rf.decoy {
            if !ids.insert(format!("decoy:{}", d.id.get_ref())) {
                s.at(
                    d.id.span(),
                    "decoy.id",
                    format!("decoy `{}` is defined twice", d.id.get_ref()),
                );
                continue;
            }
            let status = match &d.status {
                Some(v) if !(100..=599).contains(v.get_ref()) => {
                    s.at(v.span(), "decoy.status", "must be an HTTP status (100-599)");
                    200
                }
                Some(v) => *v.get_ref(),
                None => 200,
            };
            p.decoys.push(Decoy {
                id: d.id.get_ref().clone(),
                status,
                body: d.body.clone(),
                headers: decoy_headers(d.headers.as_ref(), &mut s),
                learn: d
                    .learn
                    .as_ref()
                    .and_then(|e| expr(e, "decoy.learn", &mut s)),
                delay: dur(d.delay.as_ref(), "decoy.delay", Duration::ZERO, &mut s),
            });
        }
    }
    for (file, src, rf) in sources {
        let mut s = Sink { file, src, errors };
        for r in &rf.rule {
            if !ids.insert(format!("rule:{}", r.id.get_ref())) {
                s.at(
                    r.id.span(),
                    "rule.id",
                    format!("rule `{}` is defined twice", r.id.get_ref()),
                );
            }
            let e = expr(&r.expression, "rule.expression", &mut s);
            let a = action(&r.action_view(), "rule", true, &p, &mut s);
            let per_action = r.per_action.as_ref().and_then(|k| {
                if !r.require_clearance {
                    s.at(
                        k.span(),
                        "rule.per_action",
                        "per-action proofs are for a rule with require_clearance = true",
                    );
                    return None;
                }
                limit_key(k, "rule.per_action", &mut s)
            });
            if let (Some(expr), Some(action)) = (e, a) {
                p.rules.push(Rule {
                    id: r.id.get_ref().clone(),
                    description: r.description.clone(),
                    expr,
                    action,
                    offence: r.offence,
                    require_clearance: r.require_clearance,
                    allow_nojs: r.allow_nojs,
                    per_action,
                    origin: file.clone(),
                });
            }
        }
        for l in &rf.rate_limit {
            if !ids.insert(format!("rate_limit:{}", l.id.get_ref())) {
                s.at(
                    l.id.span(),
                    "rate_limit.id",
                    format!("rate limit `{}` is defined twice", l.id.get_ref()),
                );
            }
            // Outer None: the expression failed to compile; inner None: the limit counts everything.
            let e = match &l.expression {
                None => Some(None),
                Some(x) => expr(x, "rate_limit.expression", &mut s).map(Some),
            };
            let key = limit_key(&l.key, "rate_limit.key", &mut s);
            let period = dur(
                Some(&l.period),
                "rate_limit.period",
                Duration::from_secs(60),
                &mut s,
            );
            if period.is_zero() {
                s.at(
                    l.period.span(),
                    "rate_limit.period",
                    "must be longer than zero",
                );
            }
            let requests = *l.requests.get_ref();
            if requests == 0 {
                s.at(
                    l.requests.span(),
                    "rate_limit.requests",
                    "must be at least 1",
                );
            }
            let burst = l.burst.as_ref().map_or(requests, |b| *b.get_ref());
            if burst == 0 {
                if let Some(b) = &l.burst {
                    s.at(b.span(), "rate_limit.burst", "must be at least 1");
                }
            }
            let default_keys = if matches!(key, Some(LimitKey::Ip | LimitKey::Prefix)) {
                1_000_000
            } else {
                100_000
            };
            let a = action(&l.action_view(), "rate_limit", false, &p, &mut s);
            if let (Some(e), Some(key), Some(action)) = (e, key, a) {
                p.rate_limits.push(RateLimit {
                    id: l.id.get_ref().clone(),
                    description: l.description.clone(),
                    expr: e,
                    key,
                    requests: requests.max(1),
                    period: period.max(Duration::from_millis(1)),
                    burst: burst.max(1),
                    max_keys: l
                        .max_keys
                        .as_ref()
                        .map_or(default_keys, |m| (*m.get_ref()).max(16) as usize),
                    ban: l.ban,
                    action,
                    origin: file.clone(),
                });
            }
        }
    }
    for (file, src, rf) in sources {
        let mut s = Sink { file, src, errors };
        for c in &rf.confirm {
            if !ids.insert(format!("confirm:{}", c.id.get_ref())) {
                s.at(
                    c.id.span(),
                    "confirm.id",
                    format!("confirm `{}` is defined twice", c.id.get_ref()),
                );
                continue;
            }
            let send = expr(&c.send, "confirm.send", &mut s);
            let click = expr(&c.click, "confirm.click", &mut s);
            let click_cookie = c.click_cookie.as_ref().and_then(|k| {
                let name = k.get_ref().trim();
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                if !ok {
                    s.at(
                        k.span(),
                        "confirm.click_cookie",
                        format!("`{name}` is not a cookie name"),
                    );
                }
                ok.then(|| name.to_string())
            });
            if let (Some(send), Some(click)) = (send, click) {
                p.confirms.push(Confirm {
                    id: c.id.get_ref().clone(),
                    description: c.description.clone(),
                    send,
                    click,
                    click_cookie,
                    origin: file.clone(),
                });
            }
        }
    }
    if p.confirms.is_empty() {
        cohorts_need_confirms(sources, &p, errors);
    }
    p
}

/// A cohort's standing comes from the `[[confirm]]` routes' sends and clicks; without one,
/// every cohort would stay "unknown" forever and a rule or limit reading it would silently
/// never act.
fn cohorts_need_confirms(
    sources: &[(String, String, RawRuleFile)],
    p: &Policy,
    errors: &mut Vec<ConfigError>,
) {
    let msg = "reads the client's cohort, which only a [[confirm]] (a send and its click) gives a standing; add one, or use the ghost preset";
    for (file, src, rf) in sources {
        let mut s = Sink { file, src, errors };
        for r in &rf.rule {
            if p.rules
                .iter()
                .any(|c| c.id == *r.id.get_ref() && c.expr.reads_cohort())
            {
                s.at(r.expression.span(), "rule.expression", msg);
            }
        }
        for l in &rf.rate_limit {
            let uses = p.rate_limits.iter().any(|c| {
                c.id == *l.id.get_ref()
                    && (c.key == LimitKey::Cohort
                        || c.expr.as_ref().is_some_and(|e| e.reads_cohort()))
            });
            if uses {
                s.at(l.id.span(), "rate_limit", msg);
            }
        }
    }
}

/// Where the expression text starts inside its TOML string, so a parse error's column lands on
/// the right character of the file.
fn value_start(src: &str, span: &Range<usize>) -> usize {
    let text = src.get(span.clone()).unwrap_or("");
    let quote = if text.starts_with("'''") || text.starts_with("\"\"\"") {
        3
    } else {
        1
    };
    let mut start = span.start + quote;
    // TOML trims a newline right after a multi-line opening quote.
    if quote == 3 && src[start..].starts_with('\n') {
        start += 1;
    }
    start
}

fn expr(e: &S<String>, field: &str, s: &mut Sink) -> Option<Arc<Expr>> {
    match Expr::parse(e.get_ref()) {
        Ok(x) => Some(Arc::new(x)),
        Err(err) => {
            let at = value_start(s.src, &e.span()) + err.offset;
            let rendered = err.render(e.get_ref());
            s.at(at..at, field, format!("{}\n{}", err.message, rendered));
            None
        }
    }
}

fn limit_key(k: &S<String>, field: &str, s: &mut Sink) -> Option<LimitKey> {
    let v = k.get_ref().trim();
    let (kind, arg) = v.split_once(':').map_or((v, ""), |(a, b)| (a, b.trim()));
    let key = match (kind, arg.is_empty()) {
        ("ip", true) => LimitKey::Ip,
        ("prefix", true) => LimitKey::Prefix,
        ("global", true) => LimitKey::Global,
        ("cohort", true) => LimitKey::Cohort,
        ("header", false) => LimitKey::Header(arg.to_ascii_lowercase()),
        ("json", false) => LimitKey::Json(arg.to_string()),
        ("json_domain", false) => LimitKey::JsonDomain(arg.to_string()),
        _ => {
            s.at(
                k.span(),
                field,
                format!(
                    "`{v}`: use ip, prefix, global, cohort, header:NAME, json:FIELD or json_domain:FIELD"
                ),
            );
            return None;
        }
    };
    Some(key)
}

fn action(a: &RawAction, what: &str, rule: bool, p: &Policy, s: &mut Sink) -> Option<Action> {
    let name = a.action.map(|n| (n.get_ref().as_str(), n.span()));
    let Some((name, span)) = name else {
        s.nowhere(
            &format!("{what}.action"),
            "missing; one of allow, skip, log, block, decoy, tarpit, challenge",
        );
        return None;
    };
    if !rule && matches!(name, "allow" | "skip") {
        s.at(
            span,
            &format!("{what}.action"),
            format!("`{name}` makes no sense for a rate limit"),
        );
        return None;
    }
    simple_action(name, span, a, what, p, s, 0)
}

fn simple_action(
    name: &str,
    span: Range<usize>,
    a: &RawAction,
    what: &str,
    p: &Policy,
    s: &mut Sink,
    depth: u8,
) -> Option<Action> {
    let field = format!("{what}.action");
    Some(match name {
        "allow" => Action::Allow,
        "skip" => Action::Skip,
        "log" => Action::Log,
        "block" => {
            let status = match a.status {
                Some(v) if !(100..=599).contains(v.get_ref()) => {
                    s.at(
                        v.span(),
                        &format!("{what}.status"),
                        "must be an HTTP status (100-599)",
                    );
                    return None;
                }
                Some(v) => *v.get_ref(),
                None => 403,
            };
            Action::Block {
                status,
                body: a.body.cloned().unwrap_or_else(|| "Forbidden\n".into()),
            }
        }
        "decoy" => {
            let Some(d) = a.decoy else {
                s.at(
                    span,
                    &format!("{what}.decoy"),
                    "a decoy action names its decoy: decoy = \"ID\"",
                );
                return None;
            };
            match p.decoy(d.get_ref()) {
                Some(i) => Action::Decoy(i),
                None => {
                    s.at(
                        d.span(),
                        &format!("{what}.decoy"),
                        format!("no decoy `{}` is defined", d.get_ref()),
                    );
                    return None;
                }
            }
        }
        "tarpit" if depth == 0 || depth == 1 => {
            let delay = dur(
                a.delay,
                &format!("{what}.delay"),
                Duration::from_secs(10),
                s,
            );
            let (then, tspan) = a.then.map_or(("block", span.clone()), |t| {
                (t.get_ref().as_str(), t.span())
            });
            if !matches!(then, "block" | "decoy") {
                s.at(
                    tspan,
                    &format!("{what}.then"),
                    format!("`{then}`: a tarpit ends in block or decoy"),
                );
                return None;
            }
            let then = simple_action(then, tspan, a, what, p, s, 2)?;
            Action::Tarpit {
                delay,
                then: Box::new(then),
            }
        }
        "challenge" if depth == 0 => {
            let (fb, fspan) = a.fallback.map_or(("block", span.clone()), |t| {
                (t.get_ref().as_str(), t.span())
            });
            if !matches!(fb, "block" | "decoy" | "tarpit" | "retry") {
                s.at(
                    fspan,
                    &format!("{what}.fallback"),
                    format!("`{fb}`: use block, decoy, tarpit or retry"),
                );
                return None;
            }
            let fallback = if fb == "retry" {
                Action::Retry
            } else {
                simple_action(fb, fspan, a, what, p, s, 1)?
            };
            Action::Challenge {
                fallback: Box::new(fallback),
            }
        }
        other => {
            s.at(span, &field, format!("unknown action `{other}`; one of allow, skip, log, block, decoy, tarpit, challenge"));
            return None;
        }
    })
}

/// A decoy's headers, lowercased, in the order given; a name or value HTTP cannot carry is an
/// error here rather than a header silently missing from every decoy.
fn decoy_headers(h: Option<&S<crate::raw::RawHeaders>>, s: &mut Sink) -> Vec<(String, String)> {
    use crate::raw::RawHeaders;
    let Some(h) = h else {
        return Vec::new();
    };
    let pairs: Vec<(String, String)> = match h.get_ref() {
        RawHeaders::Table(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        RawHeaders::List(l) => l.clone(),
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let name_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let value_ok = v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !name_ok || !value_ok {
            s.at(
                h.span(),
                "decoy.headers",
                format!("`{k}: {v}` is not a valid HTTP header"),
            );
            continue;
        }
        out.push((k.to_ascii_lowercase(), v));
    }
    out
}
