//! The parts of a campaign [`Fingerprint`](crate::Fingerprint), computed while
//! [`extract`](crate::extract) walks the message so that it is parsed once.
//!
//! A spam run sends one template to many addresses, personalising it: the recipient's name or
//! address in the subject and greeting, a per-recipient tracking token in every link, an order
//! number. Each part here is built to be blind to exactly that personalisation, so the messages
//! of one run agree, while what the spammer chose once per run (the link targets, the wording)
//! still tells runs apart. Everything is hashed with [`StableHasher`], because fingerprints are
//! stored and compared across processes and releases, and campaign ids derive from them.

use crate::text::starts_ci;

/// FNV-1a over the bytes, then MurmurHash3's 64-bit finaliser so every output bit depends on
/// every input bit (SimHash needs well-mixed bits; FNV alone leaves the low bits weak). Not
/// `std`'s `DefaultHasher`: that one is randomly keyed per process and its algorithm may change
/// between Rust releases, and these values are persisted.
#[derive(Clone, Copy)]
pub(crate) struct StableHasher(u64);

impl StableHasher {
    pub(crate) const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u8(b);
        }
    }

    #[inline]
    pub(crate) fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }

    pub(crate) fn finish(self) -> u64 {
        fmix64(self.0)
    }
}

/// MurmurHash3's finaliser: a bijection with full avalanche.
pub(crate) const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::new();
    h.write(bytes);
    h.finish()
}

/// How many recipients' details are used; a hostile `To:` with thousands of addresses would
/// otherwise blank out half the dictionary (and cost time per word).
const MAX_PERSONAL_ADDRESSES: usize = 16;

/// And how many personal words in all: a display name can be any length.
const MAX_PERSONAL_WORDS: usize = 64;

/// Personal words shorter than this are left alone: `jo` or `ab` would also match ordinary
/// words and fragments.
const MIN_PERSONAL_WORD: usize = 3;

/// What identifies the recipient, to be blanked out of subjects, bodies and link paths: the
/// pieces a spam template fills in per address.
#[derive(Default)]
pub(crate) struct Personal {
    addresses: usize,
    /// Whole addresses and recipient registrable domains, lowercase, blanked out of subjects as
    /// a unit (so `alice@example.org` and `bob@corp.example` both become `*`).
    phrases: Vec<String>,
    /// Hashes of lowercase words from local parts, display names and domain labels. A short
    /// list (bounded by [`MAX_PERSONAL_ADDRESSES`]), asked once per body word, so it is fronted
    /// by a one-word Bloom filter: most words are rejected by one AND.
    words: Vec<u64>,
    bloom: u64,
    /// The same words, for matching inside URL path segments.
    word_list: Vec<String>,
    /// Recipients' registrable domains: links to them point at the victim's own site.
    domains: Vec<String>,
}

impl Personal {
    /// Adds one recipient address (lowercase, as [`crate::Indicators::recipients`] has them).
    pub(crate) fn address(&mut self, addr: &str) {
        if self.addresses >= MAX_PERSONAL_ADDRESSES || addr.is_empty() {
            return;
        }
        self.addresses += 1;
        self.phrase(addr);
        let (local, domain) = addr.rsplit_once('@').unwrap_or((addr, ""));
        self.words_of(local);
        if let Some(reg) = psl::domain_str(domain) {
            self.phrase(reg);
            if !self.domains.iter().any(|d| d == reg) {
                self.domains.push(reg.to_string());
            }
            // The label the owner chose (`example` of `example.co.uk`).
            if let Some(label) = reg.split('.').next() {
                self.word(label);
            }
        }
    }

    /// Adds a recipient's display name.
    pub(crate) fn name(&mut self, name: &str) {
        if self.addresses < MAX_PERSONAL_ADDRESSES {
            self.words_of(&name.to_lowercase());
        }
    }

    fn phrase(&mut self, p: &str) {
        if p.len() >= MIN_PERSONAL_WORD && !self.phrases.iter().any(|q| q == p) {
            self.phrases.push(p.to_string());
            // Longest first, so an address is blanked before its domain is.
            self.phrases.sort_by_key(|p| std::cmp::Reverse(p.len()));
        }
    }

    fn words_of(&mut self, s: &str) {
        for w in s.split(|c: char| !c.is_alphanumeric()) {
            self.word(w);
        }
    }

    fn word(&mut self, w: &str) {
        if self.words.len() >= MAX_PERSONAL_WORDS || w.chars().count() < MIN_PERSONAL_WORD {
            return;
        }
        let h = stable_hash(w.as_bytes());
        if !self.words.contains(&h) {
            self.words.push(h);
            self.bloom |= 1 << (h & 63);
            self.word_list.push(w.to_string());
        }
    }

    #[inline]
    fn is_word_hash(&self, h: u64) -> bool {
        self.bloom & (1 << (h & 63)) != 0 && self.words.contains(&h)
    }

    /// Whether a URL path segment carries something of the recipient's (ASCII
    /// case-insensitively; the words and phrases are lowercase).
    fn in_segment(&self, segment: &str) -> bool {
        let seg = segment.as_bytes();
        let contains = |w: &String| {
            let w = w.as_bytes();
            w.len() <= seg.len() && seg.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w))
        };
        self.word_list.iter().any(contains) || self.phrases.iter().any(contains)
    }
}

/// How a word counts once personalisation is taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordClass {
    /// The recipient's, or a per-message token: a placeholder.
    Blank,
    /// All digits: order numbers, amounts, dates.
    Number,
    /// An ordinary word.
    Word,
}

/// Words at least this long are blanked whatever they are made of: base64 blobs and tracking
/// tokens, not vocabulary.
const LONG_TOKEN: usize = 20;

/// What is counted of one alphanumeric run to tell vocabulary from generated tokens.
#[derive(Default)]
struct RunStats {
    chars: usize,
    digits: usize,
    /// Lowercase-to-uppercase steps (`QkXjZp` has 2); `iPhone` and `PayPal` have one.
    case_steps: usize,
    prev_lower: bool,
    consonants: usize,
    max_consonants: usize,
}

/// Per-byte classes for the ASCII fast path of [`pieces`], so a byte is classified by one
/// table load instead of a chain of range tests.
const ALNUM: u8 = 1;
const DIGIT: u8 = 2;
const UPPER: u8 = 4;
const LOWER: u8 = 8;
const CONSONANT: u8 = 16;
/// A byte of a multi-byte character: decode it.
const NON_ASCII: u8 = 32;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c >= 0x80 {
            NON_ASCII
        } else if c.is_ascii_digit() {
            ALNUM | DIGIT
        } else if c.is_ascii_alphabetic() {
            let case = if c.is_ascii_uppercase() { UPPER } else { LOWER };
            let vowel = matches!(
                c.to_ascii_lowercase(),
                b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
            );
            ALNUM | case | if vowel { 0 } else { CONSONANT }
        } else {
            0
        };
        b += 1;
    }
    t
};

impl RunStats {
    /// One ASCII alphanumeric byte, by its [`CLASSES`] entry; branch-free.
    #[inline]
    fn push_ascii(&mut self, class: u8) {
        self.chars += 1;
        self.digits += usize::from(class & DIGIT != 0);
        self.case_steps += usize::from(class & UPPER != 0 && self.prev_lower);
        self.prev_lower = class & LOWER != 0;
        self.consonants = if class & CONSONANT != 0 {
            self.consonants + 1
        } else {
            0
        };
        self.max_consonants = self.max_consonants.max(self.consonants);
    }

    /// Any other alphanumeric character (consonant runs are only counted in ASCII).
    fn push(&mut self, c: char) {
        self.chars += 1;
        if c.is_uppercase() && self.prev_lower {
            self.case_steps += 1;
        }
        self.prev_lower = c.is_lowercase();
        self.consonants = 0;
    }

    /// Generated tokens (reference codes, tracking ids, hash-busting strings) mix letters and
    /// digits (`a8f3c2`, `INV7Q2`), flip case (`QkXjZpLm`), or string consonants together
    /// (`xkqzvbwp`); vocabulary rarely does, and short mixes (`mp3`, `4k`) stay words. The test
    /// only needs to be consistent, not perfect: a word it blanks is blanked in every copy.
    fn class(&self, lower_hash: u64, personal: &Personal) -> WordClass {
        if self.digits == self.chars {
            WordClass::Number
        } else if self.chars >= LONG_TOKEN
            || (self.digits > 0 && self.chars >= 4)
            || self.case_steps >= 2
            || (self.chars >= 8 && self.max_consonants >= 5)
            || personal.is_word_hash(lower_hash)
        {
            WordClass::Blank
        } else {
            WordClass::Word
        }
    }
}

/// A piece of text: an alphanumeric run with its class and the hash of its lowercase form, or
/// the run of other characters between two words.
enum Piece<'a> {
    Word(&'a str, u64, WordClass),
    Other(&'a str),
}

/// The character at byte `i` (a boundary) and its length; ASCII without decoding.
#[inline]
fn char_at(text: &str, i: usize) -> (char, usize) {
    match text.as_bytes()[i] {
        b @ 0..0x80 => (b as char, 1),
        _ => text[i..]
            .chars()
            .next()
            .map_or((' ', 1), |c| (c, c.len_utf8())),
    }
}

/// Splits `text` into [`Piece`]s. Runs over every word of every body, so ASCII bytes are
/// handled without decoding characters.
fn pieces<'a>(text: &'a str, personal: &Personal, mut f: impl FnMut(Piece<'a>)) {
    let bytes = text.as_bytes();
    let len = bytes.len();
    let mut i = 0;
    while i < len {
        let start = i;
        while i < len {
            let class = CLASSES[bytes[i] as usize];
            if class & ALNUM != 0 {
                break;
            }
            if class & NON_ASCII == 0 {
                i += 1;
                continue;
            }
            let (c, n) = char_at(text, i);
            if c.is_alphanumeric() {
                break;
            }
            i += n;
        }
        if i > start {
            f(Piece::Other(&text[start..i]));
        }
        let start = i;
        let mut h = StableHasher::new();
        let mut stats = RunStats::default();
        while i < len {
            let b = bytes[i];
            let class = CLASSES[b as usize];
            if class & ALNUM != 0 {
                stats.push_ascii(class);
                h.write_u8(b | if class & UPPER != 0 { 0x20 } else { 0 });
                i += 1;
                continue;
            }
            if class & NON_ASCII == 0 {
                break;
            }
            let (c, n) = char_at(text, i);
            if !c.is_alphanumeric() {
                break;
            }
            stats.push(c);
            for l in c.to_lowercase() {
                h.write(l.encode_utf8(&mut [0; 4]).as_bytes());
            }
            i += n;
        }
        if i > start {
            let hash = h.finish();
            f(Piece::Word(
                &text[start..i],
                hash,
                stats.class(hash, personal),
            ));
        }
    }
}

/// Appends the skeleton of `text` to `out`: words lowercased, blanks as `*`, numbers as `#`,
/// whitespace runs as one space (none at the ends), other characters kept.
fn push_skeleton(text: &str, personal: &Personal, out: &mut String) {
    pieces(text, personal, |p| match p {
        Piece::Word(w, _, class) => match class {
            WordClass::Blank => out.push('*'),
            WordClass::Number => out.push('#'),
            WordClass::Word => out.extend(w.chars().flat_map(char::to_lowercase)),
        },
        Piece::Other(o) => {
            let mut space = false;
            for c in o.chars() {
                if c.is_whitespace() || c.is_control() {
                    space = true;
                    continue;
                }
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                out.push(c);
            }
            if space && !out.is_empty() {
                out.push(' ');
            }
        }
    });
}

/// Replaces every ASCII-case-insensitive occurrence of the recipient's phrases (addresses,
/// domains) with `*`. ASCII lowercasing keeps byte offsets, so matches map back exactly.
fn blank_phrases(s: &str, personal: &Personal) -> String {
    let mut s = s.to_string();
    // One pass per phrase (at most two per recipient), so a hostile subject repeating an
    // address costs linear time.
    for p in &personal.phrases {
        let lower = s.to_ascii_lowercase();
        let mut out = String::new();
        let mut copied = 0;
        for (at, _) in lower.match_indices(p.as_str()) {
            // A match of valid UTF-8 in valid UTF-8 starts and ends on character boundaries.
            out.push_str(&s[copied..at]);
            out.push('*');
            copied = at + p.len();
        }
        if copied > 0 {
            out.push_str(&s[copied..]);
            s = out;
        }
    }
    s
}

/// The subject with personalisation taken out: lowercase; the recipient's address, domain,
/// local part and name words as `*`; generated tokens as `*` (see `RunStats::class`); numbers
/// as `#`; whitespace squashed. `"Alice, invoice 38812 (ref A7F3KQ) is due"` to
/// `alice@x.example` and `"Bob, invoice 1204 (ref 99ZZ1B) is due"` to `bob@y.example` both give
/// `"*, invoice # (ref *) is due"`.
pub(crate) fn subject_skeleton(subject: &str, personal: &Personal) -> String {
    let mut out = String::with_capacity(subject.len());
    push_skeleton(&blank_phrases(subject, personal), personal, &mut out);
    out.truncate(out.trim_end().len());
    out
}

/// Words per shingle. Two keeps some word order (a shuffled bag of the same words is a
/// different text) while one changed word disturbs only two features. Measured with
/// `tests/campaign.rs`'s `distances`: single words brought unrelated spam as close as 16 bits
/// (shared vocabulary); three words let copies of one run drift up to 11 bits apart, against 9
/// with two.
const SHINGLE: usize = 2;

/// Below this many shingles there is too little text for a SimHash to mean anything (two
/// unrelated one-liners land a few bits apart as often as two copies of one): no fingerprint.
const MIN_SHINGLES: u32 = 8;

/// Work bound: shingles after this many are not counted. Far above any real body, and keeps
/// the counters from overflowing on a hostile multi-gigabyte one.
const MAX_SHINGLES: u32 = 1 << 24;

/// Bit planes of the per-bit counters: enough for [`MAX_SHINGLES`].
const PLANES: usize = 25;
const _: () = assert!(MAX_SHINGLES as u64 <= 1 << (PLANES - 1));

/// Streaming SimHash (Charikar) over word shingles: every shingle hash votes on each of the 64
/// bits; the fingerprint keeps the majority. Texts sharing most shingles agree on most bits, so
/// near-duplicates are a few bits apart while unrelated texts are about 32 apart.
///
/// The 64 vote counters are bit-sliced: `planes[j]` holds bit `j` of all 64 counters, so adding
/// a shingle is a ripple-carry add of one word (two steps on average) instead of 64 increments.
pub(crate) struct Shingler {
    /// Hashes of the last `SHINGLE` tokens, most recent last.
    window: [u64; SHINGLE],
    filled: usize,
    planes: [u64; PLANES],
    shingles: u32,
}

impl Default for Shingler {
    fn default() -> Self {
        Self {
            window: [0; SHINGLE],
            filled: 0,
            planes: [0; PLANES],
            shingles: 0,
        }
    }
}

/// Token hashes for the placeholders; any fixed distinct values do.
const BLANK_TOKEN: u64 = 0x2a2a_2a2a_2a2a_2a2a;
const NUMBER_TOKEN: u64 = 0x2323_2323_2323_2323;

impl Shingler {
    /// Feeds a piece of body text. Pieces are separate: a word never continues into the next.
    pub(crate) fn feed(&mut self, text: &str, personal: &Personal) {
        pieces(text, personal, |p| {
            if let Piece::Word(_, hash, class) = p {
                self.token(match class {
                    WordClass::Blank => BLANK_TOKEN,
                    WordClass::Number => NUMBER_TOKEN,
                    WordClass::Word => hash,
                });
            }
        });
    }

    fn token(&mut self, t: u64) {
        self.window.rotate_left(1);
        self.window[SHINGLE - 1] = t;
        self.filled += 1;
        if self.filled < SHINGLE || self.shingles >= MAX_SHINGLES {
            return;
        }
        let mut s = 0u64;
        for (k, w) in self.window.iter().enumerate() {
            s ^= w.rotate_left(k as u32 * 23);
        }
        let mut carry = fmix64(s);
        for plane in &mut self.planes {
            if carry == 0 {
                break;
            }
            let next = *plane & carry;
            *plane ^= carry;
            carry = next;
        }
        self.shingles += 1;
    }

    /// The 64-bit SimHash, or `None` for too little text.
    pub(crate) fn finish(&self) -> Option<u64> {
        if self.shingles < MIN_SHINGLES {
            return None;
        }
        let mut out = 0u64;
        for bit in 0..64 {
            let count = self
                .planes
                .iter()
                .enumerate()
                .fold(0u64, |n, (j, p)| n | ((p >> bit) & 1) << j);
            if count * 2 > u64::from(self.shingles) {
                out |= 1 << bit;
            }
        }
        Some(out)
    }
}

/// One URL's contribution to the URL-set hash: registrable domain (or host, for an address)
/// and path, no scheme, port, query or fragment; in the path, segments carrying the
/// recipient's details become `*` and the rest get the subject's treatment (generated tokens
/// `*`, numbers `#`). An open redirect's target (`google.com/url?q=https://evil.example/x`) is
/// appended, or every campaign abusing one redirector would share a key.
///
/// Why this shape: a spam run's links differ per recipient in the query (`?u=8f3a...&e=...`),
/// in a token path segment (`/r/8f3a9c...`) or in the subdomain (`alice-x1.evil.example`),
/// while the site and the page the run advertises are chosen once. Where the path itself names
/// the content on a host shared by everyone (a shortener's code, a Google Forms id, a Dropbox
/// file: see [`crate::norm::path_names_content`]), the path is kept verbatim, or every run
/// through that host would become one.
pub(crate) fn url_key(url: &str, registrable: Option<&str>, personal: &Personal) -> Option<String> {
    let (host, path, query) = split_serialised(url)?;
    let site = registrable.unwrap_or(host);
    if personal.domains.iter().any(|d| d == site) {
        return None;
    }
    let mut key = String::with_capacity(site.len() + path.len() + 1);
    key.push_str(site);
    push_path(
        &mut key,
        path,
        crate::norm::path_names_content(host),
        personal,
    );
    if let Some(target) = query.and_then(redirect_target) {
        if let Some((inner_host, inner_path, _)) = split_serialised(&target.url) {
            key.push('>');
            key.push_str(target.registrable_domain.as_deref().unwrap_or(inner_host));
            let verbatim = crate::norm::path_names_content(inner_host);
            push_path(&mut key, inner_path, verbatim, personal);
        }
    }
    Some(key)
}

/// The first query value that is itself an http(s) URL: an open redirect's target. One level
/// only: a redirect nested in the target is not followed further.
fn redirect_target(query: &str) -> Option<crate::norm::Normalised> {
    // Cheap test first: most queries carry no URL, and decoding them all allocates.
    if !query
        .as_bytes()
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"http"))
    {
        return None;
    }
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(_, v)| starts_ci(v, "http://") || starts_ci(v, "https://"))
        .find_map(|(_, v)| crate::norm::normalise(&v))
}

/// Host, path and query of a URL as [`crate::norm::normalise`] serialised it (scheme, `://`,
/// optional userinfo, host, optional port, path from `/`, `?query`, `#fragment`): cheaper than
/// parsing it again, and exact for that form.
fn split_serialised(url: &str) -> Option<(&str, &str, Option<&str>)> {
    let rest = &url[url.find("://")? + 3..];
    let path_at = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..path_at];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        &host_port[..=host_port.find(']')?]
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let after = &rest[path_at..];
    let after = after.split('#').next().unwrap_or_default();
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    Some((host, path, query))
}

fn push_path(key: &mut String, path: &str, verbatim: bool, personal: &Personal) {
    for segment in path.split('/').skip(1) {
        key.push('/');
        if verbatim {
            key.push_str(segment);
        } else if !segment.is_empty() && personal.in_segment(segment) {
            key.push('*');
        } else {
            push_skeleton(segment, personal, key);
        }
    }
}

/// The URL-set hash: over the sorted, deduplicated keys, so link order and repetition do not
/// matter. `None` when no link is left.
pub(crate) fn url_set<'a>(
    urls: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    personal: &Personal,
) -> Option<u64> {
    let mut keys: Vec<String> = urls
        .filter_map(|(u, reg)| url_key(u, reg, personal))
        .collect();
    if keys.is_empty() {
        return None;
    }
    keys.sort_unstable();
    keys.dedup();
    let mut h = StableHasher::new();
    for k in &keys {
        h.write(k.as_bytes());
        // 0xff never occurs in UTF-8: an unambiguous separator.
        h.write_u8(0xff);
    }
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn personal(addrs: &[&str], names: &[&str]) -> Personal {
        let mut p = Personal::default();
        for a in addrs {
            p.address(a);
        }
        for n in names {
            p.name(n);
        }
        p
    }

    #[test]
    fn stable_hash_is_fixed() {
        // Persisted values (FNV-1a 64 then fmix64, checked against an independent
        // implementation): these must never change.
        assert_eq!(stable_hash(b""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(stable_hash(b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(stable_hash(b"moat"), 0x7fba_8d56_6347_f7e0);
        assert_ne!(stable_hash(b"moat"), stable_hash(b"Moat"));
    }

    #[test]
    fn skeleton_blanks_personalisation() {
        let a = personal(&["alice@x.example"], &["Alice Liddell"]);
        let b = personal(&["bob.smith@corp.example"], &["Bob Smith"]);
        assert_eq!(
            subject_skeleton("Alice, invoice 38812 (ref A7F3KQ) is due", &a),
            "*, invoice # (ref *) is due"
        );
        assert_eq!(
            subject_skeleton("  BOB,   Invoice 1204 (ref 99ZZ1B)\tis due ", &b),
            "*, invoice # (ref *) is due"
        );
        assert_eq!(
            subject_skeleton("Mailbox alice@x.example is full at x.example", &a),
            "mailbox * is full at *"
        );
        assert_eq!(subject_skeleton("Smith: your mp3", &b), "*: your mp3");
        assert_eq!(subject_skeleton("", &a), "");
    }

    #[test]
    fn bit_sliced_counters_count() {
        // Against a plain per-bit count, over enough shingles to carry through many planes.
        let mut s = Shingler::default();
        let mut plain = [0u64; 64];
        let mut rng = 0x1234_5678_u64;
        for _ in 0..100_000 {
            rng = fmix64(rng.wrapping_add(1));
            s.token(rng);
        }
        // Recompute what `token` fed: the shingle hashes of the same token stream.
        let mut window = [0u64; SHINGLE];
        let mut rng = 0x1234_5678_u64;
        for n in 0..100_000 {
            rng = fmix64(rng.wrapping_add(1));
            window.rotate_left(1);
            window[SHINGLE - 1] = rng;
            if n + 1 < SHINGLE {
                continue;
            }
            let mut x = 0u64;
            for (k, w) in window.iter().enumerate() {
                x ^= w.rotate_left(k as u32 * 23);
            }
            let x = fmix64(x);
            for (bit, c) in plain.iter_mut().enumerate() {
                *c += (x >> bit) & 1;
            }
        }
        let n = 100_000 - (SHINGLE as u64 - 1);
        assert_eq!(u64::from(s.shingles), n);
        let expected = plain
            .iter()
            .enumerate()
            .fold(0u64, |h, (bit, &c)| h | u64::from(c * 2 > n) << bit);
        assert_eq!(s.finish(), Some(expected));
    }

    #[test]
    fn simhash_needs_enough_text_and_tracks_similarity() {
        let p = Personal::default();
        let hash = |t: &str| {
            let mut s = Shingler::default();
            s.feed(t, &p);
            s.finish()
        };
        assert_eq!(hash("too short to mean anything"), None);
        let a = "We noticed unusual sign in activity on your account yesterday and we have \
                 limited access until you confirm your details with our security team today";
        let b = a.replace("yesterday", "today");
        let c = "Cheap watches and handbags from the best brands at prices you will not \
                 believe, shipped free to your door within three working days guaranteed";
        let (ha, hb, hc) = (hash(a).unwrap(), hash(&b).unwrap(), hash(c).unwrap());
        assert!((ha ^ hb).count_ones() < (ha ^ hc).count_ones());
        assert_eq!(hash(a), hash(&a.to_uppercase()));
    }

    #[test]
    fn url_keys_drop_queries_and_personal_segments() {
        let p = personal(&["alice@victim.example"], &[]);
        let key = |u: &str| {
            let parsed = url::Url::parse(u).unwrap();
            url_key(u, psl::domain_str(parsed.host_str().unwrap()), &p)
        };
        assert_eq!(
            key("https://x7.evil.example/promo/?u=8f3a&e=alice@victim.example").as_deref(),
            Some("evil.example/promo/")
        );
        assert_eq!(
            key("https://evil.example/u/alice/confirm").as_deref(),
            Some("evil.example/u/*/confirm")
        );
        assert_eq!(key("https://www.victim.example/logo.png"), None);
        assert_eq!(
            key("https://www.google.com/url?sa=t&q=https%3A%2F%2Fa.evil.example%2Fland%3Fid%3D9")
                .as_deref(),
            Some("google.com/url>evil.example/land")
        );
        // Tokens in the path, and numbers, are blanked; on shared hosts the path is the id.
        assert_eq!(
            key("https://evil.example/r/8f3a9c2e41b7/Offer-2024.html#top").as_deref(),
            Some("evil.example/r/*/offer-#.html")
        );
        assert_eq!(
            key("https://evil.example/c/QkXjZpLmNb").as_deref(),
            Some("evil.example/c/*")
        );
        assert_eq!(
            key("https://docs.google.com/forms/d/e/1FAIpQLSe8x/viewform?usp=sf").as_deref(),
            Some("google.com/forms/d/e/1FAIpQLSe8x/viewform")
        );
        assert_eq!(
            key("https://bit.ly/3xYz9Ab").as_deref(),
            Some("bit.ly/3xYz9Ab")
        );
        assert_eq!(
            key("http://user:pw@[2001:db8::1]:8080/a1b2c3d4?x").as_deref(),
            Some("[2001:db8::1]/*")
        );
    }
}
