//! `GET /api/top?n=N`: what `moat top` shows. The most frequent rules, clients and networks
//! among the decisions of the current minute and the one before (every decision, logged one by
//! one or only summarised), each client with its state in the guard now (banned, and until
//! when; allowlisted), the user agents and header shapes behind them, and the active ban count.

use moat_engine::GuardVerdict;
use moat_http::shield::Shield;
use serde_json::{json, Value};

/// Entries of each kind when the query names no `n`.
pub const DEFAULT_N: usize = 10;
/// The most of each kind one answer holds, whatever the query asks.
pub const MAX_N: usize = 100;

/// `n` from the query string (`n=20`): a number from 1 to `MAX_N`.
pub fn parse_n(query: Option<&str>) -> Result<usize, String> {
    let Some(q) = query else {
        return Ok(DEFAULT_N);
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "n" => {
                return match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_N).contains(&n) => Ok(n),
                    _ => Err(format!("n must be a number from 1 to {MAX_N}, not {v:?}")),
                };
            }
            "" => {}
            other => return Err(format!("unknown parameter {other:?}; only n is read")),
        }
    }
    Ok(DEFAULT_N)
}

/// Clients read from the decision log to group by autonomous system (its pairs are bounded
/// at 50,000 a minute, so this is every client of the two minutes).
const ALL_CLIENTS: usize = 100_000;

/// The answer's JSON; with a table, the autonomous systems behind the decisions too.
pub fn top_json(shield: &Shield, n: usize, asn: Option<&crate::asn::Table>) -> Value {
    let now = shield.engine.now_ms();
    let wide = if asn.is_some() { ALL_CLIENTS } else { n };
    let mut top = shield
        .engine
        .decision_log()
        .top(now, wide, shield.cfg.server.prefix_lens);
    let systems = asn.map(|t| systems(&top.clients, t, n));
    top.rules.truncate(n);
    top.clients.truncate(n);
    top.networks.truncate(n);
    let snap = shield.engine.snapshot();
    let clients: Vec<Value> = top
        .clients
        .iter()
        .map(|c| {
            let (state, until) = match snap.check(c.client, now) {
                GuardVerdict::Allowlisted => ("allowlisted", None),
                GuardVerdict::Banned(d) => ("banned", d.expires_ms),
                GuardVerdict::Clear => ("clear", None),
            };
            json!({"client": c.client, "count": c.count, "state": state, "banned_until_ms": until})
        })
        .collect();
    let (agents, shapes) = shield.sightings.top(now, n);
    let seen = |v: Vec<moat_http::sightings::TopSeen>| -> Vec<Value> {
        v.into_iter()
            .map(|s| {
                let actions: serde_json::Map<String, Value> =
                    s.actions.into_iter().map(|(a, c)| (a, c.into())).collect();
                json!({"value": s.value, "count": s.count, "actions": actions})
            })
            .collect()
    };
    json!({
        "now_ms": now,
        "since_ms": top.since_ms,
        "decisions": top.decisions,
        "bans_active": snap.ban_count(),
        "rules": top.rules,
        "clients": clients,
        "networks": top.networks,
        "agents": seen(agents),
        "shapes": seen(shapes),
        "systems": systems.unwrap_or_default(),
        "asn_table": asn.map(|t| t.source.clone()),
    })
}

/// The `n` autonomous systems with the most decisions among `clients`, each with its name
/// and how many of its addresses were seen. Addresses no table row covers are left out.
fn systems(
    clients: &[moat_engine::decision_log::TopClient],
    t: &crate::asn::Table,
    n: usize,
) -> Vec<Value> {
    let mut by: std::collections::HashMap<u32, (u64, u64)> = Default::default();
    for c in clients {
        if let Some(a) = t.table.lookup(c.client) {
            let e = by.entry(a).or_default();
            e.0 += c.count;
            e.1 += 1;
        }
    }
    let mut v: Vec<(u32, (u64, u64))> = by.into_iter().collect();
    v.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v.into_iter()
        .map(|(asn, (count, clients))| {
            json!({"asn": asn, "name": t.table.name(asn), "count": count, "clients": clients})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_is_bounded_and_other_parameters_are_refused() {
        assert_eq!(parse_n(None), Ok(DEFAULT_N));
        assert_eq!(parse_n(Some("n=3")), Ok(3));
        assert_eq!(parse_n(Some("")), Ok(DEFAULT_N));
        assert!(parse_n(Some("n=0")).is_err());
        assert!(parse_n(Some("n=101")).is_err());
        assert!(parse_n(Some("n=x")).is_err());
        assert!(parse_n(Some("limit=3")).is_err());
    }
}
