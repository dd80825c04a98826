//! A compiled fail2ban filter: finds failures in lines the way fail2ban's `Filter.processLine`
//! and `findFailure` do. The date is cut out of the line, `prefregex` must match and its
//! `<F-CONTENT>` is what the `failregex`es see, the first `failregex` that matches wins unless
//! an `ignoreregex` matches too, and multi-line failures are tied together by `<F-MLFID>`
//! (`F-NOFAIL`, `F-MLFFORGET`, `F-MLFGAINED`), with fail2ban's cache of 100 ids for 5 min
//! (`fail2ban/mlfid.rs`). Filters with `maxlines` > 1 match the last lines joined
//! (`fail2ban/multiline.rs`).
//!
//! Regexes are PCRE2 with JIT: fail2ban's regexes are Python's syntax (conditional groups,
//! look-behind, `(?P<name>…)`), which PCRE2 compiles unchanged where the `regex` crate takes
//! few of them.

use super::compiled::{Compiled, Regexes, Slots};
use super::date::DateDetector;
use super::filter::FilterDef;
use super::mlfid;
use super::multiline;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

/// A failure found in a line: the address, when, and which `failregex` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub host: IpAddr,
    /// From a `<CIDR>` or `<SUBNET>` capture: the failure is about a whole network.
    pub prefix_len: Option<u8>,
    pub time: Timestamp,
    pub regex: usize,
    pub user: Option<String>,
}

/// A line's outcome, for `moat replay`: failures, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Failures(Vec<Failure>),
    /// A `failregex` matched but the line says no failure (yet): `F-NOFAIL`, or no address.
    Matched,
    Ignored,
    None,
}

impl Outcome {
    /// The failures, as the jails count them (who and when).
    pub fn failed(&self) -> impl Iterator<Item = moat_detect::jail::Failed> + '_ {
        let found = match self {
            Outcome::Failures(f) => f.as_slice(),
            _ => &[],
        };
        found.iter().map(|f| moat_detect::jail::Failed {
            host: f.host,
            prefix_len: f.prefix_len,
            time: f.time,
        })
    }
}

pub(super) type Groups = BTreeMap<String, String>;

/// A filter ready to match lines; it keeps state between lines (the last date, the
/// multi-line cache), so one per log stream.
pub struct Filter {
    regexes: Arc<Regexes>,
    slots: Slots,
    dates: DateDetector,
    tz: TimeZone,
    /// The last date seen (its text): a line without one has its time, if recent.
    last_dated: String,
    /// The line being matched, without its date (reused: no allocation per line).
    buf: String,
    /// What the `prefregex`'s `<F-CONTENT>` captured of `buf`, for the `failregex`es.
    content: String,
    mlfid: mlfid::Cache,
    /// `maxlines` > 1: the lines a failure may span.
    multi: Option<multiline::Buffer>,
    pub journalmatch: Vec<String>,
}

/// The lines of a multi-line buffer a `failregex` match covered, and the texts of those a
/// `<SKIPLINES>` stepped over.
struct Spent {
    lines: Range<usize>,
    skipped: Vec<String>,
}

impl Filter {
    /// Compiles `def`; `tz` is the zone of dates written without one (`logtimezone`).
    pub fn compile(def: &FilterDef, tz: TimeZone) -> Result<Self, String> {
        let multi = def.maxlines > 1;
        let many = |list: &[String], what: &str| -> Result<Vec<Compiled>, String> {
            list.iter().map(|r| Compiled::new(r, what, multi)).collect()
        };
        let dates = match &def.datepattern {
            Some(p) => DateDetector::from_pattern(p)?,
            None => DateDetector::defaults(),
        };
        if def.failregex.is_empty() {
            return Err(format!("{}: no failregex", def.path.display()));
        }
        let regexes = Regexes {
            prefregex: def
                .prefregex
                .as_deref()
                .map(|r| Compiled::new(r, "prefregex", multi))
                .transpose()?,
            failregex: many(&def.failregex, "failregex")?,
            ignoreregex: many(&def.ignoreregex, "ignoreregex")?,
        };
        Ok(Filter {
            regexes: Arc::new(regexes),
            slots: Slots::default(),
            dates,
            tz,
            last_dated: String::new(),
            buf: String::new(),
            content: String::new(),
            mlfid: mlfid::Cache::default(),
            multi: multi.then(|| multiline::Buffer::new(def.maxlines)),
            journalmatch: def.journalmatch.clone(),
        })
    }

    /// The same filter for another log stream: the compiled regexes shared, the state
    /// (last date, multi-line cache) its own.
    pub fn fresh(&self) -> Filter {
        Filter {
            regexes: Arc::clone(&self.regexes),
            slots: Slots::default(),
            dates: self.dates.fresh(),
            tz: self.tz.clone(),
            last_dated: String::new(),
            buf: String::new(),
            content: String::new(),
            mlfid: mlfid::Cache::default(),
            multi: self.multi.as_ref().map(multiline::Buffer::fresh),
            journalmatch: self.journalmatch.clone(),
        }
    }

    /// A line read from a file: its date is found and cut out first. The time it says is
    /// read only if the line holds a failure.
    pub fn process_line(&mut self, line: &str, now: Timestamp) -> Outcome {
        self.buf.clear();
        // A template may match an empty date (guacamole's `^WARNING:()**`): the line goes
        // with the dated line before it, whose time it takes.
        let span = self.dates.locate(line).filter(|(start, end)| start < end);
        match span {
            Some((start, end)) => {
                self.buf.push_str(&line[..start]);
                self.buf.push_str(&line[end..]);
                self.last_dated.clear();
                self.last_dated.push_str(&line[start..end]);
            }
            None => self.buf.push_str(line),
        }
        self.buf.push('\n');
        let outcome = self.find(now);
        let Outcome::Failures(mut found) = outcome else {
            return outcome;
        };
        let time = match span {
            Some(_) => self.dates.time(line, now, &self.tz),
            // fail2ban: a line without a date has the last line's, if that is recent.
            None if !self.last_dated.is_empty() => {
                let last = std::mem::take(&mut self.last_dated);
                let time = self
                    .dates
                    .locate(&last)
                    .and_then(|_| self.dates.time(&last, now, &self.tz))
                    .filter(|d| now.duration_since(*d) < SignedDuration::from_secs(60));
                self.last_dated = last;
                time
            }
            None => None,
        };
        match time {
            Some(t) => {
                found.iter_mut().for_each(|f| f.time = t);
                Outcome::Failures(found)
            }
            // fail2ban: a match without a time is not a failure.
            None => Outcome::Matched,
        }
    }

    /// A line whose time is known (a journal record's), without a date to cut out.
    pub fn process_dated(&mut self, text: &str, time: Timestamp, now: Timestamp) -> Outcome {
        self.buf.clear();
        self.buf.push_str(text);
        self.buf.push('\n');
        match self.find(now) {
            Outcome::Failures(mut found) => {
                found.iter_mut().for_each(|f| f.time = time);
                Outcome::Failures(found)
            }
            o => o,
        }
    }

    /// Matches `self.buf` (the line without its date, and a newline); failures come back
    /// with `now` as their time, which the caller replaces.
    fn find(&mut self, now: Timestamp) -> Outcome {
        let mut buf = std::mem::take(&mut self.buf);
        let mut content = std::mem::take(&mut self.content);
        if let Some(m) = &mut self.multi {
            let line = buf[..buf.len() - 1].to_string();
            m.push(&line, &mut buf);
        }
        let outcome = self.find_in(&buf, &mut content, now);
        self.buf = buf;
        self.content = content;
        outcome
    }

    /// The `prefregex`'s groups are read only once a `failregex` matches: most lines that
    /// pass the `prefregex` hold no failure, and reading them cost a dozen allocations a line.
    fn find_in(&mut self, buf: &str, content: &mut String, now: Timestamp) -> Outcome {
        let (rx, slots, multi) = (&*self.regexes, &mut self.slots, &mut self.multi);
        let ignore = rx.ignore_slot();
        // fail2ban, before anything else when it has few `ignoreregex`es: one matching
        // anywhere in a multi-line buffer means no failure, the buffer kept as it is.
        let few = !rx.ignoreregex.is_empty() && rx.ignoreregex.len() + 2 < rx.failregex.len();
        if multi.is_some() && few {
            let mut ignored = rx.ignoreregex.iter().enumerate();
            if ignored.any(|(j, r)| slots.read(ignore + j, r, buf)) {
                return Outcome::Ignored;
            }
        }
        let mut subject = buf;
        if let Some(p) = &rx.prefregex {
            if !slots.read(0, p, buf) {
                return Outcome::None;
            }
            let span = p.content.and_then(|g| slots.span(0, g));
            if let Some((s, e)) = span.filter(|(s, e)| s < e) {
                content.clear();
                content.push_str(&String::from_utf8_lossy(&buf.as_bytes()[s..e]));
                if let Some(m) = multi.as_mut() {
                    m.replace(content);
                }
                content.push('\n');
                subject = content;
            }
        }
        let mut found = None;
        for (index, r) in rx.failregex.iter().enumerate() {
            if !slots.read(1 + index, r, subject) {
                continue;
            }
            let groups = slots.groups(1 + index, r, subject, None);
            let spent = multi.as_ref().map(|_| spent(slots, 1 + index, r, subject));
            // Multi-line: the `ignoreregex`es see the lines the failure matched.
            let matched;
            let seen = match &spent {
                Some(sp) => {
                    matched = matched_lines(subject, sp);
                    matched.as_str()
                }
                None => subject,
            };
            let mut ignored = rx.ignoreregex.iter().enumerate();
            let is_ignored = ignored.any(|(j, r)| slots.read(ignore + j, r, seen));
            if let (Some(m), Some(sp)) = (multi.as_mut(), &spent) {
                let skipped: Vec<&str> = sp.skipped.iter().map(String::as_str).collect();
                m.spend(sp.lines.clone(), &skipped);
            }
            if is_ignored {
                return Outcome::Ignored;
            }
            let mut fail = match &rx.prefregex {
                Some(p) => slots.groups(0, p, buf, p.content),
                None => Groups::new(),
            };
            fail.extend(groups.into_iter().filter(|(_, v)| !v.is_empty()));
            fill_alternatives(&mut fail);
            found = Some((index, fail));
            break;
        }
        let Some((index, mut fail)) = found else {
            return Outcome::None;
        };
        let mlfid = fail.get("mlfid").cloned();
        if let Some(id) = &mlfid {
            fail = self.merge(id, fail, now);
            if flag(&fail, "nofail") {
                self.store_back(id, &fail);
                return Outcome::Matched;
            }
        }
        let host = fail
            .get("ip4")
            .or_else(|| fail.get("ip6"))
            .or_else(|| fail.get("fid").filter(|f| parse_addr(f).is_some()))
            .and_then(|h| parse_addr(h.trim_matches(['[', ']'])));
        let Some(host) = host else {
            if let Some(id) = &mlfid {
                fail.insert("mlfpending".into(), "1".into());
                self.store_back(id, &fail);
            }
            return Outcome::Matched;
        };
        if let Some(id) = &mlfid {
            self.store_back(id, &fail);
        }
        if flag(&fail, "nofail") {
            return Outcome::Matched;
        }
        let prefix_len = fail.get("cidr").and_then(|c| c.parse::<u8>().ok());
        Outcome::Failures(vec![Failure {
            host,
            prefix_len,
            time: now,
            regex: index,
            user: fail.get("user").cloned(),
        }])
    }

    /// fail2ban's `_mergeFailure`: ties this match to earlier ones with the same
    /// multi-line id. Returns the merged groups (which the cache keeps, when it does, through
    /// [`Filter::store_back`]).
    fn merge(&mut self, id: &str, mut fail: Groups, now: Timestamp) -> Groups {
        self.mlfid.expire(now);
        let cached = self.mlfid.get(id);
        let mut flags = 0u8;
        if let Some(g) = fail.get("mlfgained").cloned().filter(|g| !g.is_empty()) {
            flags |= 8 | 1;
            if !flag(&fail, "nofail") {
                fail.insert("nofail".into(), g);
            }
        } else if flag(&fail, "nofail") {
            flags |= 1;
        }
        if fail.remove("mlfforget").is_some_and(|v| !v.is_empty()) {
            flags |= 2;
        }
        let mut users: BTreeSet<String> = BTreeSet::new();
        let mut fail = match cached {
            Some(mut c) => {
                users = users_of(&c);
                if let Some(u) = fail.get("user") {
                    users.insert(u.clone());
                }
                if c.remove("nofail").is_some_and(|v| !v.is_empty()) {
                    flags |= 4;
                }
                if c.remove("mlfgained").is_some_and(|v| !v.is_empty()) {
                    flags |= 4;
                }
                if flags & 8 != 0 {
                    c.remove("mlfpending");
                }
                c.extend(fail);
                set_users(&mut c, &users);
                if flags & 2 != 0 {
                    self.mlfid.remove(id);
                }
                c
            }
            None => {
                if let Some(u) = fail.get("user") {
                    users.insert(u.clone());
                }
                set_users(&mut fail, &users);
                if flags & 2 == 0 {
                    self.mlfid.insert(id, now, &fail);
                }
                fail
            }
        };
        if fail.remove("mlfpending").is_some() || users.len() > 1 {
            fail.remove("nofail");
            fail.remove("mlfgained");
        }
        fail
    }

    /// Keeps `fail` as the cached state of `id`, if the cache still holds `id` (fail2ban's
    /// cache holds the very dictionary it goes on changing).
    fn store_back(&mut self, id: &str, fail: &Groups) {
        self.mlfid.store_back(id, fail);
    }
}

/// Which lines of the multi-line `subject` the match of `c` (in slot `i`) covered, and the
/// lines its `<SKIPLINES>` groups took.
fn spent(slots: &Slots, i: usize, c: &Compiled, subject: &str) -> Spent {
    let (start, end) = slots.span(i, 0).unwrap_or((0, 0));
    let skipped = c
        .names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.as_deref().is_some_and(|n| n.starts_with("skiplines")))
        .filter_map(|(g, _)| slots.span(i, g))
        .flat_map(|(s, e)| {
            String::from_utf8_lossy(&subject.as_bytes()[s..e])
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    Spent {
        lines: multiline::lines_of(subject, start, end),
        skipped,
    }
}

/// The lines `spent` covers but the skipped ones, each ending with a newline.
fn matched_lines(subject: &str, spent: &Spent) -> String {
    let mut skipped: Vec<&str> = spent.skipped.iter().map(String::as_str).collect();
    let mut out = String::new();
    for line in subject
        .lines()
        .skip(spent.lines.start)
        .take(spent.lines.len())
    {
        match skipped.iter().position(|s| *s == line) {
            Some(k) => drop(skipped.remove(k)),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// An address as a log writes it; an IPv4 octet with leading zeros is read as decimal
/// (`192.030.0.6` is 192.30.0.6, as fail2ban's samples expect), never as octal.
pub fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<u8> = s
        .split('.')
        .map(|o| {
            (!o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
                .then(|| o.parse::<u8>().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets[..] else {
        return None;
    };
    Some(IpAddr::from([a, b, c, d]))
}

fn flag(g: &Groups, name: &str) -> bool {
    g.get(name).is_some_and(|v| !v.is_empty())
}

/// Users seen under one multi-line id, kept NUL-separated in the groups.
fn users_of(g: &Groups) -> BTreeSet<String> {
    g.get("\0users")
        .map(|u| u.split('\0').map(str::to_string).collect())
        .unwrap_or_default()
}

fn set_users(g: &mut Groups, users: &BTreeSet<String>) {
    if !users.is_empty() {
        let joined: Vec<&str> = users.iter().map(String::as_str).collect();
        g.insert("\0users".into(), joined.join("\0"));
    }
}

/// `alt_user` (or `alt_user_2`) fills `user` when `user` did not match: fail2ban's
/// alternative groups.
fn fill_alternatives(fail: &mut Groups) {
    let alts: Vec<(String, String)> = fail
        .iter()
        .filter_map(|(k, v)| {
            let base = k.strip_prefix("alt_")?;
            let base = base
                .rsplit_once('_')
                .filter(|(_, n)| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
                .map_or(base, |(b, _)| b);
            Some((base.to_string(), v.clone()))
        })
        .collect();
    for (k, v) in alts {
        if !flag(fail, &k) && !v.is_empty() {
            fail.insert(k, v);
        }
    }
}
