//! The nftables enforcer's start in `moat run`: on, off, or tried and reported.

/// Starts the nftables enforcer unless it is off. Unset, a machine without nftables or the
/// permission for it gets one line saying so; `enabled = true` makes that an error.
pub async fn start(
    cfg: &moat_config::Config,
    engine: std::sync::Arc<moat_engine::Engine>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    // MOAT_NFTABLES=on|off|auto overrides the config: the test suite runs Moat as root on a
    // developer's machine, and must not touch its firewall.
    let enabled = match std::env::var("MOAT_NFTABLES").ok().as_deref() {
        Some("off") => Some(false),
        Some("on") => Some(true),
        Some("auto") => None,
        Some(other) => anyhow::bail!("MOAT_NFTABLES={other}: use on, off or auto"),
        None => cfg.nftables.enabled,
    };
    if enabled == Some(false) {
        return Ok(None);
    }
    let nc = moat_nftables::NftConfig {
        table: cfg.nftables.table.clone(),
        never: cfg.server.trusted_proxies.clone(),
        trap_redirect: cfg.nftables.trap_redirect.iter().map(redirect).collect(),
        ..Default::default()
    };
    // The first batch (the table, rebuilt from the bans in force) decides whether it works.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let r = moat_nftables::enforcer::run_with_ready(engine, nc, ready_tx).await;
        if let Err(e) = r {
            tracing::error!(error = %e, "nftables enforcer stopped");
        }
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(Some(task)),
        Ok(Err(e)) if enabled.is_none() => {
            tracing::info!(reason = %e, "nftables not available here: bans are enforced by Moat itself (set [nftables] enabled = false to skip trying)");
            Ok(None)
        }
        Ok(Err(e)) => anyhow::bail!("[nftables] enabled = true, but {e}"),
        Err(_) => anyhow::bail!("the nftables enforcer did not start"),
    }
}

/// A checked `[[nftables.trap_redirect]]` as the enforcer's rule: a listener on every address
/// is reached by `redirect`, one on a single address by `dnat` to it.
fn redirect(r: &moat_config::TrapRedirect) -> moat_nftables::TrapRedirect {
    let target = |a: std::net::IpAddr| match a.is_unspecified() {
        true => moat_nftables::Target::Local,
        false => moat_nftables::Target::Addr(a),
    };
    moat_nftables::TrapRedirect {
        ports: r.ports.clone(),
        port: r.to,
        v4: r.listen4.map(target),
        v6: r.listen6.map(target),
    }
}
