//! Moat's metrics, on a `prometheus_client` registry and served as OpenMetrics text
//! (`application/openmetrics-text; version=1.0.0`).
//!
//! - counters: `moat_http_requests_total`, `moat_http_forwarded_total`,
//!   `moat_http_upstream_errors_total`, `moat_http_tarpit_overflow_total`,
//!   `moat_http_body_memory_refused_total`, and
//!   `moat_http_decisions_total{rule, action}`;
//! - histograms (seconds): `moat_http_request_duration_seconds{outcome}` and
//!   `moat_http_upstream_duration_seconds` (see [`Outcome`] and [`Metrics::observe_forwarded`]
//!   for what they time);
//! - whatever the other sensors register with [`Metrics::add_source`] (the mail shield, the
//!   trap), read at scrape time, and the gauges the admin listener adds from the engine.
//!
//! Label values come from the config (rule and limit ids, action names) or from a fixed set
//! (outcomes), never from requests, so the series count is bounded.

use moat_core::metric::{MetricKind, Sample};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Values another part of Moat (the mail shield, the trap) adds to `/metrics`, read at each
/// scrape; each says whether it is a counter or a gauge.
pub type MetricSource = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

/// The labels of `moat_http_decisions_total`: the rule or limit id (or `ban`) and the action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub rule: String,
    pub action: &'static str,
}

/// How a request ended, the label of `moat_http_request_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered: timed until its response head was received.
    Forwarded,
    /// Moat answered itself (a rule, a ban, a limit, the proof's endpoints, a request error):
    /// timed until the policy decided, which includes a tarpit's delay.
    Answered,
    /// The upstream failed (502/504): timed until Moat gave up on it.
    UpstreamError,
}

impl Outcome {
    const ALL: [Outcome; 3] = [
        Outcome::Forwarded,
        Outcome::Answered,
        Outcome::UpstreamError,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Answered => "answered",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds (100 µs to 10 s; `+Inf` follows).
const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets that records without a lock.
///
/// `prometheus_client`'s own `Histogram` takes a mutex on every `observe`; every request
/// records here, on all worker threads, and the fast path serves ~100k requests a second, so
/// a lock (and its contention) per request would cost more than the measurement is worth.
/// An observation here is two relaxed atomic adds: its bucket and the sum (integer
/// microseconds). The count is the buckets' total, read at scrape time, so it always equals
/// the `+Inf` bucket (a scrape racing an observation may see the sum one observation apart
/// from the buckets, which Prometheus tolerates).
///
/// It encodes as a real OpenMetrics histogram (`_bucket{le}`, `_sum`, `_count`) in seconds.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Sum (seconds), count, and per-bucket counts with their upper bounds (seconds).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = BOUNDS_US
            .iter()
            .map(|&b| b as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = self.0.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, buckets)
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One [`LatencyHistogram`] per [`Outcome`], encoded as a family labelled `outcome`. Fixed
/// fields rather than a `Family`, whose lookup takes a lock.
#[derive(Clone, Debug, Default)]
pub struct ByOutcome([LatencyHistogram; 3]);

impl ByOutcome {
    pub fn get(&self, o: Outcome) -> &LatencyHistogram {
        &self.0[o as usize]
    }
}

impl EncodeMetric for ByOutcome {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for o in Outcome::ALL {
            let labels = [("outcome", o.label())];
            self.get(o).encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Encodes sensors' samples: a counter under its name without `_total` (the encoder appends
/// it), so the sample keeps the name the sensor gave it.
fn encode_samples(encoder: &mut DescriptorEncoder, samples: &[Sample]) -> std::fmt::Result {
    for s in samples {
        match s.kind {
            MetricKind::Counter => {
                debug_assert!(s.name.ends_with("_total"), "counter {}", s.name);
                let name = s.name.strip_suffix("_total").unwrap_or(s.name);
                let c = ConstCounter::new(s.value);
                c.encode(encoder.encode_descriptor(name, s.help, None, c.metric_type())?)?;
            }
            MetricKind::Gauge => {
                let g = ConstGauge::new(s.value);
                g.encode(encoder.encode_descriptor(s.name, s.help, None, g.metric_type())?)?;
            }
        }
    }
    Ok(())
}

/// The registered sources, read at each scrape.
#[derive(Default)]
struct Sources(Mutex<Vec<MetricSource>>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let samples: Vec<Sample> = self
            .0
            .lock()
            .map(|s| s.iter().flat_map(|f| f()).collect())
            .unwrap_or_default();
        encode_samples(&mut encoder, &samples)
    }
}

/// Samples given at one scrape (the engine's gauges).
#[derive(Debug)]
struct Fixed(Vec<Sample>);

impl Collector for Fixed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        encode_samples(&mut encoder, &self.0)
    }
}

/// Counters by rule id, then by action.
type CountersByRule = HashMap<Box<str>, Vec<(&'static str, Counter)>>;

pub struct Metrics {
    registry: Registry,
    /// Registered by sensors that start after the HTTP shield, so they report on the one
    /// admin listener without the HTTP crate depending on them.
    sources: Arc<Sources>,
    pub requests: Counter,
    pub forwarded: Counter,
    pub upstream_errors: Counter,
    pub tarpit_overflow: Counter,
    /// Requests refused (503) because bodies being read held all their memory.
    pub body_budget_spent: Counter,
    decisions: Family<DecisionLabels, Counter>,
    /// The decisions family's counters by rule id, then action: found with a `&str` (no
    /// allocation), where the family needs an owned label set for every lookup. A flood is
    /// a decision per request.
    decision_counters: std::sync::RwLock<CountersByRule>,
    /// From the request's head parsed to its response head ready, by [`Outcome`].
    pub request_latency: ByOutcome,
    /// From sending the request upstream (connecting included) to its response head.
    pub upstream_latency: LatencyHistogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            sources: Arc::default(),
            requests: Counter::default(),
            forwarded: Counter::default(),
            upstream_errors: Counter::default(),
            tarpit_overflow: Counter::default(),
            body_budget_spent: Counter::default(),
            decisions: Family::default(),
            decision_counters: Default::default(),
            request_latency: ByOutcome::default(),
            upstream_latency: LatencyHistogram::default(),
        };
        let r = &mut m.registry;
        // Counters are registered without `_total` (the encoder appends it to the sample), help
        // texts without the final full stop (the registry adds it).
        r.register(
            "moat_http_requests",
            "Requests received",
            m.requests.clone(),
        );
        r.register(
            "moat_http_forwarded",
            "Requests forwarded to the upstream",
            m.forwarded.clone(),
        );
        r.register(
            "moat_http_upstream_errors",
            "Upstream failures answered with 502/504",
            m.upstream_errors.clone(),
        );
        r.register(
            "moat_http_tarpit_overflow",
            "Tarpits answered at once because the cap was reached",
            m.tarpit_overflow.clone(),
        );
        r.register(
            "moat_http_body_memory_refused",
            "Requests answered 503 because bodies being read held all of limits.max_body_memory_bytes",
            m.body_budget_spent.clone(),
        );
        r.register(
            "moat_http_decisions",
            "Requests stopped or logged, by rule and action",
            m.decisions.clone(),
        );
        r.register(
            "moat_http_request_duration_seconds",
            "Time from a request's head parsed to its response head ready: the upstream's \
             received (forwarded), Moat's decided (answered, tarpit delays included), or the \
             upstream given up on (upstream_error)",
            m.request_latency.clone(),
        );
        r.register(
            "moat_http_upstream_duration_seconds",
            "Time the upstream took to produce a response head, connecting included",
            m.upstream_latency.clone(),
        );
        r.register_collector(Box::new(m.sources.clone()));
        m
    }
}

impl Metrics {
    pub fn add_source(&self, f: MetricSource) {
        if let Ok(mut s) = self.sources.0.lock() {
            s.push(f);
        }
    }

    pub fn decision(&self, rule: &str, action: &'static str) {
        if let Ok(m) = self.decision_counters.read() {
            if let Some((_, c)) = m
                .get(rule)
                .and_then(|v| v.iter().find(|(a, _)| *a == action))
            {
                c.inc();
                return;
            }
        }
        // First decision of this rule and action: the family's counter, kept for the next.
        let c = self
            .decisions
            .get_or_create(&DecisionLabels {
                rule: rule.to_string(),
                action,
            })
            .clone();
        c.inc();
        if let Ok(mut m) = self.decision_counters.write() {
            let v = m.entry(rule.into()).or_default();
            if !v.iter().any(|(a, _)| *a == action) {
                v.push((action, c));
            }
        }
    }

    /// Decisions so far, by rule or limit id and action (the admin API's hit counts).
    pub fn hits(&self) -> Vec<(String, &'static str, u64)> {
        let Ok(m) = self.decision_counters.read() else {
            return Vec::new();
        };
        m.iter()
            .flat_map(|(rule, v)| v.iter().map(move |(a, c)| (rule.to_string(), *a, c.get())))
            .collect()
    }

    /// Moat answered a request itself; `start` is when its head was parsed.
    pub fn observe_answered(&self, start: Instant) {
        self.request_latency
            .get(Outcome::Answered)
            .observe(start.elapsed());
    }

    /// The upstream's response head for a request came: `start` is when the request's head was
    /// parsed, `sent` when Moat began sending it upstream (before connecting, if it had to).
    pub fn observe_forwarded(&self, start: Instant, sent: Instant) {
        let now = Instant::now();
        self.upstream_latency
            .observe(now.saturating_duration_since(sent));
        self.request_latency
            .get(Outcome::Forwarded)
            .observe(now.saturating_duration_since(start));
    }

    /// The upstream failed a request whose head was parsed at `start`.
    pub fn observe_upstream_error(&self, start: Instant) {
        self.upstream_errors.inc();
        self.request_latency
            .get(Outcome::UpstreamError)
            .observe(start.elapsed());
    }

    /// The OpenMetrics text exposition, with `extra` (values read at this scrape) after the
    /// registered metrics.
    pub fn render(&self, extra: &[Sample]) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::with_capacity(8 * 1024);
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(Fixed(extra.to_vec())));
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &scrape))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_observations_at_their_upper_bound() {
        let h = LatencyHistogram::default();
        for us in [0, 100, 101, 10_000_000, 10_000_001] {
            h.observe(Duration::from_micros(us));
        }
        let (sum, count, b) = h.snapshot();
        assert_eq!(count, 5);
        assert!((sum - 20.000202).abs() < 1e-9, "{sum}");
        assert_eq!(b.len(), BOUNDS_US.len() + 1);
        assert_eq!(b[0], (0.0001, 2)); // 0 and 100 µs: le=0.0001
        assert_eq!(b[1], (0.00025, 1)); // 101 µs
        assert_eq!(b[BOUNDS_US.len() - 1], (10.0, 1));
        assert_eq!(b[BOUNDS_US.len()], (f64::INFINITY, 1));
    }

    #[test]
    fn exposition_types_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.requests.inc();
        m.requests.inc();
        m.forwarded.inc();
        m.decision("block-it", "block");
        m.decision("block-it", "block");
        m.decision("block-it", "log");
        m.decision("block-it", "block");
        m.decision("rule \"q\"", "log");
        let start = Instant::now() - Duration::from_millis(3);
        m.observe_forwarded(start, start + Duration::from_millis(1));
        m.observe_answered(start);
        m.add_source(Box::new(|| {
            vec![
                Sample::counter("moat_trap_sessions_total", "Sessions.", 7),
                Sample::gauge("moat_trap_sessions_open", "Open now.", 2),
            ]
        }));
        let text = m.render(&[Sample::gauge("moat_bans_active", "Bans.", 3)]);
        for want in [
            "# TYPE moat_http_requests counter\n",
            "moat_http_requests_total 2\n",
            "moat_http_forwarded_total 1\n",
            "moat_http_decisions_total{rule=\"block-it\",action=\"block\"} 3\n",
            "moat_http_decisions_total{rule=\"block-it\",action=\"log\"} 1\n",
            "moat_http_decisions_total{rule=\"rule \\\"q\\\"\",action=\"log\"} 1\n",
            "# TYPE moat_http_request_duration_seconds histogram\n",
            "moat_http_request_duration_seconds_count{outcome=\"forwarded\"} 1\n",
            "moat_http_request_duration_seconds_count{outcome=\"answered\"} 1\n",
            "moat_http_request_duration_seconds_count{outcome=\"upstream_error\"} 0\n",
            "moat_http_request_duration_seconds_bucket{le=\"+Inf\",outcome=\"forwarded\"} 1\n",
            "# TYPE moat_http_upstream_duration_seconds histogram\n",
            "moat_http_upstream_duration_seconds_bucket{le=\"0.0001\"} 0\n",
            "moat_http_upstream_duration_seconds_count 1\n",
            "# TYPE moat_trap_sessions counter\n",
            "moat_trap_sessions_total 7\n",
            "# TYPE moat_trap_sessions_open gauge\n",
            "moat_trap_sessions_open 2\n",
            "# TYPE moat_bans_active gauge\n",
            "moat_bans_active 3\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains("_total_total"), "{text}");
        assert!(
            !text.contains("..\n"),
            "help texts end in one full stop:\n{text}"
        );
    }
}
