//! A jail's failure histories: per offender, the times of its failures within `findtime`,
//! oldest first.
//!
//! Compact on purpose: a wide attack puts every attacking address in every jail on its log
//! (500 addresses in 100 jails are 50,000 histories), and most hold one or two failures. A
//! history of up to [`INLINE`] failures lives in the map's slot itself, 35 bytes with its key
//! (a `SmallVec` took 64, and the table grows by doubling); longer ones, only in jails whose
//! `maxretry` is above `INLINE + 1`, move to a second map.

use ipnet::IpNet;
use std::collections::HashMap;

/// Failures kept inline: a jail at fail2ban's default `maxretry` (5) bans at the fifth, so it
/// never holds more than four.
const INLINE: usize = 4;

/// Byte arrays rather than `u32`s: alignment 1, so that with its key (an `IpNet`, 18 bytes
/// of alignment 1) a slot is 35 bytes, not 40.
#[derive(Clone, Copy)]
struct Short {
    len: u8,
    times: [[u8; 4]; INLINE],
}

impl Short {
    fn new(times: &[u32]) -> Short {
        let mut short = Short {
            len: times.len() as u8,
            times: [[0; 4]; INLINE],
        };
        for (slot, t) in short.times.iter_mut().zip(times) {
            *slot = t.to_le_bytes();
        }
        short
    }

    /// Copies the times into `buf`; returns how many there are.
    fn load(&self, buf: &mut [u32]) -> usize {
        let n = usize::from(self.len);
        for (b, t) in buf.iter_mut().zip(&self.times[..n]) {
            *b = u32::from_le_bytes(*t);
        }
        n
    }

    fn last(&self) -> Option<u32> {
        let n = usize::from(self.len);
        n.checked_sub(1).map(|i| u32::from_le_bytes(self.times[i]))
    }
}

#[derive(Default)]
pub(crate) struct Histories {
    short: HashMap<IpNet, Short>,
    long: HashMap<IpNet, Vec<u32>>,
}

impl Histories {
    pub(crate) fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub(crate) fn contains(&self, who: &IpNet) -> bool {
        self.short.contains_key(who) || self.long.contains_key(who)
    }

    /// Adds a failure at `t` to `who`'s history, forgets the failures before the first one
    /// still within `find` seconds of `t`, and returns how many are left.
    pub(crate) fn push(&mut self, who: IpNet, t: u32, find: u32) -> usize {
        if let Some(mut all) = self.long.remove(&who) {
            all.push(t);
            all.drain(..fresh_from(&all, t, find));
            let n = all.len();
            match n <= INLINE {
                true => self.put_short(who, &all),
                false => drop(self.long.insert(who, all)),
            }
            return n;
        }
        let mut buf = [0u32; INLINE + 1];
        let n = self.short.get(&who).map_or(0, |s| s.load(&mut buf));
        buf[n] = t;
        let kept = &buf[fresh_from(&buf[..=n], t, find)..=n];
        match kept.len() <= INLINE {
            true => self.put_short(who, kept),
            false => {
                self.short.remove(&who);
                self.long.insert(who, kept.to_vec());
            }
        }
        kept.len()
    }

    fn put_short(&mut self, who: IpNet, times: &[u32]) {
        self.short.insert(who, Short::new(times));
    }

    pub(crate) fn remove(&mut self, who: &IpNet) {
        self.short.remove(who);
        self.long.remove(who);
    }

    /// Keeps the histories whose last failure passes `keep`.
    pub(crate) fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.short.retain(|_, s| s.last().is_some_and(&keep));
        self.long.retain(|_, v| v.last().is_some_and(|t| keep(*t)));
    }
}

/// The first failure within `find` seconds of `t`: the ones before it no longer count.
fn fresh_from(times: &[u32], t: u32, find: u32) -> usize {
    times
        .iter()
        .position(|s| s.saturating_add(find) >= t)
        .unwrap_or(times.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_histories_move_out_and_back() {
        let mut h = Histories::default();
        let who: IpNet = "192.0.2.1/32".parse().unwrap();
        let other: IpNet = "2001:db8::/64".parse().unwrap();
        for (i, t) in (100..106).enumerate() {
            assert_eq!(h.push(who, t, 60), i + 1);
        }
        assert_eq!((h.short.len(), h.long.len()), (0, 1), "six failures");
        h.push(other, 100, 60);
        assert_eq!(h.len(), 2);
        // 61 s after the third, the first three fall out of the window: four are left.
        assert_eq!(h.push(who, 163, 60), 4);
        assert_eq!((h.short.len(), h.long.len()), (2, 0));
        let mut buf = [0; INLINE];
        h.short[&who].load(&mut buf);
        assert_eq!(buf, [103, 104, 105, 163]);
        h.retain(|last| last > 100);
        assert!(h.contains(&who) && !h.contains(&other));
        h.remove(&who);
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn a_slot_is_small() {
        assert_eq!(std::mem::size_of::<(IpNet, Short)>(), 35);
    }
}
