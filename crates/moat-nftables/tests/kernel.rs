//! Issue 17, the batches against the real kernel: the table with the trap's `nat` chain and
//! 20,000 grouped elements is one transaction `nft` accepts, inside a network namespace of
//! the test's own (`nft` runs there through a wrapper script). Needs root, `nft` and `ip`;
//! says so and passes without them.

use moat_nftables::batch::Batch;
use moat_nftables::enforcer::apply;
use moat_nftables::{NftConfig, Target, TrapRedirect};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn usable() -> bool {
    let ok = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // Only root may make namespaces; `ip netns list` alone succeeds for anyone.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    root && ok("nft", &["--version"]) && ok("ip", &["netns", "list"])
}

fn nft_in(ns: &str, dir: &std::path::Path) -> PathBuf {
    let p = dir.join("nft");
    std::fs::write(
        &p,
        format!("#!/bin/sh\nexec ip netns exec {ns} nft \"$@\"\n"),
    )
    .unwrap();
    let _ = Command::new("chmod")
        .args(["+x", p.to_str().unwrap()])
        .status();
    p
}

fn list(ns: &str, what: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(what)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_table_with_the_trap_redirect_and_20000_elements_is_one_accepted_batch() {
    if !usable() {
        eprintln!("skipped: needs root, nft and ip");
        return;
    }
    let ns = Netns(format!("moat-nftk-{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    let dir = std::env::temp_dir().join(format!("moat-nftk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = NftConfig {
        table: "moatk".into(),
        nft: nft_in(&ns.0, &dir),
        ..Default::default()
    };
    let redirects = [TrapRedirect {
        ports: vec![25, 587],
        port: 2525,
        v4: Some(Target::Local),
        v6: Some(Target::Addr("fd00::2".parse().unwrap())),
    }];
    let mut b = Batch::new("moatk");
    b.recreate(-10, &redirects)
        .allowlist(&["192.0.2.0/24".parse().unwrap()]);
    for i in 0..15_000u32 {
        b.add(
            &IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)).into(),
            Some(600),
        );
    }
    for i in 0..5_000u32 {
        b.add(
            &IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(i))).into(),
            None,
        );
    }
    b.add(&"198.51.100.0/24".parse().unwrap(), Some(600));
    assert!(
        b.len() < 40,
        "{} commands: the elements were not grouped",
        b.len()
    );
    apply(&cfg, &b).await.expect("nft refused the batch");

    let table = list(&ns.0, &["list", "table", "inet", "moatk"]);
    assert!(
        table.contains("ip saddr @ban4 tcp dport { 25, 587 } redirect to :2525"),
        "{table}"
    );
    assert!(
        table.contains("ip6 saddr @ban6 tcp dport { 25, 587 } dnat ip6 to [fd00::2]:2525"),
        "{table}"
    );
    assert!(
        table.contains("tcp dport 2525 ct status dnat accept"),
        "{table}"
    );
    let ban4 = list(&ns.0, &["list", "set", "inet", "moatk", "ban4"]);
    assert_eq!(ban4.matches("expires").count(), 15_000);
    let ban6 = list(&ns.0, &["list", "set", "inet", "moatk", "ban6"]);
    assert_eq!(ban6.matches("2001:db8::").count(), 5_000);

    // A second rebuild replaces the first whole, in one transaction.
    let mut b = Batch::new("moatk");
    b.recreate(-10, &[])
        .add(&"203.0.113.9/32".parse().unwrap(), None);
    apply(&cfg, &b).await.expect("nft refused the rebuild");
    let table = list(&ns.0, &["list", "table", "inet", "moatk"]);
    assert!(!table.contains("chain trap"), "{table}");
    assert!(table.contains("elements = { 203.0.113.9 }"), "{table}");
    let _ = std::fs::remove_dir_all(&dir);
}
