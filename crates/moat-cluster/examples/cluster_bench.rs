//! Issue 19's cluster targets, measured against a real redis-server started here:
//!
//! - limit checks through Redis from one instance (≥ 50,000 a second, p99 ≤ 1 ms), pipelined
//!   by the multiplexed connection, side by side with the local limiter in the same run;
//! - how long a ban takes to reach another instance (≤ 1 s at p99).
//!
//! Each check is what a sign-up under attack costs: per address, per email, global.
//!
//! `cargo run --release -p moat-cluster --example cluster_bench [-- SECONDS CONCURRENCY]`

use moat_core::shared::{SharedCheck, SharedLimits, WhenUnreachable};
use moat_core::{Origin, PrefixLens, Scope, SystemClock};
use moat_engine::{Engine, GuardVerdict};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn engine() -> Arc<Engine> {
    let bans = moat_config::Bans {
        base_ttl: Duration::from_secs(60),
        max_ttl: Duration::from_secs(600),
        factor: 4,
        offences_to_ban: 3,
        offence_window: Duration::from_secs(60),
        prefix_threshold: 0,
        prefix_window: Duration::from_secs(600),
        status: 403,
        body: String::new(),
        allow: vec![],
    };
    Engine::start(
        Arc::new(moat_store::MemoryStore::new()),
        Arc::new(SystemClock),
        bans,
        PrefixLens::default(),
    )
}

fn checks(i: u64) -> Vec<SharedCheck> {
    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let email = format!("victim{}@example.com", i % 5000);
    let per = |limit: &str, key: String, per_hour: u64, burst: u64| {
        let interval_us = 3_600_000_000 / per_hour;
        SharedCheck {
            limit: limit.into(),
            key: key.into_bytes(),
            interval_us,
            tau_us: interval_us * (burst - 1),
            stops: true,
        }
    };
    vec![
        per("per-ip", ip, 30, 10),
        per("per-email", email, 3, 3),
        per("global", "all".into(), 1_000_000_000, 1_000_000),
    ]
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let secs = args.first().copied().unwrap_or(5);
    let concurrency = args.get(1).copied().unwrap_or(64);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let settings = moat_cluster::Settings {
        redis: format!("redis://127.0.0.1:{port}/"),
        prefix: "bench:".into(),
        timeout: Duration::from_millis(500),
        on_unreachable: WhenUnreachable::Local,
    };
    let shutdown = moat_listen::Shutdown::new();
    let (e1, e2) = (engine(), engine());
    let a = moat_cluster::start(&settings, &e1, &shutdown).unwrap();
    let b = moat_cluster::start(&settings, &e2, &shutdown).unwrap();
    while a.limits.check(checks(0)).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Through Redis: `concurrency` requests in flight, as many workers' requests would be.
    let limits = a.limits.clone();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let limits = limits.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = t * 1_000_000;
            while Instant::now() < deadline {
                let c = checks(i);
                i += 1;
                let s = Instant::now();
                limits.check(c).await.expect("redis answers");
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let redis_rate = lat.len() as f64 / secs as f64;
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));

    // The local limiter, same checks, same time, one thread.
    let local = [
        moat_detect::Limiter::new(30, 3_600_000_000_000, 10, 1_000_000),
        moat_detect::Limiter::new(3, 3_600_000_000_000, 3, 100_000),
        moat_detect::Limiter::new(1_000_000_000, 3_600_000_000_000, 1_000_000, 10),
    ];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            let c = checks(n);
            let now = start.elapsed().as_nanos() as u64;
            if c.iter().zip(&local).all(|(c, l)| l.wait(&c.key, now) == 0) {
                for (c, l) in c.iter().zip(&local) {
                    l.check(&c.key, now);
                }
            }
            n += 1;
        }
    }
    let local_rate = n as f64 / start.elapsed().as_secs_f64();
    println!("limit checks (3 limits each), {secs} s, {concurrency} in flight:");
    println!("  through Redis: {redis_rate:>10.0}/s   p50 {p50:?}   p99 {p99:?}");
    println!("  local limiter: {local_rate:>10.0}/s   (one thread)");
    println!("  local/Redis:   {:>10.1}×", local_rate / redis_rate);

    // Propagation: a ban on one instance, until the other's guard refuses the address.
    let mut prop = Vec::new();
    for i in 0..200u32 {
        let ip: std::net::IpAddr = format!("198.51.{}.{}", i / 250, i % 250 + 1)
            .parse()
            .unwrap();
        let s = Instant::now();
        e1.ban(
            Scope::Ip(ip),
            Some(Duration::from_secs(600)),
            "bench",
            Origin::Jail("bench".into()),
        );
        while !matches!(e2.check(ip), GuardVerdict::Banned(_)) {
            assert!(s.elapsed() < Duration::from_secs(10), "a ban never arrived");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        prop.push(s.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "ban propagation to the other instance (200 bans): p50 {:?}   p99 {:?}   max {:?}",
        pct(&mut prop, 0.5),
        pct(&mut prop, 0.99),
        prop.iter().max().unwrap()
    );
    let _ = b;
    shutdown.begin();
    let _ = redis.kill();
    let _ = redis.wait();
}
