//! Counters for Prometheus. Label values come from the config (rule and limit ids, action
//! names), never from requests, so the series count is bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters another part of Moat (the mail shield) adds to `/metrics`: name, help, value.
pub type MetricSource = Box<dyn Fn() -> Vec<(&'static str, &'static str, u64)> + Send + Sync>;

#[derive(Default)]
pub struct Metrics {
    /// Registered by sensors that start after the HTTP shield, so they report on the one
    /// admin listener without the HTTP crate depending on them.
    pub sources: Mutex<Vec<MetricSource>>,
    pub requests: AtomicU64,
    pub forwarded: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub bad_requests: AtomicU64,
    pub tarpit_overflow: AtomicU64,
    pub decisions: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    pub fn add_source(&self, f: MetricSource) {
        if let Ok(mut s) = self.sources.lock() {
            s.push(f);
        }
    }

    /// What the registered sources report now.
    pub fn sourced(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.sources
            .lock()
            .map(|s| s.iter().flat_map(|f| f()).collect())
            .unwrap_or_default()
    }

    pub fn decision(&self, rule: &str, action: &'static str) {
        if let Ok(mut m) = self.decisions.lock() {
            *m.entry((rule.to_string(), action)).or_default() += 1;
        }
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let c = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            &mut out,
            "moat_http_requests_total",
            "Requests received.",
            self.requests.load(Ordering::Relaxed),
        );
        c(
            &mut out,
            "moat_http_forwarded_total",
            "Requests forwarded to the upstream.",
            self.forwarded.load(Ordering::Relaxed),
        );
        c(
            &mut out,
            "moat_http_upstream_errors_total",
            "Upstream failures answered with 502/504.",
            self.upstream_errors.load(Ordering::Relaxed),
        );
        c(
            &mut out,
            "moat_http_tarpit_overflow_total",
            "Tarpits answered at once because the cap was reached.",
            self.tarpit_overflow.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP moat_http_decisions_total Requests stopped or logged, by rule and action.\n# TYPE moat_http_decisions_total counter");
        if let Ok(m) = self.decisions.lock() {
            for ((rule, action), v) in m.iter() {
                let _ = writeln!(
                    out,
                    "moat_http_decisions_total{{rule=\"{}\",action=\"{action}\"}} {v}",
                    rule.replace('"', "'")
                );
            }
        }
        for (name, help, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
