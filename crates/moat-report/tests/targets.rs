//! Every target, sending on, against local fakes that follow each documented API.

mod common;

use common::*;
use moat_report::*;
use serde_json::json;

/// One fake serving AbuseIPDB, Spamhaus, X-ARF and the webhook on their documented paths,
/// answering as the real services document. Requests without the right credentials get the
/// services' documented refusals.
async fn fake_apis() -> FakeHttp {
    FakeHttp::start(|req, _| match req.path.as_str() {
        "/api/v2/report" => {
            if req.header("key") != Some("test-key-123") {
                return Resp::json(
                    401,
                    json!({"errors": [{"detail": "Authentication failed. Your API key is either missing, incorrect, or revoked.", "status": 401}]}),
                );
            }
            let f = req.form();
            Resp::json(
                200,
                json!({"data": {"ipAddress": f.get("ip").cloned().unwrap_or_default(), "abuseConfidenceScore": 52}}),
            )
        }
        p if p.starts_with("/portal/api/v1/submissions/add/") => {
            if req.header("authorization") != Some("Bearer sh-token") {
                return Resp::json(401, json!({"status": 401, "message": "user is not authorized"}));
            }
            let kind = p.rsplit('/').next().unwrap().to_string();
            let b = req.json();
            if kind == "domain" {
                return Resp::json(208, json!({"status": 208, "message": "submission already reported"}));
            }
            Resp::json(
                200,
                json!({"threat_type": b["threat_type"], "reason": b["reason"],
                       "id": "b0f67e0bae18ee10240905843bbb22c21af35c722f2d96f97f2863d63388e784",
                       "submission_type": kind, "source": b["source"]}),
            )
        }
        "/xarf" | "/hook" => Resp::json(202, json!({"ok": true})),
        _ => Resp::json(404, json!({})),
    })
    .await
}

#[tokio::test]
async fn all_targets_send_the_documented_requests() {
    let dir = tempfile::tempdir().unwrap();
    let rdap = fake_rdap(&dir.path().join("bootstrap")).await;
    let apis = fake_apis().await;
    let smtp = FakeSmtp::start(DataReply::Accept).await;
    let cfg = live_config(dir.path(), &apis, Some(&smtp));
    let r = Reporter::open(&dir.path().join("reports.db"), cfg).unwrap();

    let now = 1_704_200_000_000;
    let recs = r.submit_at(&incident("q-1"), now).await.unwrap();
    for rec in &recs {
        assert_eq!(rec.status, Status::Sent, "{rec:?}");
        assert_eq!(rec.attempts, 1);
        assert!(
            rec.outbox_path.is_none(),
            "live reports are not written to the outbox"
        );
    }

    // AbuseIPDB: headers and form fields as documented, the answer's score kept.
    let reqs = apis.requests();
    let ab: Vec<_> = reqs.iter().filter(|q| q.path == "/api/v2/report").collect();
    assert_eq!(ab.len(), 1);
    assert_eq!(ab[0].method, "POST");
    assert_eq!(ab[0].header("accept"), Some("application/json"));
    assert_eq!(
        ab[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = ab[0].form();
    assert_eq!(form["ip"], BOT_IP);
    assert_eq!(form["categories"], "11,18");
    assert_eq!(form["timestamp"], "2024-01-01T12:00:00Z");
    assert!(!form["comment"].contains("alice") && !form["comment"].contains("bob"));
    let ab_rec = &by_target(&recs, Target::AbuseIpdb)[0];
    assert_eq!(ab_rec.answer_code, Some(200));
    assert!(
        ab_rec
            .answer
            .as_deref()
            .unwrap()
            .contains("abuseConfidenceScore 52"),
        "{ab_rec:?}"
    );
    assert_eq!(ab_rec.indicator, format!("ip:{BOT_IP}"));

    // Spamhaus: bearer token, body shape, one submission per indicator; 208 is a success.
    let sh: Vec<_> = reqs
        .iter()
        .filter(|q| q.path.starts_with("/portal/api/v1/submissions/add/"))
        .collect();
    assert_eq!(sh.len(), 2);
    let ip_sub = sh.iter().find(|q| q.path.ends_with("/ip")).unwrap();
    let body = ip_sub.json();
    assert_eq!(body["threat_type"], "source-of-spam");
    assert_eq!(body["source"], json!({"object": BOT_IP}));
    assert!(body["reason"].as_str().unwrap().len() <= 255);
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(ip_sub.header("content-type"), Some("application/json"));
    let dom_sub = sh.iter().find(|q| q.path.ends_with("/domain")).unwrap();
    assert_eq!(dom_sub.json()["source"]["object"], "spam.example");
    let sh_recs = by_target(&recs, Target::Spamhaus);
    let dom_rec = sh_recs
        .iter()
        .find(|r| r.indicator == "domain:spam.example")
        .unwrap();
    assert_eq!(dom_rec.answer_code, Some(208));
    assert_eq!(
        dom_rec.answer.as_deref(),
        Some("HTTP 208: submission already reported")
    );

    // Webhook: the configured header and the incident summary.
    let hook: Vec<_> = reqs.iter().filter(|q| q.path == "/hook").collect();
    assert_eq!(hook.len(), 1);
    assert_eq!(hook[0].header("x-moat-secret"), Some("s3cret"));
    let h = hook[0].json();
    assert_eq!(h["message_id"], "q-1");
    assert_eq!(h["source_ip"], BOT_IP);
    assert_eq!(h["domains"], json!(["spam.example"]));

    // X-ARF: a v3 document with the message as a sample.
    let xarf: Vec<_> = reqs.iter().filter(|q| q.path == "/xarf").collect();
    assert_eq!(xarf.len(), 1);
    let x = xarf[0].json();
    assert_eq!(x["Version"], "3");
    assert_eq!(x["Report"]["ReportClass"], "Activity");
    assert_eq!(x["Report"]["ReportType"], "Spam");
    assert_eq!(x["Report"]["SourceIp"], BOT_IP);
    assert_eq!(
        x["ReporterInfo"]["ReporterOrgEmail"],
        "abuse-reports@trap.example"
    );

    // ARF: RDAP gave one contact for the address and one for the domain; one report each,
    // through the relay, from the configured address.
    assert_eq!(rdap.count(), 2);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    let mut rcpts: Vec<_> = mails.iter().map(|m| m.rcpt.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![
            vec!["abuse@hosting.example".to_string()],
            vec!["abuse@registrar.example".to_string()]
        ]
    );
    for m in &mails {
        assert_eq!(m.from, "abuse-reports@trap.example");
        let text = String::from_utf8_lossy(&m.data);
        assert!(text.contains("report-type=feedback-report"));
        assert!(text.contains(&format!("To: {}\r\n", m.rcpt[0])));
        // The original message travelled intact (dot-stuffing undone by the relay).
        let raw = raw_message();
        assert!(m.data.windows(raw.len()).any(|w| w == raw.as_slice()));
    }
    let arf_recs = by_target(&recs, Target::Arf);
    assert_eq!(arf_recs.len(), 2);
    let ip_arf = arf_recs
        .iter()
        .find(|r| r.recipient == "abuse@hosting.example")
        .unwrap();
    assert_eq!(ip_arf.indicator, format!("ip:{BOT_IP}"));
    assert_eq!(ip_arf.answer_code, Some(250));

    // The history holds every report, newest first.
    let hist = r.history(100).unwrap();
    assert_eq!(hist.len(), recs.len());
    assert!(hist.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(
        serde_json::to_value(&hist[0]).unwrap()["status"],
        json!("sent")
    );
}

#[tokio::test]
async fn abuseipdb_429_is_retried_after_retry_after_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHttp::start(|req, idx| {
        assert_eq!(req.header("key"), Some("test-key-123"));
        if idx == 0 {
            Resp::json(
                429,
                json!({"errors": [{"detail": "You can only report the same IP address (`203.0.113.7`) once in 15 minutes.", "status": 429, "source": {"parameter": "ip"}}]}),
            )
            .with_header("retry-after", "900")
        } else {
            Resp::json(200, json!({"data": {"ipAddress": BOT_IP, "abuseConfidenceScore": 100}}))
        }
    })
    .await;
    let mut cfg = live_config(dir.path(), &fake, None);
    cfg.xarf = None;
    cfg.spamhaus = None;
    cfg.webhook = None;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let t0 = 1_704_200_000_000;
    let recs = r.submit_at(&incident("q"), t0).await.unwrap();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.status, Status::Queued);
    assert_eq!(rec.answer_code, Some(429));
    assert!(rec
        .answer
        .as_deref()
        .unwrap()
        .contains("once in 15 minutes"));
    // Retry-After (900 s) beats the 60 s backoff.
    assert_eq!(rec.next_attempt_ms, Some(t0 + 900_000));
    assert_eq!(r.next_due_ms().unwrap(), Some(t0 + 900_000));

    assert!(r.pump(t0 + 899_999).await.unwrap().is_empty());
    assert_eq!(fake.count(), 1);
    let done = r.pump(t0 + 900_000).await.unwrap();
    assert_eq!(fake.count(), 2);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, Status::Sent);
    assert_eq!(done[0].attempts, 2);
    assert!(done[0]
        .answer
        .as_deref()
        .unwrap()
        .contains("abuseConfidenceScore 100"));
    assert_eq!(r.next_due_ms().unwrap(), None);
}

#[tokio::test]
async fn a_wrong_token_is_a_permanent_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let apis = fake_apis().await;
    let mut cfg = live_config(dir.path(), &apis, None);
    cfg.xarf = None;
    cfg.webhook = None;
    cfg.abuseipdb = None;
    cfg.spamhaus.as_mut().unwrap().token = "wrong".into();
    cfg.spamhaus.as_mut().unwrap().submit_domains = false;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let recs = r.submit_at(&incident("q"), 1_000_000).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, Status::Rejected);
    assert_eq!(recs[0].answer_code, Some(401));
    assert_eq!(
        recs[0].answer.as_deref(),
        Some("HTTP 401: user is not authorized")
    );
    // Not retried.
    assert!(r.pump(100_000_000).await.unwrap().is_empty());
    assert_eq!(apis.count(), 1);
    // A rejected report does not block the indicator: the next incident tries again.
    let again = r.submit_at(&incident("q2"), 2_000_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(apis.count(), 2);
}

#[tokio::test]
async fn rdap_answers_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let rdap = fake_rdap(&dir.path().join("bootstrap")).await;
    let apis = fake_apis().await;
    let smtp = FakeSmtp::start(DataReply::Accept).await;
    let mut cfg = live_config(dir.path(), &apis, Some(&smtp));
    cfg.dedupe_window_secs = 0;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    r.submit_at(&incident("a"), 10_000).await.unwrap();
    r.submit_at(&incident("b"), 20_000).await.unwrap();
    assert_eq!(
        rdap.count(),
        2,
        "the second incident is addressed from the cache"
    );
    assert_eq!(smtp.mails().len(), 4);
}

#[tokio::test]
async fn an_address_without_abuse_contact_is_recorded_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let rdap = FakeHttp::start(|_, _| {
        Resp::json(
            200,
            json!({"objectClassName": "ip network", "entities": []}),
        )
    })
    .await;
    write_bootstrap(&dir.path().join("bootstrap"), &format!("{}/", rdap.url()));
    let apis = fake_apis().await;
    let smtp = FakeSmtp::start(DataReply::Accept).await;
    let cfg = arf_only_config(dir.path(), &apis, &smtp);
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let mut inc = incident("q");
    inc.domains.clear();
    let recs = r.submit_at(&inc, 1000).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, Status::Failed);
    assert_eq!(
        recs[0].answer.as_deref(),
        Some("RDAP names no abuse contact")
    );
    assert!(smtp.mails().is_empty());
}

#[tokio::test]
async fn smtp_refusals_are_permanent_and_4xx_is_retried() {
    for (reply, status) in [
        (DataReply::Permanent, Status::Rejected),
        (DataReply::Transient, Status::Queued),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let _rdap = fake_rdap(&dir.path().join("bootstrap")).await;
        let apis = fake_apis().await;
        let smtp = FakeSmtp::start(reply).await;
        let cfg = arf_only_config(dir.path(), &apis, &smtp);
        let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
        let mut inc = incident("q");
        inc.domains.clear();
        let recs = r.submit_at(&inc, 1000).await.unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, status, "{:?}", recs[0]);
        let code = if reply == DataReply::Permanent {
            554
        } else {
            451
        };
        assert_eq!(recs[0].answer_code, Some(code));
        assert!(smtp.sessions.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }
}
