//! Issue 17's tailing target (100 jails over 20 logs in ≤ 30 MB for the whole process) rests
//! on a few structures staying small; each is measured here with a counting allocator, per
//! thread (the test harness runs tests on threads of their own). BENCHMARKS.md, "Log watcher:
//! tailing", has the figures these bounds guard.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use moat_detect::jail::{Jail, JailConfig};
use moat_logs::fail2ban::{self, ini::Options, Failure, Filter, FilterSpec, Outcome};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + n));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        add(new as isize - l.size() as isize);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// fail2ban's sshd filter from its sample suite (as tests/fail2ban_samples.rs finds it).
fn sshd() -> Filter {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = here
        .ancestors()
        .map(|a| a.join("shared/peers/fail2ban"))
        .chain([PathBuf::from("/work/shared/peers/fail2ban")])
        .find(|p| p.join("filter.d").is_dir())
        .expect("fail2ban's sample filters");
    let opts: Options = [("logtype".to_string(), "file".to_string())].into();
    let spec = FilterSpec::parse("sshd").unwrap();
    let def = fail2ban::load(&dir.join("filter.d"), &spec, &opts).unwrap();
    Filter::compile(&def, TimeZone::UTC).unwrap()
}

#[test]
fn a_copy_of_a_filter_costs_a_few_hundred_bytes() {
    let first = sshd();
    let before = live();
    let copies: Vec<Filter> = (0..100).map(|_| first.fresh()).collect();
    let each = (live() - before) / 100;
    // Each copy cloned its 30 regexes' capture slots and 17 date templates: 7.7 KB.
    assert!(each < 1024, "{each} bytes a copy");
    drop(copies);
}

#[test]
fn a_full_multi_line_cache_stays_small() {
    let mut filter = sshd();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let line = |pid: u32| {
        format!("Jan  1 08:00:00 host sshd[{pid}]: Failed password for root from 198.18.0.7 port 4022 ssh2")
    };
    // Warm up: capture slots, the date's template.
    assert!(matches!(
        filter.process_line(&line(1), now),
        Outcome::Failures(_)
    ));
    let before = live();
    for pid in 2..300 {
        assert!(matches!(
            filter.process_line(&line(pid), now),
            Outcome::Failures(_)
        ));
    }
    // 100 ids (fail2ban's cache size), about 90 bytes each; a line's whole groups were 1 KB.
    let grown = live() - before;
    assert!(grown < 100 * 200, "{grown} bytes for 100 ids");
}

#[test]
fn a_failure_history_is_under_fifty_bytes() {
    let mut cfg = JailConfig::new("sshd");
    cfg.max_retry = 5;
    let mut jail = Jail::new(cfg);
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let before = live();
    for i in 0..14_000u32 {
        let host = std::net::IpAddr::from((0xc612_0000u32 + i).to_be_bytes());
        let f = Failure {
            host,
            prefix_len: None,
            time: now,
            regex: 0,
            user: None,
        };
        assert!(jail
            .count(Outcome::Failures(vec![f]).failed(), now)
            .is_none());
    }
    assert_eq!(jail.tracked(), 14_000);
    // The table holds 16,384 slots here: 36 bytes each with its control byte (42 a history),
    // where a `SmallVec` history made them 65 (76).
    let each = (live() - before) / 14_000;
    assert!(each < 50, "{each} bytes a history");
}
