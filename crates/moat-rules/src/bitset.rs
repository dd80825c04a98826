//! Sets of rule indexes: the prefilter's precomputed ones, and the candidates of one request.

/// A set of rule indexes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bits(pub(crate) Vec<u64>);

impl Bits {
    pub(crate) fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    pub(crate) fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub(crate) fn or_into(&self, out: &mut [u64]) {
        for (o, b) in out.iter_mut().zip(&self.0) {
            *o |= b;
        }
    }
    /// `out |= self & !pass`
    pub(crate) fn or_not_into(&self, pass: &[u64], out: &mut [u64]) {
        for ((o, g), p) in out.iter_mut().zip(&self.0).zip(pass) {
            *o |= g & !p;
        }
    }
    /// `self & !other`
    pub(crate) fn minus(&self, other: &Bits) -> Bits {
        Bits(self.0.iter().zip(&other.0).map(|(a, b)| a & !b).collect())
    }
}

/// The rule indexes a request might match, ascending. Held inline for up to 256 rules, so the
/// common policy costs no allocation per request.
pub struct Candidates {
    words: Words,
    rules: usize,
}

enum Words {
    Inline([u64; 4]),
    Heap(Vec<u64>),
}

impl Candidates {
    pub(crate) fn empty(rules: usize) -> Candidates {
        let n = rules.div_ceil(64);
        Candidates {
            words: if n <= 4 {
                Words::Inline([0; 4])
            } else {
                Words::Heap(vec![0; n])
            },
            rules,
        }
    }

    pub(crate) fn words_mut(&mut self) -> &mut [u64] {
        let n = self.rules.div_ceil(64);
        match &mut self.words {
            Words::Inline(w) => &mut w[..n],
            Words::Heap(v) => v,
        }
    }

    pub(crate) fn invert(&mut self) {
        let rules = self.rules;
        for (k, w) in self.words_mut().iter_mut().enumerate() {
            let valid = match rules.saturating_sub(k * 64) {
                r if r >= 64 => u64::MAX,
                r => (1u64 << r) - 1,
            };
            *w = !*w & valid;
        }
    }

    /// Whether rule `i` is a candidate.
    pub fn contains(&self, i: usize) -> bool {
        let w = match &self.words {
            Words::Inline(w) => w.get(i / 64),
            Words::Heap(v) => v.get(i / 64),
        };
        i < self.rules && w.is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The candidate indexes, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let words: &[u64] = match &self.words {
            Words::Inline(w) => &w[..self.rules.div_ceil(64)],
            Words::Heap(v) => v,
        };
        words.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(k * 64 + b)
            })
        })
    }
}
