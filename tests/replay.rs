//! Issue 17, `moat replay`: fail2ban's postfix filter, read in place from fail2ban's own
//! `filter.d`, over fail2ban's annotated postfix sample log, through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// fail2ban's samples (`MOAT_FAIL2BAN_SAMPLES`, else `shared/peers/fail2ban` beside an
/// ancestor of the checkout, else `/work/shared/peers/fail2ban`).
fn samples() -> PathBuf {
    if let Some(p) = std::env::var_os("MOAT_FAIL2BAN_SAMPLES") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/peers/fail2ban"))
        .chain([PathBuf::from("/work/shared/peers/fail2ban")])
        .find(|p| p.join("logs").is_dir())
        .expect("fail2ban's sample logs (set MOAT_FAIL2BAN_SAMPLES)")
}

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run moat")
}

#[test]
fn json_lines_name_annotated_failures_with_their_address_and_time() {
    let root = samples();
    let log = root.join("logs/postfix");
    let dir = root.join("filter.d");
    let out = replay(&[
        log.to_str().unwrap(),
        "--filter",
        "postfix",
        "--filter-dir",
        dir.to_str().unwrap(),
        "--log-timezone",
        "Europe/Zurich",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // Annotations hold for the filter options of their block: only blocks that test the
    // default options speak about this run.
    let mut default_block = vec![true; lines.len() + 1];
    let mut current = true;
    for (i, l) in lines.iter().enumerate() {
        if let Some(opts) = l.strip_prefix("# filterOptions:") {
            let opts: serde_json::Value = serde_json::from_str(opts).unwrap();
            let list = opts
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![opts.clone()]);
            current = list
                .iter()
                .any(|o| o.get("mode").is_none() && o.get("logtype").is_none());
        }
        default_block[i + 1] = current;
    }
    let mut reported = 0;
    for o in String::from_utf8_lossy(&out.stdout).lines() {
        let o: serde_json::Value = serde_json::from_str(o).expect("one JSON object per line");
        let n = o["line"].as_u64().unwrap() as usize;
        reported += 1;
        if !default_block[n] {
            continue;
        }
        let annotation = lines[n - 2]
            .strip_prefix("# failJSON:")
            .unwrap_or_else(|| panic!("line {n} matched without an annotation"));
        let want: serde_json::Value = serde_json::from_str(annotation).unwrap();
        assert_eq!(want["match"], true, "line {n} must not match");
        assert_eq!(o["host"], want["host"], "line {n}");
        // The clock is today's, so the year may differ; the rest is the annotated local time.
        let time: jiff::Timestamp = o["time"].as_str().unwrap().parse().expect("RFC 3339");
        let local = time.to_zoned(jiff::tz::TimeZone::get("Europe/Zurich").unwrap());
        let got = [
            local.month() as u32,
            local.day() as u32,
            local.hour() as u32,
            local.minute() as u32,
            local.second() as u32,
        ];
        // Annotations are Python's strptime input: fields need not be zero-padded.
        let want_time: Vec<u32> = want["time"]
            .as_str()
            .unwrap()
            .split(['-', 'T', ':'])
            .map(|f| f.parse().unwrap())
            .collect();
        assert_eq!(got[..], want_time[1..6], "line {n}");
    }
    // The default mode's share of the file (other blocks are for other modes).
    assert!(reported >= 30, "only {reported} lines reported");
    assert!(
        stderr.contains(&format!("failures    {reported}")),
        "{stderr}"
    );

    // The same as a table for people.
    let human = replay(&[
        log.to_str().unwrap(),
        "--filter",
        dir.join("postfix.conf").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success());
    assert_eq!(text.lines().count(), reported, "one line per failure");
    assert!(String::from_utf8_lossy(&human.stderr).contains("failregex   hits"));
}

#[test]
fn a_missing_filter_is_named() {
    let root = samples();
    let out = replay(&[
        root.join("logs/postfix").to_str().unwrap(),
        "--filter",
        "no-such-filter",
        "--filter-dir",
        root.join("filter.d").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-filter.conf"), "{err}");
}
