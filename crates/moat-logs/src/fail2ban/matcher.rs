//! A compiled fail2ban filter: finds failures in lines the way fail2ban's `Filter.processLine`
//! and `findFailure` do. The date is cut out of the line, `prefregex` must match and its
//! `<F-CONTENT>` is what the `failregex`es see, the first `failregex` that matches wins unless
//! an `ignoreregex` matches too, and multi-line failures are tied together by `<F-MLFID>`
//! (`F-NOFAIL`, `F-MLFFORGET`, `F-MLFGAINED`), with fail2ban's cache of 100 ids for 5 min.
//!
//! Regexes are PCRE2 with JIT: fail2ban's regexes are Python's syntax (conditional groups,
//! look-behind, `(?P<name>…)`), which PCRE2 compiles unchanged where the `regex` crate takes
//! few of them.

use super::date::DateDetector;
use super::filter::FilterDef;
use super::tags::resolve_regex_tags;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// fail2ban's multi-line cache: how many ids, for how long.
const MLFID_MAX: usize = 100;
const MLFID_TTL: SignedDuration = SignedDuration::from_secs(300);

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

type Groups = BTreeMap<String, String>;

/// One regex: the compiled pattern is shared by every copy of a filter (JIT code is the bulk
/// of a filter's memory); the capture slots are each copy's own.
struct Compiled {
    regex: Arc<Regex>,
    names: Arc<[Option<String>]>,
    /// Reused between lines: a match then allocates nothing.
    locs: CaptureLocations,
}

impl Clone for Compiled {
    fn clone(&self) -> Self {
        Compiled {
            regex: self.regex.clone(),
            names: self.names.clone(),
            locs: self.regex.capture_locations(),
        }
    }
}

impl Compiled {
    fn new(source: &str, what: &str) -> Result<Self, String> {
        let expanded = resolve_regex_tags(source);
        let regex = build(&expanded).map_err(|e| format!("{what} `{source}`: {e}"))?;
        let names = regex.capture_names().into();
        let locs = regex.capture_locations();
        Ok(Compiled {
            regex: Arc::new(regex),
            names,
            locs,
        })
    }

    /// The named groups that matched, if the regex matches `buf`.
    fn search(&mut self, buf: &str) -> Option<Groups> {
        self.regex
            .captures_read(&mut self.locs, buf.as_bytes())
            .ok()??;
        let mut groups = Groups::new();
        for (i, name) in self.names.iter().enumerate() {
            if let (Some(name), Some((s, e))) = (name, self.locs.get(i)) {
                let bytes = &buf.as_bytes()[s..e];
                let value = match std::str::from_utf8(bytes) {
                    Ok(v) => v.to_owned(),
                    Err(_) => String::from_utf8_lossy(bytes).into_owned(),
                };
                groups.insert(name.clone(), value);
            }
        }
        Some(groups)
    }

    fn is_match(&mut self, buf: &str) -> bool {
        matches!(
            self.regex.captures_read(&mut self.locs, buf.as_bytes()),
            Ok(Some(_))
        )
    }
}

/// PCRE2 with JIT, matching bytes: lines are UTF-8 already, and PCRE2's UTF mode checks
/// each subject's encoding again (a fifth of the time on a mostly quiet log). Patterns and
/// logs are ASCII where it matters (addresses, keywords); outside ASCII, `.` and classes
/// step over bytes rather than characters, and a capture is read back lossily.
pub(super) fn build(pattern: &str) -> Result<Regex, pcre2::Error> {
    RegexBuilder::new().jit_if_available(true).build(pattern)
}

/// A filter ready to match lines; it keeps state between lines (the last date, the
/// multi-line cache), so one per log stream.
pub struct Filter {
    prefregex: Option<Compiled>,
    failregex: Vec<Compiled>,
    ignoreregex: Vec<Compiled>,
    dates: DateDetector,
    tz: TimeZone,
    /// The last date seen (its text): a line without one has its time, if recent.
    last_dated: String,
    /// The line being matched, without its date (reused: no allocation per line).
    buf: String,
    mlfid: VecDeque<(String, Timestamp, Groups)>,
    pub journalmatch: Vec<String>,
}

impl Filter {
    /// Compiles `def`; `tz` is the zone of dates written without one (`logtimezone`).
    pub fn compile(def: &FilterDef, tz: TimeZone) -> Result<Self, String> {
        let many = |list: &[String], what: &str| -> Result<Vec<Compiled>, String> {
            list.iter().map(|r| Compiled::new(r, what)).collect()
        };
        let dates = match &def.datepattern {
            Some(p) => DateDetector::from_pattern(p)?,
            None => DateDetector::defaults(),
        };
        if def.failregex.is_empty() {
            return Err(format!("{}: no failregex", def.path.display()));
        }
        Ok(Filter {
            prefregex: def
                .prefregex
                .as_deref()
                .map(|r| Compiled::new(r, "prefregex"))
                .transpose()?,
            failregex: many(&def.failregex, "failregex")?,
            ignoreregex: many(&def.ignoreregex, "ignoreregex")?,
            dates,
            tz,
            last_dated: String::new(),
            buf: String::new(),
            mlfid: VecDeque::new(),
            journalmatch: def.journalmatch.clone(),
        })
    }

    /// The same filter for another log stream: the compiled regexes shared, the state
    /// (last date, multi-line cache) its own.
    pub fn fresh(&self) -> Filter {
        Filter {
            prefregex: self.prefregex.clone(),
            failregex: self.failregex.clone(),
            ignoreregex: self.ignoreregex.clone(),
            dates: self.dates.fresh(),
            tz: self.tz.clone(),
            last_dated: String::new(),
            buf: String::new(),
            mlfid: VecDeque::new(),
            journalmatch: self.journalmatch.clone(),
        }
    }

    /// A line read from a file: its date is found and cut out first. The time it says is
    /// read only if the line holds a failure.
    pub fn process_line(&mut self, line: &str, now: Timestamp) -> Outcome {
        self.buf.clear();
        let span = self.dates.locate(line);
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
        let outcome = self.find_in(&mut buf, now);
        self.buf = buf;
        outcome
    }

    fn find_in(&mut self, buf: &mut String, now: Timestamp) -> Outcome {
        let mut pre = Groups::new();
        if let Some(p) = &mut self.prefregex {
            let Some(groups) = p.search(buf) else {
                return Outcome::None;
            };
            pre = groups;
            if let Some(content) = pre.remove("content").filter(|c| !c.is_empty()) {
                buf.clear();
                buf.push_str(&content);
                buf.push('\n');
            }
        }
        for index in 0..self.failregex.len() {
            let Some(groups) = self.failregex[index].search(buf) else {
                continue;
            };
            if self.ignoreregex.iter_mut().any(|r| r.is_match(buf)) {
                return Outcome::Ignored;
            }
            let mut fail = pre.clone();
            fail.extend(groups.into_iter().filter(|(_, v)| !v.is_empty()));
            fill_alternatives(&mut fail);
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
            return Outcome::Failures(vec![Failure {
                host,
                prefix_len,
                time: now,
                regex: index,
                user: fail.get("user").cloned(),
            }]);
        }
        Outcome::None
    }

    /// fail2ban's `_mergeFailure`: ties this match to earlier ones with the same
    /// multi-line id. Returns the merged groups (which the cache keeps, when it does, through
    /// [`Filter::store_back`]).
    fn merge(&mut self, id: &str, mut fail: Groups, now: Timestamp) -> Groups {
        self.mlfid
            .retain(|(_, at, _)| now.duration_since(*at) < MLFID_TTL);
        let cached = self
            .mlfid
            .iter()
            .position(|(k, _, _)| k == id)
            .map(|i| self.mlfid[i].2.clone());
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
                    self.mlfid.retain(|(k, _, _)| k != id);
                }
                c
            }
            None => {
                if let Some(u) = fail.get("user") {
                    users.insert(u.clone());
                }
                set_users(&mut fail, &users);
                if flags & 2 == 0 {
                    if self.mlfid.len() >= MLFID_MAX {
                        self.mlfid.pop_front();
                    }
                    self.mlfid.push_back((id.to_string(), now, fail.clone()));
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
        if let Some(e) = self.mlfid.iter_mut().find(|(k, _, _)| k == id) {
            e.2 = fail.clone();
        }
    }
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
