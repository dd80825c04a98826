//! Rotation while a writer appends: every numbered line is read exactly once, in order.

use moat_logs::source::{FileTail, FileWatch, Line, Poll, StartAt, TailConfig};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const LINES: u32 = 6000;
const ROTATE_EVERY: u32 = 1000;

fn cfg() -> TailConfig {
    TailConfig {
        start: StartAt::Beginning,
        ..TailConfig::default()
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Shifts `log.1` → `log.2` ... as logrotate does, so no generation is overwritten in place.
fn shift_generations(log: &Path) {
    for n in (1..8).rev() {
        let from = gen(log, n);
        if from.exists() {
            fs::rename(&from, gen(log, n + 1)).unwrap();
        }
    }
}

fn gen(log: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", log.display()))
}

#[derive(Clone, Copy)]
enum Rotation {
    /// Rename and create, with a daemon that writes three more lines to its old handle before
    /// it reopens (what happens between logrotate's rename and the daemon's handling of its
    /// signal).
    Rename,
    /// copytruncate. The writer is paused between the copy and the truncate: a line written
    /// in that window would be in neither file, for any reader.
    CopyTruncate,
}

/// Writes `line 000000` .. at about 6,000 lines a second, some lines in two writes so the
/// reader sees halves, and rotates every `ROTATE_EVERY` lines.
fn writer(log: PathBuf, rotation: Rotation) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut f = append(&log);
        let mut late = 0;
        for i in 0..LINES {
            if i > 0 && i % ROTATE_EVERY == 0 {
                shift_generations(&log);
                match rotation {
                    Rotation::Rename => {
                        fs::rename(&log, gen(&log, 1)).unwrap();
                        late = 3;
                    }
                    Rotation::CopyTruncate => {
                        fs::copy(&log, gen(&log, 1)).unwrap();
                        f.set_len(0).unwrap();
                    }
                }
            }
            let line = format!("line {i:06}\n");
            if i % 7 == 3 {
                f.write_all(&line.as_bytes()[..6]).unwrap();
                thread::sleep(Duration::from_micros(300));
                f.write_all(&line.as_bytes()[6..]).unwrap();
            } else {
                f.write_all(line.as_bytes()).unwrap();
            }
            if late > 0 {
                late -= 1;
                if late == 0 {
                    f = append(&log);
                }
            } else if i % 60 == 0 {
                thread::sleep(Duration::from_millis(10));
            }
        }
    })
}

fn numbers(lines: &[Line]) -> Vec<u32> {
    lines
        .iter()
        .map(|l| {
            let n = l.text.strip_prefix("line ").unwrap_or(&l.text);
            n.parse()
                .unwrap_or_else(|_| panic!("garbled line {:?}", l.text))
        })
        .collect()
}

fn assert_exactly_once(got: &[u32]) {
    let want: Vec<u32> = (0..LINES).collect();
    if got != want {
        let first_bad = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "read {} lines, want {LINES}; first difference at index {first_bad:?}: {:?}",
            got.len(),
            first_bad.map(|i| &got[i.saturating_sub(2)..(i + 3).min(got.len())])
        );
    }
}

#[test]
fn rename_and_create_rotation_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    File::create(&log).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tail = FileTail::new(&log, cfg(), None).unwrap();
    let (tx, mut rx) = mpsc::channel(256);
    // 20 ms: short for a fast test, long against a writer descheduled between its rename and
    // its late writes on a loaded machine.
    let watch = FileWatch::spawn(vec![tail], tx, Duration::from_millis(20)).unwrap();
    let w = writer(log.clone(), Rotation::Rename);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    rt.block_on(async {
        while lines.len() < LINES as usize && Instant::now() < deadline {
            let next = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
            if let Ok(Some(line)) = next {
                lines.push(line);
            }
        }
    });
    w.join().unwrap();
    drop(rx);
    watch.stop();
    assert!(lines.iter().all(|l| &*l.source == log.to_str().unwrap()));
    assert_exactly_once(&numbers(&lines));
}

#[test]
fn rename_rotation_with_late_writes_to_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut old = append(&log);
    old.write_all(b"a 1\na 2\n").unwrap();
    let mut tail = FileTail::new(&log, cfg(), None).unwrap();
    let mut out = Vec::new();
    tail.poll(&mut out, 1 << 20).unwrap();
    fs::rename(&log, gen(&log, 1)).unwrap();
    fs::write(&log, b"b 1\n").unwrap();
    // The tail notices the new file, but the daemon has not reopened yet.
    tail.poll(&mut out, 1 << 20).unwrap();
    old.write_all(b"a 3\na 4 without newline").unwrap();
    for _ in 0..4 {
        tail.poll(&mut out, 1 << 20).unwrap();
    }
    let texts: Vec<&str> = out.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["a 1", "a 2", "a 3", "a 4 without newline", "b 1"]);
}

#[test]
fn copytruncate_rotation_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    File::create(&log).unwrap();
    let mut tail = FileTail::new(&log, cfg(), None).unwrap();
    let w = writer(log.clone(), Rotation::CopyTruncate);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.len() < LINES as usize && Instant::now() < deadline {
        // A small budget so that reads often stop mid-file, as under load.
        if tail.poll(&mut lines, 4096).unwrap() == Poll::Idle {
            thread::sleep(Duration::from_millis(3));
        }
    }
    w.join().unwrap();
    assert_exactly_once(&numbers(&lines));
}
