//! The journal source: parsing of real `journalctl -o json` output, and a real journalctl
//! following journal files written by systemd-journal-remote, resumed from a saved cursor.

use moat_logs::source::journal::parse_record;
use moat_logs::source::{spawn_journal, Checkpoints, JournalConfig, Line, Position, SourceError};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Printed by journalctl 252 for entries fed to systemd-journal-remote (see `export` below),
/// with the same `--output-fields` the source passes.
const SSHD: &str = r#"{"_BOOT_ID":"0123456789abcdef0123456789abcdef","__MONOTONIC_TIMESTAMP":"5000001","_HOSTNAME":"web1","_SOURCE_REALTIME_TIMESTAMP":"1699999999123456","_PID":"811","MESSAGE":"Failed password for invalid user admin from 192.0.2.7 port 4242 ssh2","SYSLOG_IDENTIFIER":"sshd","__CURSOR":"s=4955e3df999340abb1ccb78724b8c2c9;i=1;b=0123456789abcdef0123456789abcdef;m=4c4b41;t=60a24181e4001;x=c7fdfbae268cfce3","SYSLOG_PID":"810","__REALTIME_TIMESTAMP":"1700000000000001"}"#;
const BINARY: &str = r#"{"_PID":"99","__CURSOR":"s=4955e3df999340abb1ccb78724b8c2c9;i=2;b=0123456789abcdef0123456789abcdef;m=4c4b42;t=60a24181e4002;x=cd587ac4b9a93c28","_HOSTNAME":"web1","__REALTIME_TIMESTAMP":"1700000000000002","__MONOTONIC_TIMESTAMP":"5000002","_BOOT_ID":"0123456789abcdef0123456789abcdef","_COMM":"postfix/smtpd","MESSAGE":[119,97,114,110,105,110,103,58,32,98,97,100,32,255,32,98,121,116,101]}"#;
const KERNEL: &str = r#"{"_BOOT_ID":"0123456789abcdef0123456789abcdef","_SOURCE_MONOTONIC_TIMESTAMP":"12345678","__CURSOR":"s=4955e3df999340abb1ccb78724b8c2c9;i=3;b=0123456789abcdef0123456789abcdef;m=4c4b43;t=60a24181e4003;x=9346694838df7376","SYSLOG_IDENTIFIER":"kernel","_HOSTNAME":"web1","__MONOTONIC_TIMESTAMP":"5000003","__REALTIME_TIMESTAMP":"1700000000000003","MESSAGE":"IN=eth0 SRC=198.51.100.9"}"#;
const MULTI: &str = r#"{"MESSAGE":["first","second"],"__MONOTONIC_TIMESTAMP":"5000004","__CURSOR":"s=4955e3df999340abb1ccb78724b8c2c9;i=4;b=0123456789abcdef0123456789abcdef;m=4c4b44;t=60a24181e4004;x=f5ed418ac1c2bac0","__REALTIME_TIMESTAMP":"1700000000000004","_BOOT_ID":"0123456789abcdef0123456789abcdef"}"#;

fn parse(json: &str) -> Line {
    parse_record(json.as_bytes(), &Arc::from("journal:t"), 64 * 1024).unwrap()
}

#[test]
fn records_become_fail2ban_style_lines() {
    let l = parse(SSHD);
    assert_eq!(
        l.text,
        "web1 sshd[810]: Failed password for invalid user admin from 192.0.2.7 port 4242 ssh2"
    );
    // The sender's own time wins over the journal's receive time.
    assert_eq!(l.time.unwrap().as_microsecond(), 1_699_999_999_123_456);
    assert!(matches!(&l.position, Position::Journal { cursor } if cursor.contains(";i=1;")));

    let l = parse(BINARY);
    assert_eq!(l.text, "web1 postfix/smtpd[99]: warning: bad \u{fffd} byte");
    assert_eq!(l.time.unwrap().as_microsecond(), 1_700_000_000_000_002);

    assert_eq!(
        parse(KERNEL).text,
        "web1 kernel: [   12.345678] IN=eth0 SRC=198.51.100.9"
    );
    assert_eq!(parse(MULTI).text, "first second");
    assert!(parse_record(b"{\"MESSAGE\":", &Arc::from("j"), 100).is_err());
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let json = format!(r#"{{"MESSAGE":"{}","__CURSOR":"c"}}"#, "é".repeat(100));
    let l = parse_record(json.as_bytes(), &Arc::from("j"), 51).unwrap();
    assert_eq!(l.text, "é".repeat(25));
}

#[tokio::test]
async fn a_missing_journalctl_is_a_clear_error() {
    let mut cfg = JournalConfig::new("journal:t");
    cfg.program = "/nonexistent/journalctl".into();
    let (tx, _rx) = mpsc::channel(1);
    let err = spawn_journal(cfg, None, tx).unwrap_err();
    assert!(matches!(err, SourceError::JournalctlMissing { .. }));
    assert!(err.to_string().contains("journalctl"), "{err}");
}

const REMOTE: &str = "/usr/lib/systemd/systemd-journal-remote";

/// Entries `range` in journal export format, appended to `dir/test.journal`; every fourth
/// entry is from cron, which the match must leave out.
fn write_entries(dir: &Path, range: std::ops::Range<u32>) {
    let mut export = String::new();
    for i in range {
        let ident = if i % 4 == 3 { "cron" } else { "sshd" };
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n\
             _BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=web1\n\
             SYSLOG_IDENTIFIER={ident}\n_PID=811\nMESSAGE=attempt {i:06}\n\n",
            1_700_000_000_000_000u64 + u64::from(i) * 1000,
            1000 + i,
        ));
    }
    let mut child = Command::new(REMOTE)
        .arg(format!("--output={}", dir.join("test.journal").display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn sshd_numbers(range: std::ops::Range<u32>) -> Vec<u32> {
    range.filter(|i| i % 4 != 3).collect()
}

async fn receive(rx: &mut mpsc::Receiver<Line>, count: usize) -> Vec<Line> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(line)) => got.push(line),
            other => panic!("got {} of {count} lines, then {other:?}", got.len()),
        }
    }
    got
}

fn numbers(lines: &[Line]) -> Vec<u32> {
    lines
        .iter()
        .map(|l| {
            let n = l.text.strip_prefix("web1 sshd[811]: attempt ");
            n.and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{:?}", l.text))
        })
        .collect()
}

#[tokio::test]
async fn follows_the_journal_and_resumes_after_the_saved_cursor() {
    let have_journalctl = Command::new("journalctl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // scripts/install-test-deps.sh installs both, so CI always runs this; elsewhere it says
    // why it did not.
    if !have_journalctl || !Path::new(REMOTE).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs journalctl and {REMOTE} (scripts/install-test-deps.sh)"
        );
        eprintln!("skipped: needs journalctl and {REMOTE} (Debian: systemd-journal-remote)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    write_entries(dir.path(), 0..4);
    let mut cfg = JournalConfig::new("journal:sshd");
    cfg.extra_args = vec![format!("--directory={}", dir.path().display())];
    cfg.matches = vec!["SYSLOG_IDENTIFIER=sshd".into()];
    cfg.since = Some(jiff::Timestamp::from_second(1).unwrap());

    let (tx, mut rx) = mpsc::channel(64);
    let task = spawn_journal(cfg.clone(), None, tx).unwrap();
    let first = receive(&mut rx, 3).await;
    assert_eq!(numbers(&first), sshd_numbers(0..4));
    assert_eq!(first[0].time.unwrap().as_second(), 1_700_000_000);
    // Appended while journalctl follows.
    write_entries(dir.path(), 4..16);
    let more = receive(&mut rx, 9).await;
    assert_eq!(numbers(&more), sshd_numbers(4..16));
    let mut cp = Checkpoints::load(&state).unwrap();
    cp.ack(&more[8]);
    cp.save().unwrap();
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the source stops when its receiver is gone")
        .unwrap();

    // More than journalctl's default ten while stopped: all of them must come back.
    write_entries(dir.path(), 16..40);
    let cp = Checkpoints::load(&state).unwrap();
    let cursor = cp.journal_cursor("journal:sshd").map(str::to_owned);
    assert!(cursor.is_some());
    let (tx, mut rx) = mpsc::channel(64);
    let _task = spawn_journal(cfg, cursor, tx).unwrap();
    let resumed = receive(&mut rx, 18).await;
    assert_eq!(numbers(&resumed), sshd_numbers(16..40));
    let extra = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(extra.is_err(), "nothing read twice: {extra:?}");
}
