//! Issue 19, item 1, against a real `redis-server` (Debian's, started here on a loopback
//! port): the GCRA script counts as the local limiter does, across connections, in two passes;
//! bans made on one engine reach another within a second, and so do unbans; an engine whose
//! Redis was away catches up when it comes back.

use moat_core::shared::SharedLimits;
use moat_core::shared::WhenUnreachable;
use moat_core::{Origin, Scope};
use std::time::{Duration, Instant};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_counts_like_the_local_limiter_across_instances() {
    let Some(redis) = Redis::start() else { return };
    let shutdown = moat_listen::Shutdown::new();
    let (e1, e2) = (engine(), engine());
    let a = moat_cluster::start(&settings(&redis, WhenUnreachable::Local), &e1, &shutdown).unwrap();
    let b = moat_cluster::start(&settings(&redis, WhenUnreachable::Local), &e2, &shutdown).unwrap();
    connected(&a).await;
    connected(&b).await;

    // 3 an hour, 3 at once: two through one instance, one through the other, then none.
    let per_email = || check("per-email", "victim@example.com", 3, 3, true);
    assert!(a
        .limits
        .check(vec![per_email()])
        .await
        .unwrap()
        .exceeded
        .is_empty());
    assert!(b
        .limits
        .check(vec![per_email()])
        .await
        .unwrap()
        .exceeded
        .is_empty());
    assert!(a
        .limits
        .check(vec![per_email()])
        .await
        .unwrap()
        .exceeded
        .is_empty());
    let out = b.limits.check(vec![per_email()]).await.unwrap();
    assert_eq!(out.exceeded.len(), 1);
    let (idx, wait_us) = out.exceeded[0];
    assert_eq!(idx, 0);
    // One interval (20 minutes) until the next send conforms.
    assert!(
        (1_190_000_000..=1_200_000_000).contains(&wait_us),
        "{wait_us}"
    );
    // Another key, another counter.
    assert!(a
        .limits
        .check(vec![check("per-email", "other@example.com", 3, 3, true)])
        .await
        .unwrap()
        .exceeded
        .is_empty());

    // Two passes: a request the second limit stops does not spend the first's allowance.
    let global = || check("global", "all", 1, 1, true);
    let per_ip = || check("per-ip", "203.0.113.7", 2, 1, true);
    assert!(a
        .limits
        .check(vec![global()])
        .await
        .unwrap()
        .exceeded
        .is_empty());
    let out = a.limits.check(vec![per_ip(), global()]).await.unwrap();
    assert_eq!(out.exceeded.iter().map(|e| e.0).collect::<Vec<_>>(), [1]);
    assert!(
        a.limits
            .check(vec![per_ip()])
            .await
            .unwrap()
            .exceeded
            .is_empty(),
        "per-ip was not spent"
    );

    // A log limit that is exceeded is reported and the request goes on, counted elsewhere.
    let watch = || check("watch", "k", 1, 1, false);
    let room = || check("room", "k", 10, 10, true);
    assert!(a
        .limits
        .check(vec![watch(), room()])
        .await
        .unwrap()
        .exceeded
        .is_empty());
    let out = a.limits.check(vec![watch(), room()]).await.unwrap();
    assert_eq!(out.exceeded.iter().map(|e| e.0).collect::<Vec<_>>(), [0]);
    shutdown.begin();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_and_unbans_reach_the_other_instance_and_survive_an_outage() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let port = redis.port;
    let shutdown = moat_listen::Shutdown::new();
    let (e1, e2) = (engine(), engine());
    let a = moat_cluster::start(&settings(&redis, WhenUnreachable::Local), &e1, &shutdown).unwrap();
    let b =
        moat_cluster::start(&settings(&redis, WhenUnreachable::Closed), &e2, &shutdown).unwrap();
    connected(&a).await;
    connected(&b).await;
    // Both subscribed (the catch-up follows the subscription).
    tokio::time::sleep(Duration::from_millis(300)).await;

    e1.ban(
        Scope::Ip("203.0.113.7".parse().unwrap()),
        Some(Duration::from_secs(600)),
        "test",
        Origin::Jail("sshd".into()),
    );
    until(
        "a ban reaches the other instance",
        Duration::from_secs(1),
        || banned(&e2, "203.0.113.7"),
    )
    .await;
    let d = e2
        .decisions()
        .0
        .into_iter()
        .find(|d| d.scope.to_string() == "203.0.113.7")
        .unwrap();
    assert_eq!(d.origin, Origin::Jail("sshd".into()), "taken as it is");
    // Not echoed back as a new ban: the first instance still has exactly its own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(e1.decisions().0.len(), 1);

    e2.lift(Scope::Ip("203.0.113.7".parse().unwrap()));
    until(
        "an unban reaches the other instance",
        Duration::from_secs(1),
        || !banned(&e1, "203.0.113.7"),
    )
    .await;

    // Redis goes away: limits fall back as configured; bans hold where they are made.
    redis.kill();
    let c = check("per-ip", "198.51.100.1", 10, 10, true);
    assert!(a.limits.check(vec![c.clone()]).await.is_err());
    assert_eq!(a.limits.when_unreachable(), WhenUnreachable::Local);
    assert_eq!(b.limits.when_unreachable(), WhenUnreachable::Closed);
    e1.ban(
        Scope::Ip("192.0.2.50".parse().unwrap()),
        Some(Duration::from_secs(600)),
        "during the outage",
        Origin::Jail("sshd".into()),
    );
    until("a local ban holds", Duration::from_secs(1), || {
        banned(&e1, "192.0.2.50")
    })
    .await;
    assert!(!banned(&e2, "192.0.2.50"));

    // Back (empty, as a restarted Redis without persistence is): both reconnect, and the ban
    // made meanwhile reaches the other instance.
    let _redis = Redis::start_on(port).expect("redis-server again");
    until(
        "the outage's ban is caught up",
        Duration::from_secs(15),
        || banned(&e2, "192.0.2.50"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.limits.check(vec![c.clone()]).await.is_err() {
        assert!(Instant::now() < deadline, "limits never answered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.begin();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_decoy_reaches_the_other_instance_and_the_first_one_wins() {
    let Some(redis) = Redis::start() else { return };
    let shutdown = moat_listen::Shutdown::new();
    let (e1, e2) = (engine(), engine());
    let a = moat_cluster::start(&settings(&redis, WhenUnreachable::Local), &e1, &shutdown).unwrap();
    let b = moat_cluster::start(&settings(&redis, WhenUnreachable::Local), &e2, &shutdown).unwrap();
    connected(&a).await;
    connected(&b).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ghost = moat_store::LearnedResponse {
        status: 201,
        headers: vec![("x-powered-by".into(), "Express".into())],
        body: b"Created.\xff".to_vec(),
    };
    assert!(e1.store().learn("ghost-signup", &ghost).unwrap());
    e1.learned("ghost-signup");
    let store2 = e2.store().clone();
    until(
        "a learned decoy reaches the other instance",
        Duration::from_secs(1),
        || matches!(store2.learned("ghost-signup"), Ok(Some(_))),
    )
    .await;
    assert_eq!(
        e2.store().learned("ghost-signup").unwrap(),
        Some(ghost.clone())
    );

    // The other learned its own first: it keeps it.
    let own = moat_store::LearnedResponse {
        status: 200,
        headers: vec![],
        body: b"ok".to_vec(),
    };
    assert!(e2.store().learn("other", &own).unwrap());
    assert!(e1.store().learn("other", &ghost).unwrap());
    e1.learned("other");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e2.store().learned("other").unwrap(), Some(own));
    shutdown.begin();
}
