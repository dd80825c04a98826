//! The enforcer: follows the decider's changes and keeps the kernel's sets equal to the bans in
//! force. At start it rebuilds the table from the decisions in force (what was added while
//! Moat was down expired by itself; nothing banned is lost), then applies each burst of
//! changes as one batch. A batch the kernel refuses (an element that expired there a moment
//! early, an overlap) makes it rebuild the table from the decisions again, atomically.
//!
//! Never in the sets: loopback, and the networks it is told never to ban (the trusted
//! proxies: banning the proxy bans everyone behind it). The allowlist has its own sets,
//! accepted before any drop.

use crate::batch::Batch;
use crate::redirect::TrapRedirect;
use ipnet::IpNet;
use moat_core::{Decision, Scope};
use moat_engine::changes::Change;
use moat_engine::Engine;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;

#[derive(Debug, Clone)]
pub struct NftConfig {
    pub table: String,
    pub nft: PathBuf,
    /// The input chain's priority (filter is 0; Moat drops first).
    pub priority: i32,
    /// Never banned in the kernel (trusted proxies); loopback is added by the enforcer.
    pub never: Vec<IpNet>,
    /// Banned addresses' connections to these ports go to the trap instead of the drop.
    pub trap_redirect: Vec<TrapRedirect>,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            table: "moat".into(),
            nft: PathBuf::from("nft"),
            priority: -10,
            never: Vec::new(),
            trap_redirect: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("nft refused the batch: {0}")]
    Refused(String),
}

/// Runs one batch through `nft -j -f -`.
pub async fn apply(cfg: &NftConfig, batch: &Batch) -> Result<(), NftError> {
    if batch.is_empty() {
        return Ok(());
    }
    let nft = cfg.nft.display().to_string();
    let mut child = tokio::process::Command::new(&cfg.nft)
        .args(["-j", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NftError::Spawn(nft.clone(), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.to_json().as_bytes())
            .await
            .map_err(|e| NftError::Spawn(nft.clone(), e))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| NftError::Spawn(nft, e))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(NftError::Refused(
            err.lines().take(3).collect::<Vec<_>>().join(" / "),
        ))
    }
}

/// What the kernel holds, as far as the enforcer knows: each ban element and its end.
struct Enforcer {
    cfg: NftConfig,
    engine: Arc<Engine>,
    held: HashMap<IpNet, Option<u64>>,
}

impl Enforcer {
    fn net_of(&self, scope: &Scope) -> Option<IpNet> {
        let net = match scope {
            Scope::Ip(ip) => IpNet::from(ip.to_canonical()),
            Scope::Prefix(n) => n.trunc(),
        };
        let never = net.addr().is_loopback()
            || net.addr().is_unspecified()
            || self
                .cfg
                .never
                .iter()
                .any(|n| n.contains(&net) || net.contains(n));
        (!never).then_some(net)
    }

    fn timeout(&self, d: &Decision) -> Option<Option<u64>> {
        let now = self.engine.now_ms();
        match d.expires_ms {
            None => Some(None),
            Some(e) if e > now => Some(Some((e - now).div_ceil(1000))),
            Some(_) => None,
        }
    }

    /// Adds `d` to `b`, unless it is never banned, already over, or inside a network already
    /// held (an interval set refuses overlaps; the wider ban covers it).
    fn add(&mut self, b: &mut Batch, d: &Decision) {
        let Some(net) = self.net_of(&d.scope) else {
            return;
        };
        let Some(timeout) = self.timeout(d) else {
            return;
        };
        if self.held.contains_key(&net) {
            b.delete(&net);
        } else if net.prefix_len() < net.max_prefix_len() {
            if self
                .held
                .keys()
                .any(|h| *h != net && h.contains(&net) && h.prefix_len() < h.max_prefix_len())
            {
                return;
            }
            let inside: Vec<IpNet> = self
                .held
                .keys()
                .filter(|h| h.prefix_len() < h.max_prefix_len() && net.contains(*h))
                .copied()
                .collect();
            for h in inside {
                b.delete(&h);
                self.held.remove(&h);
            }
        }
        b.add(&net, timeout);
        self.held.insert(net, d.expires_ms);
    }

    /// The whole table from the decisions in force.
    fn rebuild(&mut self) -> Batch {
        let (bans, allow) = self.engine.decisions();
        self.held.clear();
        let mut b = Batch::new(&self.cfg.table);
        b.recreate(self.cfg.priority, &self.cfg.trap_redirect)
            .allowlist(&allow);
        // Widest first, so a narrower ban inside a held network is skipped, not refused.
        let mut bans = bans;
        bans.sort_by_key(|d| match &d.scope {
            Scope::Ip(_) => 255,
            Scope::Prefix(n) => n.prefix_len(),
        });
        for d in &bans {
            self.add(&mut b, d);
        }
        b
    }

    fn change(&mut self, b: &mut Batch, c: Change) {
        match c {
            Change::Added(d) | Change::Extended(d) => self.add(b, &d),
            Change::Removed { scope, expired } => {
                if let Some(net) = self.net_of(&scope) {
                    if self.held.remove(&net).is_some() && !expired {
                        b.delete(&net);
                    }
                }
            }
            Change::Allowlist(list) => {
                b.allowlist(&list);
            }
        }
    }
}

/// Follows `engine`'s decisions into the kernel until the engine's channel closes. Returns
/// at once, having said why, if nftables cannot be used here (no `nft`, no permission).
pub async fn run(engine: Arc<Engine>, cfg: NftConfig) -> Result<(), NftError> {
    let (tx, _rx) = tokio::sync::oneshot::channel();
    run_with_ready(engine, cfg, tx).await
}

/// [`run`], saying on `ready` whether the table could be made (and why not), before
/// following changes.
pub async fn run_with_ready(
    engine: Arc<Engine>,
    cfg: NftConfig,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) -> Result<(), NftError> {
    let mut rx = engine.subscribe();
    let mut e = Enforcer {
        cfg,
        engine,
        held: HashMap::new(),
    };
    let first = e.rebuild();
    if let Err(err) = apply(&e.cfg, &first).await {
        let _ = ready.send(Err(err.to_string()));
        return Ok(());
    }
    let _ = ready.send(Ok(()));
    tracing::info!(table = %e.cfg.table, bans = e.held.len(), "nftables: bans are enforced in the kernel");
    for r in &e.cfg.trap_redirect {
        tracing::info!(ports = ?r.ports, trap_port = r.port, ipv4 = r.v4.is_some(), ipv6 = r.v6.is_some(),
            "nftables: banned addresses' connections to these ports go to the trap");
    }
    loop {
        let first = match rx.recv().await {
            Ok(c) => c,
            Err(RecvError::Closed) => return Ok(()),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "nftables: fell behind the decisions; rebuilding"
                );
                let b = e.rebuild();
                if let Err(err) = apply(&e.cfg, &b).await {
                    tracing::error!(error = %err, "nftables: rebuild failed");
                }
                continue;
            }
        };
        let mut b = Batch::new(&e.cfg.table);
        e.change(&mut b, first);
        // The rest of the burst, in the same transaction.
        let mut lagged = false;
        loop {
            match rx.try_recv() {
                Ok(c) => e.change(&mut b, c),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                    lagged = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let result = match lagged {
            true => Err(NftError::Refused("fell behind".into())),
            false => apply(&e.cfg, &b).await,
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "nftables: rebuilding the table from the decisions");
            let b = e.rebuild();
            if let Err(err) = apply(&e.cfg, &b).await {
                tracing::error!(error = %err, "nftables: rebuild failed; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
