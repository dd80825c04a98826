//! Campaigns: captured messages grouped into the spam runs that sent them.
//!
//! One run sends one template to many addresses. Blocking, reporting and counting work better
//! per run than per message ("412 messages of one phishing run, its links on 3 domains"), so
//! each message gets a [`Fingerprint`] (computed by [`extract`](crate::extract)) and
//! [`cluster`] (or the incremental [`Campaigns`]) links messages that came from one run:
//!
//! - they share a URL set: the same sites and pages, per-recipient tokens aside; or
//! - they share a subject skeleton (non-empty) and their bodies' SimHashes are at most
//!   [`BODY_DISTANCE`] bits apart: the same wording, for runs that rotate domains or send no
//!   links.
//!
//! Linking is transitive (union-find): a run that rotates its domains halfway through stays
//! one campaign as long as its wording links the two halves. That is also why each rule is
//! strict on its own: one false link merges two whole campaigns.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};

use crate::fingerprint::{stable_hash, StableHasher};

/// What a message is grouped by. Persist it as it is (it serialises with serde; hashes as
/// 16 hex digits, so JSON consumers that read numbers as doubles lose nothing): the values
/// are stable across processes and releases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Hash of the message's link targets: registrable domain and path of each URL, with the
    /// query, recipient-specific path segments and token-like segments dropped (except on
    /// shorteners and shared hosts, whose paths name the content). `None` without links.
    #[serde(with = "hex_opt")]
    pub url_set: Option<u64>,
    /// The subject with personalisation blanked out: lowercase, the recipient's address, domain
    /// and name as `*`, random-looking tokens as `*`, numbers as `#`, whitespace squashed.
    pub subject_skeleton: String,
    /// 64-bit SimHash of the body's word pairs (text parts and HTML text), `None` when the body
    /// has too few words for it to mean anything.
    #[serde(with = "hex_opt")]
    pub body: Option<u64>,
}

/// At most this many bits apart, two body SimHashes count as the same text.
///
/// Tuned with `tests/campaign.rs` (`distances`, 8 spam templates of 70 to 200 words, copies
/// differing in greeting, recipient name, tokens and reference numbers): copies of one run
/// were 0 to 9 bits apart (median 3), unrelated texts 22 to 42 (median 31). 11 sits in that
/// gap, nearer the copies, because a false link merges two whole campaigns. The classic 3
/// (Manku et al.) is for web pages with thousands of features, where one edit barely moves
/// the hash; in a short spam a changed greeting alone moves several bits.
pub const BODY_DISTANCE: u32 = 11;

impl Fingerprint {
    /// The body SimHash when it can link this message: the body rule also needs a shared,
    /// non-empty subject skeleton (see the module docs).
    fn linking_body(&self) -> Option<u64> {
        self.body.filter(|_| !self.subject_skeleton.is_empty())
    }
}

/// Whether two messages belong to one campaign by themselves (before transitivity).
pub fn linked(a: &Fingerprint, b: &Fingerprint) -> bool {
    if a.url_set.is_some() && a.url_set == b.url_set {
        return true;
    }
    match (a.linking_body(), b.body) {
        (Some(x), Some(y)) => {
            a.subject_skeleton == b.subject_skeleton && (x ^ y).count_ones() <= BODY_DISTANCE
        }
        _ => false,
    }
}

/// One spam run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// Derived from the earliest member's fingerprint, so it stays the same as later messages
    /// join (and two deployments whose first message of a run agrees name it alike). 16 hex
    /// digits. When a new message links two campaigns, the merged one keeps the earlier id.
    pub id: String,
    /// Message ids, in the order they were given (earliest first).
    pub members: Vec<String>,
    /// The earliest member's subject skeleton: a readable label.
    pub subject_skeleton: String,
}

/// Groups messages into campaigns. `items` should be in capture order: the first message of
/// each campaign names it. Every message is in exactly one campaign (a message linked to no
/// other is a campaign of one), and campaigns come in order of their first message, so the
/// output depends only on the input.
pub fn cluster(items: &[(String, Fingerprint)]) -> Vec<Campaign> {
    let mut index = Campaigns::default();
    for (id, fp) in items {
        index.insert(id.clone(), fp.clone());
    }
    index.campaigns()
}

/// Bands the body SimHash is cut into for candidate lookup.
const BANDS: u32 = 4;
const BAND_BITS: u32 = 64 / BANDS;
/// Two hashes at most [`BODY_DISTANCE`] apart differ in at most this many bits in at least one
/// band (pigeonhole), so probing each band within this radius finds every near body.
const PROBE_RADIUS: u32 = BODY_DISTANCE / BANDS;
const _: () = assert!(PROBE_RADIUS <= 2, "probing is written for radius 0 to 2");

/// An incremental [`cluster`]: insert messages as they are captured, ask for campaigns at any
/// time. Insertion costs a few hash lookups plus a look at the bodies that share the message's
/// subject skeleton, never a scan of everything.
///
/// Bodies are grouped by subject skeleton. A small group (the usual case: one run's distinct
/// bodies) is scanned whole, one XOR and popcount per body. A group past 512 bodies
/// (a flood under one subject, say) gets a band index instead: cut into 4 bands of 16 bits, two
/// hashes at most [`BODY_DISTANCE`] (11) bits apart differ in at most 2 bits in some band
/// (pigeonhole), so each body is filed under its 4 band values and looked up under every value
/// within 2 bits of each (4 × 137 lookups). An unrelated body turns up with probability about
/// 1 in 120, so even a flood of same-subject messages with random bodies stays near linear.
#[derive(Debug, Default)]
pub struct Campaigns {
    ids: Vec<String>,
    fps: Vec<Fingerprint>,
    /// Union-find; a root is always the smallest index of its set, so the earliest member.
    parent: Vec<u32>,
    by_url_set: HashMap<u64, u32>,
    /// (skeleton hash, SimHash) to the first message with exactly that body.
    by_body: HashMap<(u64, u64), u32>,
    /// Skeleton hash to the distinct bodies under it.
    groups: HashMap<u64, BodyGroup>,
    /// Scratch for candidate lists, kept to avoid an allocation per insert.
    candidates: Vec<u32>,
}

/// Up to this many distinct bodies, a skeleton's group is scanned linearly: 512 popcounts cost
/// less than the 548 lookups of the band index.
const SCAN_LIMIT: usize = 512;

/// The distinct bodies filed under one subject skeleton.
#[derive(Debug, Default)]
struct BodyGroup {
    /// (SimHash, message index), in insertion order.
    bodies: Vec<(u64, u32)>,
    /// Band index, built once the group outgrows [`SCAN_LIMIT`]: `band << 16 | value` to the
    /// message indices filed under it.
    bands: Option<HashMap<u32, Vec<u32>, BuildHasherDefault<BandHasher>>>,
}

impl BodyGroup {
    /// Puts into `out` the filed messages whose body is within [`BODY_DISTANCE`] of `body`.
    fn near(&self, body: u64, out: &mut Vec<u32>) {
        out.clear();
        let near = |b: u64| (b ^ body).count_ones() <= BODY_DISTANCE;
        let Some(bands) = &self.bands else {
            out.extend(
                self.bodies
                    .iter()
                    .filter(|(b, _)| near(*b))
                    .map(|&(_, i)| i),
            );
            return;
        };
        for band in 0..BANDS {
            for probe in probes(band_value(body, band)) {
                if let Some(list) = bands.get(&band_key(band, probe)) {
                    out.extend(list.iter().copied());
                }
            }
        }
        // A body can be filed under several probed values; and only near ones count.
        out.sort_unstable();
        out.dedup();
        let position = |i: u32| self.bodies.binary_search_by_key(&i, |&(_, j)| j);
        out.retain(|&i| position(i).is_ok_and(|p| near(self.bodies[p].0)));
    }

    fn add(&mut self, body: u64, me: u32) {
        self.bodies.push((body, me));
        if let Some(bands) = &mut self.bands {
            file(bands, body, me);
        } else if self.bodies.len() > SCAN_LIMIT {
            let mut bands = HashMap::default();
            for &(b, i) in &self.bodies {
                file(&mut bands, b, i);
            }
            self.bands = Some(bands);
        }
    }
}

fn file(bands: &mut HashMap<u32, Vec<u32>, BuildHasherDefault<BandHasher>>, body: u64, me: u32) {
    for band in 0..BANDS {
        bands
            .entry(band_key(band, band_value(body, band)))
            .or_default()
            .push(me);
    }
}

fn band_key(band: u32, value: u16) -> u32 {
    band << 16 | u32::from(value)
}

/// Hasher for band keys (18-bit integers): one multiply-and-mix instead of SipHash, since an
/// insert into a large group makes hundreds of lookups. Keys come from message content, but
/// there are only 2^18 of them and the mix is a bijection, so no input can pile more than a
/// handful of keys onto one bucket.
#[derive(Default)]
struct BandHasher(u64);

impl std::hash::Hasher for BandHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }

    fn finish(&self) -> u64 {
        crate::fingerprint::fmix64(self.0)
    }
}

impl Campaigns {
    /// Adds one message. Returns the id of the campaign it joined (or started) as things stand.
    pub fn insert(&mut self, id: String, fp: Fingerprint) -> String {
        // More than 4 billion messages in one index is not a case to handle gracefully.
        let me = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.push(id);
        self.parent.push(me);
        if let Some(set) = fp.url_set {
            match self.by_url_set.get(&set) {
                Some(&other) => self.union(me, other),
                None => {
                    self.by_url_set.insert(set, me);
                }
            }
        }
        if let Some(body) = fp.linking_body() {
            let skeleton = stable_hash(fp.subject_skeleton.as_bytes());
            match self.by_body.get(&(skeleton, body)) {
                Some(&other) => self.union(me, other),
                None => {
                    self.by_body.insert((skeleton, body), me);
                    let group = self.groups.entry(skeleton).or_default();
                    let mut near = std::mem::take(&mut self.candidates);
                    group.near(body, &mut near);
                    group.add(body, me);
                    for &other in &near {
                        self.union(me, other);
                    }
                    self.candidates = near;
                }
            }
        }
        self.fps.push(fp);
        let root = self.find(me);
        self.campaign_id(root)
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (keep, drop) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[drop as usize] = keep;
    }

    /// The id of the campaign whose earliest member is `root`. A fingerprint that can link
    /// (URL set, or skeleton and body) names its campaign alone: two campaigns whose earliest
    /// members had equal fingerprints would have been linked. One that cannot link is mixed
    /// with the message id, or every bare message would share an id.
    fn campaign_id(&self, root: u32) -> String {
        let fp = &self.fps[root as usize];
        let mut h = StableHasher::new();
        h.write(&fp.url_set.unwrap_or(0).to_le_bytes());
        h.write_u8(u8::from(fp.url_set.is_some()));
        h.write(&fp.body.unwrap_or(0).to_le_bytes());
        h.write_u8(u8::from(fp.body.is_some()));
        h.write(fp.subject_skeleton.as_bytes());
        if fp.url_set.is_none() && fp.linking_body().is_none() {
            h.write_u8(0xff);
            h.write(self.ids[root as usize].as_bytes());
        }
        format!("{:016x}", h.finish())
    }

    /// The campaigns so far, as [`cluster`] returns them.
    pub fn campaigns(&mut self) -> Vec<Campaign> {
        let mut by_root: HashMap<u32, usize> = HashMap::new();
        let mut out: Vec<Campaign> = Vec::new();
        for i in 0..self.ids.len() as u32 {
            let root = self.find(i);
            let slot = *by_root.entry(root).or_insert_with(|| {
                out.push(Campaign {
                    id: self.campaign_id(root),
                    members: Vec::new(),
                    subject_skeleton: self.fps[root as usize].subject_skeleton.clone(),
                });
                out.len() - 1
            });
            out[slot].members.push(self.ids[i as usize].clone());
        }
        out
    }

    /// How many messages were inserted.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// `v` and every value within [`PROBE_RADIUS`] bits of it.
fn probes(v: u16) -> impl Iterator<Item = u16> {
    let singles = (0..BAND_BITS)
        .filter(|_| PROBE_RADIUS >= 1)
        .map(move |a| v ^ (1 << a));
    let pairs = (0..BAND_BITS)
        .filter(|_| PROBE_RADIUS >= 2)
        .flat_map(move |a| (a + 1..BAND_BITS).map(move |b| v ^ (1 << a) ^ (1 << b)));
    std::iter::once(v).chain(singles).chain(pairs)
}

fn band_value(body: u64, band: u32) -> u16 {
    (body >> (band * BAND_BITS)) as u16
}

/// Serde for `Option<u64>` as 16 lowercase hex digits (or null).
mod hex_opt {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => s.serialize_str(&format!("{x:016x}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| u64::from_str_radix(&s, 16).map_err(D::Error::custom))
            .transpose()
    }
}
