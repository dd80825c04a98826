//! One shield across several machines (`[cluster] redis = "redis://…"`): the HTTP shield's
//! rate limits counted in Redis or Valkey ([`limits`]), and every ban shared between the
//! instances within a second ([`decisions`]). SQLite stays each instance's own store: a
//! single machine needs nothing here.
//!
//! When Redis is away, each instance goes on with its own state: limits count locally (or
//! refuse, with `on_unreachable = "closed"`), bans hold where they were made. It reconnects by
//! itself and catches up on the bans it missed.

pub mod decisions;
pub mod honey;
pub mod limits;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use moat_core::shared::WhenUnreachable;
use moat_core::shared_honey::{HoneyAccounts, HoneyNews};
use moat_engine::Engine;
use moat_listen::Shutdown;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;

/// `[cluster]`, as the composition root hands it over.
#[derive(Debug, Clone)]
pub struct Settings {
    pub redis: String,
    /// Put before every key and channel, so several sites can share one Redis.
    pub prefix: String,
    /// A limit check that takes longer counts as unreachable.
    pub timeout: Duration,
    pub on_unreachable: WhenUnreachable,
}

/// What started: the limits (also set on the engine) for metrics and benchmarks.
pub struct Cluster {
    pub limits: Arc<limits::RedisLimits>,
    pub sync: Arc<decisions::Sync>,
    conn: Arc<ArcSwapOption<ConnectionManager>>,
}

impl Cluster {
    /// Shares the mail shield's honey accounts with the other instances, and takes theirs
    /// (each judged by `accounts`' own rules). Once; the mail shield starts after the cluster.
    pub fn share_honey(
        &self,
        accounts: Arc<dyn HoneyAccounts>,
        mut news: tokio::sync::broadcast::Receiver<HoneyNews>,
        shutdown: &Shutdown,
    ) {
        if self.sync.honey.set(accounts).is_err() {
            return;
        }
        let (sync, conn, stop) = (self.sync.clone(), self.conn.clone(), shutdown.clone());
        shutdown.spawn(async move {
            // What the others made before this shield started.
            let mut m = loop {
                if let Some(m) = conn.load_full() {
                    break (*m).clone();
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.cancelled() => return,
                }
            };
            if let Err(e) = sync.catch_up_honey(&mut m).await {
                tracing::warn!(error = %e, "cluster: cannot read the shared honey accounts");
            }
            while let Some(item) = next(&mut news, &stop).await {
                if let Err(e) = sync.send_honey(&item, &mut m).await {
                    tracing::debug!(error = %e, "cluster: honey account not shared now (caught up at the next connection)");
                }
            }
        });
    }

    /// `/metrics` samples: checks through Redis, and those that fell back.
    pub fn metrics(&self) -> Vec<moat_core::metric::Sample> {
        use moat_core::metric::Sample;
        use std::sync::atomic::Ordering;
        vec![
            Sample::counter(
                "moat_cluster_limit_checks_total",
                "Requests whose rate limits were checked in Redis.",
                self.limits.checks.load(Ordering::Relaxed),
            ),
            Sample::counter(
                "moat_cluster_limit_fallbacks_total",
                "Of those, how many Redis did not answer in time (counted locally or refused).",
                self.limits.failures.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// How often the hash is read again even without a reconnection (a missed message, a lagging
/// follower).
const RESYNC: Duration = Duration::from_secs(300);

/// The next item, skipping what a lagging receiver missed (the catch-up at the next
/// connection makes up for it); `None` once stopping or closed.
async fn next<T: Clone>(
    rx: &mut tokio::sync::broadcast::Receiver<T>,
    stop: &Shutdown,
) -> Option<T> {
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = stop.cancelled() => return None,
        };
        match item {
            Ok(item) => return Some(item),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// Sends to Redis what `out` makes of each item from `rx`, while connected. What is missed (not
/// connected, a lagging receiver) is caught up at the next connection.
fn spawn_out<T: Clone + Send + 'static>(
    shutdown: &Shutdown,
    conn: &Arc<ArcSwapOption<ConnectionManager>>,
    mut rx: tokio::sync::broadcast::Receiver<T>,
    out: impl Fn(&T) -> Option<redis::Pipeline> + Send + 'static,
) {
    let (conn, stop) = (conn.clone(), shutdown.clone());
    shutdown.spawn(async move {
        while let Some(item) = next(&mut rx, &stop).await {
            let (Some(pipe), Some(m)) = (out(&item), conn.load_full()) else {
                continue;
            };
            let mut m = (*m).clone();
            if let Err(e) = pipe.query_async::<()>(&mut m).await {
                tracing::debug!(error = %e, "cluster: not shared now (caught up at the next connection)");
            }
        }
    });
}

/// Starts the connection, the limits and the decision sync under `shutdown`; never fails on an
/// unreachable Redis (it is retried every second), only on a URL that is not one.
pub fn start(
    s: &Settings,
    engine: &Arc<Engine>,
    shutdown: &Shutdown,
) -> Result<Cluster, redis::RedisError> {
    let client = redis::Client::open(s.redis.as_str())?;
    let conn: Arc<ArcSwapOption<ConnectionManager>> = Arc::new(ArcSwapOption::empty());
    let limits = Arc::new(limits::RedisLimits::new(
        conn.clone(),
        &s.prefix,
        s.timeout,
        s.on_unreachable,
    ));
    engine.set_shared_limits(limits.clone());
    let sync = Arc::new(decisions::Sync::new(engine.clone(), &s.prefix));

    // The request connection: made once, then the manager reconnects by itself.
    {
        let (client, conn, stop) = (client.clone(), conn.clone(), shutdown.clone());
        shutdown.spawn(async move {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_secs(2))
                .set_response_timeout(Duration::from_secs(2))
                .set_number_of_retries(2);
            let mut logged = false;
            loop {
                match ConnectionManager::new_with_config(client.clone(), cfg.clone()).await {
                    Ok(m) => {
                        conn.store(Some(Arc::new(m)));
                        tracing::info!("cluster: connected to Redis");
                        return;
                    }
                    Err(e) if !logged => {
                        logged = true;
                        tracing::warn!(error = %e, "cluster: cannot reach Redis yet; retrying every second");
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    // What this instance decides and learns, out.
    {
        let sync2 = sync.clone();
        spawn_out(shutdown, &conn, engine.subscribe(), move |c| {
            sync2.outgoing(c)
        });
        let sync2 = sync.clone();
        spawn_out(shutdown, &conn, engine.follow_learned(), move |id| {
            sync2.outgoing_learned(id)
        });
    }

    // What the others decide, in; and the catch-up at every (re)connection.
    {
        let (sync, conn, stop) = (sync.clone(), conn.clone(), shutdown.clone());
        shutdown.spawn(async move {
            // Said once per outage.
            let mut down_logged = true;
            loop {
                let subscribed = async {
                    let mut ps = client.get_async_pubsub().await?;
                    ps.subscribe(&sync.channel).await?;
                    Ok::<_, redis::RedisError>(ps)
                }
                .await;
                let Ok(mut ps) = subscribed else {
                    if !down_logged {
                        down_logged = true;
                        tracing::warn!("cluster: lost Redis; bans are kept here and shared again when it is back");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.cancelled() => return,
                    }
                };
                down_logged = false;
                // Wait for the request connection, then catch up.
                let m = loop {
                    if let Some(m) = conn.load_full() {
                        break m;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.cancelled() => return,
                    }
                };
                let mut m = (*m).clone();
                match sync.catch_up(&mut m).await {
                    Ok(n) => tracing::info!(bans = n, "cluster: caught up on the shared bans"),
                    Err(e) => tracing::warn!(error = %e, "cluster: cannot read the shared bans"),
                }
                let mut messages = ps.on_message();
                let mut resync = tokio::time::interval(RESYNC);
                resync.tick().await;
                loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(msg) => match msg.get_payload::<String>() {
                                Ok(p) => sync.receive(&p),
                                Err(e) => tracing::warn!(error = %e, "cluster: an unreadable message"),
                            },
                            None => break,
                        },
                        _ = resync.tick() => {
                            let _ = sync.catch_up(&mut m).await;
                        }
                        _ = stop.cancelled() => return,
                    }
                }
                if !down_logged {
                    down_logged = true;
                    tracing::warn!("cluster: lost Redis; bans are kept here and shared again when it is back");
                }
            }
        });
    }
    Ok(Cluster { limits, sync, conn })
}
