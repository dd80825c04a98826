//! The log watcher's process layout on bench/tail.sh's load, without the rest of Moat: the
//! file thread, a 1024-line channel, the consumer on a two-worker tokio runtime, mimalloc as
//! the binary has it, and bench/tail_writer.py appending. Prints the process's anonymous and
//! file-backed resident memory (KiB) every 5 s. `NOMATCH=1` only reads the lines, `NOJAIL=1`
//! also matches them, `LOADS=100` reads the filter once per jail as the binary does (`KEEP=1`:
//! all held at once).
//!
//!     cargo run --release -p moat-logs --example tail_model [FILTER] [SECONDS]   (sshd 30)
use moat_detect::jail::{Jail, JailConfig};
use moat_logs::fail2ban::{self, ini::Options, Filter, FilterSpec};
use moat_logs::source::{FileTail, FileWatch, Line, StartAt, TailConfig, DEFAULT_POLL_INTERVAL};
use std::collections::HashMap;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn anon() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .filter(|l| l.starts_with("RssAnon") || l.starts_with("RssFile"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let filter = args.get(1).cloned().unwrap_or("sshd".into());
    let dur: u64 = args.get(2).map_or(30, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("start: anon/file KiB {}", anon());
    let dir = tempfile::tempdir().unwrap();
    let spec = FilterSpec::parse(&filter).unwrap();
    let opts: Options = [("logtype".to_string(), "file".to_string())].into();
    let def = fail2ban::load("/etc/fail2ban/filter.d".as_ref(), &spec, &opts).unwrap();
    let first = Filter::compile(&def, jiff::tz::TimeZone::system()).unwrap();
    // As the binary's build(): every jail reads its filter and gets a copy of the compiled one.
    let loads: usize = std::env::var("LOADS").map_or(0, |v| v.parse().unwrap());
    let mut kept = Vec::new();
    for _ in 0..loads {
        let d = fail2ban::load("/etc/fail2ban/filter.d".as_ref(), &spec, &opts).unwrap();
        if std::env::var("KEEP").is_ok() {
            kept.push((d, first.fresh()));
        } else {
            drop((d, first.fresh()));
        }
    }
    println!("{loads} loads: anon/file KiB {}", anon());
    drop(kept);
    println!("dropped: anon/file KiB {}", anon());
    let mut routes: HashMap<Arc<str>, (Filter, Vec<usize>)> = HashMap::new();
    let mut tails = Vec::new();
    let mut jails = Vec::new();
    for f in 0..20 {
        let p = dir.path().join(format!("log{f:02}.log"));
        std::fs::File::create(&p).unwrap();
        let cfg = TailConfig {
            start: StartAt::End,
            ..TailConfig::default()
        };
        let t = FileTail::new(&p, cfg, None).unwrap();
        let ids = (0..5).map(|j| f * 5 + j).collect();
        routes.insert(t.name().clone(), (first.fresh(), ids));
        tails.push(t);
        for j in 1..=5 {
            let mut c = JailConfig::new(&format!("j{f:02}-{j}"));
            c.max_retry = j as u32 + 2;
            jails.push(Jail::new(c));
        }
    }
    drop(first);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Line>(1024);
    let _watch = FileWatch::spawn(tails, tx, DEFAULT_POLL_INTERVAL).unwrap();
    let bans = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let b2 = bans.clone();
    rt.spawn(async move {
        while let Some(line) = rx.recv().await {
            let now = jiff::Timestamp::now();
            if let Some((filter, ids)) = routes.get_mut(&line.source) {
                if std::env::var_os("NOMATCH").is_some() {
                    continue;
                }
                let outcome = filter.process_line(&line.text, now);
                if std::env::var_os("NOJAIL").is_some() {
                    continue;
                }
                for &i in ids.iter() {
                    if jails[i].count(outcome.failed(), now).is_some() {
                        b2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    });
    println!("built: anon/file KiB {}", anon());
    let mut writer = std::process::Command::new("python3")
        .arg("/work/main/bench/tail_writer.py")
        .arg(dir.path())
        .args(["20", "10000", &dur.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for s in 0.. {
        std::thread::sleep(std::time::Duration::from_secs(5));
        println!(
            "{:3}s: anon/file KiB {}  bans {}",
            (s + 1) * 5,
            anon(),
            bans.load(std::sync::atomic::Ordering::Relaxed)
        );
        if writer.try_wait().unwrap().is_some() {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    println!("end: anon/file KiB {}", anon());
}
