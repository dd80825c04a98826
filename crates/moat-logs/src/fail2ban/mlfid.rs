//! fail2ban's multi-line cache (the `mlfidCache` of `_mergeFailure`): the failure groups last
//! seen under each `<F-MLFID>`, 100 ids for 5 minutes, per matcher.
//!
//! Compact on purpose. sshd's filter ties every failure line to its `host sshd[pid]:` prefix,
//! so a busy log keeps all 100 ids of its matcher filled; a line's whole groups (a `BTreeMap`
//! of ten strings) cost about 1 KB an id, 2 MB for 20 logs. An entry keeps only the groups the
//! matcher reads back after a merge ([`KEPT`]; the others never change an outcome), packed with
//! its id into one allocation.

use super::matcher::Groups;
use jiff::{SignedDuration, Timestamp};
use std::collections::VecDeque;

/// How many ids, for how long (fail2ban's values).
const MAX_IDS: usize = 100;
const TTL: SignedDuration = SignedDuration::from_secs(300);

/// Every group the matcher reads from a merged failure: the address (`ip4`, `ip6`, `fid`,
/// `cidr`), the user and the users seen under the id, and the multi-line flags.
const KEPT: [&str; 9] = [
    "ip4",
    "ip6",
    "fid",
    "cidr",
    "user",
    "nofail",
    "mlfgained",
    "mlfpending",
    "\0users",
];

struct Entry {
    at: Timestamp,
    /// The id, then each kept group: `len:u32 id`, then `(key:u8 len:u32 value)*`.
    packed: Box<[u8]>,
}

impl Entry {
    fn new(id: &str, at: Timestamp, groups: &Groups) -> Entry {
        let mut packed = Vec::with_capacity(64);
        put(&mut packed, id);
        for (k, name) in KEPT.iter().enumerate() {
            if let Some(v) = groups.get(*name) {
                packed.push(k as u8);
                put(&mut packed, v);
            }
        }
        Entry {
            at,
            packed: packed.into_boxed_slice(),
        }
    }

    fn id(&self) -> &[u8] {
        take(&self.packed).0
    }

    fn groups(&self) -> Groups {
        let mut groups = Groups::new();
        let mut rest = take(&self.packed).1;
        while let Some((&k, after)) = rest.split_first() {
            let (value, next) = take(after);
            let name = KEPT[usize::from(k)];
            groups.insert(name.into(), String::from_utf8_lossy(value).into_owned());
            rest = next;
        }
        groups
    }
}

fn put(out: &mut Vec<u8>, s: &str) {
    // A value is part of one log line, which the sources cut at 64 KiB.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// The string at the head of `b` and what follows it.
fn take(b: &[u8]) -> (&[u8], &[u8]) {
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    b[4..].split_at(len)
}

/// One matcher's cache, oldest id first.
#[derive(Default)]
pub(super) struct Cache {
    entries: VecDeque<Entry>,
}

impl Cache {
    /// Forgets the ids older than the cache's time to live.
    pub(super) fn expire(&mut self, now: Timestamp) {
        self.entries.retain(|e| now.duration_since(e.at) < TTL);
    }

    pub(super) fn get(&self, id: &str) -> Option<Groups> {
        self.find(id).map(|i| self.entries[i].groups())
    }

    /// Caches `groups` under a new id, the oldest id making room.
    pub(super) fn insert(&mut self, id: &str, now: Timestamp, groups: &Groups) {
        if self.entries.len() >= MAX_IDS {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry::new(id, now, groups));
    }

    pub(super) fn remove(&mut self, id: &str) {
        self.entries.retain(|e| e.id() != id.as_bytes());
    }

    /// Replaces the groups of `id`, if the cache still holds it (fail2ban's cache holds the
    /// very dictionary it goes on changing); its age stays.
    pub(super) fn store_back(&mut self, id: &str, groups: &Groups) {
        if let Some(i) = self.find(id) {
            let at = self.entries[i].at;
            self.entries[i] = Entry::new(id, at, groups);
        }
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.id() == id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_the_matcher_reads_and_forgets_the_rest() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut c = Cache::default();
        let mut g = Groups::new();
        for (k, v) in [
            ("ip4", "192.0.2.7"),
            ("user", "ro\0ot"),
            ("pid", "77"),
            ("cidr", ""),
        ] {
            g.insert(k.into(), v.into());
        }
        c.insert("sshd[77]", now, &g);
        let back = c.get("sshd[77]").unwrap();
        let pairs: Vec<(&str, &str)> = back.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(
            pairs,
            [("cidr", ""), ("ip4", "192.0.2.7"), ("user", "ro\0ot")]
        );
        assert!(c.get("sshd[7]").is_none());
        g.insert("nofail".into(), "1".into());
        c.store_back("sshd[77]", &g);
        assert_eq!(c.get("sshd[77]").unwrap()["nofail"], "1");
        c.expire(now + SignedDuration::from_secs(299));
        assert!(c.get("sshd[77]").is_some());
        c.expire(now + TTL);
        assert!(c.get("sshd[77]").is_none(), "five minutes old");
    }

    #[test]
    fn holds_a_hundred_ids_oldest_out_first() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut c = Cache::default();
        for i in 0..=MAX_IDS {
            c.insert(&format!("id{i}"), now, &Groups::new());
        }
        assert!(c.get("id0").is_none());
        assert!(c.get("id1").is_some() && c.get(&format!("id{MAX_IDS}")).is_some());
        c.remove("id1");
        assert!(c.get("id1").is_none());
    }
}
