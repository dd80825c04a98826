//! The systemd journal, read through `journalctl -f -o json`.
//!
//! journalctl rather than libsystemd: nothing to link (Moat's binary is static), and the
//! journal files' format and access rules stay systemd's business. Each record carries its
//! cursor; `--after-cursor` resumes exactly after the last acknowledged one.

use super::lines::{LineSplitter, DEFAULT_MAX_LINE};
use super::{Line, Position, SourceError};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A JSON record longer than this is skipped. With `--all` a field is never elided, and a
/// binary message is printed as an array of numbers, up to four bytes of JSON per byte.
const MAX_RECORD: usize = 1024 * 1024;

/// Only what the line is made of; journalctl adds the cursor and timestamps itself.
const OUTPUT_FIELDS: &str = "MESSAGE,_HOSTNAME,SYSLOG_IDENTIFIER,_COMM,SYSLOG_PID,_PID,\
                             _SOURCE_REALTIME_TIMESTAMP,_SOURCE_MONOTONIC_TIMESTAMP";

#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Source name of the lines and checkpoint key, e.g. `journal:sshd`.
    pub name: Arc<str>,
    /// fail2ban's `journalmatch`, one journalctl argument each (`_SYSTEMD_UNIT=ssh.service`,
    /// `+`, `_COMM=sshd`).
    pub matches: Vec<String>,
    /// More arguments for journalctl, such as `--directory=DIR` to read other journal files.
    pub extra_args: Vec<String>,
    pub program: PathBuf,
    /// Where a first start (no cursor) begins; `None` is at the end, as new records arrive.
    pub since: Option<jiff::Timestamp>,
    /// Bytes kept of a longer message.
    pub max_line: usize,
    /// Wait before starting journalctl again after it exited.
    pub restart_delay: Duration,
}

impl JournalConfig {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        JournalConfig {
            name: name.into(),
            matches: Vec::new(),
            extra_args: Vec::new(),
            program: PathBuf::from("journalctl"),
            since: None,
            max_line: DEFAULT_MAX_LINE,
            restart_delay: Duration::from_secs(5),
        }
    }
}

/// A field as journalctl prints it: text, bytes (not valid UTF-8 or with control characters),
/// or several values when the field occurs more than once in the record.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Field {
    Text(String),
    Bytes(Vec<u8>),
    Many(Vec<Field>),
}

impl Field {
    fn text(&self) -> String {
        match self {
            Field::Text(s) => s.clone(),
            Field::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Field::Many(v) => v.iter().map(Field::text).collect::<Vec<_>>().join(" "),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Record {
    #[serde(rename = "__CURSOR")]
    cursor: Option<String>,
    #[serde(rename = "MESSAGE")]
    message: Option<Field>,
    #[serde(rename = "_HOSTNAME")]
    hostname: Option<Field>,
    #[serde(rename = "SYSLOG_IDENTIFIER")]
    identifier: Option<Field>,
    #[serde(rename = "_COMM")]
    comm: Option<Field>,
    #[serde(rename = "SYSLOG_PID")]
    syslog_pid: Option<Field>,
    #[serde(rename = "_PID")]
    pid: Option<Field>,
    #[serde(rename = "_SOURCE_REALTIME_TIMESTAMP")]
    source_realtime: Option<Field>,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<Field>,
    #[serde(rename = "_SOURCE_MONOTONIC_TIMESTAMP")]
    source_monotonic: Option<Field>,
    #[serde(rename = "__MONOTONIC_TIMESTAMP")]
    monotonic: Option<Field>,
}

/// A non-empty field's text, the first of two that is present (fail2ban's fallbacks).
fn first(a: &Option<Field>, b: &Option<Field>) -> Option<String> {
    [a, b]
        .into_iter()
        .flatten()
        .map(Field::text)
        .find(|s| !s.is_empty())
}

fn micros(a: &Option<Field>, b: &Option<Field>) -> Option<i64> {
    first(a, b).and_then(|s| s.trim().parse().ok())
}

/// Turns one line of `journalctl -o json` into the line fail2ban's systemd backend would
/// match: `HOST IDENT[PID]: MESSAGE`, the time taken from the record, not from the text.
pub fn parse_record(json: &[u8], source: &Arc<str>, max_line: usize) -> serde_json::Result<Line> {
    let r: Record = serde_json::from_slice(json)?;
    let mut parts: Vec<String> = Vec::with_capacity(4);
    if let Some(host) = first(&r.hostname, &None) {
        parts.push(host);
    }
    if let Some(mut ident) = first(&r.identifier, &r.comm) {
        if let Some(pid) = first(&r.syslog_pid, &r.pid) {
            ident = format!("{ident}[{}]", pid.trim());
        }
        ident.push(':');
        let kernel = ident == "kernel:";
        parts.push(ident);
        if kernel {
            let mono = micros(&r.source_monotonic, &r.monotonic).unwrap_or(0);
            parts.push(format!("[{:12.6}]", mono as f64 / 1e6));
        }
    }
    let mut message = r.message.as_ref().map(Field::text).unwrap_or_default();
    if message.len() > max_line {
        let mut cut = max_line;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    parts.push(message);
    let time = micros(&r.source_realtime, &r.realtime)
        .and_then(|us| jiff::Timestamp::from_microsecond(us).ok());
    Ok(Line {
        source: Arc::clone(source),
        text: parts.join(" "),
        time,
        position: match r.cursor {
            Some(cursor) => Position::Journal { cursor },
            None => Position::None,
        },
    })
}

fn command(cfg: &JournalConfig, cursor: Option<&str>) -> Command {
    let mut cmd = Command::new(&cfg.program);
    cmd.args([
        "--follow",
        "--output=json",
        "--all",
        "--no-pager",
        "--quiet",
    ])
    .arg(format!("--output-fields={OUTPUT_FIELDS}"));
    match (cursor, cfg.since) {
        // --no-tail: --follow would otherwise cap what it shows from there at 10 records.
        (Some(c), _) => cmd.arg(format!("--after-cursor={c}")).arg("--no-tail"),
        (None, Some(t)) => cmd
            .arg(format!("--since=@{}", t.as_second()))
            .arg("--no-tail"),
        (None, None) => cmd.arg("--lines=0"),
    };
    cmd.args(&cfg.extra_args)
        .args(&cfg.matches)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn start(cfg: &JournalConfig, cursor: Option<&str>) -> Result<Child, SourceError> {
    let mut child = command(cfg, cursor).spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SourceError::JournalctlMissing {
                program: cfg.program.clone(),
            }
        } else {
            SourceError::Spawn {
                program: cfg.program.clone(),
                source,
            }
        }
    })?;
    if let Some(stderr) = child.stderr.take() {
        let name = Arc::clone(&cfg.name);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(source = %name, "journalctl: {line}");
            }
        });
    }
    Ok(child)
}

/// Starts following the journal after `cursor` (from [`super::Checkpoints::journal_cursor`]),
/// sending lines to `tx` until the receiver is dropped. journalctl is started here, so that a
/// missing one is reported at once; if it exits later it is started again after the last
/// record it printed. Must be called within a tokio runtime.
pub fn spawn_journal(
    cfg: JournalConfig,
    cursor: Option<String>,
    tx: mpsc::Sender<Line>,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    let child = start(&cfg, cursor.as_deref())?;
    Ok(tokio::spawn(follow(cfg, cursor, child, tx)))
}

async fn follow(
    cfg: JournalConfig,
    mut cursor: Option<String>,
    mut child: Child,
    tx: mpsc::Sender<Line>,
) {
    loop {
        let printed = match pump(&cfg, &mut child, &mut cursor, &tx).await {
            Some(n) => n,
            None => return, // the receiver is gone; dropping the child kills it
        };
        let status = child.wait().await;
        tracing::warn!(source = %cfg.name, ?status, "journalctl exited; starting it again");
        if printed == 0 && cursor.is_some() && !matches!(&status, Ok(s) if s.success()) {
            // It failed before printing anything: most likely a cursor it cannot seek to.
            // Losing the records since then beats never reading the journal again.
            tracing::warn!(source = %cfg.name, "dropping the saved journal cursor");
            cursor = None;
        }
        child = loop {
            tokio::select! {
                () = tokio::time::sleep(cfg.restart_delay) => {}
                () = tx.closed() => return,
            }
            match start(&cfg, cursor.as_deref()) {
                Ok(c) => break c,
                Err(e) => tracing::warn!(source = %cfg.name, "{e}"),
            }
        };
    }
}

/// Forwards records until journalctl's output ends (`Some(records printed)`) or the receiver
/// is dropped (`None`).
async fn pump(
    cfg: &JournalConfig,
    child: &mut Child,
    cursor: &mut Option<String>,
    tx: &mpsc::Sender<Line>,
) -> Option<usize> {
    let mut stdout = child.stdout.take()?;
    let mut splitter = LineSplitter::new(MAX_RECORD, 0);
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    let mut printed = 0;
    loop {
        let n = tokio::select! {
            n = stdout.read(&mut buf) => n.unwrap_or(0),
            () = tx.closed() => return None,
        };
        if n == 0 {
            return Some(printed);
        }
        splitter.push(&buf[..n], |json, _| {
            if json.len() >= MAX_RECORD {
                tracing::warn!(source = %cfg.name, "journal record over 1 MiB skipped");
                return;
            }
            match parse_record(json, &cfg.name, cfg.max_line) {
                Ok(line) => lines.push(line),
                Err(e) => tracing::warn!(source = %cfg.name, "unreadable journal record: {e}"),
            }
        });
        for line in lines.drain(..) {
            printed += 1;
            if let Position::Journal { cursor: c } = &line.position {
                *cursor = Some(c.clone());
            }
            if tx.send(line).await.is_err() {
                return None;
            }
        }
    }
}
