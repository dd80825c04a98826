//! Issue 19, item 1: honey accounts shared across a cluster, against a real `redis-server`.
//! Three mail shields, each with its own engine, recipient list, honey gate and passwd-file:
//! an account one makes reaches the others' Dovecot files within a second, but only where that
//! instance's own rules allow it (not over a real mailbox there, not while its Postfix is not
//! verified); one found real anywhere stops being honey everywhere; an outage is caught up; and
//! nothing another instance says can put a line of its choosing into a passwd-file.

mod common;
use common::*;

use moat_core::shared::WhenUnreachable;
use moat_mail::authpolicy::{pwhash, AuthRequest, FailType};
use moat_mail::shield::MailShield;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const NONCE: &str = "a-long-random-secret-for-tests";

/// A mail shield whose real mailboxes are `recipients`, with its state in `dir`.
fn shield(dir: &Path, recipients: &[&str]) -> Arc<MailShield> {
    let list = recipients
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[server]\nstate_dir = \"{}\"\n\n[mail]\nauth_policy_listen = \"127.0.0.1:0\"\n\
         auth_policy_nonce = \"{NONCE}\"\nrecipients = [{list}]\n\
         honey_after_attempts = 3\nhoney_after_addresses = 3\n",
        dir.display()
    );
    let cfg = moat_config::load_text("moat.toml", &text, dir, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let mail = cfg.mail.clone().expect("[mail]");
    let engine = engine();
    Arc::new(MailShield::new(mail, engine, cfg.server.prefix_lens))
}

/// What Dovecot reads from this shield's passwd-file.
fn dovecot_sees(s: &MailShield) -> String {
    std::fs::read_to_string(s.honey_path()).unwrap_or_default()
}

fn line(login: &str) -> String {
    format!("{login}:{{PLAIN}}123456::::::")
}

/// Three failed logins from three addresses with the most common password: a honey account.
fn brute(s: &MailShield, login: &str, net: u8) {
    for i in 0..3u8 {
        s.auth_report(&AuthRequest {
            login: login.into(),
            pwhash: pwhash(NONCE, login, "123456"),
            remote: Some([198, 51, net, 10 + i].into()),
            device_id: String::new(),
            protocol: "imap".into(),
            success: Some(false),
            fail_type: FailType::Account,
        });
    }
}

/// The cluster for one shield, sharing its honey accounts.
async fn join(
    redis: &Redis,
    s: &Arc<MailShield>,
    shutdown: &moat_listen::Shutdown,
) -> moat_cluster::Cluster {
    let engine = engine();
    let c =
        moat_cluster::start(&settings(redis, WhenUnreachable::Local), &engine, shutdown).unwrap();
    connected(&c).await;
    c.share_honey(s.clone(), s.follow_honey(), shutdown);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honey_accounts_are_shared_where_each_instance_allows_them() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let port = redis.port;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The first two serve the same domain; the third has a real `sales` mailbox.
    let a = shield(dirs[0].path(), &["alice@moat.test"]);
    let b = shield(dirs[1].path(), &["alice@moat.test"]);
    let c = shield(dirs[2].path(), &["alice@moat.test", "sales@moat.test"]);
    a.set_honey_gate(Ok(()));
    b.set_honey_gate(Ok(()));
    // The third's Postfix has not been verified: a honey login could relay there.
    c.set_honey_gate(Err("submission does not pass its mail through Moat".into()));
    let shutdown = moat_listen::Shutdown::new();
    let _ca = join(&redis, &a, &shutdown).await;
    let _cb = join(&redis, &b, &shutdown).await;
    let _cc = join(&redis, &c, &shutdown).await;
    // All subscribed (the catch-up follows the subscription).
    tokio::time::sleep(Duration::from_millis(300)).await;

    brute(&a, "info@moat.test", 1);
    assert!(
        dovecot_sees(&a).contains(&line("info@moat.test")),
        "{}",
        dovecot_sees(&a)
    );
    let took = until(
        "a honey account reaches the other instance's Dovecot",
        Duration::from_secs(1),
        || dovecot_sees(&b).contains(&line("info@moat.test")),
    )
    .await;
    eprintln!("a honey account reached the other instance in {took:?}");
    until("the third knows it", Duration::from_secs(1), || {
        c.is_honey("info@moat.test")
    })
    .await;
    assert!(
        !dovecot_sees(&c).contains("info@"),
        "no honey account in Dovecot where Postfix is not gated: {}",
        dovecot_sees(&c)
    );
    // Verified later: it appears there, as the third's own accounts would.
    c.set_honey_gate(Ok(()));
    assert!(dovecot_sees(&c).contains(&line("info@moat.test")));

    // A login that is a real mailbox on the third is honey on the second only.
    brute(&a, "sales@moat.test", 2);
    until("sales reaches the second", Duration::from_secs(1), || {
        b.is_honey("sales@moat.test")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!c.is_honey("sales@moat.test"), "honey over a real mailbox");
    assert!(!dovecot_sees(&c).contains("sales@"));

    // Its owner logs in to `info` on the second with their own password: a real account after
    // all, no longer honey anywhere.
    b.auth_report(&AuthRequest {
        login: "info@moat.test".into(),
        pwhash: pwhash(NONCE, "info@moat.test", "the owner's own long password"),
        remote: Some([203, 0, 113, 9].into()),
        device_id: String::new(),
        protocol: "imap".into(),
        success: Some(true),
        fail_type: FailType::None,
    });
    assert!(!b.is_honey("info@moat.test"));
    for (name, s) in [("first", &a), ("third", &c)] {
        until(
            &format!("a real account stops being honey on the {name}"),
            Duration::from_secs(1),
            || !s.is_honey("info@moat.test") && !dovecot_sees(s).contains("info@"),
        )
        .await;
    }

    // Redis goes away; the first makes an account meanwhile; Redis comes back empty (no
    // persistence): the second catches up on it.
    redis.kill();
    brute(&a, "shop@moat.test", 3);
    assert!(a.is_honey("shop@moat.test"));
    let _redis = Redis::start_on(port).expect("redis-server again");
    until(
        "an account made during the outage is caught up",
        Duration::from_secs(15),
        || dovecot_sees(&b).contains(&line("shop@moat.test")),
    )
    .await;
    // And the login found real before the outage is never made honey again by a catch-up.
    assert!(!a.is_honey("info@moat.test") && !dovecot_sees(&b).contains("info@"));

    // What another instance says is judged here: nothing it sends can put a line of its own
    // into a passwd-file, nor give an account a password bots do not try.
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let far = 4_000_000_000u64;
    for (login, password) in [
        ("evil@moat.test", "123456::::::\nroot:{PLAIN}owned"),
        ("root:{PLAIN}owned::::::\nx", "123456"),
        ("evil@moat.test", "{PLAIN}123456"),
        ("chosen@moat.test", "a password of the sender's choosing"),
        ("postmaster@moat.test", "123456"),
        ("alice@moat.test", "123456"),
    ] {
        let msg = serde_json::json!({"from": 1, "op": "honey",
            "d": {"login": login, "password": password, "expires": far}});
        let _: i64 = redis::cmd("PUBLISH")
            .arg("test:decisions")
            .arg(msg.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: i64 = redis::cmd("PUBLISH")
        .arg("test:decisions")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for s in [&a, &b, &c] {
        let file = dovecot_sees(s);
        assert!(
            !file.contains("owned") && !file.contains("evil") && !file.contains("chosen"),
            "{file}"
        );
        assert!(
            !file.contains("postmaster") && !file.contains("alice"),
            "{file}"
        );
        for l in file.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                l.ends_with(":{PLAIN}123456::::::"),
                "a line Moat did not make: {l}"
            );
        }
    }
    shutdown.begin();
}
