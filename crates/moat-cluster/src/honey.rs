//! Honey accounts shared between the instances of a cluster: each one a mail shield makes is
//! kept in the hash `PREFIX honey` (login → account, the first one wins) and announced on the
//! decisions channel; a honey account found real is removed from the hash, remembered in the
//! set `PREFIX honey-real`, and announced, so it stops being honey everywhere at once.
//!
//! Every instance judges what it receives by its own rules ([`HoneyAccounts::adopt`]): the
//! cluster carries news, never decides that an account exists on a machine.

use crate::decisions::Sync;
use moat_core::shared_honey::{HoneyAccounts, HoneyNews, SharedHoney};
use redis::aio::ConnectionManager;
use std::collections::{HashMap, HashSet};

/// A shared account as the hash and the channel carry it.
pub(crate) fn honey_json(h: &SharedHoney) -> serde_json::Value {
    serde_json::json!({"login": h.login, "password": h.password, "expires": h.expires})
}

pub(crate) fn honey_from_json(v: &serde_json::Value) -> Option<SharedHoney> {
    Some(SharedHoney {
        login: v.get("login")?.as_str()?.to_string(),
        password: v.get("password")?.as_str()?.to_string(),
        expires: v.get("expires")?.as_u64()?,
    })
}

impl Sync {
    fn accounts(&self) -> Option<&dyn HoneyAccounts> {
        self.honey.get().map(|a| a.as_ref())
    }

    /// `honey` and `honey-real` messages from the channel.
    pub(crate) fn receive_honey(&self, op: &str, body: &serde_json::Value) {
        let Some(accounts) = self.accounts() else {
            return;
        };
        match op {
            "honey" => match honey_from_json(body) {
                Some(h) => {
                    accounts.adopt(&h, false);
                }
                None => tracing::warn!("cluster: an unreadable honey account"),
            },
            _ => match body.as_str() {
                Some(login) => accounts.found_real(login),
                None => tracing::warn!("cluster: an unreadable real login"),
            },
        }
    }

    /// Shares one piece of news made here. An account whose login the hash already holds (another
    /// instance made it first, with another password maybe) is replaced here by the hash's.
    pub(crate) async fn send_honey(
        &self,
        news: &HoneyNews,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<()> {
        match news {
            HoneyNews::Made(h) => {
                let j = honey_json(h);
                let first: bool = redis::cmd("HSETNX")
                    .arg(&self.honey_hash)
                    .arg(&h.login)
                    .arg(j.to_string())
                    .query_async(conn)
                    .await?;
                if first {
                    let _: () = redis::cmd("PUBLISH")
                        .arg(&self.channel)
                        .arg(crate::decisions::message(self.id, "honey", j))
                        .query_async(conn)
                        .await?;
                } else {
                    let theirs: Option<String> = redis::cmd("HGET")
                        .arg(&self.honey_hash)
                        .arg(&h.login)
                        .query_async(conn)
                        .await?;
                    let theirs = theirs
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .and_then(|v| honey_from_json(&v));
                    if let (Some(t), Some(a)) = (theirs, self.accounts()) {
                        a.adopt(&t, true);
                    }
                }
            }
            HoneyNews::Real(login) => {
                let mut p = redis::pipe();
                self.real_commands(&mut p, login);
                if let Err(e) = p.query_async::<()>(conn).await {
                    // Safety, not bait: told at the next connection, before anything else.
                    let mut pending = self.pending_real.lock().unwrap_or_else(|p| p.into_inner());
                    pending.push(login.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn real_commands(&self, p: &mut redis::Pipeline, login: &str) {
        p.hdel(&self.honey_hash, login)
            .ignore()
            .sadd(&self.honey_real, login)
            .ignore()
            .publish(
                &self.channel,
                crate::decisions::message(self.id, "honey-real", login.into()),
            )
            .ignore();
    }

    /// After a (re)connection: the logins found real go first, then the hash's accounts are
    /// taken (the hash's copy wins over one made here meanwhile), expired ones are dropped from
    /// it, and the accounts made here that it lacks are added and announced. Returns how many
    /// of the hash's accounts are honey here.
    pub(crate) async fn catch_up_honey(
        &self,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<usize> {
        let Some(accounts) = self.accounts() else {
            return Ok(0);
        };
        let pending: Vec<String> =
            std::mem::take(&mut *self.pending_real.lock().unwrap_or_else(|p| p.into_inner()));
        if !pending.is_empty() {
            let mut p = redis::pipe();
            for login in &pending {
                self.real_commands(&mut p, login);
            }
            if let Err(e) = p.query_async::<()>(conn).await {
                let mut back = self.pending_real.lock().unwrap_or_else(|p| p.into_inner());
                back.extend(pending);
                return Err(e);
            }
        }
        let real: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(&self.honey_real)
            .query_async(conn)
            .await?;
        for login in &real {
            accounts.found_real(login);
        }
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.honey_hash)
            .query_async(conn)
            .await?;
        let now = self.engine.now_ms() / 1000;
        let (mut taken, mut stale) = (0, Vec::new());
        for (login, text) in &all {
            let h = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| honey_from_json(&v));
            match h {
                Some(h) if h.expires > now && h.login == *login && !real.contains(login) => {
                    if accounts.adopt(&h, true) {
                        taken += 1;
                    }
                }
                _ => stale.push(login.clone()),
            }
        }
        let mut p = redis::pipe();
        if !stale.is_empty() {
            p.hdel(&self.honey_hash, stale).ignore();
        }
        for h in accounts.accounts() {
            if !all.contains_key(&h.login) {
                let j = honey_json(&h);
                p.hset_nx(&self.honey_hash, &h.login, j.to_string())
                    .ignore()
                    .publish(
                        &self.channel,
                        crate::decisions::message(self.id, "honey", j),
                    )
                    .ignore();
            }
        }
        let _: () = p.query_async(conn).await?;
        Ok(taken)
    }
}
