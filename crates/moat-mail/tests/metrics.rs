//! Issue 15: the mail shield's and the milter's `/metrics` values are typed. Every `_total` one
//! is a counter (they were all exposed as gauges before), and there are no gauges among them.

use moat_core::metric::{MetricKind, Sample};
use moat_mail::milter::server::MilterStats;
use moat_mail::shield::Stats;
use std::sync::atomic::Ordering;

fn check(samples: &[Sample]) {
    assert!(!samples.is_empty());
    for s in samples {
        assert!(s.name.starts_with("moat_"), "{s:?}");
        assert!(s.name.ends_with("_total"), "{s:?}");
        assert_eq!(s.kind, MetricKind::Counter, "{s:?}");
    }
}

#[test]
fn mail_and_milter_counters_are_counters() {
    let stats = Stats::default();
    stats.policy_requests.fetch_add(3, Ordering::Relaxed);
    let m = stats.metrics();
    check(&m);
    let policy = m
        .iter()
        .find(|s| s.name == "moat_mail_policy_requests_total")
        .expect("policy requests");
    assert_eq!(policy.value, 3);

    let milter = MilterStats::default();
    milter.connections.fetch_add(2, Ordering::Relaxed);
    let m = milter.metrics();
    check(&m);
    assert!(m
        .iter()
        .any(|s| s.name == "moat_milter_connections_total" && s.value == 2));
}
