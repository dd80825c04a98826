//! Adaptive difficulty: how hard a challenge is follows how hard Moat is being pushed.
//!
//! Every request that needed clearance and came without it counts as pressure. The count over
//! the last minute (six 10-second buckets, lock-free) sets the difficulty: the base while
//! pressure stays under the threshold, then one more bit (twice the work) each time the rate
//! doubles, up to a maximum. When the attack stops the buckets age out and difficulty falls back
//! within a minute, so people pay the higher price only while it is needed.

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 6;
const BUCKET_SECS: u64 = 10;

#[derive(Debug, Default)]
pub struct Pressure {
    counts: [AtomicU64; BUCKETS],
    /// Which 10-second epoch each bucket currently counts; a stale bucket is reset on use.
    epochs: [AtomicU64; BUCKETS],
}

impl Pressure {
    pub fn record(&self, now: u64) {
        let epoch = now / BUCKET_SECS;
        let i = (epoch % BUCKETS as u64) as usize;
        if self.epochs[i].swap(epoch, Ordering::Relaxed) != epoch {
            // First event of a new epoch in this slot: start from zero. Two threads racing
            // here may drop a count or two, which does not matter for a rate estimate.
            self.counts[i].store(0, Ordering::Relaxed);
        }
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Events in the last minute (the current bucket and the five before it).
    pub fn per_minute(&self, now: u64) -> u64 {
        let epoch = now / BUCKET_SECS;
        (0..BUCKETS as u64)
            .filter_map(|back| epoch.checked_sub(back))
            .map(|e| {
                let i = (e % BUCKETS as u64) as usize;
                if self.epochs[i].load(Ordering::Relaxed) == e {
                    self.counts[i].load(Ordering::Relaxed)
                } else {
                    0
                }
            })
            .sum()
    }
}

/// The difficulty (leading zero bits) for a pressure of `per_minute` events.
pub fn difficulty(base: u8, max: u8, per_minute: u64, threshold: u64) -> u8 {
    let threshold = threshold.max(1);
    if per_minute < threshold {
        return base;
    }
    // One extra bit at the threshold, and one more per doubling beyond it.
    let extra = 1 + (per_minute / threshold).ilog2();
    base.saturating_add(u8::try_from(extra).unwrap_or(u8::MAX))
        .min(max.max(base))
}

/// The sends on one route whose sends need proofs of their own under pressure: how many in
/// the last minute, and the usual rate, learned from the minutes that were not under pressure
/// (an attack must not teach Moat that it is normal).
#[derive(Debug, Default)]
pub struct RouteLoad {
    sends: Pressure,
    /// The usual sends per minute, ×1000: an average over about an hour of quiet minutes.
    usual_milli: AtomicU64,
    /// The minute `this_minute` counts.
    minute: AtomicU64,
    /// Sends in that minute, folded into `usual_milli` when the next begins.
    this_minute: AtomicU64,
}

/// Quiet minutes the usual rate averages over (an exponential average, α = 1/60).
const USUAL_MINUTES: u64 = 60;

impl RouteLoad {
    /// Counts a send at `now`; returns the sends in the last minute, this one included.
    pub fn record(&self, now: u64, floor: u64) -> u64 {
        let minute = now / 60;
        let prev = self.minute.swap(minute, Ordering::Relaxed);
        if prev != 0 && minute > prev {
            // Two threads racing here may fold a send or two into the wrong minute, which
            // does not matter for an hour's average.
            let last = self.this_minute.swap(0, Ordering::Relaxed);
            let threshold = self.threshold(floor);
            let mut usual = self.usual_milli.load(Ordering::Relaxed);
            if last <= threshold {
                let sample = last.saturating_mul(1000);
                usual = usual - usual / USUAL_MINUTES + sample / USUAL_MINUTES;
            }
            // The minutes since without a send are quiet minutes of none.
            for _ in 1..(minute - prev).min(USUAL_MINUTES * 4) {
                usual -= usual / USUAL_MINUTES;
            }
            self.usual_milli.store(usual, Ordering::Relaxed);
        } else if prev != minute {
            self.this_minute.store(0, Ordering::Relaxed);
        }
        self.this_minute.fetch_add(1, Ordering::Relaxed);
        self.sends.record(now);
        self.sends.per_minute(now)
    }

    /// Sends in the last minute, none counted (what a send now would find).
    pub fn current(&self, now: u64) -> u64 {
        self.sends.per_minute(now)
    }

    /// Sends a minute beyond which each needs its own proof: `floor`, or three times the usual
    /// rate when a busy site's usual is higher, at most ten times the floor (what is learned
    /// from sends under the threshold can rise by a third an hour at most, and a patient
    /// attacker must not ratchet it up without end).
    pub fn threshold(&self, floor: u64) -> u64 {
        let learned = self.usual_milli.load(Ordering::Relaxed).saturating_mul(3) / 1000;
        floor.max(learned.min(floor.saturating_mul(10)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_with_the_attack_and_falls_after_it() {
        let p = Pressure::default();
        let t0 = 1_000_000;
        assert_eq!(difficulty(16, 22, p.per_minute(t0), 60), 16);
        for i in 0..600 {
            p.record(t0 + i % 60);
        }
        let during = p.per_minute(t0 + 59);
        assert_eq!(during, 600);
        let d = difficulty(16, 22, during, 60);
        assert_eq!(
            d,
            16 + 1 + 3,
            "10x the threshold is three doublings past it"
        );
        assert_eq!(
            p.per_minute(t0 + 59 + 61),
            0,
            "a quiet minute later it is gone"
        );
        assert_eq!(difficulty(16, 22, 0, 60), 16);
        assert_eq!(difficulty(16, 22, u64::MAX, 60), 22, "capped");
        assert_eq!(difficulty(16, 22, 60, 60), 17);
    }

    #[test]
    fn stale_buckets_do_not_count() {
        let p = Pressure::default();
        p.record(5);
        p.record(5 + 60); // the same slot, one minute later
        assert_eq!(p.per_minute(65), 1);
    }

    #[test]
    fn a_route_learns_its_usual_rate_from_quiet_minutes_only() {
        let r = RouteLoad::default();
        let t0 = 6_000_000;
        // Two hours of 5 sends a minute, under the floor of 6: usual for this site.
        for m in 0..120 {
            for s in 0..5 {
                r.record(t0 + m * 60 + s, 6);
            }
        }
        // The next minute's first send folds the last quiet one in.
        let t1 = t0 + 120 * 60;
        r.record(t1, 6);
        let learned = r.threshold(6);
        assert!(
            (12..=15).contains(&learned),
            "three times the usual 5: {learned}"
        );
        // An attack at 1000 a minute for an hour is above it every minute and teaches nothing.
        for m in 0..60 {
            for s in 0..1000 {
                assert!(r.record(t1 + m * 60 + s % 60, 6) > 0);
            }
        }
        assert_eq!(
            r.threshold(6),
            learned,
            "the attack was not learned as usual"
        );
        // An hour later with no send at all, the quiet hour has brought the usual rate down.
        r.record(t1 + 3600 * 2, 6);
        assert!(r.threshold(6) < learned, "{}", r.threshold(6));
        // The floor holds for a quiet site.
        assert_eq!(RouteLoad::default().threshold(6), 6);
    }
}
