//! Moat's resources sampled from /proc, and the reporter that writes a CSV row per window and
//! the summary at the end.

use super::*;

/// Moat's resources from /proc: RSS (kB), threads, open descriptors, CPU ticks.
#[derive(Default, Clone, Copy)]
pub(super) struct ProcSample {
    pub(super) rss_kb: Option<u64>,
    pub(super) threads: Option<u64>,
    pub(super) fds: Option<u64>,
    pub(super) ticks: Option<u64>,
}

pub(super) fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(super) fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, the state;
    // utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub(super) fn sample(pid: Option<u32>) -> ProcSample {
    let Some(pid) = pid else {
        return ProcSample::default();
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ProcSample {
        rss_kb: status_field(&status, "VmRSS:"),
        threads: status_field(&status, "Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count() as u64),
        ticks: cpu_ticks(&pid.to_string()),
    }
}

pub(super) fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}
pub(super) fn ms(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.3}"))
}

/// Linux's USER_HZ: /proc's CPU times are in hundredths of a second on every architecture
/// Moat targets.
pub(super) const HZ: f64 = 100.0;

pub(super) struct Report {
    pub(super) after_warmup: Vec<Hist>,
    pub(super) first_minute: Vec<Hist>,
    pub(super) last_minute: VecDeque<Vec<Hist>>,
    pub(super) ok: [u64; N],
    pub(super) errors: [u64; N],
    pub(super) rows: u64,
}

pub(super) async fn reporter(ctx: Arc<Ctx>) -> anyhow::Result<Report> {
    let a = &ctx.a;
    let mut csv = match &a.csv {
        Some(p) => {
            let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
            let mut head = String::from("t_s,rss_kb,fds,threads,moat_cpu_pct,loadgen_cpu_pct");
            for k in KINDS {
                let n = k.name();
                head.push_str(&format!(",{n}_rate,{n}_p50_ms,{n}_p99_ms,{n}_errors"));
            }
            writeln!(f, "{head}")?;
            f.flush()?;
            Some(f)
        }
        None => None,
    };
    let windows = (a.seconds / a.window.max(1)).max(1);
    let per_minute = (60 / a.window.max(1)).max(1) as usize;
    let mut rep = Report {
        after_warmup: (0..N).map(|_| Hist::new()).collect(),
        first_minute: (0..N).map(|_| Hist::new()).collect(),
        last_minute: VecDeque::new(),
        ok: [0; N],
        errors: [0; N],
        rows: 0,
    };
    tokio::time::sleep_until(ctx.start.into()).await;
    ctx.stats.take();
    let mut prev = (sample(a.pid).ticks, cpu_ticks("self"), Instant::now());
    for w in 1..=windows {
        let t = w * a.window;
        tokio::time::sleep_until((ctx.start + Duration::from_secs(t)).into()).await;
        let win = ctx.stats.take();
        let s = sample(a.pid);
        let me = cpu_ticks("self");
        let now = Instant::now();
        let secs = now.duration_since(prev.2).as_secs_f64().max(0.001);
        let pct = |a: Option<u64>, b: Option<u64>| {
            a.zip(b)
                .map(|(a, b)| format!("{:.0}", a.saturating_sub(b) as f64 / HZ / secs * 100.0))
        };
        let (moat_cpu, own_cpu) = (pct(s.ticks, prev.0), pct(me, prev.1));
        prev = (s.ticks, me, now);
        let mut row = format!(
            "{t},{},{},{},{},{}",
            opt(s.rss_kb),
            opt(s.fds),
            opt(s.threads),
            moat_cpu.clone().unwrap_or_default(),
            own_cpu.clone().unwrap_or_default()
        );
        let mut line = format!(
            "t={t}s rss={}kB fds={} threads={} cpu moat={}% loadgen={}% |",
            opt(s.rss_kb),
            opt(s.fds),
            opt(s.threads),
            moat_cpu.unwrap_or_default(),
            own_cpu.unwrap_or_default()
        );
        for k in KINDS {
            let h = &win.hist[k as usize];
            let e = win.errors[k as usize];
            let rate = h.n as f64 / a.window as f64;
            row.push_str(&format!(
                ",{rate:.1},{},{},{e}",
                ms(h.quantile_ms(0.5)),
                ms(h.quantile_ms(0.99))
            ));
            line.push_str(&format!(
                " {} {rate:.0}/s p99 {}ms{}",
                k.name(),
                ms(h.quantile_ms(0.99)),
                if e > 0 {
                    format!(" ERR {e}")
                } else {
                    String::new()
                }
            ));
            rep.ok[k as usize] += h.n;
            rep.errors[k as usize] += e;
        }
        eprintln!("{line}");
        if let Some(f) = csv.as_mut() {
            writeln!(f, "{row}")?;
            f.flush()?;
        }
        rep.rows += 1;
        let from = t - a.window;
        if from >= a.warmup {
            for k in 0..N {
                rep.after_warmup[k].merge(&win.hist[k]);
            }
            if t <= a.warmup + 60 {
                for k in 0..N {
                    rep.first_minute[k].merge(&win.hist[k]);
                }
            }
            rep.last_minute.push_back(win.hist);
            if rep.last_minute.len() > per_minute {
                rep.last_minute.pop_front();
            }
        }
    }
    Ok(rep)
}
