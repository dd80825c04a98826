//! The last hour, minute by minute, for the dashboard's live chart: requests, the HTTP
//! shield's stopping decisions, and the other sensors' events by kind. Kept in memory (60
//! slots of a few counters); sampled every second from the shield's counters and the engine's
//! event bus, so an attack shows within a second or two.

use moat_core::{Event, EventKind};
use std::collections::VecDeque;
use std::sync::Mutex;

/// What one minute counts.
pub const KINDS: [(&str, &str); 7] = [
    ("requests", "HTTP requests"),
    (
        "stopped",
        "HTTP requests stopped (block, decoy, tarpit, challenge, ban)",
    ),
    ("signups", "scripted sends caught by a rule or a limit"),
    ("brute_force", "SASL brute force"),
    ("enumeration", "recipient enumeration"),
    ("jails", "log-watcher jails tripped"),
    ("trap", "trap logins and captures"),
];

/// Minutes kept.
pub const MINUTES: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Minute {
    /// Unix minute.
    pub minute: u64,
    pub counts: [u64; KINDS.len()],
}

/// Which count an event adds to, if any.
pub fn kind_of(e: &Event) -> Option<usize> {
    Some(match e.kind {
        EventKind::RuleOffence { .. } | EventKind::RateLimited { .. } => 2,
        EventKind::AuthFailures | EventKind::AuthFailuresNetwork { .. } => 3,
        EventKind::Enumeration | EventKind::EnumerationNetwork { .. } => 4,
        EventKind::JailTripped { .. } => 5,
        EventKind::TrapLogin { .. } | EventKind::Captured { .. } => 6,
    })
}

#[derive(Default)]
struct Inner {
    minutes: VecDeque<Minute>,
    /// The cumulative counters at the last sample (requests, stopped).
    last: Option<(u64, u64)>,
}

#[derive(Default)]
pub struct Live(Mutex<Inner>);

impl Live {
    fn with_minute<R>(&self, now_ms: u64, f: impl FnOnce(&mut Minute, &mut Inner) -> R) -> R {
        let minute = now_ms / 60_000;
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *g;
        if inner.minutes.back().is_none_or(|m| m.minute < minute) {
            inner.minutes.push_back(Minute {
                minute,
                ..Default::default()
            });
            while inner.minutes.len() > MINUTES {
                inner.minutes.pop_front();
            }
        }
        let mut m = *inner.minutes.back().expect("pushed above");
        let r = f(&mut m, inner);
        if let Some(back) = inner.minutes.back_mut() {
            *back = m;
        }
        r
    }

    /// One event, counted in the current minute.
    pub fn event(&self, now_ms: u64, kind: usize) {
        self.with_minute(now_ms, |m, _| m.counts[kind] += 1);
    }

    /// The shield's cumulative counters now: what grew since the last sample (or since they
    /// started, at zero) goes to the current minute; a reload that starts them again from zero
    /// counts nothing for that second.
    pub fn sample(&self, now_ms: u64, requests: u64, stopped: u64) {
        self.with_minute(now_ms, |m, inner| {
            // The shield's counters start at zero with it.
            let (r, s) = inner.last.unwrap_or((0, 0));
            m.counts[0] += requests.saturating_sub(r);
            m.counts[1] += stopped.saturating_sub(s);
            inner.last = Some((requests, stopped));
        });
    }

    /// Minutes saved before a restart, back in place (counted on top of anything already here).
    pub fn restore(&self, minutes: &[Minute]) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for m in minutes {
            match g.minutes.iter_mut().find(|x| x.minute == m.minute) {
                Some(x) => {
                    for (a, b) in x.counts.iter_mut().zip(m.counts) {
                        *a += b;
                    }
                }
                None => g.minutes.push_back(*m),
            }
        }
        g.minutes.make_contiguous().sort_by_key(|m| m.minute);
        while g.minutes.len() > MINUTES {
            g.minutes.pop_front();
        }
    }

    /// The last `MINUTES` minutes up to `now_ms`, oldest first, with empty minutes filled in.
    pub fn series(&self, now_ms: u64) -> Vec<Minute> {
        let end = now_ms / 60_000;
        let start = end.saturating_sub(MINUTES as u64 - 1);
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (start..=end)
            .map(|minute| {
                g.minutes
                    .iter()
                    .find(|m| m.minute == minute)
                    .copied()
                    .unwrap_or(Minute {
                        minute,
                        ..Default::default()
                    })
            })
            .collect()
    }
}

/// Whether an HTTP decision's action stopped the request (a `log` or `allow` did not).
pub fn stops(action: &str) -> bool {
    !matches!(action, "log" | "allow" | "skip")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_minute_and_the_hour_rolls() {
        let l = Live::default();
        let t0 = 1_000 * 60_000;
        l.sample(t0, 100, 10);
        l.sample(t0 + 1_000, 150, 30);
        l.event(t0 + 2_000, 3);
        l.event(t0 + 61_000, 3);
        l.sample(t0 + 61_000, 151, 30);
        let s = l.series(t0 + 61_000);
        assert_eq!(s.len(), MINUTES);
        let (a, b) = (s[MINUTES - 2], s[MINUTES - 1]);
        assert_eq!(
            (a.minute, a.counts[0], a.counts[1], a.counts[3]),
            (1_000, 150, 30, 1)
        );
        assert_eq!(
            (b.minute, b.counts[0], b.counts[1], b.counts[3]),
            (1_001, 1, 0, 1)
        );
        // An hour and more later, nothing of it is left.
        let later = t0 + 2 * 3_600_000;
        l.event(later, 6);
        let s = l.series(later);
        assert_eq!(
            s.iter().map(|m| m.counts.iter().sum::<u64>()).sum::<u64>(),
            1
        );
        assert!(s.iter().all(|m| m.minute > 1_001));
        // Counters that started again (a restart of the shield) count nothing negative.
        l.sample(later, 5, 1);
        assert_eq!(l.series(later)[MINUTES - 1].counts[0], 0);
    }
}
