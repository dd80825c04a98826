//! Planning: which reports an incident calls for, addressed and built, each marked live,
//! dry-run, written or failed. Only RDAP look-ups leave the machine here, and only when the
//! ARF target is live or `rdap_in_dry_run` allows them.

use crate::arf::{self, ArfParams, UNKNOWN_RECIPIENT};
use crate::rdap::Query;
use crate::{abuseipdb, spamhaus, webhook, xarf, Incident, ReportError, Reporter, Target};

pub(crate) const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const RFC822: &str = "message/rfc822";

/// How a planned report is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Queue it and send it.
    Live,
    /// Write it to the outbox instead, saying why.
    DryRun(String),
    /// Write it to the outbox: that is its delivery.
    Written,
    /// It cannot be made; record why.
    Failed(String),
}

/// One report an incident calls for.
pub(crate) struct Plan {
    pub(crate) target: Target,
    /// What the report is about (dedupe keys).
    pub(crate) indicators: Vec<String>,
    pub(crate) recipient: String,
    pub(crate) mode: Mode,
    pub(crate) content_type: &'static str,
    pub(crate) payload: Vec<u8>,
    /// File extension in the outbox.
    pub(crate) ext: &'static str,
}

impl Reporter {
    pub(crate) fn dry_run_reason(&self) -> String {
        if self.cfg.send {
            "target not fully configured".into()
        } else {
            "sending is off (send = false)".into()
        }
    }

    /// True if the pair was reported within the dedupe window.
    fn deduped(&self, t: Target, indicator: &str, now_ms: u64) -> Result<bool, ReportError> {
        let since = now_ms.saturating_sub(self.cfg.dedupe_window_secs.saturating_mul(1000));
        self.store.recently_reported(t, indicator, since)
    }

    pub(crate) async fn plan(&self, inc: &Incident, now_ms: u64) -> Result<Vec<Plan>, ReportError> {
        let mut plans = self.plan_arf(inc, now_ms).await?;
        plans.extend(self.plan_xarf(inc, now_ms)?);
        plans.extend(self.plan_abuseipdb(inc, now_ms)?);
        plans.extend(self.plan_spamhaus(inc, now_ms)?);
        plans.extend(self.plan_webhook(inc, now_ms)?);
        Ok(plans)
    }

    fn http_plan(
        &self,
        target: Target,
        indicator: String,
        url: String,
        content_type: &'static str,
        payload: Vec<u8>,
    ) -> Plan {
        Plan {
            target,
            indicators: vec![indicator],
            recipient: url,
            mode: if self.live_limit(target).is_some() {
                Mode::Live
            } else {
                Mode::DryRun(self.dry_run_reason())
            },
            content_type,
            payload,
            ext: "json",
        }
    }

    async fn plan_arf(&self, inc: &Incident, now_ms: u64) -> Result<Vec<Plan>, ReportError> {
        let Some(a) = &self.cfg.arf else {
            return Ok(Vec::new());
        };
        let live = self.live_limit(Target::Arf).is_some();
        let mut queries = Vec::new();
        if let Some(ip) = inc.reportable_ip() {
            queries.push(Query::Ip(ip));
        }
        queries.extend(inc.clean_domains(10).into_iter().map(Query::Domain));
        let mut fresh = Vec::new();
        for q in queries {
            if !self.deduped(Target::Arf, &q.key(), now_ms)? {
                fresh.push(q);
            }
        }
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let build = |to: &str, note: Option<&str>| {
            let unique = format!("{now_ms}.{:016x}", fastrand::u64(..));
            let boundary = arf::boundary(&inc.raw, fastrand::u64(..));
            let from = if a.from.is_empty() {
                &self.cfg.reporter.email
            } else {
                &a.from
            };
            arf::build(
                inc,
                &ArfParams {
                    from,
                    to,
                    reporting_mta: &self.cfg.reporter.reporting_mta,
                    user_agent: &self.cfg.reporter.user_agent,
                    date_ms: now_ms,
                    unique: &unique,
                    boundary: &boundary,
                    dry_run_note: note,
                },
            )
        };
        let arf_plan = |to: String, indicators: Vec<String>, mode: Mode, payload: Vec<u8>| Plan {
            target: Target::Arf,
            indicators,
            recipient: to,
            mode,
            content_type: RFC822,
            payload,
            ext: "eml",
        };

        if !live && !self.cfg.rdap_in_dry_run {
            let note = format!(
                "{}; RDAP not consulted (rdap_in_dry_run = false), so the abuse contact is unknown",
                self.dry_run_reason()
            );
            let payload = build(UNKNOWN_RECIPIENT, Some(&note));
            let keys = fresh.iter().map(Query::key).collect();
            return Ok(vec![arf_plan(
                UNKNOWN_RECIPIENT.into(),
                keys,
                Mode::DryRun(note),
                payload,
            )]);
        }

        // contact → the indicators it is the abuse contact for, in first-seen order.
        let mut by_contact: Vec<(String, Vec<String>)> = Vec::new();
        let mut plans = Vec::new();
        for q in &fresh {
            let why = match self.rdap.abuse_contacts(&self.store, q, now_ms).await {
                Ok(list) if !list.is_empty() => {
                    for c in list {
                        match by_contact
                            .iter_mut()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&c))
                        {
                            Some((_, inds)) => inds.push(q.key()),
                            None => by_contact.push((c, vec![q.key()])),
                        }
                    }
                    continue;
                }
                Ok(_) => "RDAP names no abuse contact".to_string(),
                Err(e) => e,
            };
            plans.push(arf_plan(
                String::new(),
                vec![q.key()],
                Mode::Failed(why),
                Vec::new(),
            ));
        }
        for (contact, inds) in by_contact.into_iter().take(a.max_contacts) {
            let (mode, note) = if live {
                (Mode::Live, None)
            } else {
                let why = self.dry_run_reason();
                (Mode::DryRun(why.clone()), Some(why))
            };
            let payload = build(&contact, note.as_deref());
            plans.push(arf_plan(contact, inds, mode, payload));
        }
        Ok(plans)
    }

    fn plan_xarf(&self, inc: &Incident, now_ms: u64) -> Result<Vec<Plan>, ReportError> {
        let Some(x) = &self.cfg.xarf else {
            return Ok(Vec::new());
        };
        let indicator = match inc.reportable_ip() {
            Some(ip) => format!("ip:{ip}"),
            None => format!("message:{}", inc.message_id),
        };
        if self.deduped(Target::Xarf, &indicator, now_ms)? {
            return Ok(Vec::new());
        }
        let doc = xarf::build(inc, &self.cfg.reporter, x.include_sample);
        if let Some(url) = x.url.clone().filter(|u| !u.is_empty()) {
            let body = serde_json::to_vec(&doc).unwrap_or_default();
            Ok(vec![self.http_plan(
                Target::Xarf,
                indicator,
                url,
                JSON,
                body,
            )])
        } else {
            Ok(vec![Plan {
                target: Target::Xarf,
                indicators: vec![indicator],
                recipient: "outbox".into(),
                mode: Mode::Written,
                content_type: JSON,
                payload: serde_json::to_vec_pretty(&doc).unwrap_or_default(),
                ext: "json",
            }])
        }
    }

    fn plan_abuseipdb(&self, inc: &Incident, now_ms: u64) -> Result<Vec<Plan>, ReportError> {
        let (Some(a), Some(ip)) = (&self.cfg.abuseipdb, inc.reportable_ip()) else {
            return Ok(Vec::new());
        };
        let indicator = format!("ip:{ip}");
        if self.deduped(Target::AbuseIpdb, &indicator, now_ms)? {
            return Ok(Vec::new());
        }
        let form = abuseipdb::form(inc, ip, &a.categories, a.include_timestamp);
        let url = format!(
            "{}{}",
            a.base_url.trim_end_matches('/'),
            abuseipdb::REPORT_PATH
        );
        Ok(vec![self.http_plan(
            Target::AbuseIpdb,
            indicator,
            url,
            FORM,
            abuseipdb::encode(&form).into_bytes(),
        )])
    }

    fn plan_spamhaus(&self, inc: &Incident, now_ms: u64) -> Result<Vec<Plan>, ReportError> {
        let Some(s) = &self.cfg.spamhaus else {
            return Ok(Vec::new());
        };
        let mut plans = Vec::new();
        let subs = spamhaus::submissions(
            inc,
            s.submit_ip,
            s.submit_domains,
            s.submit_urls,
            s.submit_email,
        );
        for sub in subs {
            let indicator = match &sub {
                spamhaus::Submission::Ip(ip) => format!("ip:{ip}"),
                spamhaus::Submission::Domain(d) => format!("domain:{d}"),
                spamhaus::Submission::Url(u) => format!("url:{u}"),
                spamhaus::Submission::Email(_) => format!("email:{}", inc.message_id),
            };
            if self.deduped(Target::Spamhaus, &indicator, now_ms)? {
                continue;
            }
            let body = spamhaus::body(&s.threat_type, &spamhaus::reason(inc, &sub), &sub);
            let url = format!("{}{}", s.base_url.trim_end_matches('/'), sub.path());
            plans.push(self.http_plan(
                Target::Spamhaus,
                indicator,
                url,
                JSON,
                serde_json::to_vec(&body).unwrap_or_default(),
            ));
        }
        Ok(plans)
    }

    fn plan_webhook(&self, inc: &Incident, now_ms: u64) -> Result<Vec<Plan>, ReportError> {
        let Some(w) = &self.cfg.webhook else {
            return Ok(Vec::new());
        };
        let indicator = format!("message:{}", inc.message_id);
        if self.deduped(Target::Webhook, &indicator, now_ms)? {
            return Ok(Vec::new());
        }
        let body = serde_json::to_vec(&webhook::summary(inc)).unwrap_or_default();
        Ok(vec![self.http_plan(
            Target::Webhook,
            indicator,
            w.url.clone(),
            JSON,
            body,
        )])
    }
}
