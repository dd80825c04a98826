//! The last hour, minute by minute, for the dashboard's live chart: requests, the HTTP
//! shield's stopping decisions, and the other sensors' events by kind. Kept in memory (60
//! slots of a few counters); sampled every second from the shield's counters and the engine's
//! event bus, so an attack shows within a second or two.

use moat_core::{Event, EventKind};
use std::collections::VecDeque;
use std::sync::Mutex;

/// What one minute counts: requests, then the attacks by kind (stacked in the chart), then the
/// HTTP decisions that stopped a request by action, then the bans made.
pub const KINDS: [(&str, &str); 12] = [
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
    ("block", "decisions: block"),
    ("decoy", "decisions: decoy"),
    ("tarpit", "decisions: tarpit"),
    (
        "challenge",
        "decisions: challenge (the browser proof asked)",
    ),
    ("bans", "bans made (a feed's not counted)"),
];

/// The count of bans made: each ban this instance (or its cluster) added, counted as the
/// decider publishes it, so the digest counts the bans of its period even once they expired.
pub const BANS: usize = 11;

/// The kinds the chart stacks (the attacks); requests are its line, and the decisions by
/// action split the same stopped requests another way.
pub const STACKED: std::ops::Range<usize> = 1..7;
/// The kinds sampled from the shield's cumulative counters, in [`Live::sample`]'s order:
/// requests, stopped, then the actions from `block` on.
pub const SAMPLED: [usize; 6] = [0, 1, 7, 8, 9, 10];

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

/// Whether an added ban counts as made: not a feed's (counted on the Peers page), and made
/// since `since_ms` (not one restored from the store).
pub fn made_here(d: &moat_core::Decision, since_ms: u64) -> bool {
    !matches!(d.origin, moat_core::Origin::Feed(_)) && d.created_ms >= since_ms
}

#[derive(Default)]
struct Inner {
    minutes: VecDeque<Minute>,
    /// The cumulative counters at the last sample, in [`SAMPLED`]'s order.
    last: Option<[u64; SAMPLED.len()]>,
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
    pub fn sample(&self, now_ms: u64, totals: [u64; SAMPLED.len()]) {
        self.with_minute(now_ms, |m, inner| {
            // The shield's counters start at zero with it.
            let last = inner.last.unwrap_or_default();
            for ((k, now), before) in SAMPLED.iter().zip(totals).zip(last) {
                m.counts[*k] += now.saturating_sub(before);
            }
            inner.last = Some(totals);
        });
    }

    /// What [`Self::sample`] takes, from the shield's counters: requests, the decisions that
    /// stopped one, and those by action.
    pub fn totals(requests: u64, hits: &[(String, &'static str, u64)]) -> [u64; SAMPLED.len()] {
        let mut t = [0u64; SAMPLED.len()];
        t[0] = requests;
        for (_, action, n) in hits {
            if stops(action) {
                t[1] += n;
            }
            if let Some(i) = SAMPLED[2..].iter().position(|k| KINDS[*k].0 == *action) {
                t[2 + i] += n;
            }
        }
        t
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

    /// A ban restored at start, or a feed's, is not one this instance made.
    #[test]
    fn only_bans_made_here_since_start_count() {
        let mut d = moat_core::Decision {
            scope: "192.0.2.1".parse().unwrap(),
            verdict: moat_core::Verdict::Ban,
            created_ms: 2_000,
            expires_ms: None,
            reason: "r".into(),
            origin: moat_core::Origin::Rule("signup".into()),
            offences: 1,
        };
        assert!(made_here(&d, 1_000));
        assert!(!made_here(&d, 3_000), "restored from before the start");
        d.origin = moat_core::Origin::Feed("peers".into());
        assert!(!made_here(&d, 1_000), "a feed's");
        d.origin = moat_core::Origin::Manual;
        assert!(made_here(&d, 1_000));
    }

    #[test]
    fn totals_split_the_stopping_decisions_by_action() {
        let hits = vec![
            ("a".to_string(), "block", 5),
            ("b".to_string(), "decoy", 7),
            ("c".to_string(), "log", 100),
            ("d".to_string(), "challenge", 2),
            ("e".to_string(), "block", 1),
        ];
        assert_eq!(Live::totals(1_000, &hits), [1_000, 15, 6, 7, 0, 2]);
    }

    #[test]
    fn counts_land_in_their_minute_and_the_hour_rolls() {
        let l = Live::default();
        let t0 = 1_000 * 60_000;
        l.sample(t0, [100, 10, 0, 0, 0, 0]);
        l.sample(t0 + 1_000, [150, 30, 20, 10, 0, 0]);
        l.event(t0 + 2_000, 3);
        l.event(t0 + 61_000, 3);
        l.sample(t0 + 61_000, [151, 30, 20, 10, 0, 0]);
        let s = l.series(t0 + 61_000);
        assert_eq!(s.len(), MINUTES);
        let (a, b) = (s[MINUTES - 2], s[MINUTES - 1]);
        assert_eq!(
            (a.minute, a.counts[0], a.counts[1], a.counts[3]),
            (1_000, 150, 30, 1)
        );
        assert_eq!((a.counts[7], a.counts[8]), (20, 10), "block and decoy");
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
        l.sample(later, [5, 1, 0, 0, 0, 0]);
        assert_eq!(l.series(later)[MINUTES - 1].counts[0], 0);
    }
}
