//! Where the log watcher's live heap goes on bench/tail.sh's load (fail2ban's sshd filter from
//! Debian's `/etc/fail2ban/filter.d`, 20 logs, five jails each, 10,000 lines/s), phase by
//! phase, in simulated time: Rust's allocations counted, and glibc's (PCRE2 allocates
//! through libc) from `mallinfo2`. One thread, no allocator of Moat's: for the resident
//! memory of the same layout under mimalloc, see the `tail_model` example.
//!
//!     cargo run --release -p moat-logs --example tail_memory [SECONDS]      (default 10)
use moat_detect::jail::{Jail, JailConfig};
use moat_logs::fail2ban::{self, ini::Options, Filter, FilterSpec};
use moat_logs::source::{FileTail, Line, StartAt, TailConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);
static MATCH_ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = LIVE.fetch_add(l.size() as isize, Relaxed) + l.size() as isize;
        PEAK.fetch_max(n, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        TOTAL.fetch_add(l.size(), Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let n = LIVE.fetch_add(new as isize - l.size() as isize, Relaxed) + new as isize
            - l.size() as isize;
        PEAK.fetch_max(n, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

#[repr(C)]
#[derive(Default)]
struct Mallinfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}
extern "C" {
    fn mallinfo2() -> Mallinfo2;
}

fn report(what: &str, last: &mut (isize, usize)) {
    let live = LIVE.load(Relaxed);
    // PCRE2 allocates through libc's malloc, not Rust's allocator: glibc's own count.
    let c = unsafe { mallinfo2() };
    let c_used = c.uordblks + c.hblkhd;
    println!(
        "{what:40} rust live {:8} KiB ({:+8} KiB)  libc used {:8} KiB ({:+8} KiB) rust peak {} KiB",
        live / 1024,
        (live - last.0) / 1024,
        c_used / 1024,
        (c_used as isize - last.1 as isize) / 1024,
        PEAK.load(Relaxed) / 1024
    );
    *last = (live, c_used);
}

fn main() {
    let mut last = (0isize, 0usize);
    // System.alloc goes to libc: subtract the Rust bytes from libc's count by reporting both.
    report("start", &mut last);
    let dir = tempfile::tempdir().unwrap();
    let spec = FilterSpec::parse("sshd").unwrap();
    let opts: Options = [("logtype".to_string(), "file".to_string())].into();
    let def = fail2ban::load("/etc/fail2ban/filter.d".as_ref(), &spec, &opts).unwrap();
    report("filter read", &mut last);
    let tz = jiff::tz::TimeZone::UTC;
    let first = Filter::compile(&def, tz).unwrap();
    report("filter compiled (1)", &mut last);
    let (a0, t0) = (ALLOCS.load(Relaxed), TOTAL.load(Relaxed));
    let one = fail2ban::load("/etc/fail2ban/filter.d".as_ref(), &spec, &opts).unwrap();
    println!(
        "one load: {} allocations, {} KiB allocated",
        ALLOCS.load(Relaxed) - a0,
        (TOTAL.load(Relaxed) - t0) / 1024
    );
    drop(one);
    let mut filters: Vec<Filter> = (0..20).map(|_| first.fresh()).collect();
    report("20 matchers (fresh)", &mut last);
    let mut jails: Vec<Jail> = (0..100)
        .map(|i| {
            let mut c = JailConfig::new(&format!("j{i}"));
            c.max_retry = (i % 5 + 3) as u32;
            Jail::new(c)
        })
        .collect();
    report("100 jails", &mut last);
    let mut files = Vec::new();
    let mut tails = Vec::new();
    for i in 0..20 {
        let p = dir.path().join(format!("log{i:02}.log"));
        files.push(std::fs::File::create(&p).unwrap());
        let cfg = TailConfig {
            start: StartAt::End,
            ..TailConfig::default()
        };
        tails.push(FileTail::new(&p, cfg, None).unwrap());
    }
    report("20 tails", &mut last);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out: Vec<Line> = Vec::new();
    let secs: usize = std::env::args().nth(1).map_or(10, |s| s.parse().unwrap());
    let allocs0 = ALLOCS.load(Relaxed);
    let t0 = jiff::Timestamp::now();
    for tick in 0..secs * 4 {
        // 2,500 lines per 250 ms poll over 20 files, in simulated time.
        let now = t0 + jiff::SignedDuration::from_millis(tick as i64 * 250);
        if tick % 40 == 0 {
            let tracked: usize = jails.iter().map(Jail::tracked).sum();
            report(&format!("{}s, {tracked} tracked", tick / 4), &mut last);
        }
        let stamp = now
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%b %e %H:%M:%S")
            .to_string();
        for _ in 0..2500 {
            let f = rng.usize(0..20);
            let pid = rng.u32(1000..30000);
            let msg = if rng.f64() < 0.01 {
                let a = rng.usize(0..500);
                format!(
                    "sshd[{pid}]: Failed password for root from 198.18.{}.{} port 4{:04} ssh2",
                    a / 250,
                    a % 250 + 1,
                    rng.u32(0..10000)
                )
            } else {
                let n = rng.u32(1..250);
                match rng.u32(0..5) {
                    0 => format!("sshd[{pid}]: Accepted publickey for deploy from 192.0.2.{n} port 5{n:04} ssh2"),
                    1 => format!("sshd[{pid}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)"),
                    2 => format!("postfix/smtpd[{pid}]: connect from mail{n}.example.net[192.0.2.{n}]"),
                    3 => format!("postfix/qmgr[{pid}]: 3F2A1B{n:04X}: removed"),
                    _ => format!("CRON[{pid}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"),
                }
            };
            writeln!(files[f], "{stamp} host {msg}").unwrap();
        }
        for (i, t) in tails.iter_mut().enumerate() {
            t.poll(&mut out, 256 * 1024).unwrap();
            for line in out.drain(..) {
                let a0 = ALLOCS.load(Relaxed);
                let o = filters[i].process_line(&line.text, now);
                MATCH_ALLOCS.fetch_add(ALLOCS.load(Relaxed) - a0, Relaxed);
                for j in &mut jails[i * 5..i * 5 + 5] {
                    j.count(o.failed(), now);
                }
            }
        }
    }
    let n = secs * 10_000;
    report("after the lines", &mut last);
    println!(
        "{} allocations for {n} lines: {:.1} a line",
        ALLOCS.load(Relaxed) - allocs0,
        (ALLOCS.load(Relaxed) - allocs0) as f64 / n as f64
    );
    println!(
        "matcher: {:.2} allocations a line",
        MATCH_ALLOCS.load(Relaxed) as f64 / n as f64
    );
    drop(out);
}
