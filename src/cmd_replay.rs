//! `moat replay`: Moat's `fail2ban-regex`. Runs a fail2ban filter (read in place from
//! `filter.d`, or a `.conf` path) over log files and says which lines matched, the address
//! and time it took from each, and a summary. Nothing is banned: it is how an operator checks
//! a filter against their own logs before a jail uses it.

use anyhow::Context;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use moat_logs::fail2ban::{self, ini::Options, Filter, FilterSpec, Outcome};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Log files to read (`-` for stdin).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// The filter: a name in --filter-dir (`sshd`, `postfix[mode=aggressive]`) or a path to a
    /// filter file.
    #[arg(long)]
    filter: String,
    /// Where filters are found by name.
    #[arg(long, default_value = "/etc/fail2ban/filter.d")]
    filter_dir: PathBuf,
    /// The filter's `mode` (as `filter = NAME[mode=M]` in a jail).
    #[arg(long)]
    mode: Option<String>,
    /// Zone of dates written without one (fail2ban's `logtimezone`); default: local time.
    #[arg(long)]
    log_timezone: Option<String>,
    /// One JSON object per matched line on stdout: {"line": N, "host": "…", "time": "…"};
    /// the summary goes to stderr.
    #[arg(long)]
    json: bool,
    /// Print only the summary (as fail2ban-regex does without -v).
    #[arg(long, conflicts_with = "json")]
    summary: bool,
}

#[derive(Default)]
struct Tally {
    lines: u64,
    failures: u64,
    /// A failregex matched but gave no failure (F-NOFAIL, no address, no time).
    matched_only: u64,
    ignored: u64,
    per_regex: HashMap<usize, u64>,
    per_host: HashMap<IpAddr, u64>,
}

pub fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut spec = FilterSpec::parse(&a.filter)?;
    let mut extra = Options::new();
    if let Some(m) = &a.mode {
        spec.options.insert("mode".into(), m.clone());
    }
    extra.insert("logtype".into(), "file".into());
    let def = fail2ban::load(&a.filter_dir, &spec, &extra)?;
    let tz = match &a.log_timezone {
        Some(z) => TimeZone::get(z).with_context(|| format!("--log-timezone {z}"))?,
        None => TimeZone::system(),
    };
    let mut filter = Filter::compile(&def, tz).map_err(anyhow::Error::msg)?;
    let now = Timestamp::now();
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    let many = a.logs.len() > 1;
    for log in &a.logs {
        let (reader, size): (Box<dyn BufRead>, u64) = if log.as_os_str() == "-" {
            (Box::new(std::io::stdin().lock()), 0)
        } else {
            let f = std::fs::File::open(log).with_context(|| format!("{}", log.display()))?;
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            (
                Box::new(std::io::BufReader::with_capacity(1 << 16, f)),
                size,
            )
        };
        let bar = progress(size, a.json);
        let name = log.display().to_string();
        read_log(reader, |n, bytes, line| {
            tally.lines += 1;
            if let Some(b) = &bar {
                if n % 4096 == 0 {
                    b.set_position(bytes);
                }
            }
            match filter.process_line(line, now) {
                Outcome::Failures(found) => {
                    for f in found {
                        tally.failures += 1;
                        *tally.per_regex.entry(f.regex).or_default() += 1;
                        *tally.per_host.entry(f.host).or_default() += 1;
                        if a.summary {
                            continue;
                        }
                        let time = f.time;
                        if a.json {
                            let mut o = serde_json::json!({
                                "line": n, "host": f.host.to_string(), "time": time.to_string(),
                            });
                            if many {
                                o["file"] = name.clone().into();
                            }
                            writeln!(out, "{o}")?;
                        } else if many {
                            writeln!(out, "{name}:{n}  {:<39}  {time}", f.host)?;
                        } else {
                            writeln!(out, "{n:>8}  {:<39}  {time}", f.host)?;
                        }
                    }
                }
                Outcome::Matched => tally.matched_only += 1,
                Outcome::Ignored => tally.ignored += 1,
                Outcome::None => {}
            }
            Ok(())
        })
        .with_context(|| format!("reading {}", log.display()))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
    out.flush()?;
    drop(out);
    let took = started.elapsed();
    summary(&tally, &def, took, a.json);
    Ok(ExitCode::SUCCESS)
}

/// Calls `each(line number from 1, bytes read so far, line)` for every line, with invalid
/// UTF-8 replaced and a trailing `\r` removed. Lines are taken from the reader's buffer in
/// place, the whole buffer checked as UTF-8 at once (a `\n` never splits a character); only
/// a line that straddles two reads is copied.
fn read_log(
    mut reader: Box<dyn BufRead + '_>,
    mut each: impl FnMut(u64, u64, &str) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut carry: Vec<u8> = Vec::new();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut emit = |line: &str, bytes: u64| -> std::io::Result<()> {
        n += 1;
        each(n, bytes, line.trim_end_matches(['\n', '\r']))
    };
    let lossy = |raw: &[u8]| -> String { String::from_utf8_lossy(raw).into_owned() };
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            if !carry.is_empty() {
                stop_on_pipe(emit(&lossy(&carry), bytes))?;
            }
            return Ok(());
        }
        let Some(last) = memchr::memrchr(b'\n', avail) else {
            bytes += avail.len() as u64;
            carry.extend_from_slice(avail);
            let used = avail.len();
            reader.consume(used);
            continue;
        };
        let mut start = 0;
        if !carry.is_empty() {
            let first = memchr::memchr(b'\n', avail).unwrap_or(last);
            carry.extend_from_slice(&avail[..first]);
            bytes += first as u64 + 1;
            let line = lossy(&carry);
            carry.clear();
            if stop_on_pipe(emit(&line, bytes))? {
                return Ok(());
            }
            start = first + 1;
        }
        let whole = &avail[start..=last];
        let stopped = match std::str::from_utf8(whole) {
            Ok(text) => {
                let mut stopped = false;
                let mut from = 0;
                // memchr: str's own splitting by a char is several times slower.
                for nl in memchr::memchr_iter(b'\n', whole) {
                    let line = &text[from..nl];
                    from = nl + 1;
                    bytes += line.len() as u64 + 1;
                    if stop_on_pipe(emit(line, bytes))? {
                        stopped = true;
                        break;
                    }
                }
                stopped
            }
            Err(_) => {
                let mut stopped = false;
                // `whole` ends with its newline: split what comes before it.
                for raw in whole[..whole.len() - 1].split(|&b| b == b'\n') {
                    bytes += raw.len() as u64 + 1;
                    if stop_on_pipe(emit(&lossy(raw), bytes))? {
                        stopped = true;
                        break;
                    }
                }
                stopped
            }
        };
        if stopped {
            return Ok(());
        }
        reader.consume(last + 1);
    }
}

/// `Ok(true)` when the reader of our output went away (`moat replay … | head`): stop
/// quietly.
fn stop_on_pipe(r: std::io::Result<()>) -> anyhow::Result<bool> {
    match r {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// A progress bar on a terminal (stderr), for a file of known size.
fn progress(size: u64, json: bool) -> Option<indicatif::ProgressBar> {
    if size == 0 || !std::io::stderr().is_terminal() || json && std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .ok()?,
    );
    Some(bar)
}

fn summary(t: &Tally, def: &fail2ban::FilterDef, took: std::time::Duration, json: bool) {
    let mut err = std::io::stderr().lock();
    let mut w = |s: String| {
        let _ = writeln!(err, "{s}");
    };
    if !json {
        w(String::new());
    }
    let secs = took.as_secs_f64().max(1e-9);
    w(format!("filter      {}", def.path.display()));
    w(format!(
        "lines       {} in {:.2} s ({:.0} lines/s)",
        t.lines,
        secs,
        t.lines as f64 / secs
    ));
    w(format!("failures    {}", t.failures));
    w(format!(
        "matched     {} without a failure (no address, no time, or F-NOFAIL)",
        t.matched_only
    ));
    w(format!("ignored     {} (ignoreregex)", t.ignored));
    w(format!(
        "missed      {}",
        t.lines - t.failures.min(t.lines) - t.matched_only - t.ignored
    ));
    w("failregex   hits".into());
    for (i, r) in def.failregex.iter().enumerate() {
        let hits = t.per_regex.get(&i).copied().unwrap_or(0);
        let short: String = r.chars().take(70).collect();
        w(format!("  {i:>3} {hits:>9}  {short}"));
    }
    let mut hosts: Vec<(&IpAddr, &u64)> = t.per_host.iter().collect();
    // Only the top ten are shown: select them, then sort those (a log of a wide attack has
    // hundreds of thousands of addresses).
    let order = |a: &(&IpAddr, &u64), b: &(&IpAddr, &u64)| b.1.cmp(a.1).then(a.0.cmp(b.0));
    if hosts.len() > 10 {
        hosts.select_nth_unstable_by(9, order);
        hosts.truncate(10);
    }
    hosts.sort_by(order);
    w(format!(
        "addresses   {} distinct; most failures:",
        hosts.len()
    ));
    for (h, n) in hosts.iter().take(10) {
        w(format!("  {:<39} {n:>9}", h.to_string()));
    }
}
