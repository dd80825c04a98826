//! The digest (`[digest]`): every `every` (a day by default), what the period held: attacks
//! stopped by kind, bans made and the networks behind them, what the traps caught, reports,
//! who was let in by hand, and anyone a rule stopped who then passed the browser proof. Written
//! to the log (`moat::digest`), POSTed as JSON to the configured webhook, and mailed to
//! `mail_to` through the report relay. Read from the admin API and the dashboard's series,
//! like the pages; it runs with the admin listener off too.

use super::live::{BANS, KINDS};
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
    for (k, (id, _)) in KINDS.iter().enumerate().filter(|(k, _)| *k != BANS) {
        let n: u64 = minutes.iter().map(|m| m.counts[k]).sum();
        attacks.insert(id.to_string(), n.into());
    }
    // Counted as they were made, so bans that already expired are in it.
    let bans_made: u64 = minutes.iter().map(|m| m.counts[BANS]).sum();

    // The networks are ranked from the newest 100,000 of the period's bans still in force (a
    // storm's bans come from few networks, so these rank them all the same); a feed's are not
    // this instance's.
    let made = d
        .api_get(&format!("/api/decisions?since_ms={from_ms}&limit=100000"))
        .await;
    let bans: Vec<Value> = list(&made, "decisions")
        .into_iter()
        .filter(|b| since(b, "created_ms", from_ms))
        .filter(|b| {
            !b["origin"]
                .as_str()
                .unwrap_or_default()
                .starts_with("feed:")
        })
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
    // Anyone a rule stopped who then passed the proof in the period: a person, perhaps.
    let rescued: Vec<Value> = list(&d.api_get("/api/proof").await, "rescues")
        .into_iter()
        .filter(|r| since(r, "passed_ms", from_ms))
        .collect();
    json!({
        "from_ms": from_ms, "to_ms": to_ms,
        "rescued": rescued,
        "attacks": attacks,
        "bans_made": bans_made,
        "top_networks": nets.iter().map(|(n, c)| json!({"network": n, "bans": c})).collect::<Vec<_>>(),
        "caught": {
            "messages": msgs.len(), "clients": clients.len(), "campaigns": campaigns,
            "domains": domains.iter().map(|i| json!({"domain": i["value"], "messages": i["messages"]})).collect::<Vec<_>>(),
        },
        "reports": reports,
        "let_in": let_in,
    })
}

/// The digest as a person reads it, for the mail.
pub fn text(d: &Value) -> String {
    let mut t = format!(
        "Moat digest, {} to {} (UTC)\n\nAttacks stopped:\n",
        moat_core::utc_text(d["from_ms"].as_i64().unwrap_or(0)),
        moat_core::utc_text(d["to_ms"].as_i64().unwrap_or(0))
    );
    for (_, (id, label)) in KINDS.iter().enumerate().filter(|(k, _)| *k != BANS) {
        t.push_str(&format!(
            "  {label}: {}\n",
            d["attacks"][id].as_u64().unwrap_or(0)
        ));
    }
    t.push_str(&format!("\nBans made: {}\n", d["bans_made"]));
    for n in super::pages::list(d, "top_networks") {
        t.push_str(&format!(
            "  {}: {}\n",
            n["network"].as_str().unwrap_or_default(),
            n["bans"]
        ));
    }
    let c = &d["caught"];
    t.push_str(&format!(
        "\nCaught by the trap: {} messages from {} clients, {} campaigns\n",
        c["messages"], c["clients"], c["campaigns"]
    ));
    for dm in super::pages::list(c, "domains") {
        t.push_str(&format!(
            "  {} ({} messages)\n",
            dm["domain"].as_str().unwrap_or_default(),
            dm["messages"]
        ));
    }
    if let Some(r) = d["reports"].as_object().filter(|r| !r.is_empty()) {
        t.push_str("\nReports:\n");
        for (state, n) in r {
            t.push_str(&format!("  {state}: {n}\n"));
        }
    }
    let rescued = super::pages::list(d, "rescued");
    t.push_str(&format!(
        "\nStopped by a rule, then passed the browser proof (a person, perhaps): {}\n",
        rescued.len()
    ));
    for r in rescued {
        t.push_str(&format!(
            "  {} stopped by {} at {}\n",
            r["client"].as_str().unwrap_or_default(),
            r["rule"].as_str().unwrap_or_default(),
            moat_core::utc_text(r["stopped_ms"].as_i64().unwrap_or(0))
        ));
    }
    let let_in = super::pages::list(d, "let_in");
    if !let_in.is_empty() {
        t.push_str("\nLet in by hand:\n");
        for a in let_in {
            t.push_str(&format!(
                "  {} {}\n",
                a["net"].as_str().unwrap_or_default(),
                a["note"].as_str().unwrap_or_default()
            ));
        }
    }
    t.push_str("\nThe dashboard has the details: /dashboard/ on the admin listener.\n");
    t
}

/// The digest's mail through the report relay (`[report.arf]`), when `[digest] mail_to` is
/// set: the config check made sure the relay is there.
struct Mailer {
    sender: moat_report::smtp::SmtpSender,
    from: String,
    to: String,
}

impl Mailer {
    fn new(cfg: &moat_config::Config, to: &str) -> Option<Mailer> {
        let report = cfg.report.as_ref()?;
        let arf = report.arf.as_ref()?;
        let timeout = Duration::from_secs(report.timeout_secs.max(1));
        match moat_report::smtp::SmtpSender::new(&arf.smtp, &report.reporter.reporting_mta, timeout)
        {
            Ok(sender) => Some(Mailer {
                sender,
                from: arf.from.clone(),
                to: to.to_string(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "digest: no mail (the report relay's settings)");
                None
            }
        }
    }

    async fn send(&self, digest: &Value, now_ms: u64) {
        // Requests stopped, and the mail side's attacks (scripted sends and the decisions by
        // action are among the requests stopped already).
        let stopped: u64 = ["stopped", "brute_force", "enumeration", "jails", "trap"]
            .iter()
            .filter_map(|k| digest["attacks"][k].as_u64())
            .sum();
        let subject = format!(
            "Moat digest: {stopped} attacks stopped, {} bans, {} messages caught, {} stopped then passed the proof",
            digest["bans_made"],
            digest["caught"]["messages"],
            super::pages::list(digest, "rescued").len()
        );
        let unique = format!("moat-digest-{now_ms}");
        let message = moat_report::owner_mail::plain(
            &self.from,
            &self.to,
            &subject,
            &text(digest),
            now_ms,
            &unique,
        );
        match self.sender.send(&self.from, &self.to, &message).await {
            moat_report::smtp::SmtpOutcome::Accepted { .. } => {
                tracing::info!(target: "moat::digest", to = %self.to, "digest mailed")
            }
            other => tracing::warn!(target: "moat::digest", to = %self.to, outcome = ?other,
                "digest: the relay did not take the mail"),
        }
    }
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
        let mailer = cfg
            .mail_to
            .as_deref()
            .and_then(|to| Mailer::new(&d.live.current().cfg, to));
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
            if let Some(m) = &mailer {
                m.send(&digest, to).await;
            }
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
