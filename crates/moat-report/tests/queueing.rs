//! Dedupe, rate limits, retries and bounded waits, on a clock the tests control.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use moat_report::*;
use serde_json::json;

const HOUR: u64 = 3_600_000;

/// Only the webhook and AbuseIPDB, both at `fake`.
fn webhook_and_abuseipdb(dir: &std::path::Path, fake: &FakeHttp) -> ReportConfig {
    let mut cfg = live_config(dir, fake, None);
    cfg.xarf = None;
    cfg.spamhaus = None;
    cfg
}

fn incident_from(id: &str, ip: &str) -> Incident {
    let mut inc = incident(id);
    inc.source_ip = Some(ip.parse::<IpAddr>().unwrap());
    inc
}

#[tokio::test]
async fn an_indicator_is_reported_once_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHttp::start(|_, _| {
        Resp::json(
            200,
            json!({"data": {"ipAddress": BOT_IP, "abuseConfidenceScore": 1}}),
        )
    })
    .await;
    let mut cfg = webhook_and_abuseipdb(dir.path(), &fake);
    cfg.webhook = None;
    cfg.dedupe_window_secs = 3600;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();

    let t0 = 1_000 * HOUR;
    assert_eq!(r.submit_at(&incident("a"), t0).await.unwrap().len(), 1);
    assert!(r
        .submit_at(&incident("b"), t0 + 1000)
        .await
        .unwrap()
        .is_empty());
    assert!(r
        .submit_at(&incident("c"), t0 + HOUR - 1)
        .await
        .unwrap()
        .is_empty());
    // Another address is another indicator.
    assert_eq!(
        r.submit_at(&incident_from("d", "198.51.100.9"), t0 + 2000)
            .await
            .unwrap()
            .len(),
        1
    );
    // After the window the first address is reported again.
    assert_eq!(
        r.submit_at(&incident("e"), t0 + HOUR + 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let ips: Vec<String> = fake
        .requests()
        .iter()
        .map(|q| q.form()["ip"].clone())
        .collect();
    assert_eq!(ips, vec![BOT_IP, "198.51.100.9", BOT_IP]);
}

#[tokio::test]
async fn over_the_rate_limit_reports_wait_in_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHttp::start(|_, _| Resp::json(200, json!({"ok": true}))).await;
    let mut cfg = webhook_and_abuseipdb(dir.path(), &fake);
    cfg.abuseipdb = None;
    cfg.webhook.as_mut().unwrap().max_per_hour = 2;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();

    let t0 = 1_000 * HOUR;
    let a = r.submit_at(&incident("a"), t0).await.unwrap();
    let b = r.submit_at(&incident("b"), t0 + 10_000).await.unwrap();
    let c = r.submit_at(&incident("c"), t0 + 20_000).await.unwrap();
    let d = r.submit_at(&incident("d"), t0 + 30_000).await.unwrap();
    assert_eq!(a[0].status, Status::Sent);
    assert_eq!(b[0].status, Status::Sent);
    for held in [&c[0], &d[0]] {
        assert_eq!(held.status, Status::Queued);
        assert_eq!(held.attempts, 0, "held back, not attempted");
        assert_eq!(held.answer.as_deref(), Some("rate limit: 2 per hour"));
    }
    // Due when the first send leaves the hour window.
    assert_eq!(c[0].next_attempt_ms, Some(t0 + HOUR + 1));
    assert_eq!(fake.count(), 2);

    assert!(r.pump(t0 + HOUR).await.unwrap().is_empty());
    assert_eq!(fake.count(), 2);
    // One slot frees: c goes, d waits for the second slot.
    let p = r.pump(t0 + HOUR + 1).await.unwrap();
    assert_eq!(fake.count(), 3);
    let sent: Vec<_> = p.iter().filter(|x| x.status == Status::Sent).collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message_id, "c");
    let d_now = r.reports_for("d").unwrap();
    assert_eq!(d_now[0].status, Status::Queued);
    assert_eq!(d_now[0].next_attempt_ms, Some(t0 + 10_000 + HOUR + 1));
    r.pump(t0 + 10_000 + HOUR + 1).await.unwrap();
    assert_eq!(fake.count(), 4);
    assert_eq!(r.reports_for("d").unwrap()[0].status, Status::Sent);
    let ids: Vec<String> = fake
        .requests()
        .iter()
        .map(|q| q.json()["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["a", "b", "c", "d"], "nothing dropped, order kept");
}

#[tokio::test]
async fn server_errors_are_retried_with_capped_exponential_backoff_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHttp::start(|_, _| Resp::json(503, json!({"error": "maintenance"}))).await;
    let mut cfg = webhook_and_abuseipdb(dir.path(), &fake);
    cfg.abuseipdb = None;
    cfg.retry = RetryConfig {
        max_attempts: 4,
        base_secs: 60,
        max_secs: 150,
    };
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let t0 = 1_000 * HOUR;
    let rec = r.submit_at(&incident("a"), t0).await.unwrap().remove(0);
    assert_eq!(rec.status, Status::Queued);
    assert_eq!(rec.answer_code, Some(503));
    assert_eq!(rec.next_attempt_ms, Some(t0 + 60_000));

    // Not before it is due.
    assert!(r.pump(t0 + 59_999).await.unwrap().is_empty());
    assert_eq!(fake.count(), 1);

    let t1 = t0 + 60_000;
    let rec = r.pump(t1).await.unwrap().remove(0);
    assert_eq!((rec.attempts, rec.next_attempt_ms), (2, Some(t1 + 120_000)));
    let t2 = t1 + 120_000;
    let rec = r.pump(t2).await.unwrap().remove(0);
    assert_eq!(
        (rec.attempts, rec.next_attempt_ms),
        (3, Some(t2 + 150_000)),
        "capped at max_secs"
    );
    let rec = r.pump(t2 + 150_000).await.unwrap().remove(0);
    assert_eq!(rec.status, Status::Failed);
    assert_eq!(rec.attempts, 4);
    assert!(rec
        .answer
        .as_deref()
        .unwrap()
        .starts_with("gave up after 4 attempts: HTTP 503"));
    assert_eq!(fake.count(), 4);
    assert!(r.pump(t2 + 100 * HOUR).await.unwrap().is_empty());
    assert_eq!(fake.count(), 4);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHttp::start(|_, _| {
        Resp::json(
            422,
            json!({"errors": [{"detail": "The ip field must be a valid IP address.", "status": 422}]}),
        )
    })
    .await;
    let mut cfg = webhook_and_abuseipdb(dir.path(), &fake);
    cfg.webhook = None;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let rec = r.submit_at(&incident("a"), 1000).await.unwrap().remove(0);
    assert_eq!(rec.status, Status::Rejected);
    assert_eq!(rec.answer_code, Some(422));
    assert_eq!(
        rec.answer.as_deref(),
        Some("HTTP 422: The ip field must be a valid IP address.")
    );
    assert!(r.pump(1000 + 10 * HOUR).await.unwrap().is_empty());
    assert_eq!(fake.count(), 1);
}

#[tokio::test]
async fn network_errors_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note it, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fake = FakeHttp::start(|_, _| Resp::json(200, json!({}))).await;
    let mut cfg = webhook_and_abuseipdb(dir.path(), &fake);
    cfg.abuseipdb = None;
    cfg.webhook.as_mut().unwrap().url = format!("http://127.0.0.1:{closed}/hook");
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let rec = r.submit_at(&incident("a"), 1000).await.unwrap().remove(0);
    assert_eq!(rec.status, Status::Queued);
    assert_eq!(rec.answer_code, None);
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.next_attempt_ms, Some(1000 + 60_000));
}

#[tokio::test]
async fn slow_servers_time_out_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHttp::start(|_, _| Resp {
        delay: Some(Duration::from_secs(30)),
        ..Resp::json(200, json!({}))
    })
    .await;
    let mut cfg = webhook_and_abuseipdb(dir.path(), &fake);
    cfg.abuseipdb = None;
    cfg.timeout_secs = 1;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let started = std::time::Instant::now();
    let rec = r.submit_at(&incident("a"), 1000).await.unwrap().remove(0);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(rec.status, Status::Queued);
    assert!(
        rec.answer.as_deref().unwrap().contains("timed out"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn huge_and_broken_rdap_answers_are_survived() {
    let dir = tempfile::tempdir().unwrap();
    // 3 MiB of JSON-looking garbage, then malformed JSON, then a redirect loop.
    let rdap = FakeHttp::start(|req, _| {
        if req.path.ends_with("/ip/203.0.113.7") {
            Resp {
                status: 200,
                headers: vec![("content-type", "application/rdap+json".into())],
                body: [b"{\"entities\":[".to_vec(), vec![b'['; 3 << 20]].concat(),
                delay: None,
            }
        } else if req.path.ends_with("/domain/spam.example") {
            Resp {
                status: 200,
                headers: vec![],
                body: b"{\"entities\": [{\"roles\": [\"abuse\"], \"vcardArray\": ".to_vec(),
                delay: None,
            }
        } else {
            Resp::json(302, json!({})).with_header("location", &req.path.clone().replace("x", "xx"))
        }
    })
    .await;
    write_bootstrap(&dir.path().join("bootstrap"), &format!("{}/", rdap.url()));
    let apis = FakeHttp::start(|_, _| Resp::json(200, json!({}))).await;
    let smtp = FakeSmtp::start(DataReply::Accept).await;
    let cfg = arf_only_config(dir.path(), &apis, &smtp);
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let recs = r.submit_at(&incident("a"), 1000).await.unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|x| x.status == Status::Failed), "{recs:#?}");
    let ip = recs
        .iter()
        .find(|x| x.indicator.starts_with("ip:"))
        .unwrap();
    assert!(
        ip.answer.as_deref().unwrap().contains("too large"),
        "{ip:?}"
    );
    let dom = recs
        .iter()
        .find(|x| x.indicator.starts_with("domain:"))
        .unwrap();
    assert!(
        dom.answer.as_deref().unwrap().contains("not JSON"),
        "{dom:?}"
    );
    assert!(smtp.mails().is_empty());
    // A failed look-up is not cached and does not block the indicator.
    r.submit_at(&incident("b"), 2000).await.unwrap();
    assert_eq!(rdap.count(), 4);
}

#[tokio::test]
async fn rdap_redirects_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let hits = Arc::new(AtomicU16::new(0));
    let h = hits.clone();
    let rdap = FakeHttp::start(move |req, _| {
        h.fetch_add(1, Ordering::SeqCst);
        if req.path.starts_with("/arin/") {
            // ARIN answers for addresses it does not hold with a redirect to the right RIR.
            let port = req
                .header("host")
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string();
            Resp::json(302, json!({})).with_header(
                "location",
                &format!("http://127.0.0.1:{port}/ripe/ip/203.0.113.7"),
            )
        } else if req.path == "/ripe/ip/203.0.113.7" {
            Resp::json(200, rdap_ip_answer("abuse@ripe-member.example"))
        } else {
            Resp::json(404, json!({}))
        }
    })
    .await;
    write_bootstrap(
        &dir.path().join("bootstrap"),
        &format!("{}/arin/", rdap.url()),
    );
    let apis = FakeHttp::start(|_, _| Resp::json(200, json!({}))).await;
    let smtp = FakeSmtp::start(DataReply::Accept).await;
    let cfg = arf_only_config(dir.path(), &apis, &smtp);
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let mut inc = incident("a");
    inc.domains.clear();
    let recs = r.submit_at(&inc, 1000).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].recipient, "abuse@ripe-member.example");
    assert_eq!(recs[0].status, Status::Sent);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(smtp.mails()[0].rcpt, vec!["abuse@ripe-member.example"]);
}

#[tokio::test]
async fn queued_reports_wait_while_sending_is_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHttp::start(|_, idx| {
        if idx == 0 {
            Resp::json(503, json!({}))
        } else {
            Resp::json(200, json!({}))
        }
    })
    .await;
    let db = dir.path().join("r.db");
    let mut cfg = webhook_and_abuseipdb(dir.path(), &fake);
    cfg.abuseipdb = None;
    {
        let r = Reporter::open(&db, cfg.clone()).unwrap();
        let rec = r.submit_at(&incident("a"), 1000).await.unwrap().remove(0);
        assert_eq!(rec.status, Status::Queued);
    }
    // Restarted with sending off: the queued report stays queued, nothing is sent.
    let mut off = cfg.clone();
    off.send = false;
    let r = Reporter::open(&db, off).unwrap();
    assert!(r.pump(10 * HOUR).await.unwrap().is_empty());
    assert_eq!(fake.count(), 1);
    drop(r);
    // Back on: it goes out, from the database.
    let r = Reporter::open(&db, cfg).unwrap();
    let done = r.pump(10 * HOUR).await.unwrap();
    assert_eq!(done[0].status, Status::Sent);
    assert_eq!(fake.count(), 2);
    assert_eq!(fake.requests()[1].json()["message_id"], "a");
}
