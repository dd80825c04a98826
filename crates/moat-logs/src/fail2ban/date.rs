//! fail2ban's date detector: finds the time stamp in a line with its default templates or a
//! filter's `datepattern` (strptime codes such as `%b %d %H:%M:%S`, fail2ban's `%Ex…`
//! variants, `{^LN-BEG}`, `{DATE}`, `{NONE}`, `EPOCH`, `TAI64N`), and reads it as fail2ban
//! does: a missing year is this year, or last year when the date would be more than a day
//! ahead; a missing zone is the log's zone (local time unless `logtimezone` says otherwise).
//!
//! The date's text is cut out of the line before the filter's regexes see it, so where it is
//! matters as much as what it says.

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// fail2ban's default templates, most specific first (its `DEFAULT_TEMPLATES`).
const DEFAULTS: &[&str] = &[
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:-|T|  ?)%ExH:?%ExM:?%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const MONTHS_FULL: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The regex of one strptime code (Python's `TimeRE` with fail2ban's changes).
fn code(c: &str) -> Option<&'static str> {
    Some(match c {
        "a" => r"(?P<a>mon|tue|wed|thu|fri|sat|sun)",
        "A" => r"(?P<A>monday|tuesday|wednesday|thursday|friday|saturday|sunday)",
        "b" => r"(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
        "B" => {
            r"(?P<B>january|february|march|april|may|june|july|august|september|october|november|december)"
        }
        "d" => r"(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])",
        "f" => r"(?P<f>[0-9]{1,6})",
        "H" => r"(?P<H>[0-1]?\d|2[0-3])",
        "I" => r"(?P<I>1[0-2]|0[1-9]|[1-9])",
        "j" => r"(?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])",
        "k" => r" ?(?P<H>[0-2]?\d)",
        "l" => r" ?(?P<I>1?\d)",
        "m" => r"(?P<m>0?[1-9]|1[0-2])",
        "M" => r"(?P<M>[0-5]?\d)",
        "p" => r"(?P<p>am|pm)",
        "S" => r"(?P<S>[0-5]?\d|6[0-1])",
        "w" => r"(?P<w>[0-6])",
        "y" => r"(?P<y>\d\d)",
        "Y" => r"(?P<Y>\d\d\d\d)",
        "z" => r"(?P<z>Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)",
        "Z" => r"(?P<Z>Z|[A-Z]{3,5})",
        "ExY" => r"(?P<Y>20\d\d)",
        "Exy" => r"(?P<y>\d{2})",
        "Exd" => r"(?P<d>[1-2]\d|0[1-9]|3[0-1])",
        "Exm" => r"(?P<m>0[1-9]|1[0-2])",
        "ExH" => r"(?P<H>[0-1]\d|2[0-3])",
        "Exk" => r" ?(?P<H>[0-1]?\d|2[0-3])",
        "Exl" => r" ?(?P<I>1[0-2]|\d)",
        "ExM" => r"(?P<M>[0-5]\d)",
        "ExS" => r"(?P<S>[0-5]\d|6[0-1])",
        "ExZ" => r"(?P<Z>[A-Z](?:[A-Z]{2,4})?)",
        "Exz" => r"(?P<z>(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\d(?::?\d{2})?|[A-Z](?:[A-Z]{2,4})?)",
        "%" => "%",
        _ => return None,
    })
}

/// Replaces strptime codes in `pattern` by their regexes.
fn translate(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        let len = if after.starts_with("Ex") {
            3
        } else {
            after.chars().next().map_or(0, char::len_utf8)
        };
        let Some(re) = after.get(..len).and_then(code) else {
            return Err(format!(
                "unknown code `%{}` in date pattern `{pattern}`",
                after.chars().take(3).collect::<String>()
            ));
        };
        out.push_str(re);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pattern,
    Epoch,
    Tai64n,
}

/// The named groups a date is read from, in [`Template::fields`] order.
const FIELDS: [&str; 13] = [
    "Y", "y", "m", "b", "B", "d", "H", "I", "p", "M", "S", "z", "Z",
];

/// A compiled template, shared by every copy of a detector (see [`DateDetector::fresh`]).
#[derive(Clone)]
struct Template {
    regex: Arc<Regex>,
    /// Anchored at the line's start: a match wins at once.
    line_begin: bool,
    kind: Kind,
    /// The group index of each of [`FIELDS`], looked up once.
    fields: [Option<usize>; 13],
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("regex", &self.regex.as_str())
            .field("line_begin", &self.line_begin)
            .finish()
    }
}

/// A regex from fail2ban's pattern rules: `{UNB}` drops the word bounds, `{^LN-BEG}` anchors
/// at the line's start (after at most two non-word characters), otherwise the date must
/// start and end at word bounds; the date's text is group 1.
fn template(pattern: &str, kind: Kind) -> Result<Template, String> {
    let mut p = pattern.trim();
    let (mut word_begin, mut word_end, mut start) = (true, true, false);
    if let Some(r) = p.strip_prefix("{UNB}") {
        p = r;
        (word_begin, word_end) = (false, false);
    }
    if let Some(r) = p.strip_prefix("{^LN-BEG}") {
        p = r;
        start = word_begin;
    }
    // fail2ban's `**` at either end (after a leading `^`): no word bound at that end
    // (ejabberd's `^I\(()**`).
    let mut body = p.to_string();
    if let Some(r) = body.strip_suffix("**") {
        body = r.to_string();
        word_end = false;
    }
    let (caret, rest) = match body.strip_prefix('^') {
        Some(r) => ("^", r),
        None => ("", body.as_str()),
    };
    if let Some(r) = rest.strip_prefix("**") {
        body = format!("{caret}{r}");
        word_begin = false;
    }
    let p = body.as_str();
    let alpha = ["%a", "%A", "%b", "%B", "%p"]
        .iter()
        .any(|c| p.contains(c) && !p.contains(&format!("%{c}")));
    let mut regex = match kind {
        Kind::Pattern => translate(p)?,
        Kind::Epoch => {
            r"(?:(?<=^\[)|(?<=audit\()|(?<![\d.]))\d{10,11}(?:\.\d{3,6})?(?![\d.])".into()
        }
        Kind::Tai64n => r"@[0-9a-fA-F]{24}".into(),
    };
    let begins_anchored = regex.starts_with('^') || regex.starts_with("(?:^");
    let ends_bounded = regex.ends_with('$') || regex.ends_with(r"\b") || regex.ends_with(r"\s");
    if !has_plain_group(&regex) {
        let (head, body) = match regex.strip_prefix('^') {
            Some(b) => ("^", b.to_string()),
            None => ("", regex.clone()),
        };
        let (body, tail) = match body.strip_suffix('$') {
            Some(b) if !b.ends_with('\\') => (b.to_string(), "$"),
            _ => (body, ""),
        };
        regex = format!("{head}({body}){tail}");
    }
    let mut line_begin = begins_anchored;
    if word_begin && !begins_anchored {
        if start {
            regex = format!(r"^(?:\W{{0,2}})?{regex}");
            line_begin = true;
        } else {
            regex = format!(r"(?=^|\b|\W){regex}");
        }
    }
    if word_end && !ends_bounded {
        regex.push_str(r"(?=\b|\W|$)");
    }
    let regex = RegexBuilder::new()
        .caseless(alpha)
        .jit_if_available(true)
        .build(&regex)
        .map_err(|e| format!("date pattern `{pattern}`: {e}"))?;
    let names = regex.capture_names();
    let field = |n: &str| names.iter().position(|x| x.as_deref() == Some(n));
    let fields = FIELDS.map(field);
    Ok(Template {
        regex: Arc::new(regex),
        line_begin,
        kind,
        fields,
    })
}

/// Whether `regex` has a capturing group that is not named (`(` not followed by `?`).
fn has_plain_group(regex: &str) -> bool {
    let b = regex.as_bytes();
    (0..b.len())
        .any(|i| b[i] == b'(' && b.get(i + 1) != Some(&b'?') && (i == 0 || b[i - 1] != b'\\'))
}

fn kind_of(pattern: &str) -> Kind {
    let p = pattern
        .trim_start_matches("{^LN-BEG}")
        .trim_start_matches('^');
    match p.to_uppercase().as_str() {
        "EPOCH" | "LEPOCH" => Kind::Epoch,
        "TAI64N" => Kind::Tai64n,
        _ => Kind::Pattern,
    }
}

/// Where the date is in a line and what time it says (`None` when it cannot be a real date,
/// such as the 31st of February).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub time: Option<Timestamp>,
}

/// A filter's date detector.
#[derive(Debug)]
pub struct DateDetector {
    templates: Arc<[Template]>,
    /// Each template's capture slots, reused between lines (a match then allocates nothing).
    /// Made at a template's first match: a detector tries the one that matched last first, so
    /// a copy uses one or two of its templates, and a copy is cheap (a jail's, before it is
    /// grouped with the others on its log, is dropped unused).
    locs: Vec<Option<CaptureLocations>>,
    /// The template that matched last: logs keep one format, so it is tried first.
    last: Option<usize>,
    /// `{NONE}`: the line has no date; every line is "now".
    none: bool,
}

/// Detectors already built, by pattern (`""` for the defaults): every filter with the same
/// `datepattern` shares their compiled templates (34 JIT-compiled regexes for the defaults).
fn cache() -> &'static Mutex<HashMap<String, DateDetector>> {
    static CACHE: OnceLock<Mutex<HashMap<String, DateDetector>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl DateDetector {
    /// fail2ban's default templates: each anchored at the line's start first, then anywhere.
    pub fn defaults() -> Self {
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        c.entry(String::new())
            .or_insert_with(|| Self::from_defaults(None, |_| true))
            .fresh()
    }

    /// The same detector for another stream: the templates shared, the state its own.
    pub fn fresh(&self) -> Self {
        DateDetector {
            templates: self.templates.clone(),
            locs: Vec::new(),
            last: None,
            none: self.none,
        }
    }

    fn from_defaults(wrap: Option<&str>, keep: impl Fn(&Template) -> bool) -> Self {
        let mut anchored = Vec::new();
        let mut anywhere = Vec::new();
        for p in DEFAULTS {
            let kind = kind_of(p);
            let bare = p.trim_start_matches("{^LN-BEG}");
            let (pattern_a, pattern_b) = match wrap {
                Some(w) => (w.replace("{DATE}", bare.trim_start_matches('^')), None),
                None if p.starts_with('^') || p.starts_with('{') => (p.to_string(), None),
                None => (format!("{{^LN-BEG}}{bare}"), Some(p.to_string())),
            };
            if let Ok(t) = template(&pattern_a, kind) {
                if keep(&t) {
                    anchored.push(t);
                }
            }
            if let Some(Ok(t)) = pattern_b.map(|b| template(&b, kind)) {
                if keep(&t) {
                    anywhere.push(t);
                }
            }
        }
        anchored.extend(anywhere);
        DateDetector {
            templates: anchored.into(),
            locs: Vec::new(),
            last: None,
            none: false,
        }
    }

    /// A filter's `datepattern` (one pattern per line: the first that matches a line wins).
    pub fn from_pattern(patterns: &str) -> Result<Self, String> {
        if let Some(d) = cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(patterns)
        {
            return Ok(d.fresh());
        }
        let d = Self::build(patterns)?;
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a process reads a few dozen filters, a fuzzer millions of patterns.
        if c.len() < 256 {
            c.insert(patterns.to_string(), d.fresh());
        }
        Ok(d)
    }

    fn build(patterns: &str) -> Result<Self, String> {
        let mut templates: Vec<Template> = Vec::new();
        let mut none = false;
        for pattern in patterns.lines().map(str::trim).filter(|p| !p.is_empty()) {
            match pattern.to_uppercase().as_str() {
                "{^LN-BEG}" => templates
                    .extend_from_slice(&Self::from_defaults(None, |t| t.line_begin).templates),
                "{DEFAULT}" => templates.extend_from_slice(&Self::defaults().templates),
                "{NONE}" => none = true,
                _ if pattern.contains("{DATE}") => templates
                    .extend_from_slice(&Self::from_defaults(Some(pattern), |_| true).templates),
                _ => templates.push(template(pattern, kind_of(pattern))?),
            }
        }
        Ok(DateDetector {
            templates: templates.into(),
            locs: Vec::new(),
            last: None,
            none,
        })
    }

    /// Whether template `i` matches `subject`; where is then read with [`DateDetector::date`].
    fn read(&mut self, i: usize, subject: &[u8]) -> bool {
        if self.locs.len() < self.templates.len() {
            self.locs.resize_with(self.templates.len(), || None);
        }
        let regex = &self.templates[i].regex;
        let locs = self.locs[i].get_or_insert_with(|| regex.capture_locations());
        matches!(regex.captures_read(locs, subject), Ok(Some(_)))
    }

    /// Where template `i`'s date text (group 1, or the whole match) was in the last subject
    /// it matched.
    fn date(&self, i: usize) -> Option<(usize, usize)> {
        let locs = self.locs.get(i)?.as_ref()?;
        locs.get(1).or_else(|| locs.get(0))
    }

    /// Finds the date in `line` and what time it says: [`DateDetector::locate`], then
    /// [`DateDetector::time`].
    pub fn find(&mut self, line: &str, now: Timestamp, tz: &TimeZone) -> Option<Found> {
        let (start, end) = self.locate(line)?;
        let time = self.time(line, now, tz);
        Some(Found { start, end, time })
    }

    /// Where the date is in `line`: the last template that matched if it still does at the
    /// line's start, else the first one anchored at the start, else the earliest match.
    /// Reading the time is left to [`DateDetector::time`], which only lines that hold a
    /// failure need.
    pub fn locate(&mut self, line: &str) -> Option<(usize, usize)> {
        if self.none {
            return None;
        }
        let subject = line.as_bytes();
        // (template, span of the date's text)
        let mut best: Option<(usize, usize, usize)> = None;
        let last = self.last;
        let order = last
            .into_iter()
            .chain((0..self.templates.len()).filter(|i| Some(*i) != last));
        for i in order {
            if !self.read(i, subject) {
                continue;
            }
            let Some((start, end)) = self.date(i) else {
                continue;
            };
            // PCRE2 matches bytes here: a pattern's own regex (`.`, `\S`) may end or start
            // inside a character, which is no date (the filter cuts the date out of the line).
            if !line.is_char_boundary(start) || !line.is_char_boundary(end) {
                continue;
            }
            if self.templates[i].line_begin || Some(i) == last && start == 0 {
                best = Some((i, start, end));
                break;
            }
            if best.is_none_or(|(_, s, _)| start < s) {
                best = Some((i, start, end));
            }
        }
        let (i, start, end) = best?;
        self.last = Some(i);
        // The winner's groups: match it again if another template matched after it.
        if self.date(i) != Some((start, end)) && !self.read(i, subject) {
            return None;
        }
        Some((start, end))
    }

    /// The time the date [`DateDetector::locate`] just found in `line` says (`None` when
    /// it cannot be a real date, such as the 31st of February).
    pub fn time(&self, line: &str, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let i = self.last?;
        let t = &self.templates[i];
        let (start, end) = self.date(i)?;
        let text = line.get(start..end)?;
        match t.kind {
            Kind::Pattern => read_time(t, self.locs[i].as_ref()?, line, now, tz),
            Kind::Epoch => text
                .split('.')
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|s| Timestamp::from_second(s).ok()),
            Kind::Tai64n => text
                .get(1..17)
                .and_then(|h| i64::from_str_radix(h, 16).ok())
                .and_then(|s| Timestamp::from_second(s - (1 << 62)).ok()),
        }
    }
}

/// The time the named groups of a date match say (fail2ban's `reGroupDictStrptime`).
fn read_time(
    t: &Template,
    locs: &CaptureLocations,
    line: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> Option<Timestamp> {
    let get = |name: &str| -> Option<&str> {
        let k = FIELDS.iter().position(|f| *f == name)?;
        let (s, e) = locs.get(t.fields[k]?)?;
        line.get(s..e)
    };
    let num = |name: &str| get(name).and_then(|v| v.trim().parse::<i32>().ok());
    let now_local = now.to_zoned(tz.clone());
    let year =
        num("Y").or_else(|| num("y").map(|y| y.saturating_add(if y <= 68 { 2000 } else { 1900 })));
    let month = num("m")
        .or_else(|| {
            let b = get("b")?;
            MONTHS
                .iter()
                .position(|m| m.eq_ignore_ascii_case(b))
                .map(|i| i as i32 + 1)
        })
        .or_else(|| {
            let b = get("B")?;
            MONTHS_FULL
                .iter()
                .position(|m| m.eq_ignore_ascii_case(b))
                .map(|i| i as i32 + 1)
        });
    let day = num("d");
    let mut hour = num("H").unwrap_or(0);
    if let Some(h) = num("I") {
        let pm = get("p").is_some_and(|p| p.eq_ignore_ascii_case("pm"));
        hour = match (h, pm) {
            (12, false) => 0,
            (h, true) if h != 12 => h.saturating_add(12),
            (h, _) => h,
        };
    }
    let minute = num("M").unwrap_or(0);
    let second = num("S").unwrap_or(0).min(59);
    let offset = get("z").or_else(|| get("Z")).and_then(zone_offset);
    let (month, day, assume_today) = match (month, day) {
        (Some(m), Some(d)) => (m, d, false),
        _ => (now_local.month() as i32, now_local.day() as i32, true),
    };
    let y = year.unwrap_or(now_local.year() as i32);
    let at = |y: i32| -> Option<Timestamp> {
        // A pattern's own groups (`(?P<Y>\d+)`) may capture any number: one that does not fit
        // its field is no date, never a wrapped one; nor is a year outside Python's 1..=9999.
        let field = |v: i32| i8::try_from(v).ok();
        let dt = DateTime::new(
            i16::try_from(y).ok().filter(|y| (1..=9999).contains(y))?,
            field(month)?,
            field(day)?,
            field(hour)?,
            field(minute)?,
            field(second)?,
            0,
        )
        .ok()?;
        match offset {
            Some(off) => off.to_timestamp(dt).ok(),
            None => dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp()),
        }
    };
    let mut t = at(y)?;
    if assume_today && t > now {
        t = t.checked_sub(jiff::SignedDuration::from_hours(24)).ok()?;
    }
    if year.is_none() && t > now.checked_add(jiff::SignedDuration::from_hours(24)).ok()? {
        t = at(y - 1)?;
    }
    Some(t)
}

/// A zone written in a date: `Z`, `UTC`, `GMT`, `+hh`, `+hhmm`, `+hh:mm`, optionally after
/// an abbreviation, or a common abbreviation alone (fixed offsets, as fail2ban reads them).
fn zone_offset(z: &str) -> Option<Offset> {
    if matches!(z, "Z" | "UTC" | "GMT") {
        return Some(Offset::UTC);
    }
    if let Some(p) = z.find(['+', '-']) {
        let sign = if z[p..].starts_with('-') { -1 } else { 1 };
        let digits: String = z[p + 1..].chars().filter(char::is_ascii_digit).collect();
        let (h, m) = match digits.len() {
            2 => (digits.parse::<i32>().ok()?, 0),
            4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
            _ => return None,
        };
        return Offset::from_seconds(sign * (h * 3600 + m * 60)).ok();
    }
    let hours = match z {
        "WET" | "WT" => 0,
        "CET" | "WEST" | "BST" | "IST" => 1,
        "CEST" | "EET" | "SAST" | "CAT" => 2,
        "EEST" | "MSK" | "EAT" | "IDT" => 3,
        "AST" => -4,
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" | "AKDT" => -8,
        "AKST" => -9,
        "HST" => -10,
        "JST" | "KST" => 9,
        "AEST" => 10,
        _ => return None,
    };
    Offset::from_hours(hours).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        let tz = TimeZone::get("Europe/Zurich").unwrap();
        s.parse::<DateTime>()
            .unwrap()
            .to_zoned(tz)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn syslog_dates_take_this_year_or_last() {
        let tz = TimeZone::get("Europe/Zurich").unwrap();
        let now = at("2005-08-14T12:00:00");
        let mut d = DateDetector::from_pattern("{^LN-BEG}").unwrap();
        let line = "Feb 21 09:21:54 xxx postfix/smtpd[14398]: NOQUEUE";
        let f = d.find(line, now, &tz).unwrap();
        assert_eq!(&line[f.start..f.end], "Feb 21 09:21:54");
        assert_eq!(f.time, Some(at("2005-02-21T09:21:54")));
        let f = d.find("Dec 25 02:35:54 platypus x", now, &tz).unwrap();
        assert_eq!(
            f.time,
            Some(at("2004-12-25T02:35:54")),
            "more than a day ahead"
        );
    }

    #[test]
    fn iso_dates_zones_and_custom_patterns() {
        let tz = TimeZone::get("Europe/Zurich").unwrap();
        let now = at("2005-08-14T12:00:00");
        let mut d = DateDetector::defaults();
        let f = d.find("x 2005-06-21T16:47:48Z y", now, &tz).unwrap();
        assert_eq!(f.time, Some(at("2005-06-21T18:47:48")));
        let mut d = DateDetector::from_pattern(
            r"{^LN-BEG}%ExY(?P<_sep>[-/.])%m(?P=_sep)%d[T ]%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
        )
        .unwrap();
        let line = "2013/04/05 12:13:14 [error] 123#0: *1 limiting";
        let f = d.find(line, now, &tz).unwrap();
        assert_eq!(&line[f.start..f.end], "2013/04/05 12:13:14");
        assert!(DateDetector::from_pattern("%Q").is_err());
        // `**`: no word bound at that end (ejabberd's and guacamole's filters).
        let mut d = DateDetector::from_pattern(r"^I\(()**").unwrap();
        assert!(d.find("I(<0.1.0>:ejabberd_c2s:1) x", now, &tz).is_some());
    }
}
