//! Truncation, files that appear late or vanish, partial and oversized lines, and stdin.

use moat_logs::source::{spawn_reader, FileTail, Line, Poll, Position, StartAt, TailConfig};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

fn cfg(start: StartAt) -> TailConfig {
    TailConfig {
        start,
        ..TailConfig::default()
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn poll(tail: &mut FileTail) -> Vec<String> {
    let mut out: Vec<Line> = Vec::new();
    for _ in 0..3 {
        while tail.poll(&mut out, 1 << 20).unwrap() == Poll::More {}
    }
    out.into_iter().map(|l| l.text).collect()
}

#[test]
fn truncation_starts_over_from_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, b"old 1\nold 2\nold 3\n");
    let mut tail = FileTail::new(&log, cfg(StartAt::Beginning), None).unwrap();
    assert_eq!(poll(&mut tail), ["old 1", "old 2", "old 3"]);
    // `> log`: shorter than what was read.
    fs::write(&log, b"new 1\n").unwrap();
    assert_eq!(poll(&mut tail), ["new 1"]);
    // Truncated and written past the old offset between two polls: only the changed head
    // tells.
    let long: String = (0..20).map(|i| format!("again {i:02}\n")).collect();
    fs::write(&log, long.as_bytes()).unwrap();
    let got = poll(&mut tail);
    assert_eq!(got.len(), 20);
    assert_eq!(got[0], "again 00");
}

#[test]
fn a_file_that_appears_later_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("later.log");
    let mut tail = FileTail::new(&log, cfg(StartAt::End), None).unwrap();
    assert!(tail.position().is_none());
    assert!(poll(&mut tail).is_empty());
    append(&log, b"first\nsecond\n");
    assert_eq!(poll(&mut tail), ["first", "second"]);
}

#[test]
fn deleted_then_recreated_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, b"a\n");
    let mut tail = FileTail::new(&log, cfg(StartAt::Beginning), None).unwrap();
    assert_eq!(poll(&mut tail), ["a"]);
    fs::remove_file(&log).unwrap();
    assert!(poll(&mut tail).is_empty());
    append(&log, b"b\n");
    assert_eq!(poll(&mut tail), ["b"]);
}

#[test]
fn a_partial_last_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, b"whole\npart");
    let mut tail = FileTail::new(&log, cfg(StartAt::Beginning), None).unwrap();
    assert_eq!(poll(&mut tail), ["whole"]);
    let Some(Position::File(mark)) = tail.position() else {
        panic!("a file position")
    };
    assert_eq!(
        mark.offset, 6,
        "the position stays before the unfinished line"
    );
    append(&log, b"ial\r\n");
    assert_eq!(poll(&mut tail), ["partial"]);
    assert!(poll(&mut tail).is_empty());
}

#[test]
fn starting_at_the_end_skips_the_unfinished_line_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, b"old\nhalf of a li");
    let mut tail = FileTail::new(&log, cfg(StartAt::End), None).unwrap();
    append(&log, b"ne\nnext\n");
    assert_eq!(poll(&mut tail), ["next"]);
}

#[test]
fn a_huge_line_without_newline_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let config = TailConfig {
        start: StartAt::Beginning,
        max_line: 1024,
        chunk_size: 64 * 1024,
    };
    let mut tail = FileTail::new(&log, config, None).unwrap();
    let garbage = vec![b'x'; 8 * 1024 * 1024];
    append(&log, &garbage);
    // Read in budgeted turns, as the watch thread does: nothing is emitted, nothing piles up.
    let mut out = Vec::new();
    while tail.poll(&mut out, 256 * 1024).unwrap() == Poll::More {}
    assert!(out.is_empty());
    append(&log, b"xxx\nafter\n");
    assert_eq!(poll(&mut tail).len(), 2);
    append(&log, &garbage[..5000]);
    append(&log, b"\nlast\n");
    let got = poll(&mut tail);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].len(), 1024, "cut at the cap");
    assert_eq!(got[1], "last");
}

#[test]
fn invalid_utf8_is_replaced_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, b"bad \xff\xfe byte\n");
    let mut tail = FileTail::new(&log, cfg(StartAt::Beginning), None).unwrap();
    assert_eq!(poll(&mut tail), ["bad \u{fffd}\u{fffd} byte"]);
}

#[test]
fn lines_from_a_pipe_like_stdin() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut child = tokio::process::Command::new("printf")
            .arg("one\\ntwo\\r\\nno newline at the end")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let task = spawn_reader(stdout, Arc::from("stdin"), 1024, tx);
        let mut got = Vec::new();
        while let Some(line) = rx.recv().await {
            assert_eq!(line.position, Position::None);
            got.push(line.text);
        }
        task.await.unwrap().unwrap();
        child.wait().await.unwrap();
        assert_eq!(got, ["one", "two", "no newline at the end"]);
    });
}
