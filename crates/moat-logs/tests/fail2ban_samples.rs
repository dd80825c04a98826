//! fail2ban's own filters on fail2ban's own annotated sample logs (`../shared/peers/fail2ban`,
//! read in place), scored the way fail2ban's `samplestestcase.py` scores them: each annotated
//! line under each `filterOptions` set, with the clock at 2005-08-14 12:00 in Europe/Zurich.
//! A line is a true positive when it must match and the address (and time, where given) is
//! right; any failure found in a line that must not match is a false positive. Prints a table
//! of precision and recall per filter.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use moat_logs::fail2ban::{self, ini::Options, matcher::parse_addr, Filter, FilterSpec, Outcome};
use std::path::{Path, PathBuf};

/// Where fail2ban's samples are: `MOAT_FAIL2BAN_SAMPLES`, else `shared/peers/fail2ban` beside
/// an ancestor of this crate, else this machine's `/work/shared`.
fn samples() -> PathBuf {
    if let Some(p) = std::env::var_os("MOAT_FAIL2BAN_SAMPLES") {
        return p.into();
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/peers/fail2ban"))
        .chain([PathBuf::from("/work/shared/peers/fail2ban")])
        .find(|p| p.join("logs").is_dir())
        .expect("fail2ban's sample logs (set MOAT_FAIL2BAN_SAMPLES)")
}

fn zurich(s: &str) -> Timestamp {
    // As Python's strptime reads it: fields need not be zero-padded.
    let s = s.split('.').next().unwrap();
    let n: Vec<i32> = s
        .split(['-', 'T', ':'])
        .map(|f| f.parse().unwrap())
        .collect();
    DateTime::new(
        n[0] as i16,
        n[1] as i8,
        n[2] as i8,
        n[3] as i8,
        n[4] as i8,
        n[5] as i8,
        0,
    )
    .unwrap()
    .to_zoned(TimeZone::get("Europe/Zurich").unwrap())
    .unwrap()
    .timestamp()
}

/// The few Python conditions the samples use.
fn holds(cond: &str, name: &str, opts: &serde_json::Map<String, serde_json::Value>) -> bool {
    let c: String = cond.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs, eq) = if let Some((l, r)) = c.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = c.split_once("!=") {
        (l, r, false)
    } else {
        panic!("condition `{cond}`")
    };
    let rhs = rhs.trim_matches(['\'', '"']);
    let lhs = if lhs == "name" {
        name.to_string()
    } else if let Some(k) = lhs
        .strip_prefix("opts.get(")
        .and_then(|k| k.strip_suffix(')'))
    {
        let k = k.trim_matches(['\'', '"']);
        opts.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("None")
            .to_string()
    } else {
        panic!("condition `{cond}`")
    };
    (lhs == rhs) == eq
}

#[derive(Default, Debug, Clone, Copy)]
struct Score {
    tp: usize,
    fp: usize,
    fn_: usize,
    tn: usize,
    /// Lines whose address fail2ban finds by resolving a host name: Moat never resolves a
    /// name a log line holds (an attacker chooses it), so they are not scored.
    names: usize,
}

struct Test {
    filter: Filter,
    opts: serde_json::Map<String, serde_json::Value>,
}

fn build(dir: &Path, name: &str, opts: &serde_json::Map<String, serde_json::Value>) -> Filter {
    let mut extra = Options::new();
    for (k, v) in opts {
        if !k.starts_with("test.") {
            extra.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let spec = FilterSpec::parse(name).unwrap();
    let def = fail2ban::load(dir, &spec, &extra).unwrap_or_else(|e| panic!("{name}: {e}"));
    Filter::compile(&def, TimeZone::get("Europe/Zurich").unwrap())
        .unwrap_or_else(|e| panic!("{name} {opts:?}: {e}"))
}

fn score(root: &Path, name: &str, misses: &mut Vec<String>) -> Score {
    let now = zurich("2005-08-14T12:00:00");
    let dir = root.join("filter.d");
    let mut files = vec![name.to_string()];
    let mut score = Score::default();
    let mut i = 0;
    while i < files.len() {
        let file = files[i].clone();
        i += 1;
        let text = std::fs::read_to_string(root.join("logs").join(&file)).unwrap();
        let mut common = serde_json::Map::new();
        let mut tests: Vec<Test> = Vec::new();
        let mut ignore_block = false;
        let mut expect: Option<serde_json::Value> = None;
        for (n, line) in text.lines().enumerate() {
            // `^#+ ?(failJSON|fileOptions|filterOptions|addFILE):(.+)$`
            if line.starts_with('#') {
                let rest = line.trim_start_matches('#');
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                let directive = ["failJSON:", "fileOptions:", "filterOptions:", "addFILE:"]
                    .iter()
                    .find(|d| rest.starts_with(*d));
                if let Some(d) = directive {
                    let json: serde_json::Value =
                        serde_json::from_str(rest[d.len()..].trim()).unwrap();
                    match *d {
                        "fileOptions:" => common = json.as_object().unwrap().clone(),
                        "addFILE:" => files.push(json.as_str().unwrap().to_string()),
                        "filterOptions:" => {
                            tests.clear();
                            ignore_block = false;
                            let list = match json {
                                serde_json::Value::Array(a) => a,
                                o => vec![o],
                            };
                            for o in list {
                                let mut opts = common.clone();
                                opts.extend(o.as_object().unwrap().clone());
                                if let Some(c) = opts.get("test.condition").and_then(|c| c.as_str())
                                {
                                    ignore_block = !holds(c, name, &opts);
                                }
                                if !ignore_block {
                                    tests.push(Test {
                                        filter: build(&dir, name, &opts),
                                        opts,
                                    });
                                }
                            }
                        }
                        _ => expect = Some(json),
                    }
                    continue;
                }
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let faildata = expect.take().unwrap_or(serde_json::json!({}));
            if ignore_block {
                continue;
            }
            if tests.is_empty() {
                tests.push(Test {
                    filter: build(&dir, name, &common),
                    opts: common.clone(),
                });
            }
            for t in tests.iter_mut() {
                if let Some(c) = faildata.get("constraint").and_then(|c| c.as_str()) {
                    if !holds(c, name, &t.opts) {
                        continue;
                    }
                }
                let outcome = if t.opts.get("logtype").and_then(|l| l.as_str()) == Some("journal") {
                    let prefix = t
                        .opts
                        .get("test.prefix-line")
                        .and_then(|p| p.as_str())
                        .unwrap_or("");
                    t.filter.process_dated(&format!("{prefix}{line}"), now, now)
                } else {
                    t.filter.process_line(line, now)
                };
                let must = faildata.get("match").and_then(|m| m.as_bool()) == Some(true);
                let want_host = faildata.get("host").and_then(|h| h.as_str());
                if must && want_host.is_some_and(|h| parse_addr(h).is_none()) {
                    score.names += 1;
                    continue;
                }
                let found = match &outcome {
                    Outcome::Failures(f) => f.first().cloned(),
                    _ => None,
                };
                let at = format!("{file}:{} {:?}", n + 1, t.opts);
                match (must, found) {
                    (false, None) => score.tn += 1,
                    (false, Some(f)) => {
                        score.fp += 1;
                        misses.push(format!("FP {at}: {} in {line}", f.host));
                    }
                    (true, None) => {
                        score.fn_ += 1;
                        misses.push(format!("FN {at}: {outcome:?} in {line}"));
                    }
                    (true, Some(f)) => {
                        let host_ok = match want_host {
                            Some(h) => parse_addr(h) == Some(f.host),
                            None => true,
                        };
                        let time_ok = match faildata.get("time").and_then(|h| h.as_str()) {
                            Some(t) => zurich(t) == f.time,
                            None => true,
                        };
                        if host_ok && time_ok {
                            score.tp += 1;
                        } else {
                            score.fn_ += 1;
                            misses.push(format!(
                                "WRONG {at}: {} at {} (want {:?} {:?}) in {line}",
                                f.host,
                                f.time,
                                faildata.get("host"),
                                faildata.get("time")
                            ));
                        }
                    }
                }
            }
        }
    }
    score
}

#[test]
fn fail2ban_filters_on_fail2ban_samples() {
    let root = samples();
    println!(
        "\n{:<20} {:>5} {:>5} {:>5} {:>5} {:>9} {:>7} {:>6}",
        "filter", "TP", "FP", "FN", "TN", "precision", "recall", "names"
    );
    let mut misses = Vec::new();
    let mut results = Vec::new();
    for name in [
        "postfix",
        "dovecot",
        "sshd",
        "nginx-http-auth",
        "nginx-limit-req",
        "nginx-botsearch",
        "nginx-bad-request",
        "nginx-forbidden",
    ] {
        let s = score(&root, name, &mut misses);
        let precision = s.tp as f64 / (s.tp + s.fp).max(1) as f64;
        let recall = s.tp as f64 / (s.tp + s.fn_).max(1) as f64;
        println!(
            "{name:<20} {:>5} {:>5} {:>5} {:>5} {precision:>9.3} {recall:>7.3} {:>6}",
            s.tp, s.fp, s.fn_, s.tn, s.names
        );
        results.push((name, precision, recall));
    }
    for m in &misses {
        println!("{m}");
    }
    for (name, precision, recall) in results {
        assert!(precision >= 1.0, "{name}: precision {precision:.3}");
        assert!(recall >= 0.97, "{name}: recall {recall:.3}");
    }
}
