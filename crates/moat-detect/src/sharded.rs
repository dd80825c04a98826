//! The table shape the counting detectors share: a map from an already-hashed key (SipHash
//! under a per-process key, so a client cannot aim collisions) to its state, split into
//! shards behind their own locks so threads rarely wait on each other.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

pub(crate) const SHARDS: usize = 64;

/// The map's keys are already SipHash outputs; hashing them again would waste the hot path.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type Table<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

pub(crate) struct Sharded<V> {
    shards: Box<[Mutex<Table<V>>]>,
}

impl<V> Sharded<V> {
    pub(crate) fn new() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
        }
    }

    /// The shard holding hashed key `h` (chosen by its top bits; the map uses the low ones),
    /// locked. A poisoned lock is taken over: a counter is never worth a crash.
    pub(crate) fn lock(&self, h: u64) -> MutexGuard<'_, Table<V>> {
        self.shards[(h >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Every shard in turn, locked.
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, Table<V>>> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Keys held, over all shards.
    pub(crate) fn len(&self) -> usize {
        self.each().map(|t| t.len()).sum()
    }
}
