//! The nftables enforcer against the real kernel, for `bench/nft.sh` (run inside a network
//! namespace with `ip netns exec`: it makes and changes the table `--table`). The engine is
//! Moat's own (the decider thread, SQLite in `--state`), and every ban goes through
//! `Engine::ban`, the path the jails and the shields take.
//!
//! ```text
//! nft_bench latency --state DIR [--rate 200] [--seconds 20] [--burst 1000] [--burst-at 10] [--preload 0]
//! nft_bench apply   --state DIR [--count 100000]
//! nft_bench preload --state DIR [--count 100000] [--ttl-secs 3600]
//! ```
//!
//! `latency`: a steady stream of bans, and a burst in the middle, each timed from the call to
//! `Engine::ban` to its element's arrival in the kernel as `nft monitor` reports it (the
//! kernel's own event, read as it comes). Prints p50/p99/max for each. With `--preload N` the
//! store holds N bans first, as a busy machine's does.
//! `apply`: N bans as fast as the engine takes them; the time until the kernel's set holds
//! all of them.
//! `preload`: writes N bans into the store of a state directory, for `moat run` to rebuild
//! from (addresses from 10.232.0.0 up, see [`nth`]).

use moat_core::{Clock, Decision, Origin, PrefixLens, Scope, SystemClock, Verdict};
use moat_engine::Engine;
use moat_nftables::enforcer::run_with_ready;
use moat_nftables::NftConfig;
use moat_store::{SqliteStore, Store};
use std::collections::HashMap;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    mode: String,
    state: PathBuf,
    table: String,
    rate: u32,
    seconds: u32,
    burst: u32,
    burst_at: u32,
    preload: u32,
    count: u32,
    ttl_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        mode: String::new(),
        state: PathBuf::new(),
        table: "moatbench".into(),
        rate: 200,
        seconds: 20,
        burst: 1000,
        burst_at: 10,
        preload: 0,
        count: 100_000,
        ttl_secs: 3600,
    };
    let mut it = std::env::args().skip(1);
    a.mode = it.next().unwrap_or_default();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        let n = || v.parse::<u32>().unwrap_or_else(|_| panic!("{k}: a number"));
        match k.as_str() {
            "--state" => a.state = PathBuf::from(&v),
            "--table" => a.table = v.clone(),
            "--rate" => a.rate = n().max(1),
            "--seconds" => a.seconds = n(),
            "--burst" => a.burst = n(),
            "--burst-at" => a.burst_at = n(),
            "--preload" => a.preload = n(),
            "--count" => a.count = n(),
            "--ttl-secs" => a.ttl_secs = u64::from(n()),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

/// The `i`-th address of a run: IPv4 from 10.232.0.0 for preloaded bans, from 10.128.0.0 for
/// the streamed ones (`stream`), every tenth streamed one IPv6 (fd00:b::/64).
fn nth(i: u32, stream: bool) -> IpAddr {
    match stream {
        false => IpAddr::V4(Ipv4Addr::from(0x0ae8_0000 + i)),
        true if i % 10 == 9 => IpAddr::V6(Ipv6Addr::from((0xfd00_000b_u128 << 96) | u128::from(i))),
        true => IpAddr::V4(Ipv4Addr::from(0x0a80_0000 + i)),
    }
}

fn bans() -> moat_config::Bans {
    moat_config::Bans {
        base_ttl: Duration::from_secs(3600),
        max_ttl: Duration::from_secs(86_400),
        factor: 2,
        offences_to_ban: 1,
        offence_window: Duration::from_secs(60),
        // No escalation to networks: every ban stays one address, one element.
        prefix_threshold: 0,
        prefix_window: Duration::from_secs(600),
        status: 403,
        body: String::new(),
        allow: vec![],
    }
}

fn preload(store: &dyn Store, count: u32, ttl_secs: u64) {
    let now = SystemClock.now_ms();
    for i in 0..count {
        let d = Decision {
            scope: Scope::Ip(nth(i, false)),
            verdict: Verdict::Ban,
            created_ms: now,
            expires_ms: Some(now + ttl_secs * 1000),
            reason: "bench".into(),
            origin: Origin::Jail("bench".into()),
            offences: 1,
        };
        store.put_decision(&d).expect("storing a ban");
    }
}

/// `nft -j monitor new elements`: when each address first appeared in the table's sets.
fn monitor(table: &str) -> (std::process::Child, Arc<Mutex<HashMap<String, Instant>>>) {
    let mut child = std::process::Command::new("nft")
        .args(["-j", "monitor", "new", "elements"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running nft monitor");
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let out = child.stdout.take().expect("monitor's stdout");
    let (seen2, table) = (seen.clone(), table.to_string());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let e = &v["add"]["element"];
            if e["table"] != table.as_str() {
                continue;
            }
            let mut seen = seen2.lock().unwrap();
            for el in e["elem"]["set"].as_array().into_iter().flatten() {
                let val = el["elem"]["val"].as_str().or(el.as_str());
                if let Some(val) = val {
                    seen.entry(val.to_string()).or_insert(at);
                }
            }
        }
    });
    (child, seen)
}

/// Elements in the table's `ban4` and `ban6`.
fn kernel_count(table: &str) -> usize {
    ["ban4", "ban6"]
        .iter()
        .map(|set| {
            let out = std::process::Command::new("nft")
                .args(["-j", "list", "set", "inet", table, set])
                .output()
                .expect("nft list set");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["set"]["elem"].as_array())
                .map(Vec::len)
                .sum::<usize>()
        })
        .sum()
}

fn rss_kb() -> u64 {
    moat_core::metric::rss_kib()
}

fn stats(name: &str, mut ms: Vec<f64>, missing: usize) {
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    if ms.is_empty() {
        println!("{name}: no element seen ({missing} missing)");
        return;
    }
    println!(
        "{name:<7} n={:<6} p50={:7.1} ms  p99={:7.1} ms  max={:7.1} ms  missing={missing}",
        ms.len(),
        q(0.5),
        q(0.99),
        ms[ms.len() - 1]
    );
}

async fn start(a: &Args) -> (Arc<Engine>, Duration) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_dir(&a.state).expect("opening the store"));
    if a.preload > 0 {
        let t = Instant::now();
        preload(&*store, a.preload, a.ttl_secs);
        eprintln!(
            "preloaded {} bans into the store in {:.1} s",
            a.preload,
            t.elapsed().as_secs_f64()
        );
    }
    let engine = Engine::start(store, Arc::new(SystemClock), bans(), PrefixLens::default());
    let cfg = NftConfig {
        table: a.table.clone(),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let t = Instant::now();
    tokio::spawn(run_with_ready(engine.clone(), cfg, tx));
    match rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the enforcer could not start: {e}"),
        Err(_) => panic!("the enforcer stopped"),
    }
    (engine, t.elapsed())
}

async fn latency(a: &Args) {
    let (mut mon, seen) = monitor(&a.table);
    let (engine, rebuilt) = start(a).await;
    println!(
        "table rebuilt from {} bans in {:.0} ms; {} elements in the kernel",
        a.preload,
        rebuilt.as_secs_f64() * 1000.0,
        kernel_count(&a.table)
    );
    // When the decider broadcast each ban: splits the latency into the engine's share (ban to
    // change) and the enforcer's (change to kernel).
    let changed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut rx = engine.subscribe();
    let changed2 = changed.clone();
    tokio::spawn(async move {
        while let Ok(c) = rx.recv().await {
            if let moat_engine::changes::Change::Added(d) = c {
                let ip = match d.scope {
                    Scope::Ip(ip) => ip.to_string(),
                    Scope::Prefix(n) => n.to_string(),
                };
                changed2.lock().unwrap().insert(ip, Instant::now());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ban = |ip: IpAddr| {
        engine.ban(
            Scope::Ip(ip),
            Some(Duration::from_secs(a.ttl_secs)),
            "bench",
            Origin::Jail("bench".into()),
        )
    };
    let mut issued: Vec<(String, Instant, bool)> = Vec::new();
    let t0 = Instant::now();
    let total = a.rate * a.seconds;
    let mut i = 0u32;
    let mut burst_done = a.burst == 0;
    while i < total {
        let due = t0 + Duration::from_secs_f64(f64::from(i) / f64::from(a.rate));
        if !burst_done && due >= t0 + Duration::from_secs(a.burst_at.into()) {
            for j in 0..a.burst {
                let ip = nth(total + j, true);
                let at = Instant::now();
                ban(ip);
                issued.push((ip.to_string(), at, true));
            }
            burst_done = true;
        }
        tokio::time::sleep_until(due.into()).await;
        let ip = nth(i, true);
        let at = Instant::now();
        ban(ip);
        issued.push((ip.to_string(), at, false));
        i += 1;
    }
    // Stragglers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let arrived = || {
        let seen = seen.lock().unwrap();
        issued.iter().filter(|x| seen.contains_key(&x.0)).count()
    };
    while Instant::now() < deadline && arrived() < issued.len() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let changed = changed.lock().unwrap().clone();
    println!("ban to element in the kernel (nft monitor):");
    for burst in [false, true] {
        let mine: Vec<&(String, Instant, bool)> = issued.iter().filter(|x| x.2 == burst).collect();
        let ms: Vec<f64> = mine
            .iter()
            .filter_map(|(ip, at, _)| {
                seen.get(ip)
                    .map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        let missing = mine.len() - ms.len();
        stats(if burst { "burst" } else { "steady" }, ms, missing);
    }
    println!("of which ban to the decider's change (the engine's share):");
    for burst in [false, true] {
        let mine: Vec<&(String, Instant, bool)> = issued.iter().filter(|x| x.2 == burst).collect();
        let ms: Vec<f64> = mine
            .iter()
            .filter_map(|(ip, at, _)| {
                changed
                    .get(ip)
                    .map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        let missing = mine.len() - ms.len();
        stats(if burst { "burst" } else { "steady" }, ms, missing);
    }
    println!(
        "kernel holds {} elements (expected {}); bench process RSS {} MB",
        kernel_count(&a.table),
        a.preload as usize + issued.len(),
        rss_kb() / 1024
    );
    let _ = mon.kill();
    engine.shutdown();
}

async fn apply(a: &Args) {
    let (engine, _) = start(a).await;
    let t = Instant::now();
    // When the decider had broadcast every ban: the engine's share of the time.
    let mut rx = engine.subscribe();
    let count = a.count as usize;
    let broadcast = tokio::spawn(async move {
        let mut n = 0;
        loop {
            match rx.recv().await {
                Ok(moat_engine::changes::Change::Added(_)) => n += 1,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => n += k as usize,
                Err(_) => break,
            }
            if n >= count {
                break;
            }
        }
        t.elapsed()
    });
    for i in 0..a.count {
        // The engine's queue holds 65,536 commands and drops (counts) what does not fit, by
        // design: a sensor never waits. A bulk load waits for it every 10,000 bans instead.
        if i % 10_000 == 0 {
            let e = engine.clone();
            tokio::task::spawn_blocking(move || e.flush())
                .await
                .expect("flush");
        }
        engine.ban(
            Scope::Ip(nth(i, false)),
            Some(Duration::from_secs(a.ttl_secs)),
            "bench",
            Origin::Jail("bench".into()),
        );
    }
    let issued = t.elapsed();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(300) {
        n = kernel_count(&a.table);
        if n >= a.count as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_kernel = t.elapsed();
    let broadcast = broadcast.await.unwrap_or_default();
    println!(
        "{} bans issued in {:.2} s, all broadcast by the decider after {:.2} s; {n} elements in the kernel after {:.2} s; bench process RSS {} MB; {} dropped by the engine",
        a.count,
        issued.as_secs_f64(),
        broadcast.as_secs_f64(),
        in_kernel.as_secs_f64(),
        rss_kb() / 1024,
        engine.dropped.load(std::sync::atomic::Ordering::Relaxed)
    );
    engine.shutdown();
}

#[tokio::main]
async fn main() {
    let a = args();
    assert!(!a.state.as_os_str().is_empty(), "--state DIR is needed");
    std::fs::create_dir_all(&a.state).expect("creating the state directory");
    match a.mode.as_str() {
        "latency" => latency(&a).await,
        "apply" => apply(&a).await,
        "preload" => {
            let store = SqliteStore::open_dir(&a.state).expect("opening the store");
            let t = Instant::now();
            preload(&store, a.count, a.ttl_secs);
            println!(
                "{} bans written to the store in {:.1} s",
                a.count,
                t.elapsed().as_secs_f64()
            );
        }
        m => panic!("unknown mode `{m}`: latency, apply or preload"),
    }
}
