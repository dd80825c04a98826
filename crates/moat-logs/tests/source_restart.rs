//! Stopping and starting again from a saved checkpoint, with the log rotated or not meanwhile.

use moat_logs::source::{Checkpoints, FileTail, Line, Poll, Position, StartAt, TailConfig};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

fn cfg(start: StartAt) -> TailConfig {
    TailConfig {
        start,
        ..TailConfig::default()
    }
}

fn write_lines(path: &Path, range: std::ops::Range<u32>) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in range {
        writeln!(f, "line {i:06}").unwrap();
    }
}

fn read_all(tail: &mut FileTail) -> Vec<Line> {
    let mut out = Vec::new();
    // A few polls: a renamed file is left only after one poll without growth.
    for _ in 0..4 {
        while tail.poll(&mut out, 1000).unwrap() == Poll::More {}
    }
    out
}

fn numbers(lines: &[Line]) -> Vec<u32> {
    lines
        .iter()
        .map(|l| l.text.trim_start_matches("line ").parse().unwrap())
        .collect()
}

/// Reads lines 0..100, acknowledges 0..60 and saves, then stops as a crash would.
fn first_run(log: &Path, state: &Path) -> String {
    write_lines(log, 0..100);
    let mut cp = Checkpoints::load(state).unwrap();
    let mut tail = FileTail::new(log, cfg(StartAt::Beginning), None).unwrap();
    let lines = read_all(&mut tail);
    assert_eq!(numbers(&lines), (0..100).collect::<Vec<_>>());
    cp.ack(&lines[59]);
    cp.save().unwrap();
    // Acknowledged but never saved: a crash forgets it.
    cp.ack(&lines[99]);
    tail.name().to_string()
}

fn restart(log: &Path, state: &Path) -> Vec<u32> {
    let cp = Checkpoints::load(state).unwrap();
    let name = log.to_str().unwrap();
    // StartAt::End would skip everything: the checkpoint must win over it.
    let mut tail = FileTail::new(log, cfg(StartAt::End), cp.file(name)).unwrap();
    numbers(&read_all(&mut tail))
}

#[test]
fn restart_resumes_after_the_last_saved_line() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("app.log"), dir.path().join("state.json"));
    first_run(&log, &state);
    write_lines(&log, 100..150);
    assert_eq!(restart(&log, &state), (60..150).collect::<Vec<_>>());
}

#[test]
fn rotation_while_stopped_finishes_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("app.log"), dir.path().join("state.json"));
    first_run(&log, &state);
    write_lines(&log, 100..120);
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    write_lines(&log, 120..150);
    assert_eq!(restart(&log, &state), (60..150).collect::<Vec<_>>());
}

#[test]
fn rotation_by_date_while_stopped_and_not_recreated_yet() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("app.log"), dir.path().join("state.json"));
    first_run(&log, &state);
    fs::rename(&log, dir.path().join("app.log-20240101")).unwrap();
    let cp = Checkpoints::load(&state).unwrap();
    let mut tail = FileTail::new(&log, cfg(StartAt::End), cp.file(log.to_str().unwrap())).unwrap();
    assert_eq!(numbers(&read_all(&mut tail)), (60..100).collect::<Vec<_>>());
    write_lines(&log, 100..110);
    assert_eq!(
        numbers(&read_all(&mut tail)),
        (100..110).collect::<Vec<_>>()
    );
}

#[test]
fn copytruncate_while_stopped_finishes_the_copy_first() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("app.log"), dir.path().join("state.json"));
    first_run(&log, &state);
    write_lines(&log, 100..120);
    fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    write_lines(&log, 120..150);
    assert_eq!(restart(&log, &state), (60..150).collect::<Vec<_>>());
}

#[test]
fn a_replaced_file_with_no_rotated_copy_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("app.log"), dir.path().join("state.json"));
    first_run(&log, &state);
    fs::remove_file(&log).unwrap();
    write_lines(&log, 500..510);
    assert_eq!(restart(&log, &state), (500..510).collect::<Vec<_>>());
}

#[test]
fn start_position_saved_before_any_line_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("app.log"), dir.path().join("state.json"));
    write_lines(&log, 0..10);
    let mut cp = Checkpoints::load(&state).unwrap();
    let tail = FileTail::new(&log, cfg(StartAt::End), None).unwrap();
    let start = tail.position().unwrap();
    assert!(matches!(start, Position::File(m) if m.offset == 12 * 10));
    cp.set(tail.name(), &start);
    cp.save().unwrap();
    drop(tail);
    write_lines(&log, 10..15);
    assert_eq!(restart(&log, &state), (10..15).collect::<Vec<_>>());
}

/// The consumer in the kill test: reads, records what it processed, saves after each batch.
/// Run as a child process of the test binary, and killed with SIGKILL at random points.
fn consumer(dir: &Path) -> ! {
    let (log, state) = (dir.join("app.log"), dir.join("state.json"));
    let mut cp = Checkpoints::load(&state).unwrap();
    let name = log.to_str().unwrap();
    let mut tail = FileTail::new(&log, cfg(StartAt::Beginning), cp.file(name)).unwrap();
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("processed"))
        .unwrap();
    out.write_all(b"START\n").unwrap();
    let mut lines = Vec::new();
    loop {
        if tail.poll(&mut lines, 2000).unwrap() == Poll::Idle && lines.is_empty() {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let mut batch = String::new();
        for l in &lines {
            batch.push_str(l.text.trim_start_matches("line "));
            batch.push('\n');
        }
        out.write_all(batch.as_bytes()).unwrap();
        if let Some(last) = lines.last() {
            cp.ack(last);
        }
        cp.save().unwrap();
        lines.clear();
    }
}

/// The number of the last line a checkpoint covers, read back from whichever generation of
/// the log now holds it: the inode it names, or a copy of it left by copytruncate (same head).
fn saved_number(dir: &Path) -> Option<u32> {
    let cp = Checkpoints::load(dir.join("state.json")).unwrap();
    let mark = cp.file(dir.join("app.log").to_str().unwrap())?;
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let same_inode = |p: &std::path::PathBuf| {
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap()) == mark.ino
    };
    files.sort_by_key(|p| !same_inode(p));
    for path in files {
        let bytes = fs::read(&path).unwrap();
        let head = bytes.get(..mark.fp_len as usize);
        if bytes.len() < mark.offset as usize || head.map(fnv1a) != Some(mark.fp_hash) {
            continue;
        }
        let text = String::from_utf8(bytes[..mark.offset as usize].to_vec()).unwrap();
        let last = text.lines().last().unwrap();
        return Some(last.trim_start_matches("line ").parse().unwrap());
    }
    panic!("the checkpointed file is gone");
}

/// The fingerprint hash of `moat_logs::source::FileMark`, FNV-1a 64.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn kill_dash_nine_mid_stream_and_restart() {
    if let Some(dir) = std::env::var_os("MOAT_LOGS_KILL_CHILD") {
        consumer(Path::new(&dir));
    }
    const LINES: u32 = 6000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_dash_nine_mid_stream_and_restart",
                "--nocapture",
            ])
            .env("MOAT_LOGS_KILL_CHILD", dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let mut expected_starts = vec![0];
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    // First line of the generation being written. Before rotating again, the consumer must
    // have saved a line of it: two rotations between a checkpoint and the live file would
    // leave a whole generation unread (a limitation documented on `FileTail`).
    let mut generation_start = 0;
    for i in 0..LINES {
        writeln!(f, "line {i:06}").unwrap();
        if i % 50 == 0 {
            thread::sleep(Duration::from_millis(3));
        }
        if i % 1500 == 700 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while saved_number(dir.path()).is_none_or(|n| n < generation_start) {
                assert!(Instant::now() < deadline, "the consumer is stuck");
                thread::sleep(Duration::from_millis(2));
            }
            // Rotate, alternating rename-and-create with copytruncate.
            let rotated = dir.path().join(format!("app.log.{i}"));
            if i % 3000 == 700 {
                fs::rename(&log, rotated).unwrap();
                f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
            } else {
                fs::copy(&log, rotated).unwrap();
                f.set_len(0).unwrap();
            }
            generation_start = i + 1;
        }
        if i % 1000 == 500 {
            child.kill().unwrap();
            child.wait().unwrap();
            expected_starts.push(saved_number(dir.path()).map_or(0, |n| n + 1));
            child = spawn();
        }
    }
    let processed = dir.path().join("processed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = format!("{:06}\n", LINES - 1);
    while !fs::read_to_string(&processed)
        .unwrap_or_default()
        .ends_with(&done)
    {
        assert!(Instant::now() < deadline, "the consumer did not catch up");
        thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let text = fs::read_to_string(&processed).unwrap();
    let runs: Vec<Vec<u32>> = text
        .split("START\n")
        .skip(1)
        .map(|run| run.lines().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(runs.len(), expected_starts.len());
    let mut next_new = 0;
    for (run, start) in runs.iter().zip(&expected_starts) {
        if let Some(first) = run.first() {
            assert_eq!(first, start, "a restart resumes right after the saved line");
            assert!(*first <= next_new, "no line skipped between runs");
        }
        for pair in run.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "lines within a run are consecutive");
        }
        if let Some(last) = run.last() {
            next_new = next_new.max(last + 1);
        }
    }
    assert_eq!(next_new, LINES, "every line was processed");
}
