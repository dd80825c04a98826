//! What the tests against a real `redis-server` share: the server itself (Debian's, started
//! on a loopback port), engines, settings, and waiting.
#![allow(dead_code)] // each test file uses its own part

use moat_config::Bans;
use moat_core::shared::{SharedCheck, SharedLimits, WhenUnreachable};
use moat_core::{PrefixLens, SystemClock};
use moat_engine::{Engine, GuardVerdict};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start_on(port: u16) -> Option<Redis> {
        let child = Command::new("redis-server")
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let r = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }

    /// A redis-server, or None where it is not installed (outside CI).
    pub fn start() -> Option<Redis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Self::start_on(port);
        if r.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is missing (scripts/install-test-deps.sh)"
            );
        }
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn engine() -> Arc<Engine> {
    let bans = Bans {
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

pub fn settings(r: &Redis, mode: WhenUnreachable) -> moat_cluster::Settings {
    moat_cluster::Settings {
        redis: r.url(),
        prefix: "test:".into(),
        timeout: Duration::from_millis(200),
        on_unreachable: mode,
    }
}

pub fn check(limit: &str, key: &str, per_hour: u64, burst: u64, stops: bool) -> SharedCheck {
    let interval_us = 3_600_000_000 / per_hour;
    SharedCheck {
        limit: limit.into(),
        key: key.as_bytes().to_vec(),
        interval_us,
        tau_us: interval_us * (burst - 1),
        stops,
    }
}

pub async fn connected(c: &moat_cluster::Cluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .limits
        .check(vec![check("ping", "x", 1_000_000, 1000, true)])
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "never connected to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn banned(e: &Engine, ip: &str) -> bool {
    matches!(e.check(ip.parse().unwrap()), GuardVerdict::Banned(_))
}

pub async fn until(what: &str, within: Duration, f: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}
