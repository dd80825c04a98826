//! Rules a request cannot match, ruled out together before any rule is evaluated.
//!
//! A policy of a hundred rules mostly holds rules about one method, one path, a list of
//! address blocks or a word in the user agent, and a typical request matches none of them.
//! Evaluating each rule in turn costs a call and a field lookup per rule; here the
//! conditions every rule's top-level `and` requires ("guards") are indexed by field once, when
//! the policy loads, so that per request each field is read once: the method and the path are
//! one lookup each, the address a lookup per prefix length, and every `contains` on a field one
//! Aho-Corasick pass. What is left are the rules all of whose guards hold, in their original
//! order, and only those are evaluated.
//!
//! A guard is only ever a necessary condition (never negated, never under `or`), so skipping a
//! rule whose guard fails cannot change which rule matches first.

use crate::ast::{Case, Cmp, IpSet, Node, Operand, StrBase, StrTest, Test};
use crate::bitset::{Bits, Candidates};
use crate::fields::{BoolField, StrField};
use crate::{Expr, Request};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// The tables are built from the policy and never grow at run time, so a request cannot
/// flood them with colliding keys; a multiply-rotate hash is then safe, and several times
/// cheaper per lookup than SipHash.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MulHasher>>;

#[derive(Default)]
struct MulHasher(u64);

impl MulHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for MulHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(last));
    }
    fn write_u32(&mut self, x: u32) {
        self.add(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }
    fn write_u128(&mut self, x: u128) {
        self.add(x as u64);
        self.add((x >> 64) as u64);
    }
    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Exact values a string field must have (`eq` or `in`), case as received.
#[derive(Default)]
struct ExactIndex {
    /// For each value some rule names: the guarded rules that value fails.
    fails: FastMap<Box<[u8]>, Bits>,
    /// Every rule with a guard on this field: all fail a value no rule names.
    guarded: Bits,
}

/// Substrings a field must contain (`contains`, under any case mapping).
struct ContainsIndex {
    field: StrField,
    /// Lowercase patterns, searched for in the lowercased value: `lower(x) contains "a"` and
    /// `x contains "A"` both need at least a case-insensitive occurrence, so one set of
    /// patterns serves every case mapping. (Lowercasing the value first is several times
    /// faster than the automaton's own case-insensitive mode, which loses its SIMD
    /// prefilter.) `any` only says whether some pattern occurs, with a SIMD prefilter that makes the
    /// common miss cost a few nanoseconds; `each` then finds every occurrence (overlapping
    /// ones too), byte by byte, for the rare value that has one.
    any: AhoCorasick,
    each: AhoCorasick,
    /// Pattern id → rules that need it.
    rules: Vec<Bits>,
    guarded: Bits,
}

/// Networks the client address must be in, grouped by mask so each mask is one lookup.
#[derive(Default)]
struct IpIndex {
    v4: Vec<(u32, FastMap<u32, Bits>)>,
    v6: Vec<(u128, FastMap<u128, Bits>)>,
    guarded: Bits,
}

/// The guards of every rule of a policy, indexed by field. Built once per policy.
pub struct Prefilter {
    rules: usize,
    method: ExactIndex,
    path: ExactIndex,
    contains: Vec<ContainsIndex>,
    ip: IpIndex,
    /// (field, rules that need it true, rules that need it false).
    bools: Vec<(BoolField, Bits, Bits)>,
}

impl std::fmt::Debug for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefilter")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// The leaves every match of `n` requires: `n` itself, or the leaves of its top-level `and`s.
fn conjuncts<'a>(n: &'a Node, out: &mut Vec<&'a Cmp>) {
    match n {
        Node::And(xs) => xs.iter().for_each(|x| conjuncts(x, out)),
        Node::Cmp(c) => out.push(c),
        Node::Or(_) | Node::Xor(_) | Node::Not(..) => {}
    }
}

/// Fields whose value is at hand. The fingerprint is built on first read, the prefix is
/// formatted and the cohort looked up, so guarding on them would cost what it saves.
fn cheap(f: StrField) -> bool {
    !matches!(
        f,
        StrField::Fingerprint | StrField::IpPrefix | StrField::Cohort
    )
}

/// One necessary condition of a rule, from a leaf of its top-level `and`.
enum Guard<'a> {
    Method(Vec<Box<[u8]>>),
    Path(Vec<Box<[u8]>>),
    Contains(StrField, Box<[u8]>),
    Ip(&'a IpSet),
    Bool(BoolField, bool),
}

impl Guard<'_> {
    /// Leaves that are cheap to index and never negated; anything else is left to evaluation.
    fn of(c: &Cmp) -> Option<Guard<'_>> {
        if c.negate {
            return None;
        }
        let exact = |t: &StrTest| match t {
            StrTest::Eq(v) => Some(vec![v.clone()]),
            StrTest::In(vs) => Some(vs.to_vec()),
            _ => None,
        };
        match (&c.lhs, &c.test) {
            (Operand::Ip, Test::Ip(set)) => Some(Guard::Ip(set)),
            (Operand::Bool(f), Test::Bool(want)) if *f != BoolField::FingerprintConsistent => {
                Some(Guard::Bool(*f, *want))
            }
            (
                Operand::Str {
                    base: StrBase::Field(f),
                    case,
                },
                Test::Str(t),
            ) if cheap(*f) => match (f, case, t) {
                (StrField::Method, Case::Keep, _) => exact(t).map(Guard::Method),
                (StrField::Path, Case::Keep, _) => exact(t).map(Guard::Path),
                (_, _, StrTest::Contains(finder)) => {
                    Some(Guard::Contains(*f, finder.needle().into()))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Guards with the same kind count once per rule: one is enough to rule the rule out.
    fn kind(&self) -> (u8, Option<StrField>) {
        match self {
            Guard::Method(_) => (0, None),
            Guard::Path(_) => (1, None),
            Guard::Contains(f, _) => (2, Some(*f)),
            Guard::Ip(_) => (3, None),
            // Every bool guard is kept: they cost nothing to check.
            Guard::Bool(..) => (4, None),
        }
    }
}

/// The guards of every rule, gathered by kind before they are indexed.
#[derive(Default)]
struct Gathered<'a> {
    method: Vec<(usize, Vec<Box<[u8]>>)>,
    path: Vec<(usize, Vec<Box<[u8]>>)>,
    contains: Vec<ContainsLits>,
    ip: Vec<(usize, &'a IpSet)>,
    bools: Vec<(BoolField, Bits, Bits)>,
}

/// The words rules require of one field, with the rule requiring each.
struct ContainsLits {
    field: StrField,
    lits: Vec<(Box<[u8]>, usize)>,
}

impl<'a> Gathered<'a> {
    fn add(&mut self, n: usize, i: usize, g: Guard<'a>) {
        match g {
            Guard::Method(vs) => self.method.push((i, vs)),
            Guard::Path(vs) => self.path.push((i, vs)),
            Guard::Ip(set) => self.ip.push((i, set)),
            Guard::Contains(field, lit) => {
                match self.contains.iter_mut().find(|c| c.field == field) {
                    Some(c) => c.lits.push((lit, i)),
                    None => self.contains.push(ContainsLits {
                        field,
                        lits: vec![(lit, i)],
                    }),
                }
            }
            Guard::Bool(f, want) => {
                let k = match self.bools.iter().position(|b| b.0 == f) {
                    Some(k) => k,
                    None => {
                        self.bools.push((f, Bits::new(n), Bits::new(n)));
                        self.bools.len() - 1
                    }
                };
                if want {
                    self.bools[k].1.set(i);
                } else {
                    self.bools[k].2.set(i);
                }
            }
        }
    }
}

impl Prefilter {
    /// Indexes the guards of `exprs`; candidate indexes refer to this order.
    pub fn new<'a>(exprs: impl IntoIterator<Item = &'a Expr>) -> Prefilter {
        let exprs: Vec<&Expr> = exprs.into_iter().collect();
        let n = exprs.len();
        let mut all = Gathered::default();
        for (i, e) in exprs.iter().enumerate() {
            let mut leaves = Vec::new();
            conjuncts(&e.root, &mut leaves);
            let mut kinds = Vec::new();
            for g in leaves.into_iter().filter_map(Guard::of) {
                if matches!(g, Guard::Bool(..)) || !kinds.contains(&g.kind()) {
                    kinds.push(g.kind());
                    all.add(n, i, g);
                }
            }
        }
        Prefilter {
            rules: n,
            method: exact_index(n, &all.method),
            path: exact_index(n, &all.path),
            contains: all
                .contains
                .into_iter()
                .filter_map(|c| contains_index(n, c))
                .collect(),
            ip: ip_index(n, &all.ip),
            bools: all.bools,
        }
    }

    /// The rules `req` might match, in their order; every rule that matches is among them.
    pub fn candidates(&self, req: &Request<'_>) -> Candidates {
        let mut fail = Candidates::empty(self.rules);
        let out = fail.words_mut();
        exact_fails(&self.method, req.method.as_bytes(), out);
        exact_fails(&self.path, req.path.as_bytes(), out);
        for (f, need_true, need_false) in &self.bools {
            if f.read(req) {
                need_false.or_into(out);
            } else {
                need_true.or_into(out);
            }
        }
        self.ip_fails(req.ip, out);
        for c in &self.contains {
            // Rules already out need no search; most requests rule out every guarded one.
            if c.guarded.0.iter().zip(out.iter()).all(|(g, o)| g & !o == 0) {
                continue;
            }
            let mut pass = Candidates::empty(self.rules);
            let pass = pass.words_mut();
            c.field.with(req, |v| {
                with_lowercase(v, |v| {
                    if !c.any.is_match(v) {
                        return;
                    }
                    for m in c.each.find_overlapping_iter(v) {
                        c.rules[m.pattern().as_usize()].or_into(pass);
                    }
                })
            });
            c.guarded.or_not_into(pass, out);
        }
        fail.invert();
        fail
    }

    fn ip_fails(&self, ip: IpAddr, out: &mut [u64]) {
        if self.ip.guarded.0.iter().all(|&g| g == 0) {
            return;
        }
        let mut pass = Candidates::empty(self.rules);
        let pass = pass.words_mut();
        let mut look = |ip: IpAddr| match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                for (mask, nets) in &self.ip.v4 {
                    if let Some(b) = nets.get(&(a & mask)) {
                        b.or_into(pass);
                    }
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                for (mask, nets) in &self.ip.v6 {
                    if let Some(b) = nets.get(&(a & mask)) {
                        b.or_into(pass);
                    }
                }
            }
        };
        // As in `IpSet::contains`: a dual-stack socket reports IPv4 clients mapped.
        look(ip);
        if ip.to_canonical() != ip {
            look(ip.to_canonical());
        }
        self.ip.guarded.or_not_into(pass, out);
    }
}

/// Calls `f` with `v` in ASCII lowercase, copied on the stack when short.
fn with_lowercase(v: &[u8], f: impl FnOnce(&[u8])) {
    let mut buf = [0u8; 512];
    match buf.get_mut(..v.len()) {
        Some(b) => {
            b.copy_from_slice(v);
            b.make_ascii_lowercase();
            f(b)
        }
        None => f(&v.to_ascii_lowercase()),
    }
}

fn exact_fails(ix: &ExactIndex, v: &[u8], out: &mut [u64]) {
    match ix.fails.get(v) {
        Some(f) => f.or_into(out),
        None => ix.guarded.or_into(out),
    }
}

fn exact_index(n: usize, guards: &[(usize, Vec<Box<[u8]>>)]) -> ExactIndex {
    let mut guarded = Bits::new(n);
    let mut has: FastMap<Box<[u8]>, Bits> = FastMap::default();
    for (i, vs) in guards {
        guarded.set(*i);
        for v in vs {
            has.entry(v.clone()).or_insert_with(|| Bits::new(n)).set(*i);
        }
    }
    let fails = has
        .into_iter()
        .map(|(v, b)| (v, guarded.minus(&b)))
        .collect();
    ExactIndex { fails, guarded }
}

fn contains_index(n: usize, ContainsLits { field, lits }: ContainsLits) -> Option<ContainsIndex> {
    let mut guarded = Bits::new(n);
    let mut pats: Vec<Box<[u8]>> = Vec::new();
    let mut rules: Vec<Bits> = Vec::new();
    for (lit, i) in lits {
        guarded.set(i);
        let lit: Box<[u8]> = lit.to_ascii_lowercase().into();
        let k = match pats.iter().position(|p| *p == lit) {
            Some(k) => k,
            None => {
                pats.push(lit);
                rules.push(Bits::new(n));
                pats.len() - 1
            }
        };
        rules[k].set(i);
    }
    // Only a pattern set too large for an automaton fails; then these rules are simply not
    // prefiltered.
    let any = AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostFirst)
        .build(&pats)
        .ok()?;
    let each = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(&pats)
        .ok()?;
    Some(ContainsIndex {
        field,
        any,
        each,
        rules,
        guarded,
    })
}

fn ip_index(n: usize, guards: &[(usize, &IpSet)]) -> IpIndex {
    let mut ix = IpIndex {
        guarded: Bits::new(n),
        ..IpIndex::default()
    };
    for (i, set) in guards {
        ix.guarded.set(*i);
        for &(net, mask) in &set.v4 {
            add_net(&mut ix.v4, net, mask, n, *i);
        }
        for &(net, mask) in &set.v6 {
            add_net(&mut ix.v6, net, mask, n, *i);
        }
    }
    ix
}

/// Records that rule `i` of `n` accepts `net`, in the table of its mask.
fn add_net<T: Copy + Eq + std::hash::Hash>(
    by_mask: &mut Vec<(T, FastMap<T, Bits>)>,
    net: T,
    mask: T,
    n: usize,
    i: usize,
) {
    let k = match by_mask.iter().position(|(m, _)| *m == mask) {
        Some(k) => k,
        None => {
            by_mask.push((mask, FastMap::default()));
            by_mask.len() - 1
        }
    };
    by_mask[k]
        .1
        .entry(net)
        .or_insert_with(|| Bits::new(n))
        .set(i);
}
