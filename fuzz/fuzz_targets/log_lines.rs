//! The log sources' parsers (`moat_logs::source`) on arbitrary bytes: the line splitter that
//! files, the journal's JSON stream and stdin share, the checkpoint file read at start, and a
//! journal record as `journalctl -o json` prints it. Beyond "never panics":
//!
//! - `LineSplitter`, fed the stream in chunks split where the input says (empty ones too), emits
//!   exactly the lines, with the same end offsets, as when fed the whole stream at once, and
//!   both are a model's: split on `\n`, cut at `max_line` bytes, then a trailing `\r` removed,
//!   the first line dropped after `discard_first_line`; `offset` and `has_partial` say where
//!   the stream is, `finish` emits the unterminated rest once, and after `reset` the splitter
//!   reads a stream again as a new one;
//! - `Checkpoints::load` of a file holding the bytes either fails with a format or version
//!   error (always for what is not JSON) or holds every position the JSON names; saved and
//!   loaded again they are the same positions, and saving that gives the same bytes;
//! - `journal::parse_record` either fails or gives the line `HOST IDENT[PID]: MESSAGE` of the
//!   record's source, ending with the MESSAGE text (a string, bytes or several values, as a
//!   model of journalctl's JSON reads it) cut at `max_line` bytes on a character boundary,
//!   with the record's cursor as its position; a MESSAGE the model cannot read is an error.
//!
//! Input: a control byte whose two high bits choose: 0-1 the splitter (bits 0-2: `max_line`,
//! from 1 byte to the default 64 KiB; bit 3: the first line is discarded; bit 4: the stream
//! starts at offset 1000; bit 5: `reset` and the stream read again), then a byte that says
//! where chunks end, then the stream; 2 a checkpoint file's bytes (at most 64 KiB), loaded in a
//! scratch directory (under /dev/shm where there is one); 3 journal records, one per line
//! (bits 0-5: `max_line`, 63 the default). The same file runs on stable as a plain test
//! (`crates/moat-logs/tests/log_lines_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_logs::source::journal::parse_record;
use moat_logs::source::{Checkpoints, LineSplitter, Position, SourceError, DEFAULT_MAX_LINE};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run_in(workdir(), data);
});

#[path = "../scratch.rs"]
mod scratch;

#[cfg_attr(test, allow(dead_code))]
fn workdir() -> &'static Path {
    scratch::workdir("moat-fuzz-log-lines-")
}

/// `max_line` for the splitter, by bits 0-2.
const MAX_LINES: [usize; 8] = [1, 2, 3, 5, 8, 16, 100, DEFAULT_MAX_LINE];

/// What a run found, for the stable test to check that the seeds go where they should.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Lines the splitter emitted (on `finish` too), or journal records read.
    pub lines: usize,
    /// Whether `finish` had an unterminated line to emit.
    pub finished: bool,
    /// Journal records that were errors.
    pub bad_records: usize,
    /// Positions in a checkpoint file that loaded, or its error.
    pub positions: Option<usize>,
    pub checkpoint_error: Option<String>,
}

type Lines = Vec<(Vec<u8>, u64)>;

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// The lines of `stream` starting at `start`, what `finish` then emits, and whether a line is
/// unfinished (or being discarded).
fn model(stream: &[u8], max: usize, discard: bool, start: u64) -> (Lines, Lines, bool) {
    let mut lines = Vec::new();
    let mut skip = discard;
    let mut pos = 0;
    while let Some(nl) = stream[pos..].iter().position(|&b| b == b'\n') {
        let piece = &stream[pos..pos + nl];
        if !skip {
            let end = start + (pos + nl + 1) as u64;
            lines.push((trim_cr(&piece[..piece.len().min(max)]).to_vec(), end));
        }
        skip = false;
        pos += nl + 1;
    }
    let rest = &stream[pos..];
    let mut fin = Vec::new();
    if !skip && !rest.is_empty() {
        let end = start + stream.len() as u64;
        fin.push((trim_cr(&rest[..rest.len().min(max)]).to_vec(), end));
    }
    (lines, fin, skip || !rest.is_empty())
}

/// Where the chunks end: sizes from 0 (an empty read) up to `1 + seed % 32`, from a
/// xorshift seeded by `seed`; seed 0 is the whole stream at once.
fn chunks(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![stream];
    }
    let most = 1 + u32::from(seed % 32);
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = if x % 7 == 0 {
            0
        } else {
            (1 + x % most) as usize
        };
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

fn split(s: &mut LineSplitter, pieces: &[&[u8]], max: usize) -> Lines {
    let mut out = Vec::new();
    for p in pieces {
        s.push(p, |l, end| {
            assert!(l.len() <= max, "a line of {} bytes, cap {max}", l.len());
            out.push((l.to_vec(), end));
        });
    }
    out
}

fn run_splitter(ctl: u8, data: &[u8], seen: &mut Seen) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let max = MAX_LINES[usize::from(ctl & 7)];
    let discard = ctl & 8 != 0;
    let start = if ctl & 16 != 0 { 1000 } else { 0 };
    let (want, want_fin, partial) = model(stream, max, discard, start);
    let new = || {
        let mut s = LineSplitter::new(max, start);
        if discard {
            s.discard_first_line();
        }
        s
    };
    let mut whole = new();
    assert_eq!(split(&mut whole, &[stream], max), want, "the whole stream");
    let mut s = new();
    assert_eq!(split(&mut s, &chunks(stream, seed), max), want, "in chunks");
    for sp in [&whole, &s] {
        assert_eq!(sp.offset(), start + stream.len() as u64);
        assert_eq!(sp.has_partial(), partial);
    }
    let mut fin = Vec::new();
    s.finish(|l, end| fin.push((l.to_vec(), end)));
    assert_eq!(fin, want_fin, "finish");
    assert!(!s.has_partial());
    s.finish(|_, _| panic!("finished twice"));
    seen.lines = want.len() + fin.len();
    seen.finished = !fin.is_empty();
    for (l, _) in &want {
        assert_eq!(
            moat_logs::source::to_text(l),
            String::from_utf8_lossy(l),
            "to_text"
        );
    }
    if ctl & 32 != 0 {
        // Half-way through a line, then reset: a new stream.
        let mut r = new();
        split(&mut r, &[&stream[..stream.len() / 2]], max);
        r.reset(7);
        let (again, _, partial) = model(stream, max, false, 7);
        assert_eq!(
            split(&mut r, &chunks(stream, seed), max),
            again,
            "after reset"
        );
        assert_eq!(r.has_partial(), partial);
    }
}

/// Which kind of position, and its content, as the accessors give it.
fn check_accessors(cp: &Checkpoints, key: &str) {
    let p = cp.get(key);
    match p {
        Some(Position::File(m)) => assert_eq!(cp.file(key), Some(*m)),
        _ => assert_eq!(cp.file(key), None),
    }
    match p {
        Some(Position::Journal { cursor }) => assert_eq!(cp.journal_cursor(key), Some(&**cursor)),
        _ => assert_eq!(cp.journal_cursor(key), None),
    }
}

/// Saves `cp` whether it changed or not (a key set and removed again marks it changed), and
/// returns the file's bytes.
fn force_save(cp: &mut Checkpoints) -> Vec<u8> {
    let mut key = String::from("\0fuzz");
    while cp.get(&key).is_some() {
        key.push('_');
    }
    cp.set(&key, &Position::Journal { cursor: "x".into() });
    cp.remove(&key);
    assert!(cp.is_dirty());
    cp.save().unwrap();
    assert!(!cp.is_dirty());
    std::fs::read(cp.path()).unwrap()
}

fn run_checkpoint(dir: &Path, data: &[u8], seen: &mut Seen) {
    let data = &data[..data.len().min(64 * 1024)];
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("positions.json");
    std::fs::write(&path, data).unwrap();
    let json: Option<Value> = serde_json::from_slice(data).ok();
    let mut cp = match Checkpoints::load(&path) {
        Ok(cp) => cp,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    SourceError::CheckpointFormat { .. } | SourceError::CheckpointVersion { .. }
                ),
                "{e}"
            );
            if json.is_none() {
                assert!(matches!(e, SourceError::CheckpointFormat { .. }), "{e}");
            }
            assert!(e.to_string().contains("positions.json"), "{e}");
            seen.checkpoint_error = Some(e.to_string());
            return;
        }
    };
    assert!(!cp.is_dirty());
    let json = json.expect("loaded what is not JSON");
    assert_eq!(json["version"], 1);
    let keys: Vec<&String> = json["positions"]
        .as_object()
        .expect("positions")
        .keys()
        .collect();
    for k in &keys {
        assert!(cp.get(k).is_some(), "{k:?} not loaded");
        check_accessors(&cp, k);
    }
    seen.positions = Some(keys.len());
    let saved = force_save(&mut cp);
    let mut back = Checkpoints::load(&path).expect("what was saved loads");
    for k in &keys {
        assert_eq!(back.get(k), cp.get(k), "{k:?}");
    }
    let saved_json: Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(
        saved_json["positions"].as_object().unwrap().len(),
        keys.len()
    );
    assert_eq!(force_save(&mut back), saved, "saved again, the same bytes");
}

/// A journal field's text as journalctl's JSON holds it: a string, an array of bytes, or an
/// array of such values (a field given more than once); `None` for what is neither.
fn field_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => {
            let bytes: Option<Vec<u8>> = a
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            match bytes {
                Some(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                None => a
                    .iter()
                    .map(field_text)
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join(" ")),
            }
        }
        _ => None,
    }
}

/// The MESSAGE of a record (an object, or serde's array form of the record's fields in
/// order): `Some(None)` when it has none.
fn message_of(v: &Value) -> Option<Option<&Value>> {
    match v {
        Value::Object(o) => Some(o.get("MESSAGE").filter(|m| !m.is_null())),
        Value::Array(a) if a.len() == 11 => Some(Some(&a[1]).filter(|m| !m.is_null())),
        _ => None,
    }
}

fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn run_journal(ctl: u8, data: &[u8], seen: &mut Seen) {
    let max_line = match ctl & 63 {
        63 => DEFAULT_MAX_LINE,
        n => usize::from(n),
    };
    let source: Arc<str> = Arc::from("journal:fuzz");
    let mut records = Vec::new();
    let mut s = LineSplitter::new(1 << 20, 0);
    s.push(data, |r, _| records.push(r.to_vec()));
    s.finish(|r, _| records.push(r.to_vec()));
    for json in &records {
        // serde skips the fields a record does not name without checking their strings'
        // UTF-8; a `Value` does not: read it with those replaced (the MESSAGE must be UTF-8).
        let value: Option<Value> = serde_json::from_slice(json)
            .or_else(|_| serde_json::from_str(&String::from_utf8_lossy(json)))
            .ok();
        let message = value.as_ref().and_then(message_of);
        let text = message.map(|m| m.map_or(Some(String::new()), field_text));
        let line = match parse_record(json, &source, max_line) {
            Ok(line) => line,
            Err(_) => {
                seen.bad_records += 1;
                continue;
            }
        };
        seen.lines += 1;
        // serde does not check the strings of fields it skips, and a `Value` refuses an
        // escaped lone surrogate (`\ude22`) that UTF-8 replacement cannot mend: such a record
        // is read (its fields are fine) but the model cannot follow it (found by cargo-fuzz).
        let Some(value) = value else {
            continue;
        };
        let text = text
            .expect("a record neither object nor fields")
            .expect("a MESSAGE the model cannot read");
        let want = cut(&text, max_line);
        assert!(
            line.text.ends_with(want),
            "{:?} does not end with the MESSAGE {want:?}",
            line.text
        );
        assert!(Arc::ptr_eq(&line.source, &source));
        let cursor = match &value {
            Value::Object(o) => o.get("__CURSOR"),
            Value::Array(a) => a.first(),
            _ => None,
        };
        match cursor.and_then(Value::as_str) {
            Some(c) => assert_eq!(line.position, Position::Journal { cursor: c.into() }),
            None => assert_eq!(line.position, Position::None),
        }
    }
}

pub fn run_in(dir: &Path, data: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let Some((&ctl, rest)) = data.split_first() else {
        return seen;
    };
    match ctl >> 6 {
        0 | 1 => run_splitter(ctl, rest, &mut seen),
        2 => run_checkpoint(dir, rest, &mut seen),
        _ => run_journal(ctl, rest, &mut seen),
    }
    seen
}

/// Streams for the splitter (long lines, CRs at the cut, a discarded head, a reset),
/// checkpoint files (each kind of position, wrong versions, garbage) and journal records (as
/// journalctl prints them: text, bytes, repeated fields, the kernel's, cut messages).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let sshd = r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1123977599000000","_HOSTNAME":"host","SYSLOG_IDENTIFIER":"sshd","_PID":"1234","MESSAGE":"Failed password for root from 192.0.2.10 port 22 ssh2"}"#;
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("split-plain", 6, b"\x03Aug 14 line one\nline two\r\n\nlast without newline".to_vec()),
        ("split-cut", 1, b"\x05abcdef\nxy\r\n123456\r\nz".to_vec()),
        ("split-cr-at-cut", 2, b"\x02ab\r\ncd\rX\nabc\r\n\r\r\n".to_vec()),
        ("split-discard", 8 | 6, b"\x01tail of old\nnew\nnewer".to_vec()),
        ("split-discard-no-newline", 8 | 6, b"\x04still the old line".to_vec()),
        ("split-reset-offset", 32 | 16 | 4, b"\x09a\nbb\nccc\ndddd".to_vec()),
        ("split-whole", 7, b"\x00one\ntwo\n".to_vec()),
        ("split-invalid-utf8", 5, b"\x11a\xffb\nc\xe2\x82\xac\xe2\x82\n\xe2".to_vec()),
        ("split-long", 7, [&b"\x1f"[..], &[b'x'; 300], b"\n\n", &[b'y'; 70]].concat()),
        ("checkpoint", 128, br#"{"version":1,"positions":{"/var/log/auth.log":{"file":{"dev":1,"ino":2,"fp_len":3,"fp_hash":18446744073709551615,"offset":5}},"journal:sshd":{"journal":{"cursor":"s=abc;i=1"}},"stdin":"none"}}"#.to_vec()),
        ("checkpoint-empty-positions", 128, br#"{"version":1,"positions":{}}"#.to_vec()),
        ("checkpoint-version-2", 128, br#"{"version":2,"positions":{}}"#.to_vec()),
        ("checkpoint-garbage", 128, b"{not json".to_vec()),
        ("checkpoint-empty-file", 128, Vec::new()),
        ("checkpoint-no-positions", 128, br#"{"version":1}"#.to_vec()),
        ("checkpoint-duplicate-key", 128, br#"{"version":1,"positions":{"a":"none","a":{"journal":{"cursor":"c"}}},"extra":[1]}"#.to_vec()),
        ("checkpoint-unicode-keys", 128, "{\"version\":1,\"positions\":{\"/var/log/\\u00e9\\ud83d\\ude00\":\"none\",\"\u{20ac}\":{\"journal\":{\"cursor\":\"\"}}}}".as_bytes().to_vec()),
        ("checkpoint-bad-mark", 128, br#"{"version":1,"positions":{"x":{"file":{"dev":-1,"ino":2,"fp_len":3,"fp_hash":4,"offset":5}}}}"#.to_vec()),
        ("journal-sshd", 192 | 63, sshd.as_bytes().to_vec()),
        ("journal-bytes-and-many", 192 | 63, br#"{"__CURSOR":"c2","_COMM":"sshd","SYSLOG_PID":" 7 ","MESSAGE":[70,97,105,108,0,255]}
{"__CURSOR":"c3","_HOSTNAME":["a","b"],"MESSAGE":["x",[98,99],"d"]}
{"MESSAGE":[]}"#.to_vec()),
        ("journal-kernel", 192 | 63, br#"{"SYSLOG_IDENTIFIER":"kernel","_SOURCE_MONOTONIC_TIMESTAMP":"123456789","MESSAGE":"x"}"#.to_vec()),
        ("journal-cut-multibyte", 192 | 5, "{\"MESSAGE\":\"h\u{e9}llo w\u{f6}rld\"}\n{\"MESSAGE\":\"\u{20ac}\u{20ac}\"}".as_bytes().to_vec()),
        ("journal-odd", 192 | 63, br#"{"MESSAGE":null,"__REALTIME_TIMESTAMP":"abc"}
{"MESSAGE":5}
{"MESSAGE":"a","MESSAGE":"b"}
["c",  "m", null, null, null, null, null, "99999999999999999999", null, null, null]
{"MESSAGE":"ok","__REALTIME_TIMESTAMP":"-1"}

not json
{"MESSAGE":"torn"#.to_vec()),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, ctl, data))| (format!("{i:02}-{name}"), [vec![ctl], data].concat()))
        .collect()
}
