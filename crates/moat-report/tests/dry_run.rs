//! With sending off, nothing reaches any server and every report lands in the outbox.

mod common;

use common::*;
use moat_report::*;
use serde_json::Value;

fn outbox_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every target configured against local fakes (RDAP included), sending off.
async fn dry_run_setup(dir: &std::path::Path) -> (FakeHttp, FakeHttp, FakeSmtp, ReportConfig) {
    let rdap = fake_rdap(&dir.join("bootstrap")).await;
    let apis = FakeHttp::start(|_, _| Resp::json(200, serde_json::json!({}))).await;
    let smtp = FakeSmtp::start(DataReply::Accept).await;
    let mut cfg = live_config(dir, &apis, Some(&smtp));
    cfg.send = false;
    (rdap, apis, smtp, cfg)
}

#[tokio::test]
async fn dry_run_sends_nothing_and_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let (rdap, apis, smtp, cfg) = dry_run_setup(dir.path()).await;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();

    let now = 1_704_200_000_000;
    let recs = r.submit_at(&incident("q-1"), now).await.unwrap();
    // Later pumps do not send them either.
    assert!(r.pump(now + 10 * 3_600_000).await.unwrap().is_empty());

    assert_eq!(apis.count(), 0, "no API request");
    assert_eq!(rdap.count(), 0, "no RDAP look-up");
    assert_eq!(smtp.sessions.load(std::sync::atomic::Ordering::SeqCst), 0);

    // One ARF (placeholder recipient), X-ARF, AbuseIPDB, Spamhaus ip + domain, webhook.
    assert_eq!(recs.len(), 6, "{recs:#?}");
    assert!(recs.iter().all(|r| r.status == Status::DryRun), "{recs:#?}");
    let files = outbox_files(&dir.path().join("outbox"));
    assert_eq!(files.len(), 6);
    for rec in &recs {
        let p = rec.outbox_path.as_deref().expect("outbox path recorded");
        assert!(std::path::Path::new(p).exists());
    }
    // Names sort by time then id, i.e. in the order the reports were made.
    let mut by_id = recs.clone();
    by_id.sort_by_key(|r| r.id);
    let paths: Vec<_> = by_id
        .iter()
        .map(|r| std::path::PathBuf::from(r.outbox_path.clone().unwrap()))
        .collect();
    assert_eq!(paths, files);

    let arf = &by_target(&recs, Target::Arf)[0];
    assert_eq!(arf.recipient, arf::UNKNOWN_RECIPIENT);
    assert_eq!(
        arf.indicator,
        format!("ip:{BOT_IP} domain:spam.example"),
        "one placeholder report covers every indicator"
    );
    let eml = std::fs::read(arf.outbox_path.as_ref().unwrap()).unwrap();
    assert!(arf.outbox_path.as_ref().unwrap().ends_with("-arf.eml"));
    let text = String::from_utf8_lossy(&eml);
    assert!(text.contains("To: abuse@<unknown>\r\n"));
    assert!(text.contains("X-Moat-Dry-Run: sending is off (send = false); RDAP not consulted"));
    assert!(text.contains("Feedback-Type: abuse"));

    let ab = &by_target(&recs, Target::AbuseIpdb)[0];
    let doc: Value =
        serde_json::from_slice(&std::fs::read(ab.outbox_path.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["url"], format!("{}/api/v2/report", apis.url()));
    assert_eq!(doc["headers"]["key"], "<redacted>");
    assert!(
        !String::from_utf8_lossy(&std::fs::read(ab.outbox_path.as_ref().unwrap()).unwrap())
            .contains("test-key-123")
    );
    let body = doc["body"].as_str().unwrap();
    let form: std::collections::BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form["ip"], BOT_IP);
    assert_eq!(form["categories"], "11,18");

    let sh = by_target(&recs, Target::Spamhaus);
    assert_eq!(sh.len(), 2);
    for s in &sh {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(s.outbox_path.as_ref().unwrap()).unwrap())
                .unwrap();
        assert_eq!(doc["headers"]["authorization"], "<redacted>");
        assert_eq!(doc["body"]["threat_type"], "source-of-spam");
    }

    let hook = &by_target(&recs, Target::Webhook)[0];
    let file = std::fs::read(hook.outbox_path.as_ref().unwrap()).unwrap();
    let doc: Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(doc["headers"]["x-moat-secret"], "<redacted>");
    assert!(!String::from_utf8_lossy(&file).contains("s3cret"));
    assert_eq!(doc["body"]["message_id"], "q-1");

    // The same bot and domains again are deduplicated in dry runs too; only the webhook,
    // which reports incidents rather than indicators, hears of the new message.
    let again = r.submit_at(&incident("q-1b"), now + 1000).await.unwrap();
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0].target, Target::Webhook);
    assert_eq!(again[0].indicator, "message:q-1b");
    assert_eq!(outbox_files(&dir.path().join("outbox")).len(), 7);
}

#[tokio::test]
async fn rdap_in_dry_run_addresses_the_files_but_sends_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (rdap, apis, smtp, mut cfg) = dry_run_setup(dir.path()).await;
    cfg.rdap_in_dry_run = true;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let recs = r.submit_at(&incident("q"), 5_000).await.unwrap();

    assert_eq!(rdap.count(), 2);
    assert_eq!(apis.count(), 0);
    assert_eq!(smtp.sessions.load(std::sync::atomic::Ordering::SeqCst), 0);
    let arfs = by_target(&recs, Target::Arf);
    let mut to: Vec<_> = arfs.iter().map(|a| a.recipient.clone()).collect();
    to.sort();
    assert_eq!(to, vec!["abuse@hosting.example", "abuse@registrar.example"]);
    for a in &arfs {
        assert_eq!(a.status, Status::DryRun);
        let eml = std::fs::read_to_string(a.outbox_path.as_ref().unwrap()).unwrap_or_else(|_| {
            String::from_utf8_lossy(&std::fs::read(a.outbox_path.as_ref().unwrap()).unwrap())
                .into_owned()
        });
        assert!(eml.contains(&format!("To: {}\r\n", a.recipient)));
    }
}

#[tokio::test]
async fn a_target_missing_its_credentials_stays_in_dry_run_while_others_send() {
    let dir = tempfile::tempdir().unwrap();
    let apis = FakeHttp::start(|_, _| Resp::json(200, serde_json::json!({}))).await;
    let mut cfg = live_config(dir.path(), &apis, None);
    cfg.abuseipdb.as_mut().unwrap().key.clear();
    cfg.spamhaus = None;
    cfg.xarf = Some(XarfConfig::default()); // no URL: the outbox is its delivery
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let recs = r.submit_at(&incident("q"), 5_000).await.unwrap();
    assert_eq!(recs.len(), 3);
    let ab = &by_target(&recs, Target::AbuseIpdb)[0];
    assert_eq!(ab.status, Status::DryRun);
    assert_eq!(ab.answer.as_deref(), Some("target not fully configured"));
    let x = &by_target(&recs, Target::Xarf)[0];
    assert_eq!(x.status, Status::Written);
    assert_eq!(x.recipient, "outbox");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(x.outbox_path.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(doc["Report"]["ReportType"], "Spam");
    let hook = &by_target(&recs, Target::Webhook)[0];
    assert_eq!(hook.status, Status::Sent);
    let reqs = apis.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/hook");
}

#[tokio::test]
async fn hostile_incidents_do_not_break_the_reporter() {
    let dir = tempfile::tempdir().unwrap();
    let apis = FakeHttp::start(|_, _| Resp::json(200, serde_json::json!({}))).await;
    let smtp = FakeSmtp::start(DataReply::Accept).await;
    let mut cfg = live_config(dir.path(), &apis, Some(&smtp));
    cfg.send = false;
    let r = Reporter::open(&dir.path().join("r.db"), cfg).unwrap();
    let mut inc = incident("../../etc/passwd\r\nX: y");
    inc.helo = "\0\r\n".repeat(10_000);
    inc.mail_from = "<>\r\nBcc: all@example.com".into();
    inc.rcpt_to = vec!["\u{202e}@x".into(); 5000];
    inc.urls = (0..5000)
        .map(|i| format!("https://d{i}.example/\n"))
        .collect();
    inc.domains = (0..5000).map(|i| format!("d{i}.example")).collect();
    inc.raw = (0..=255u8).cycle().take(300_000).collect();
    let recs = r.submit_at(&inc, 1).await.unwrap();
    assert!(!recs.is_empty());
    for rec in &recs {
        let name = std::path::Path::new(rec.outbox_path.as_ref().unwrap());
        assert_eq!(name.parent().unwrap(), dir.path().join("outbox"));
    }
    // Spamhaus gets at most ten domains per incident, not five thousand.
    assert!(by_target(&recs, Target::Spamhaus).len() <= 11);
}
