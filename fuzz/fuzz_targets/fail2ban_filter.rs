//! fail2ban filters (`moat_logs::fail2ban`: `ini`, `filter::load`, `tags`, `matcher`) read from
//! arbitrary files and run over arbitrary lines. Beyond "never panics":
//!
//! - `ini::parse` of each file's text either reads it or names that file and a line inside its
//!   text (never line 0: every parse error has a place); `load` fails the same way on the same
//!   file, or with line 0 only for what has no place (no filter file, a file that is not UTF-8);
//! - interpolation (`Ini::get`, `get_ex`) and `<tag>` substitution always end: a loop, or
//!   references that multiply (ten at each of ten levels), are an error, never an endless or
//!   exponential expansion; no value grows past `ini::MAX_VALUE`; a value without `%(` is the
//!   file's text with `%%` read as `%` (or an error for a lone `%`);
//! - `FilterSpec::parse` of `f[options]` gives back name `f`, and the options written back out
//!   (quoted where needed) parse to the same spec;
//! - a loaded filter's values are what `load` promises (the file's path, `maxlines` >= 1, one
//!   non-empty regex a line); tag expansion leaves a regex without `<` as it is; compiling is
//!   deterministic (the same error, or both compile);
//! - a compiled filter, over the lines: two filters from the same definition give the same
//!   outcomes; a filter without multi-line ids (`F-MLFID`) gives a line the same outcome twice
//!   in a row; every failure's regex index is a `failregex`'s, and its address is written in the
//!   line, with or without its date cut out (an IPv4 octet maybe with leading zeros:
//!   `matcher::parse_addr`), or with multi-line ids in an earlier line; `process_dated` gives its
//!   failures the time it was given.
//!
//! Lines are matched only when every regex of the filter and its date pattern are tame
//! (`fuzz/fail2ban_regex.rs`: PCRE2's own backtracking is not what is fuzzed here); other
//! filters are read and compiled only. Includes that leave the scratch directory (a `/` or a
//! leading `.`) are not loaded: they would read this machine's files.
//!
//! Input: a control byte, then NUL-separated parts: `f.conf`, `f.local`, `common.conf` (each
//! cut at 16 KiB; a missing part is no file), the options of the spec `f[...]`, the log lines
//! (at most 6, each cut at 160 bytes; a few sshd lines when missing). Control bits 0-1: the
//! filter is `f` (0), `f[options]` (1), the path of `f.conf` with the options (2), or only the
//! `ini` checks run (3); bit 2: a replay's `--mode aggressive` besides; bit 3: dates without a
//! zone are Europe/Zurich's, not UTC's; bit 5: no `f.conf` is written. The files are written in
//! a scratch directory, under /dev/shm where there is one. The same file runs on stable as a
//! plain test (`crates/moat-logs/tests/fail2ban_filter_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

#[path = "../fail2ban_regex.rs"]
mod fail2ban_regex;

use fail2ban_regex::{cap, tame};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use moat_logs::fail2ban::date::DateDetector;
use moat_logs::fail2ban::ini::{self, Ini, IniError, IniFile, Options};
use moat_logs::fail2ban::matcher::parse_addr;
use moat_logs::fail2ban::tags::resolve_regex_tags;
use moat_logs::fail2ban::{load, Filter, FilterDef, FilterError, FilterSpec, Outcome};
use std::net::IpAddr;
use std::path::Path;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run_in(workdir(), data);
});

#[path = "../scratch.rs"]
mod scratch;

#[cfg_attr(test, allow(dead_code))]
fn workdir() -> &'static Path {
    scratch::workdir("moat-fuzz-fail2ban-")
}

/// The files, in the order of the input's parts.
pub const FILES: [&str; 3] = ["f.conf", "f.local", "common.conf"];
const MAX_TEXT: usize = 16 * 1024;
const MAX_LINES: usize = 6;
const MAX_LINE: usize = 160;
/// fail2ban's samples' clock: 2005-08-14 12:00 in Zurich.
pub const NOW: &str = "2005-08-14T10:00:00Z";
const DEFAULT_LINES: &str =
    "Aug 14 11:59:58 host sshd[1234]: Failed password for root from 192.0.2.10 port 22 ssh2\n\
    Aug 14 11:59:59 host sshd[1234]: Invalid user admin from 2001:db8::7 port 22\n\
    Failed password for nobody from 192.0.2.11";

/// What a run found, for the stable test to check that the seeds go where they should.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Files `ini::parse` refused.
    pub ini_errors: usize,
    /// Options the direct `Ini::get` checks interpolated, and how many of them were errors.
    pub values: usize,
    pub value_errors: usize,
    pub spec_error: bool,
    /// An include left the scratch directory: not loaded.
    pub outside: bool,
    /// `load`'s error, as it prints.
    pub load_error: Option<String>,
    pub loaded: bool,
    pub compile_error: bool,
    /// Compiled, but not tame: no line was matched.
    pub untamed: bool,
    pub failures: usize,
    pub matched: usize,
    pub ignored: usize,
    /// Failures from `process_dated`.
    pub dated_failures: usize,
}

fn check_place_error(e: &IniError, path: &Path, text: &str) {
    assert_eq!(e.path, path, "{e}");
    let lines = text.lines().count();
    assert!(
        e.line >= 1 && e.line <= lines,
        "line {} of {lines}: {e}",
        e.line
    );
    assert!(!e.message.is_empty(), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:{}: ", path.display(), e.line)),
        "{e}"
    );
}

/// `raw` as interpolation reads it when it holds no reference: `%%` is `%`, a lone `%` is an
/// error (`None`).
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '%' && chars.next() != Some('%') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// Interpolates up to 256 options of `ini` (in every section, and each through `known/` and
/// `default/`).
fn check_ini(ini: &Ini, seen: &mut Seen) {
    let none = Options::new();
    let mut left = 256usize;
    for (section, options) in &ini.sections {
        for (opt, raw) in options {
            let Some(l) = left.checked_sub(1) else {
                return;
            };
            left = l;
            seen.values += 1;
            let got = ini.get(section, opt, &none);
            match &got {
                Ok(Some(v)) => assert!(v.len() <= ini::MAX_VALUE, "[{section}] {opt}: {}", v.len()),
                // Names are looked up in lower case, as configparser does; a conditional
                // section's `?cond` keeps its case, so `[Init?Family=x]`'s are not found.
                Ok(None) => assert_ne!(opt, &opt.to_lowercase(), "[{section}] {opt} is set"),
                Err(e) => {
                    assert!(!e.is_empty());
                    seen.value_errors += 1;
                }
            }
            if !raw.contains("%(") && !matches!(got, Ok(None)) {
                assert_eq!(
                    got.as_ref().ok().cloned().flatten(),
                    unescape(raw),
                    "[{section}] {opt} = {raw:?}"
                );
            }
            for form in [format!("known/{opt}"), format!("default/{opt}")] {
                if let Ok(Some(v)) = ini.get_ex(section, &form, &none) {
                    assert!(v.len() <= ini::MAX_VALUE, "[{section}] {form}: {}", v.len());
                }
            }
        }
    }
}

/// `spec` written back as a jail would write it, quoting values where needed; `None` when a
/// value holds both quotes.
fn format_spec(spec: &FilterSpec) -> Option<String> {
    let mut parts = Vec::new();
    for (k, v) in &spec.options {
        let plain =
            !v.is_empty() && !v.contains(',') && !v.starts_with(['"', '\'']) && v.trim() == v;
        let v = if plain {
            v.clone()
        } else if !v.contains('"') {
            format!("\"{v}\"")
        } else if !v.contains('\'') {
            format!("'{v}'")
        } else {
            return None;
        };
        parts.push(format!("{k}={v}"));
    }
    Some(format!("{}[{}]", spec.name, parts.join(", ")))
}

/// The includes of `file` are all plain names in its directory.
fn includes_stay(file: &IniFile) -> bool {
    let Some(inc) = file.section("INCLUDES") else {
        return true;
    };
    ["before", "after"].iter().all(|k| {
        inc.get(*k).is_none_or(|v| {
            v.lines()
                .map(str::trim)
                .all(|l| !l.contains('/') && !l.starts_with('.'))
        })
    })
}

fn check_load_error(e: &IniError, dir: &Path, written: &[Option<&[u8]>; 3]) {
    let which = FILES.iter().position(|f| dir.join(f) == e.path);
    if e.line == 0 {
        assert!(!e.message.is_empty(), "{e:?}");
        let not_found = e.message == "not found"
            && e.path == dir.join("f.conf")
            && written[0].is_none()
            && written[1].is_none();
        let not_text = which
            .and_then(|i| written[i])
            .is_some_and(|b| std::str::from_utf8(b).is_err());
        assert!(not_found || not_text, "a placeless error: {e}");
        return;
    }
    let i = which.unwrap_or_else(|| panic!("an error in a file not given: {e}"));
    let text = std::str::from_utf8(written[i].expect("an error in a file not written")).unwrap();
    check_place_error(e, &e.path, text);
    let direct = ini::parse(text, &e.path).expect_err("load read what parse refuses");
    assert_eq!((direct.line, &direct.message), (e.line, &e.message));
}

/// Whether `host` is written in `text` (an IPv4 octet maybe with leading zeros).
fn host_in(text: &str, host: IpAddr) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        (i + 1..=b.len().min(i + 48))
            .take_while(
                |j| matches!(b[j - 1], b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b':' | b'.'),
            )
            .any(|j| parse_addr(&text[i..j]) == Some(host))
    })
}

fn check_failures(o: &Outcome, texts: &[String], def: &FilterDef, time: Option<Timestamp>) {
    let Outcome::Failures(found) = o else {
        return;
    };
    assert!(!found.is_empty());
    for f in found {
        assert!(f.regex < def.failregex.len(), "{f:?}");
        assert!(
            texts.iter().any(|t| host_in(t, f.host)),
            "{} is not written in {texts:?}",
            f.host
        );
        if let Some(t) = time {
            assert_eq!(f.time, t);
        }
    }
}

/// The regexes of `def`: `prefregex`, `failregex`es and `ignoreregex`es.
fn regexes(def: &FilterDef) -> impl Iterator<Item = &String> {
    def.prefregex
        .iter()
        .chain(&def.failregex)
        .chain(&def.ignoreregex)
}

fn run_filter(def: &FilterDef, lines: &[&str], tz: &TimeZone, seen: &mut Seen) {
    let now: Timestamp = NOW.parse().unwrap();
    let compile = || Filter::compile(def, tz.clone());
    let (mut a, mut b) = match (compile(), compile()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "compiles the same way each time");
            seen.compile_error = true;
            return;
        }
        (a, b) => panic!("compiles once only: {:?} / {:?}", a.err(), b.err()),
    };
    assert_eq!(a.journalmatch, def.journalmatch);
    let dates_tame = def.datepattern.as_deref().is_none_or(|p| {
        p.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .all(|l| tame(l, true))
    });
    if !dates_tame || !regexes(def).all(|r| tame(r, false)) {
        seen.untamed = true;
        return;
    }
    let (mut twice, mut dated) = (compile().unwrap(), compile().unwrap());
    // The date the filter cuts out of each line: a detector like the filter's, fed the same
    // lines (it may prefer another template when the filter also looked at an earlier date).
    let mut dates = match &def.datepattern {
        Some(p) => DateDetector::from_pattern(p).unwrap(),
        None => DateDetector::defaults(),
    };
    let multiline = def.maxlines > 1 || regexes(def).any(|r| r.to_lowercase().contains("mlf"));
    let given = now - SignedDuration::from_secs(30);
    let mut history: Vec<String> = Vec::new();
    for line in lines {
        let o = a.process_line(line, now);
        assert_eq!(b.process_line(line, now), o, "two filters on {line:?}");
        let first = twice.process_line(line, now);
        let second = twice.process_line(line, now);
        if !multiline {
            assert_eq!(first, second, "the same line twice: {line:?}");
        }
        let mut texts = vec![line.to_string()];
        if let Some((s, e)) = dates.locate(line) {
            texts.push(format!("{}{}", &line[..s], &line[e..]));
        }
        if multiline {
            history.extend(texts.iter().cloned());
            texts.clone_from(&history);
        }
        check_failures(&o, &texts, def, None);
        check_failures(&first, &texts, def, None);
        match &o {
            Outcome::Failures(f) => seen.failures += f.len(),
            Outcome::Matched => seen.matched += 1,
            Outcome::Ignored => seen.ignored += 1,
            Outcome::None => {}
        }
        let od = dated.process_dated(line, given, now);
        let mut texts = vec![line.to_string()];
        if multiline {
            texts.clone_from(&history);
        }
        check_failures(&od, &texts, def, Some(given));
        if let Outcome::Failures(f) = &od {
            seen.dated_failures += f.len();
        }
    }
}

pub fn run_in(dir: &Path, data: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let Some((&ctl, rest)) = data.split_first() else {
        return seen;
    };
    let parts: Vec<&[u8]> = rest.splitn(5, |b| *b == 0).collect();
    let mut files: [Option<&[u8]>; 3] =
        std::array::from_fn(|i| parts.get(i).map(|b| &b[..b.len().min(MAX_TEXT)]));
    if ctl & 32 != 0 {
        files[0] = None;
    }
    // `ini` on each text directly, merged in the order of the parts.
    let mut merged = Ini::default();
    let mut parsed: Vec<Option<IniFile>> = Vec::new();
    for (name, bytes) in FILES.iter().zip(&files) {
        let Some(bytes) = bytes else {
            parsed.push(None);
            continue;
        };
        let text = String::from_utf8_lossy(bytes);
        let path = dir.join(name);
        match ini::parse(&text, &path) {
            Ok(f) => {
                merged.merge(&f);
                // What `load` will read: only a file that is UTF-8 as it is.
                parsed.push(std::str::from_utf8(bytes).is_ok().then_some(f));
            }
            Err(e) => {
                check_place_error(&e, &path, &text);
                seen.ini_errors += 1;
                parsed.push(None);
            }
        }
    }
    check_ini(&merged, &mut seen);
    if ctl & 3 == 3 {
        return seen;
    }

    let spec_text = String::from_utf8_lossy(parts.get(3).copied().unwrap_or(b""));
    let spec_text = cap(&spec_text, 1024);
    let options = if ctl & 3 == 0 {
        Options::new()
    } else {
        match FilterSpec::parse(&format!("f[{spec_text}]")) {
            Ok(spec) => {
                assert_eq!(spec.name, "f");
                if let Some(again) = format_spec(&spec) {
                    assert_eq!(
                        FilterSpec::parse(&again).ok().as_ref(),
                        Some(&spec),
                        "{again:?}"
                    );
                }
                spec.options
            }
            Err(e) => {
                assert!(matches!(e, FilterError::Spec(_)), "{e}");
                seen.spec_error = true;
                return seen;
            }
        }
    };
    if !parsed.iter().flatten().all(includes_stay) {
        seen.outside = true;
        return seen;
    }
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in FILES.iter().zip(&files) {
        let path = dir.join(name);
        match bytes {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let name = match ctl & 3 {
        2 => dir.join("f.conf").display().to_string(),
        _ => "f".to_string(),
    };
    let spec = FilterSpec { name, options };
    let mut extra = Options::new();
    if ctl & 4 != 0 {
        extra.insert("mode".into(), "aggressive".into());
    }
    let def = match load(dir, &spec, &extra) {
        Ok(def) => def,
        Err(e) => {
            seen.load_error = Some(e.to_string());
            match &e {
                FilterError::Ini(e) => check_load_error(e, dir, &files),
                FilterError::Value { path, message } => {
                    assert_eq!(path, &dir.join("f.conf"));
                    assert!(!message.is_empty());
                }
                FilterError::Spec(_) => panic!("load: {e}"),
            }
            return seen;
        }
    };
    seen.loaded = true;
    assert_eq!(def.path, dir.join("f.conf"));
    assert!(def.maxlines >= 1);
    for r in regexes(&def).chain(&def.journalmatch) {
        assert!(!r.trim().is_empty(), "{r:?}");
        assert!(r.len() <= ini::MAX_VALUE);
    }
    // One per line, but for `prefregex`: one value, which may go on over lines.
    for r in def
        .failregex
        .iter()
        .chain(&def.ignoreregex)
        .chain(&def.journalmatch)
    {
        assert!(!r.contains('\n'), "{r:?}");
    }
    for r in regexes(&def) {
        let expanded = resolve_regex_tags(r);
        if !r.contains('<') {
            assert_eq!(&expanded, r);
        }
    }
    let date_lines = def.datepattern.as_deref().map_or(0, |p| p.lines().count());
    if regexes(&def).count() > 16 || regexes(&def).any(|r| r.len() > 4096) || date_lines > 16 {
        return seen;
    }
    let tz = if ctl & 8 != 0 {
        TimeZone::get("Europe/Zurich").unwrap_or(TimeZone::UTC)
    } else {
        TimeZone::UTC
    };
    let text = match parts.get(4) {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => DEFAULT_LINES.to_string(),
    };
    let lines: Vec<&str> = text
        .split('\n')
        .take(MAX_LINES)
        .map(|l| cap(l, MAX_LINE))
        .collect();
    run_filter(&def, &lines, &tz, &mut seen);
    seen
}

/// Filters of the shapes fail2ban ships (written here, not copied: an sshd-like one with
/// `common.conf`, modes chosen by tags, a `prefregex`, multi-line ids, a date pattern and a
/// `.local` that extends a value through `known/`), the error paths, and what was found.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let sshd_conf = "[INCLUDES]\nbefore = common.conf\n\n[Definition]\n_daemon = sshd\n\
        failregex = ^%(__prefix_line)sFailed password for <F-USER>\\S+</F-USER> from <HOST>\n\
        \x20           ^%(__prefix_line)sInvalid user \\w+ from <HOST>  ; inline comment\n\
        ignoreregex = ^%(__prefix_line)sFailed password for backup from\n\
        journalmatch = _SYSTEMD_UNIT=sshd.service + _COMM=sshd\n\n[Init]\nmaxlines = 1\n";
    let common =
        "# shared definitions\n[DEFAULT]\n__prefix_line = \\s?\\S+ %(_daemon)s\\[\\d+\\]:\\s\n";
    let sshd_lines =
        "Aug 14 11:59:58 host sshd[1234]: Failed password for root from 192.0.2.10 port 22 ssh2\n\
        Aug 14 11:59:59 host sshd[1234]: Invalid user admin from 2001:db8::7\n\
        Aug 14 11:59:59 host sshd[99]: Failed password for backup from 192.0.2.11 port 22\n\
        Aug 14 11:59:59 host sshd[99]: Failed password for x from 192.030.000.006 port 22\n\
        host sshd[1]: Failed password for y from 192.0.2.12\n\
        Aug 14 11:59:59 host cron[1]: nothing";
    let postfix = "[Definition]\n_daemon = postfix/smtpd\n\
        _pref = \\S+ %(_daemon)s\\[\\d+\\]:\n\
        mdre-normal = ^\\s?%(_pref)s NOQUEUE: reject: RCPT from [^\\[]*\\[<HOST>\\]: 554 5\\.7\\.1\n\
        mdre-auth = ^\\s?%(_pref)s warning: [^\\[]*\\[<HOST>\\]: SASL LOGIN authentication failed\n\
        mdre-aggressive = %(mdre-normal)s\n                  %(mdre-auth)s\n\
        mode = normal\nfailregex = <mdre-<mode>>\nignoreregex =\n\n\
        [Init]\njournalmatch = _SYSTEMD_UNIT=postfix.service\n";
    let postfix_lines = "Aug 14 11:59:57 mail postfix/smtpd[7]: NOQUEUE: reject: RCPT from unknown[192.0.2.20]: 554 5.7.1 Relay access denied\n\
        Aug 14 11:59:58 mail postfix/smtpd[7]: warning: unknown[::ffff:192.0.2.21]: SASL LOGIN authentication failed: x";
    let dovecot = "[Definition]\n\
        prefregex = ^\\s?\\S+ dovecot: <F-CONTENT>.+</F-CONTENT>$\n\
        failregex = ^auth-worker\\(\\d+\\): pam\\(<F-USER>\\S+</F-USER>,<HOST>\\): unknown user\n\
        \x20           ^imap-login: Aborted login \\(auth failed, \\d+ attempts\\): user=<<F-USER>\\S+</F-USER>>, rip=<HOST>\n\
        ignoreregex = rip=192\\.0\\.2\\.99\n";
    let dovecot_lines = "2005-08-14 11:59:50 host dovecot: imap-login: Aborted login (auth failed, 3 attempts): user=<bob>, rip=192.0.2.30, lip=10.0.0.1\n\
        2005-08-14 11:59:51 host dovecot: auth-worker(123): pam(alice,192.0.2.31): unknown user\n\
        2005-08-14 11:59:52 host dovecot: imap-login: Aborted login (auth failed, 1 attempts): user=<eve>, rip=192.0.2.99\n\
        2005-08-14 11:59:53 host other: auth-worker(1): pam(x,192.0.2.32): unknown user";
    let mlfid = "[Definition]\n\
        failregex = ^\\s?\\S+ sshd\\[<F-MLFID>\\d+</F-MLFID>\\]: <F-NOFAIL>Connection from</F-NOFAIL> <HOST>\n\
        \x20           ^\\s?\\S+ sshd\\[<F-MLFID>\\d+</F-MLFID>\\]: Failed password for <F-USER>\\S+</F-USER>\n\
        \x20           ^\\s?\\S+ sshd\\[<F-MLFID>\\d+</F-MLFID>\\]: <F-MLFFORGET>Disconnected</F-MLFFORGET>\n\
        maxlines = 1\n";
    let mlfid_lines = "Aug 14 11:59:50 h sshd[5]: Connection from 192.0.2.40 port 1\n\
        Aug 14 11:59:51 h sshd[5]: Failed password for root\n\
        Aug 14 11:59:52 h sshd[5]: Failed password for admin\n\
        Aug 14 11:59:53 h sshd[5]: Disconnected\n\
        Aug 14 11:59:54 h sshd[5]: Failed password for root";
    let nginx = "[Definition]\ndatepattern = ^%%Y-%%m-%%d %%H:%%M:%%S\n\
        failregex = ^ \\[error\\] \\d+#\\d+: limiting requests, client: <HOST>,\n";
    let nginx_local = "[Definition]\nfailregex = %(known/failregex)s\n\
        \x20           ^ \\[error\\] \\d+#0: \\*\\d+ user \"<F-USER>\\S+</F-USER>\" was not found, client: <HOST>\n";
    let nginx_lines =
        "2005-08-14 11:59:50 [error] 12#0: limiting requests, client: 192.0.2.50, server: x\n\
        2005-08-14 11:59:51 [error] 12#0: *7 user \"bob\" was not found, client: 192.0.2.51\n\
        2005/08/14 11:59:52 [error] 12#0: limiting requests, client: 192.0.2.52, server: x";
    let raw_ini = "[DEFAULT]\na = 1\n[Definition]\nx = %(a)s%%\ny = %(x)s %(__name__)s\n\
        z = %(nope)s\nw = 50% off\nv = 100%% sure\n[Definition]\nx = again\n\
        [Init?family=inet6]\nblocktype = %(known/blocktype)s6\n[lt_file]\np = v\n\
        [lt_short]\np = %(lt_file/p)s w\nq = %(default/a)s\n";
    let raw_local = "[Init]\nblocktype = reject\n[Definition]\nlong = a\n  b\n\n  c ; comment\n# comment\nafter = x\n";
    // Ten levels of ten references each: 10^10 copies of one letter.
    let mut bomb = String::from("[Definition]\nl0 = x\n");
    for i in 1..=10 {
        bomb.push_str(&format!(
            "l{i} = {}\n",
            format!("%(l{})s", i - 1).repeat(10)
        ));
    }
    let bomb_filter = format!("{bomb}failregex = ^%(l10)s <HOST>\n");
    // Nine tags of ten tags each, resolved in order (before `failregex`): 10^10 bytes.
    let mut tag_bomb =
        String::from("[Definition]\nfailregex = ^<a9> <HOST>\n[Init]\na0 = xxxxxxxxxx\n");
    for i in 1..=9 {
        tag_bomb.push_str(&format!("a{i} = {}\n", format!("<a{}>", i - 1).repeat(10)));
    }
    let join = |ps: &[&str]| ps.join("\0").into_bytes();
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("sshd", 0, join(&[sshd_conf, "", common, "", sshd_lines])),
        ("sshd-zurich-by-path", 0b1010, join(&[sshd_conf, "", common, "", sshd_lines])),
        ("sshd-default-lines", 0, join(&[sshd_conf, "", common])),
        ("postfix-modes", 1, join(&[postfix, "", "", "mode=aggressive", postfix_lines])),
        ("postfix-replay-mode", 0b100, join(&[postfix, "", "", "", postfix_lines])),
        ("postfix-spec-quoted", 1, join(&[postfix, "", "", "mode = \"normal\", x='a, b', y=", postfix_lines])),
        ("dovecot-prefregex", 0, join(&[dovecot, "", "", "", dovecot_lines])),
        ("multiline-ids", 0, join(&[mlfid, "", "", "", mlfid_lines])),
        ("datepattern-and-local", 0, join(&[nginx, nginx_local, "", "", nginx_lines])),
        ("local-only", 0b10_0000, join(&["", nginx, "", "", nginx_lines])),
        ("no-filter-file", 0b10_0000, join(&[])),
        ("ini-only", 3, join(&[raw_ini, raw_local, common])),
        ("ini-errors", 3, join(&["x = 1\n[s]\n", "[s]\n[]\n", "[s]\n= no name\n"])),
        ("load-error-in-include", 0, join(&["[INCLUDES]\nbefore = common.conf\n[Definition]\nfailregex = x <HOST>\n", "", "[DEFAULT]\n\nnot an option\n"])),
        ("load-error-value", 0, join(&["[Definition]\nfailregex = %(missing)s <HOST>\n"])),
        ("load-error-maxlines", 0, join(&["[Definition]\nfailregex = x <HOST>\nmaxlines = many\n"])),
        ("tag-loop", 0, join(&["[Definition]\nfailregex = <a> <HOST>\n[Init]\na = <b>\nb = <a>\n"])),
        ("not-utf8", 0, b"[Definition]\nfailregex = \xff <HOST>\n".to_vec()),
        ("include-outside", 0, join(&["[INCLUDES]\nbefore = /etc/fail2ban/filter.d/common.conf\n[Definition]\nfailregex = x <HOST>\n"])),
        ("include-loop", 0, join(&["[INCLUDES]\nbefore = common.conf\nafter = f.local\n[Definition]\nfailregex = ^a <HOST>\n", "[INCLUDES]\nbefore = f.conf\n", "[INCLUDES]\nafter = f.conf\n", "", "a 192.0.2.1"])),
        ("untamed", 0, join(&["[Definition]\nfailregex = ^(a+)+$ <HOST>\n", "", "", "", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])),
        ("bad-regex", 0, join(&["[Definition]\nfailregex = ^(x <HOST>\n"])),
        ("epoch-subnet", 0, join(&["[Definition]\ndatepattern = EPOCH\nfailregex = ^ ban <SUBNET>$\n", "", "", "", "1123977599 ban 192.0.2.0/24\n1123977599 ban 2001:db8::/999\n1123977599 ban 192.0.2.7"])),
        ("no-date", 0, join(&["[Definition]\ndatepattern = {NONE}\nfailregex = ^login failed from <ADDR> as <F-ALT_USER>\\w+</F-ALT_USER>$\n", "", "", "", "login failed from [2001:db8::8] as bob\nlogin failed from 192.0.2.9 as eve"])),
        ("multibyte", 0, join(&[sshd_conf, "", common, "", "Aug 14 11:59:58 h\u{e9} sshd[1]: Failed password for \u{fc} from 192.0.2.60\n\u{20ac}Aug 14 11:59:58 h sshd[1]: Failed password for x from 192.0.2.61"])),
        // Found with this target's checks: references that multiply (ten levels of ten) or
        // tags that do were expanded to 10^10 bytes; both are errors now.
        ("found-interpolation-bomb", 3, join(&[&bomb])),
        ("found-interpolation-bomb-load", 0, join(&[&bomb_filter])),
        ("found-tag-bomb", 0, join(&[&tag_bomb])),
        // Found with fail2ban_date's checks: a date pattern matching half a character made
        // `process_line` slice the line inside it.
        ("found-date-splits-character", 0, join(&["[Definition]\ndatepattern = {UNB}.\nfailregex = ^x <HOST>\n", "", "", "", "\u{e9}x 192.0.2.5\nxx 192.0.2.6"])),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, ctl, text))| (format!("{i:02}-{name}"), [vec![ctl], text].concat()))
        .collect()
}
