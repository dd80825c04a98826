//! Bounded counters over fixed windows, and bounded "until" marks: the memory of the mail
//! detectors. Every table has a cap; a flood of new keys prunes expired entries first and, if
//! that is not enough, forgets the table (an attacker can reset counts that way, but cannot grow
//! Moat's memory, and the per-login and global signals still see it).

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u64,
    count: u32,
}

#[derive(Debug)]
pub struct Counter<K> {
    map: HashMap<K, Slot>,
    window: u64,
    cap: usize,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    pub fn new(window_secs: u64, cap: usize) -> Self {
        Counter {
            map: HashMap::new(),
            window: window_secs.max(1),
            cap: cap.max(1),
        }
    }

    /// Counts one event for `key` at `now` (seconds) and returns the count in its window.
    pub fn hit(&mut self, key: &K, now: u64) -> u32 {
        if !self.map.contains_key(key) && self.map.len() >= self.cap {
            let w = self.window;
            self.map.retain(|_, s| now.saturating_sub(s.start) < w);
            if self.map.len() >= self.cap {
                self.map.clear();
            }
        }
        let w = self.window;
        let slot = self.map.entry(key.clone()).or_insert(Slot {
            start: now,
            count: 0,
        });
        if now.saturating_sub(slot.start) >= w {
            *slot = Slot {
                start: now,
                count: 0,
            };
        }
        slot.count = slot.count.saturating_add(1);
        slot.count
    }

    /// Forgets `key`'s count.
    pub fn reset(&mut self, key: &K) {
        self.map.remove(key);
    }

    pub fn get(&self, key: &K, now: u64) -> u32 {
        self.map
            .get(key)
            .filter(|s| now.saturating_sub(s.start) < self.window)
            .map_or(0, |s| s.count)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A [`Counter`] for hashed keys with 32-bit times, a third of the size: the per-address
/// failure counts, of which there may be a million.
#[derive(Debug)]
pub struct SmallCounter {
    map: HashMap<u32, (u32, u32)>,
    window: u64,
    cap: usize,
}

impl SmallCounter {
    pub fn new(window_secs: u64, cap: usize) -> Self {
        SmallCounter {
            map: HashMap::new(),
            window: window_secs.max(1),
            cap: cap.max(1),
        }
    }

    pub fn hit(&mut self, key: u32, now: u64) -> u32 {
        let w = self.window;
        let now32 = now as u32;
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            self.map
                .retain(|_, (start, _)| u64::from(now32.saturating_sub(*start)) < w);
            if self.map.len() >= self.cap {
                self.map.clear();
            }
        }
        let slot = self.map.entry(key).or_insert((now32, 0));
        if u64::from(now32.saturating_sub(slot.0)) >= w {
            *slot = (now32, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.1
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Keys marked until a time.
#[derive(Debug)]
pub struct Marks<K> {
    map: HashMap<K, u64>,
    cap: usize,
}

impl<K: Hash + Eq> Marks<K> {
    pub fn new(cap: usize) -> Self {
        Marks {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    pub fn mark(&mut self, key: K, until: u64, now: u64) {
        if self.map.len() >= self.cap {
            self.map.retain(|_, u| *u > now);
            if self.map.len() >= self.cap {
                return;
            }
        }
        let e = self.map.entry(key).or_insert(until);
        *e = (*e).max(until);
    }

    pub fn active(&self, key: &K, now: u64) -> bool {
        self.map.get(key).is_some_and(|u| *u > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reset_with_the_window_and_memory_is_capped() {
        let mut c = Counter::new(10, 3);
        assert_eq!(c.hit(&"a", 0), 1);
        assert_eq!(c.hit(&"a", 9), 2);
        assert_eq!(c.hit(&"a", 10), 1, "a new window");
        c.hit(&"b", 10);
        c.hit(&"c", 10);
        c.hit(&"d", 10);
        assert!(c.len() <= 3);
        let mut m = Marks::new(2);
        m.mark(1, 100, 0);
        assert!(m.active(&1, 99) && !m.active(&1, 100));
        m.mark(2, 5, 0);
        m.mark(3, 50, 10); // 2 has expired: room is made
        assert!(m.active(&3, 20));
    }
}
