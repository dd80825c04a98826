//! The reporter: plans the reports an incident calls for, writes dry runs to the outbox, and
//! sends queued reports within the rate limits, retrying with backoff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use moat_core::{Clock, SystemClock};
use serde_json::{json, Value};

use crate::http::{HttpClient, Reach, DEFAULT_MAX_BODY};
use crate::outbox;
use crate::plan::{Mode, Plan, JSON};
use crate::policy::{self, Verdict, HOUR_MS};
use crate::rdap::{Bootstrap, RdapClient};
use crate::smtp::{SmtpOutcome, SmtpSender};
use crate::store::{Job, NewReport, Outcome, Store};
use crate::{abuseipdb, spamhaus, Incident, Record, ReportConfig, ReportError, Status, Target};

/// Queued reports handled per pump.
const PUMP_BATCH: usize = 200;

pub struct Reporter {
    pub(crate) cfg: ReportConfig,
    pub(crate) store: Store,
    http: HttpClient,
    pub(crate) rdap: RdapClient,
    pub(crate) smtp: Option<SmtpSender>,
    outbox: PathBuf,
    pump_lock: tokio::sync::Mutex<()>,
}

impl Reporter {
    /// Opens (or creates) the report database at `db` and checks the config. Nothing is sent
    /// and nothing is looked up here.
    pub fn open(db: &Path, cfg: ReportConfig) -> Result<Reporter, ReportError> {
        cfg.validate()?;
        let store = Store::open(db)?;
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let bootstrap = Bootstrap::load(cfg.rdap.bootstrap_dir.as_deref())?;
        let reach = Reach::naming(cfg.target_urls(), bootstrap.hosts());
        let http = HttpClient::new(timeout, DEFAULT_MAX_BODY, &cfg.reporter.user_agent, reach)?;
        let rdap = RdapClient::new(
            bootstrap,
            http.clone(),
            cfg.rdap.cache_ttl_secs.saturating_mul(1000),
            cfg.rdap.negative_ttl_secs.saturating_mul(1000),
        );
        let smtp = match &cfg.arf {
            Some(a) if !a.smtp.host.is_empty() => Some(SmtpSender::new(
                &a.smtp,
                &cfg.reporter.reporting_mta,
                timeout,
            )?),
            _ => None,
        };
        let outbox = if cfg.outbox.is_absolute() {
            cfg.outbox.clone()
        } else {
            db.parent().unwrap_or(Path::new(".")).join(&cfg.outbox)
        };
        Ok(Reporter {
            cfg,
            store,
            http,
            rdap,
            smtp,
            outbox,
            pump_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn config(&self) -> &ReportConfig {
        &self.cfg
    }

    /// The outbox folder (absolute, or relative to the working directory).
    pub fn outbox_dir(&self) -> &Path {
        &self.outbox
    }

    /// [`Reporter::submit_at`] by the system clock.
    pub async fn submit(&self, inc: &Incident) -> Result<Vec<Record>, ReportError> {
        self.submit_at(inc, SystemClock.now_ms()).await
    }

    /// Plans the incident's reports, records them, writes dry runs to the outbox and tries to
    /// send the live ones now. Returns the incident's new reports in their state after that
    /// first attempt (pairs reported within the dedupe window yield nothing).
    pub async fn submit_at(&self, inc: &Incident, now_ms: u64) -> Result<Vec<Record>, ReportError> {
        let plans = self.plan(inc, now_ms).await?;
        let mut ids = Vec::with_capacity(plans.len());
        for p in &plans {
            ids.push(self.record_plan(inc, p, now_ms)?);
        }
        self.pump(now_ms).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.store.get(id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The latest `limit` reports, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<Record>, ReportError> {
        self.store.history(limit)
    }

    /// Every report about one quarantined message, oldest first.
    pub fn reports_for(&self, message_id: &str) -> Result<Vec<Record>, ReportError> {
        self.store.for_message(message_id)
    }

    /// When the next queued report is due, if any (for scheduling [`Reporter::pump`]).
    pub fn next_due_ms(&self) -> Result<Option<u64>, ReportError> {
        self.store.next_due()
    }

    /// Sends the queued reports due at `now_ms` (first attempts, retries, reports the rate
    /// limit held back). Targets that are not live now (sending switched off, target removed)
    /// keep their reports queued. Returns the reports it touched, in their new state.
    pub async fn pump(&self, now_ms: u64) -> Result<Vec<Record>, ReportError> {
        let _guard = self.pump_lock.lock().await;
        let stale = self.cfg.timeout_secs.saturating_mul(3000) + 60_000;
        let mut touched = Vec::new();
        for job in self.store.due(now_ms, stale, PUMP_BATCH)? {
            let Some(max_per_hour) = self.live_limit(job.target) else {
                continue;
            };
            let recent = self
                .store
                .attempts_since(job.target, now_ms.saturating_sub(HOUR_MS))?;
            if let Err(at) = policy::rate_limit(&recent, now_ms, max_per_hour) {
                let why = format!("rate limit: {max_per_hour} per hour");
                self.store.defer(job.id, at, now_ms, &why)?;
            } else if self.store.claim(job.id, now_ms)? {
                self.store.log_attempt(job.target, now_ms)?;
                let outcome = self.attempt(&job, now_ms).await;
                if matches!(outcome.status, Status::Rejected | Status::Failed) {
                    for ind in job.indicator.split(' ') {
                        self.store.unmark_reported(job.target, ind)?;
                    }
                }
                self.store.finish(job.id, &outcome, now_ms)?;
                match outcome.status {
                    Status::Sent => tracing::info!(target: "moat::report", id = job.id,
                        to = job.target.as_str(), indicator = %job.indicator, answer = %outcome.answer, "report sent"),
                    Status::Queued => tracing::info!(target: "moat::report", id = job.id,
                        to = job.target.as_str(), answer = %outcome.answer, "report will be retried"),
                    _ => tracing::warn!(target: "moat::report", id = job.id,
                        to = job.target.as_str(), indicator = %job.indicator, answer = %outcome.answer, "report not delivered"),
                }
            } else {
                continue;
            }
            if let Some(r) = self.store.get(job.id)? {
                touched.push(r);
            }
        }
        Ok(touched)
    }

    /// The target's hourly limit if it is live (sending on and configured), else `None`.
    /// Planning and the pump both ask this, so "live" has one definition.
    pub(crate) fn live_limit(&self, t: Target) -> Option<u32> {
        if !self.cfg.send {
            return None;
        }
        let c = &self.cfg;
        match t {
            Target::Arf => c
                .arf
                .as_ref()
                .filter(|a| a.is_ready() && self.smtp.is_some())
                .map(|a| a.max_per_hour),
            Target::Xarf => c
                .xarf
                .as_ref()
                .filter(|x| x.is_ready())
                .map(|x| x.max_per_hour),
            Target::AbuseIpdb => c
                .abuseipdb
                .as_ref()
                .filter(|a| a.is_ready())
                .map(|a| a.max_per_hour),
            Target::Spamhaus => c
                .spamhaus
                .as_ref()
                .filter(|s| s.is_ready())
                .map(|s| s.max_per_hour),
            Target::Webhook => c
                .webhook
                .as_ref()
                .filter(|w| w.is_ready())
                .map(|w| w.max_per_hour),
        }
    }

    /// One delivery attempt, turned into the report's next state.
    async fn attempt(&self, job: &Job, now_ms: u64) -> Outcome {
        let attempts = job.attempts + 1;
        let (verdict, code, answer) = match job.target {
            Target::Arf => self.attempt_smtp(job).await,
            _ => self.attempt_http(job, now_ms).await,
        };
        let (status, answer, next_attempt_ms) = match verdict {
            Verdict::Accepted => (Status::Sent, answer, None),
            Verdict::Permanent => (Status::Rejected, answer, None),
            Verdict::Retry { min_delay_ms } => {
                match policy::next_attempt(&self.cfg.retry, attempts, now_ms, min_delay_ms) {
                    Some(next) => (Status::Queued, answer, Some(next)),
                    None => (
                        Status::Failed,
                        format!("gave up after {attempts} attempts: {answer}"),
                        None,
                    ),
                }
            }
        };
        Outcome {
            status,
            answer_code: code,
            answer,
            attempts,
            next_attempt_ms,
        }
    }

    async fn attempt_smtp(&self, job: &Job) -> (Verdict, Option<u16>, String) {
        let (Some(smtp), Some(a)) = (&self.smtp, &self.cfg.arf) else {
            return (Verdict::Permanent, None, "ARF is not configured".into());
        };
        match smtp.send(&a.from, &job.recipient, &job.payload).await {
            SmtpOutcome::Accepted { code, reply } => (
                Verdict::Accepted,
                Some(code),
                format!("SMTP {code} {reply}"),
            ),
            SmtpOutcome::Permanent { code, reply } => (Verdict::Permanent, code, reply),
            SmtpOutcome::Transient { code, reply } => {
                (Verdict::Retry { min_delay_ms: None }, code, reply)
            }
        }
    }

    /// The headers a target's requests carry; secrets come from the config, never the queue.
    fn headers(&self, t: Target) -> Vec<(String, String)> {
        let c = &self.cfg;
        let mut h = vec![("accept".to_string(), JSON.to_string())];
        match t {
            Target::AbuseIpdb => {
                if let Some(a) = &c.abuseipdb {
                    h.push(("key".into(), a.key.clone()));
                }
            }
            Target::Spamhaus => {
                if let Some(s) = &c.spamhaus {
                    h.push(("authorization".into(), format!("Bearer {}", s.token)));
                }
            }
            Target::Xarf => {
                if let Some(x) = &c.xarf {
                    h.extend(x.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            Target::Webhook => {
                if let Some(w) = &c.webhook {
                    h.extend(w.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            Target::Arf => {}
        }
        h
    }

    async fn attempt_http(&self, job: &Job, now_ms: u64) -> (Verdict, Option<u16>, String) {
        let headers = self.headers(job.target);
        let body = Some((job.content_type.as_str(), job.payload.clone()));
        match self
            .http
            .send(Method::POST, &job.recipient, &headers, body)
            .await
        {
            Ok(ans) => {
                let retry_after = ans
                    .header("retry-after")
                    .and_then(|v| policy::parse_retry_after(v, now_ms));
                let summary = match job.target {
                    Target::AbuseIpdb => abuseipdb::summarize(ans.status, &ans.body),
                    Target::Spamhaus => spamhaus::summarize(ans.status, &ans.body),
                    _ => format!(
                        "HTTP {}: {}",
                        ans.status,
                        crate::sanitize::excerpt(&ans.body, 200)
                    ),
                };
                (
                    policy::classify_http(ans.status, retry_after),
                    Some(ans.status),
                    summary,
                )
            }
            Err(crate::http::HttpError::Request(e)) => (Verdict::Permanent, None, e),
            Err(e) => (Verdict::Retry { min_delay_ms: None }, None, e.to_string()),
        }
    }

    /// Stores a plan: queued (live), written to the outbox, or failed.
    fn record_plan(&self, inc: &Incident, p: &Plan, now_ms: u64) -> Result<i64, ReportError> {
        let (status, answer) = match &p.mode {
            Mode::Live => (Status::Queued, None),
            Mode::DryRun(why) => (Status::DryRun, Some(why.as_str())),
            Mode::Written => (Status::Written, None),
            Mode::Failed(why) => (Status::Failed, Some(why.as_str())),
        };
        let indicator = p.indicators.join(" ");
        let id = self.store.insert(&NewReport {
            message_id: &inc.message_id,
            target: p.target,
            indicator: &indicator,
            recipient: &p.recipient,
            status,
            answer,
            now_ms,
            content_type: (status == Status::Queued).then_some(p.content_type),
            payload: (status == Status::Queued).then_some(p.payload.as_slice()),
        })?;
        if !matches!(p.mode, Mode::Failed(_)) {
            for ind in &p.indicators {
                self.store.mark_reported(p.target, ind, now_ms)?;
            }
        }
        let file = match &p.mode {
            Mode::DryRun(_) if p.target == Target::Arf => Some(p.payload.clone()),
            Mode::DryRun(_) => Some(self.request_file(p)),
            Mode::Written => Some(p.payload.clone()),
            _ => None,
        };
        if let Some(bytes) = file {
            let path = outbox::write(&self.outbox, now_ms, id, p.target.as_str(), p.ext, &bytes)?;
            self.store.set_outbox(id, &path.display().to_string())?;
        }
        Ok(id)
    }

    /// A dry-run HTTP report as a file: the request that would be made, secrets redacted.
    fn request_file(&self, p: &Plan) -> Vec<u8> {
        let headers: serde_json::Map<String, Value> = self
            .headers(p.target)
            .into_iter()
            .map(|(k, v)| {
                // API keys, bearer tokens and any configured header may be secrets.
                let secret = k != "accept";
                (
                    k,
                    Value::String(if secret { "<redacted>".into() } else { v }),
                )
            })
            .collect();
        let body = if p.content_type == JSON {
            serde_json::from_slice(&p.payload).unwrap_or(Value::Null)
        } else {
            Value::String(String::from_utf8_lossy(&p.payload).into_owned())
        };
        let doc = json!({
            "dry_run": true,
            "target": p.target.as_str(),
            "method": "POST",
            "url": p.recipient,
            "headers": headers,
            "content_type": p.content_type,
            "body": body,
        });
        serde_json::to_vec_pretty(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reporter is shared between tasks and its futures are spawned.
    #[allow(dead_code)]
    fn futures_are_send(r: &Reporter, inc: &Incident) {
        fn send<T: Send>(_: T) {}
        fn shared<T: Send + Sync>() {}
        shared::<Reporter>();
        send(r.submit(inc));
        send(r.pump(0));
    }
}
