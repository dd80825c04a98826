//! The digest (`[digest]`): every `every` (a day by default), what the period held: attacks
//! stopped by kind, bans made and the networks behind them, what the traps caught, reports,
//! and who was let in by hand. Written to the log (`moat::digest`), and POSTed as JSON to the
//! configured webhook. Read from the admin API and the dashboard's series, like the pages.

use super::live::KINDS;
use super::{Dashboard, SharedSeries};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The array at `key`, owned (the pages' [`super::pages::list`], for filtering by value).
fn list(v: &Value, key: &str) -> Vec<Value> {
    super::pages::list(v, key).to_vec()
}

fn since(v: &Value, field: &str, from_ms: u64) -> bool {
    v[field].as_u64().is_some_and(|t| t >= from_ms)
}

/// The network a ban's scope counts under: a /24 (IPv4) or /48 (IPv6) for an address, the
/// prefix itself for a prefix.
fn network(scope: &str) -> String {
    match scope.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => ipnet::Ipv4Net::new(a, 24)
            .map(|n| n.trunc().to_string())
            .unwrap_or_default(),
        Ok(std::net::IpAddr::V6(a)) => ipnet::Ipv6Net::new(a, 48)
            .map(|n| n.trunc().to_string())
            .unwrap_or_default(),
        Err(_) => scope.to_string(),
    }
}

/// The digest of `[from_ms, to_ms)`.
pub async fn compose(d: &Dashboard, series: &SharedSeries, from_ms: u64, to_ms: u64) -> Value {
    let (first, last) = (from_ms / 60_000, to_ms.saturating_sub(1) / 60_000);
    let store = series.clone();
    let saved = tokio::task::spawn_blocking(move || {
        let g = store.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .and_then(|s| s.minutes(first, last).ok())
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    // The last hour in memory is newer than what was saved (every 10 s): it wins.
    let mut by_minute: std::collections::BTreeMap<u64, super::live::Minute> =
        saved.into_iter().map(|m| (m.minute, m)).collect();
    for m in d.chart.series(to_ms) {
        if (first..=last).contains(&m.minute) && m.counts.iter().any(|c| *c > 0) {
            by_minute.insert(m.minute, m);
        }
    }
    let minutes: Vec<super::live::Minute> = by_minute.into_values().collect();
    let mut attacks = Map::new();
    for (k, (id, _)) in KINDS.iter().enumerate() {
        let n: u64 = minutes.iter().map(|m| m.counts[k]).sum();
        attacks.insert(id.to_string(), n.into());
    }

    let bans: Vec<Value> = list(&d.api_get("/api/decisions?limit=100000").await, "decisions")
        .into_iter()
        .filter(|b| since(b, "created_ms", from_ms))
        .collect();
    let mut by_net: HashMap<String, u64> = HashMap::new();
    for b in &bans {
        *by_net
            .entry(network(b["scope"].as_str().unwrap_or_default()))
            .or_default() += 1;
    }
    let mut nets: Vec<(String, u64)> = by_net.into_iter().collect();
    nets.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    nets.truncate(10);

    let msgs: Vec<Value> = list(
        &d.api_get("/api/quarantine/messages?limit=10000").await,
        "messages",
    )
    .into_iter()
    .filter(|m| since(m, "received_ms", from_ms))
    .collect();
    let mut clients: Vec<&str> = msgs
        .iter()
        .filter_map(|m| m["client_ip"].as_str())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let mut domains: Vec<Value> = list(
        &d.api_get("/api/quarantine/indicators?kind=domain").await,
        "indicators",
    )
    .into_iter()
    .filter(|i| since(i, "last_ms", from_ms))
    .collect();
    domains.truncate(10);
    let campaigns = list(&d.api_get("/api/quarantine/campaigns").await, "campaigns")
        .iter()
        .filter(|c| since(c, "last_ms", from_ms))
        .count();
    let mut reports: Map<String, Value> = Map::new();
    for r in list(&d.api_get("/api/reports?limit=10000").await, "reports") {
        if since(&r, "created_ms", from_ms) {
            let k = r["status"].as_str().unwrap_or("other").to_string();
            let n = reports.get(&k).and_then(Value::as_u64).unwrap_or(0);
            reports.insert(k, (n + 1).into());
        }
    }
    let let_in: Vec<Value> = list(&d.api_get("/api/allowlist").await, "allowlist")
        .into_iter()
        .filter(|a| since(a, "created_ms", from_ms))
        .collect();
    json!({
        "from_ms": from_ms, "to_ms": to_ms,
        "attacks": attacks,
        "bans_made": bans.len(),
        "top_networks": nets.iter().map(|(n, c)| json!({"network": n, "bans": c})).collect::<Vec<_>>(),
        "caught": {
            "messages": msgs.len(), "clients": clients.len(), "campaigns": campaigns,
            "domains": domains.iter().map(|i| json!({"domain": i["value"], "messages": i["messages"]})).collect::<Vec<_>>(),
        },
        "reports": reports,
        "let_in": let_in,
    })
}

/// Sends a digest every `cfg.every` until shutdown: to the log, and to the webhook if one is
/// configured (a failure is logged; the next digest is sent anyway).
pub fn spawn(
    d: Dashboard,
    series: SharedSeries,
    cfg: moat_config::Digest,
    shutdown: &moat_listen::Shutdown,
) {
    let stop = shutdown.clone();
    shutdown.spawn(async move {
        let client = cfg.webhook.as_deref().and_then(|url| {
            let reach = moat_report::http::Reach::naming([url], []);
            moat_report::http::HttpClient::new(
                Duration::from_secs(20),
                64 * 1024,
                "Moat digest",
                reach,
            )
            .map_err(|e| tracing::warn!(error = %e, "digest: no webhook client"))
            .ok()
        });
        let engine = d.live.current().engine.clone();
        let mut from = engine.now_ms();
        let mut tick = tokio::time::interval(cfg.every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let to = engine.now_ms();
            let digest = compose(&d, &series, from, to).await;
            from = to;
            tracing::info!(target: "moat::digest", digest = %digest, "digest");
            if let (Some(c), Some(url)) = (&client, cfg.webhook.as_deref()) {
                let body = digest.to_string().into_bytes();
                match c
                    .send(
                        http::Method::POST,
                        url,
                        &[],
                        Some(("application/json", body)),
                    )
                    .await
                {
                    Ok(a) if (200..300).contains(&a.status) => {}
                    Ok(a) => tracing::warn!(status = a.status, "digest: the webhook refused it"),
                    Err(e) => tracing::warn!(error = %e, "digest: the webhook was not reached"),
                }
            }
        }
    });
}
