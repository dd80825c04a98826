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
}
