//! Rate limits counted in Redis: every limit that applies to a request, checked and counted
//! in one server-side script, so instances never disagree and a request costs one round trip.
//!
//! The script runs GCRA exactly as `moat-detect`'s local limiter does (theoretical arrival
//! time per key; a request conforms while it runs at most `tau` ahead of now; a conforming
//! request moves it on by one interval), on the server's clock (`TIME`), so the instances'
//! clocks do not matter. Like the local limiter it makes two passes: a request a later limit
//! stops does not spend an earlier limit's allowance.

use arc_swap::ArcSwapOption;
use moat_core::shared::{
    SharedCheck, SharedError, SharedFuture, SharedLimits, SharedOutcome, WhenUnreachable,
};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// KEYS: one per check. ARGV: per check, interval (µs), tau (µs), 1 if it stops the request.
/// Returns pairs (0-based index, wait in µs) of the limits exceeded: log limits, then the first
/// stopping one, at which it stops without counting anything.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = redis.call('MGET', unpack(KEYS))
local out = {}
local next_tat = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 2])
  local tau = tonumber(ARGV[3 * i - 1])
  local tat = math.max(tonumber(tats[i]) or 0, now)
  if tat - now > tau then
    out[#out + 1] = i - 1
    out[#out + 1] = tat - now - tau
    if ARGV[3 * i] == '1' then
      return out
    end
  else
    next_tat[i] = tat + interval
  end
end
for i = 1, #KEYS do
  if next_tat[i] then
    local ttl = math.max(1, math.ceil((next_tat[i] - now) / 1000))
    redis.call('SET', KEYS[i], string.format('%.0f', next_tat[i]), 'PX', ttl)
  end
end
return out
"#;

pub struct RedisLimits {
    pub(crate) conn: Arc<ArcSwapOption<ConnectionManager>>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    mode: WhenUnreachable,
    /// Checks that fell back (store unreachable or too slow), for metrics.
    pub failures: AtomicU64,
    pub checks: AtomicU64,
    down: AtomicBool,
}

impl RedisLimits {
    pub fn new(
        conn: Arc<ArcSwapOption<ConnectionManager>>,
        prefix: &str,
        timeout: Duration,
        mode: WhenUnreachable,
    ) -> RedisLimits {
        RedisLimits {
            conn,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_string(),
            timeout,
            mode,
            failures: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// A limit's counter for one key: the key is hashed, so emails are not kept in Redis.
    fn key(&self, c: &SharedCheck) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &c.key);
        let mut k = format!("{}l:{}:", self.prefix, c.limit);
        for b in &d.as_ref()[..16] {
            k.push_str(&format!("{b:02x}"));
        }
        k
    }

    async fn run(&self, checks: Vec<SharedCheck>) -> Result<SharedOutcome, SharedError> {
        let Some(conn) = self.conn.load_full() else {
            return Err(SharedError("not connected".into()));
        };
        let mut conn = (*conn).clone();
        let mut inv = self.script.prepare_invoke();
        for c in &checks {
            inv.key(self.key(c));
        }
        for c in &checks {
            inv.arg(c.interval_us).arg(c.tau_us).arg(u8::from(c.stops));
        }
        let flat: Vec<i64> = tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| SharedError(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| SharedError(e.to_string()))?;
        let exceeded = flat
            .chunks_exact(2)
            .map(|p| (p[0].max(0) as usize, p[1].max(0) as u64))
            .collect();
        Ok(SharedOutcome { exceeded })
    }
}

impl SharedLimits for RedisLimits {
    fn check(&self, checks: Vec<SharedCheck>) -> SharedFuture<'_> {
        Box::pin(async move {
            self.checks.fetch_add(1, Ordering::Relaxed);
            let r = self.run(checks).await;
            match &r {
                Ok(_) => {
                    if self.down.swap(false, Ordering::Relaxed) {
                        tracing::info!("shared rate limits: Redis answers again");
                    }
                }
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    if !self.down.swap(true, Ordering::Relaxed) {
                        let mode = match self.mode {
                            WhenUnreachable::Local => "counting with this instance's own limiters",
                            WhenUnreachable::Closed => {
                                "refusing what the limits cover (fail closed)"
                            }
                        };
                        tracing::warn!(error = %e, "shared rate limits: Redis does not answer; {mode} until it does");
                    }
                }
            }
            r
        })
    }

    fn when_unreachable(&self) -> WhenUnreachable {
        self.mode
    }
}
