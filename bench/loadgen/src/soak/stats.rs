//! Latency histograms and the per-window statistics every traffic kind records into.

use super::*;

/// Latency histogram: exact below 128 ns, then 64 buckets per power of two (under 1.6 %
/// error), up to about 2^47 ns. Constant memory, O(1) recording, no sorting on the event loop.
#[derive(Clone)]
pub(super) struct Hist {
    pub(super) c: Vec<u64>,
    pub(super) n: u64,
}

pub(super) const BUCKETS: usize = 128 + 41 * 64;

impl Hist {
    pub(super) fn new() -> Self {
        Hist {
            c: vec![0; BUCKETS],
            n: 0,
        }
    }
    pub(super) fn index(ns: u64) -> usize {
        if ns < 128 {
            return ns as usize;
        }
        let e = 63 - ns.leading_zeros() as usize;
        let m = ((ns >> (e - 6)) & 63) as usize;
        (128 + (e - 7) * 64 + m).min(BUCKETS - 1)
    }
    /// The middle of bucket `i`, in nanoseconds.
    pub(super) fn value(i: usize) -> f64 {
        if i < 128 {
            return i as f64;
        }
        let e = (i - 128) / 64 + 7;
        let m = ((i - 128) % 64) as u64;
        let width = 1u64 << (e - 6);
        ((64 + m) * width) as f64 + width as f64 / 2.0
    }
    pub(super) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.c[Self::index(ns)] += 1;
        self.n += 1;
    }
    pub(super) fn merge(&mut self, o: &Hist) {
        for (a, b) in self.c.iter_mut().zip(&o.c) {
            *a += b;
        }
        self.n += o.n;
    }
    pub(super) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((self.n as f64 - 1.0) * q).round() as u64;
        let mut acc = 0;
        for (i, &k) in self.c.iter().enumerate() {
            acc += k;
            if acc > rank {
                return Some(Self::value(i) / 1e6);
            }
        }
        None
    }
}

/// What happened in one window.
#[derive(Clone)]
pub(super) struct Window {
    pub(super) hist: Vec<Hist>,
    pub(super) errors: [u64; N],
}

impl Window {
    pub(super) fn new() -> Self {
        Window {
            hist: (0..N).map(|_| Hist::new()).collect(),
            errors: [0; N],
        }
    }
}

pub(super) struct Shared {
    pub(super) win: Window,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) answers: BTreeMap<String, u64>,
}

#[derive(Clone)]
pub(super) struct Stats(Arc<Mutex<Shared>>);

pub(super) fn note(map: &mut BTreeMap<String, u64>, key: String) {
    if map.len() < MAX_NOTES || map.contains_key(&key) {
        *map.entry(key).or_default() += 1;
    } else {
        *map.entry("other".into()).or_default() += 1;
    }
}

impl Stats {
    pub(super) fn new() -> Self {
        Stats(Arc::new(Mutex::new(Shared {
            win: Window::new(),
            errors: BTreeMap::new(),
            answers: BTreeMap::new(),
        })))
    }
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn ok(&self, k: Kind, d: Duration) {
        self.lock().win.hist[k as usize].record(d);
    }
    pub(super) fn err(&self, k: Kind, why: &str) {
        let mut g = self.lock();
        g.win.errors[k as usize] += 1;
        note(&mut g.errors, format!("{}: {why}", k.name()));
    }
    pub(super) fn answer(&self, k: Kind, what: &str) {
        note(&mut self.lock().answers, format!("{} {what}", k.name()));
    }
    pub(super) fn take(&self) -> Window {
        std::mem::replace(&mut self.lock().win, Window::new())
    }
}
