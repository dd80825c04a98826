use super::*;

fn meta(id: &str, ms: u64, rcpt: &str) -> Meta {
    Meta {
        id: id.into(),
        received_ms: ms,
        client_ip: "127.9.0.1".into(),
        client_port: 40000,
        helo: "bot".into(),
        mail_from: "spam@bad.test".into(),
        rcpt_to: vec![rcpt.into()],
        auth_user: Some("info@moat.test".into()),
        auth_password: Some("123456".into()),
        tls: false,
        listener: "trap".into(),
    }
}

/// A login attempt over TLS with password `pw`.
fn login(at_ms: u64, username: &str, verdict: &str) -> Login {
    Login {
        at_ms,
        client_ip: "127.0.0.9".into(),
        mechanism: "PLAIN".into(),
        username: username.into(),
        password: "pw".into(),
        verdict: verdict.into(),
        tls: true,
    }
}

/// A quarantine that stored `m` (content [`MSG`]), flushed, and was closed again.
fn stored_and_closed(m: Meta) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    rt().block_on(q.store(m, MSG.to_vec())).unwrap();
    rt().block_on(q.flush());
    dir
}

const MSG: &[u8] = b"From: <spam@bad.test>\r\nTo: <v@victim.test>\r\nSubject: Cheap pills\r\n\r\nBuy at https://pills.example.com/buy?x=1 now\r\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn stored_indexed_deduplicated_and_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    let rt = rt();
    let a = rt
        .block_on(q.store(meta("A1", 1000, "v1@victim.test"), MSG.to_vec()))
        .unwrap();
    let b = rt
        .block_on(q.store(meta("B2", 2000, "v2@victim.test"), MSG.to_vec()))
        .unwrap();
    assert!(!a.duplicate && b.duplicate);
    rt.block_on(q.flush());
    let files: Vec<_> = std::fs::read_dir(dir.path().join("new")).unwrap().collect();
    assert_eq!(files.len(), 1, "one file for one content");
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let rows = index::list(&db, 10).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["B2", "A1"]
    );
    assert_eq!(rows[1].rcpt_to, ["v1@victim.test"]);
    assert_eq!(read_message(dir.path(), &rows[0]).unwrap(), MSG);
    let iocs = index::iocs_of(&db, &rows[0].sha256).unwrap();
    assert!(
        iocs.iter()
            .any(|i| i.kind == "url" && i.value == "https://pills.example.com/buy?x=1"),
        "{iocs:?}"
    );
    assert!(iocs
        .iter()
        .any(|i| i.kind == "domain" && i.value == "example.com"));
    assert_eq!(rows[0].subject.as_deref(), Some("Cheap pills"));
    let summary = index::ioc_summary(&db, Some("envelope-rcpt")).unwrap();
    assert_eq!(summary.len(), 2);
    let dom = index::ioc_summary(&db, Some("domain")).unwrap();
    assert_eq!(
        (dom[0].messages, dom[0].first_ms, dom[0].last_ms),
        (2, 1000, 2000)
    );
}

#[test]
fn quota_evicts_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = QuarantineConfig::new(dir.path());
    cfg.max_bytes = 250;
    let q = Quarantine::open(cfg).unwrap();
    let rt = rt();
    for i in 0..5u64 {
        let body = format!("Subject: m{i}\r\n\r\n{}\r\n", "x".repeat(80));
        rt.block_on(q.store(meta(&format!("M{i}"), 1000 + i, "v@x"), body.into_bytes()))
            .unwrap();
    }
    rt.block_on(q.flush());
    let ids = indexed_ids(dir.path());
    assert_eq!(ids, ["M4", "M3"]);
    assert_eq!(q.stats().evicted.load(Ordering::Relaxed), 3);
    assert!(q.stats().bytes.load(Ordering::Relaxed) <= 250);
    assert_eq!(
        std::fs::read_dir(dir.path().join("new")).unwrap().count(),
        2
    );
    let db = index::open_read(&index_path(dir.path())).unwrap();
    assert_eq!(index::counter(&db, "evicted").unwrap(), 3);
}

#[test]
fn recovery_after_a_crash_between_file_and_index() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("new")).unwrap();
    // A whole file whose commit never happened, a half file in tmp/, and (after a first
    // open) an index row whose file vanished.
    {
        let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
        rt().block_on(q.store(
            meta("GONE", 5, "a@b"),
            b"Subject: gone\r\n\r\nx\r\n".to_vec(),
        ))
        .unwrap();
        rt().block_on(q.flush());
    }
    for e in std::fs::read_dir(dir.path().join("new")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (bytes, _) = files::encode(&meta("ORPHAN", 7000, "o@x"), MSG, &sha256_hex(MSG));
    files::write(dir.path(), &files::file_name("ORPHAN", 7000), &bytes, true).unwrap();
    std::fs::write(
        dir.path().join("tmp/123.HALF.moat"),
        b"X-Moat-Trap: {\"id\"",
    )
    .unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    rt().block_on(q.flush());
    assert_eq!(q.stats().recovered.load(Ordering::Relaxed), 1);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let rows = index::list(&db, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].id.as_str(), rows[0].rcpt_to[0].as_str()),
        ("ORPHAN", "o@x")
    );
    assert_eq!(read_message(dir.path(), &rows[0]).unwrap(), MSG);
    // ...and it was analysed at start.
    assert!(!index::iocs_of(&db, &rows[0].sha256).unwrap().is_empty());
}

#[test]
fn logins_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    for (u, v) in [("a@x", "refused"), ("b@x", "common-password")] {
        q.record_login(login(9, u, v));
    }
    rt().block_on(q.flush());
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let l = index::logins(&db, 10).unwrap();
    assert_eq!(l.len(), 2);
    assert!(l
        .iter()
        .any(|r| r.username == "b@x" && r.verdict == "common-password" && r.tls));
}

#[test]
fn ids_sort_by_time() {
    assert!(new_id(1_000) < new_id(1_001));
    assert_eq!(new_id(1).len(), 16);
    // Later than any clock (ids never go back, and tests run in parallel).
    let now = 1u64 << 43;
    let id = new_id(now);
    assert_eq!(u64::from_str_radix(&id[..11], 16).unwrap(), now, "{id}");
}

/// Many deliveries in one millisecond, from many threads, never share an id (with 20 random
/// bits each, 4000 draws in one millisecond repeat one with a probability near 1).
#[test]
fn ids_never_repeat_within_a_millisecond() {
    let ms = 1_900_000_000_000u64;
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || (0..4000).map(|_| new_id(ms)).collect::<Vec<_>>()))
        .collect();
    let mut all = std::collections::HashSet::new();
    for t in threads {
        for id in t.join().unwrap() {
            assert_eq!(id.len(), 16);
            assert!(all.insert(id.clone()), "{id} twice");
        }
    }
    assert_eq!(all.len(), 16_000);
}

/// The ids of the newest ten deliveries in the index.
fn indexed_ids(dir: &Path) -> Vec<String> {
    let db = index::open_read(&index_path(dir)).unwrap();
    index::list(&db, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// The journal's whole content: every frame of every segment.
fn journal_frames(dir: &Path) -> usize {
    journal::segments(dir)
        .unwrap()
        .iter()
        .map(|(_, p)| journal::frames(&std::fs::read(p).unwrap()).0.len())
        .sum()
}

/// Writes `m` (content [`MSG`]) as one frame of journal segment `number`, as intake does.
fn journal_write(dir: &Path, number: u64, m: &Meta) {
    let (bytes, _) = files::encode(m, MSG, &sha256_hex(MSG));
    let mut frame = Vec::new();
    journal::frame(&bytes, &mut frame);
    std::fs::create_dir_all(journal::dir(dir)).unwrap();
    std::fs::write(journal::dir(dir).join(format!("{number:016}.log")), frame).unwrap();
}

/// A delivery answered but not indexed yet (only in the journal) is listed with the indexed
/// ones, newest first, and not twice once it is indexed too.
#[test]
fn list_includes_deliveries_still_only_in_the_journal() {
    let dir = stored_and_closed(meta("INDEXED", 1000, "i@x"));
    journal_write(dir.path(), 50, &meta("JOURNALED", 2000, "j@x"));
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let ids = |limit| -> Vec<String> {
        list(dir.path(), &db, limit)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(10), ["JOURNALED", "INDEXED"]);
    assert_eq!(ids(1), ["JOURNALED"]);
    // The same delivery journaled again after it was indexed is listed once.
    journal_write(dir.path(), 51, &meta("INDEXED", 1000, "i@x"));
    assert_eq!(ids(10), ["JOURNALED", "INDEXED"]);
}

/// What a crash after the `250` but before the writer indexed the message leaves: the
/// message only in the journal. Readers find it there; the next open files and indexes it and
/// empties the journal.
#[test]
fn journaled_message_indexed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    journal_write(dir.path(), 7, &meta("JOURNALED", 9000, "j@x"));
    let found = journal_find(dir.path(), |m, _| m.id == "JOURNALED").unwrap();
    assert_eq!(
        found.map(|(m, d)| (m.rcpt_to, d)),
        Some((vec!["j@x".into()], MSG.to_vec()))
    );
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    assert_eq!(q.stats().recovered.load(Ordering::Relaxed), 1);
    assert_eq!(journal_frames(dir.path()), 0, "journal emptied");
    let numbers: Vec<u64> = journal::segments(dir.path())
        .unwrap()
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(numbers, [8], "the new segment follows the replayed one");
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let rows = index::list(&db, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "JOURNALED");
    std::fs::remove_dir_all(journal::dir(dir.path())).unwrap();
    assert_eq!(
        read_message(dir.path(), &rows[0]).unwrap(),
        MSG,
        "from its own file"
    );
    drop(q);
}

/// What a crash after the index commit but before the sweep that syncs the file leaves: the
/// row, the file cut short, the message still in the journal. Readers fall back to the
/// journal; the next open writes the file again from it.
#[test]
fn cut_short_file_restored_from_the_journal() {
    let m = meta("SWEPT", 9000, "s@x");
    let dir = stored_and_closed(m.clone());
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let row = index::list(&db, 1).unwrap().remove(0);
    let path = dir.path().join("new").join(&row.file);
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    journal_write(dir.path(), 100, &m);
    assert_eq!(
        read_message(dir.path(), &row).unwrap(),
        MSG,
        "read from the journal"
    );
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole, "file written again");
    assert_eq!(journal_frames(dir.path()), 0);
    let rows = index::list(&db, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "SWEPT");
    drop(q);
}

/// A journal segment cut short mid-frame (the append that the crash tore was never
/// answered) replays up to the tear.
#[test]
fn torn_journal_tail_replays_up_to_the_tear() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for id in ["T1", "T2"] {
        let (b, _) = files::encode(
            &meta(id, 100, "t@x"),
            id.as_bytes(),
            &sha256_hex(id.as_bytes()),
        );
        journal::frame(&b, &mut bytes);
    }
    bytes.truncate(bytes.len() - 3);
    std::fs::create_dir_all(journal::dir(dir.path())).unwrap();
    std::fs::write(journal::dir(dir.path()).join("0000000000000001.log"), bytes).unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    let ids = indexed_ids(dir.path());
    assert_eq!(ids, ["T1"]);
    assert_eq!(journal_frames(dir.path()), 0);
    drop(q);
}

/// A file whose group never committed (never acknowledged) and that was cut short by the
/// crash is removed, not indexed.
#[test]
fn cut_short_unacknowledged_file_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("new")).unwrap();
    let (bytes, _) = files::encode(&meta("TORN", 7000, "t@x"), MSG, &sha256_hex(MSG));
    let name = files::file_name("TORN", 7000);
    files::write(dir.path(), &name, &bytes[..bytes.len() - 5], true).unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    rt().block_on(q.flush());
    assert!(!dir.path().join("new").join(&name).exists());
    let db = index::open_read(&index_path(dir.path())).unwrap();
    assert!(index::list(&db, 10).unwrap().is_empty());
    assert_eq!(q.stats().recovered.load(Ordering::Relaxed), 0);
}

/// Without any flush, the writer indexes behind the replies, the sync thread makes the files
/// durable, and the journal drains.
#[test]
fn journal_drains_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    let rt = rt();
    for i in 0..20u64 {
        let body = format!("Subject: n{i}\r\n\r\nbody {i}\r\n");
        rt.block_on(q.store(
            meta(&format!("N{i:02}"), 1000 + i, "v@x"),
            body.into_bytes(),
        ))
        .unwrap();
    }
    assert!(journal_frames(dir.path()) > 0, "journaled at first");
    // A sweep after at most a second, then the open segment is closed and swept again: two
    // sweeps, so 10 s leaves room for a loaded machine.
    let mut drained = false;
    for _ in 0..200u64 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if journal_frames(dir.path()) == 0 {
            drained = true;
            break;
        }
    }
    assert!(drained, "journal still holds messages after 10 s");
    let db = index::open_read(&index_path(dir.path())).unwrap();
    assert_eq!(index::list(&db, 100).unwrap().len(), 20);
}

/// An index written by another layout version is moved aside (kept) and a new one is built
/// from the files, which carry every envelope.
#[test]
fn index_of_another_version_is_rebuilt_from_the_files() {
    let dir = stored_and_closed(meta("OLD1", 3000, "o@x"));
    {
        let c = rusqlite::Connection::open(index_path(dir.path())).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
    }
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    rt().block_on(q.flush());
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("index.sqlite.old-") && !n.ends_with("-wal") && !n.ends_with("-shm")
        })
        .collect();
    assert_eq!(aside.len(), 1, "old index kept");
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let rows = index::list(&db, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "OLD1");
    assert_eq!(read_message(dir.path(), &rows[0]).unwrap(), MSG);
    assert_eq!(q.stats().recovered.load(Ordering::Relaxed), 1);
}

/// Issue 15: `/metrics` types the quarantine's values: its `_total` ones are counters (they were
/// all gauges), the bytes held are gauges.
#[test]
fn metrics_are_typed_counters_and_gauges() {
    use moat_core::metric::MetricKind;
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    let rt = rt();
    rt.block_on(q.store(meta("A1", 1000, "v1@victim.test"), MSG.to_vec()))
        .unwrap();
    rt.block_on(q.flush());
    let m = q.metrics();
    for s in &m {
        let want = if s.name.ends_with("_total") {
            MetricKind::Counter
        } else {
            MetricKind::Gauge
        };
        assert_eq!(s.kind, want, "{s:?}");
    }
    let get = |n: &str| m.iter().find(|s| s.name == n).expect(n);
    assert_eq!(get("moat_quarantine_messages_total").value, 1);
    assert_eq!(get("moat_quarantine_bytes").kind, MetricKind::Gauge);
    assert!(get("moat_quarantine_bytes").value > 0);
}

/// Polls `cond` for up to 10 s.
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Makes writing the file of delivery `id` (received at `ms`) fail with ENOSPC, as on a full
/// disk: its `tmp/` name links to `/dev/full` (which `clean_tmp` leaves, not being a file).
fn disk_full_for(dir: &Path, id: &str, ms: u64) -> std::path::PathBuf {
    std::fs::create_dir_all(files::tmp_dir(dir)).unwrap();
    let link = files::tmp_dir(dir).join(files::file_name(id, ms));
    std::os::unix::fs::symlink("/dev/full", &link).unwrap();
    link
}

fn listed_ids(dir: &Path) -> Vec<String> {
    let db = index::open_read(&index_path(dir)).unwrap();
    list(dir, &db, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// The disk fills after a delivery was journaled and answered, before the writer filed it:
/// it stays in the journal (and listed), new deliveries are refused as storage full (the
/// session answers `452 4.3.1`), and once there is space again the writer files it without a
/// restart and the next delivery is accepted at once.
#[test]
fn a_full_disk_refuses_deliveries_and_recovers_without_a_restart() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    let rt = rt();
    let link = disk_full_for(dir.path(), "HELD", 5000);
    rt.block_on(q.store(meta("HELD", 5000, "h@x"), MSG.to_vec()))
        .expect("journaled, so acknowledged");
    assert!(
        wait_until(|| q.stats().failed.load(Ordering::Relaxed) >= 1),
        "the writer never tried to file it"
    );
    let refused = rt
        .block_on(q.store(meta("REFUSED", 6000, "r@x"), b"refused\r\n".to_vec()))
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::StorageFull);
    // Retried every second meanwhile, and still held in the journal: listed, not lost.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(listed_ids(dir.path()), ["HELD"]);
    assert!(indexed_ids(dir.path()).is_empty());
    assert_eq!(journal_frames(dir.path()), 1);

    std::fs::remove_file(&link).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    rt.block_on(q.store(meta("NEXT", 7000, "n@x"), b"next\r\n".to_vec()))
        .expect("space is back: accepted");
    rt.block_on(q.flush());
    assert_eq!(indexed_ids(dir.path()), ["NEXT", "HELD"]);
    assert_eq!(journal_frames(dir.path()), 0, "the journal drained");
    let db = index::open_read(&index_path(dir.path())).unwrap();
    let held = index::get(&db, "HELD").unwrap().unwrap();
    assert!(!held.file.is_empty());
    assert_eq!(read_message(dir.path(), &held).unwrap(), MSG);
    assert!(!files::tmp_dir(dir.path()).join(&held.file).exists());
    drop(q);
}

/// A start on a full disk: the journal's deliveries cannot be filed, yet the quarantine opens
/// (a full disk is temporary), refuses deliveries, keeps the journal, and files them once
/// space is back.
#[test]
fn a_full_disk_at_start_keeps_the_journal_and_files_it_later() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    journal_write(dir.path(), 3, &meta("JOURNALED", 9000, "j@x"));
    let link = disk_full_for(dir.path(), "JOURNALED", 9000);
    let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
    let rt = rt();
    assert_eq!(journal_frames(dir.path()), 1, "the journal is kept");
    assert_eq!(listed_ids(dir.path()), ["JOURNALED"]);
    let refused = rt
        .block_on(q.store(meta("REFUSED", 9500, "r@x"), b"refused\r\n".to_vec()))
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::StorageFull);
    std::fs::remove_file(&link).unwrap();
    // The writer's own retry (every second) files it; no delivery needed.
    assert!(
        wait_until(|| indexed_ids(dir.path()) == ["JOURNALED"]),
        "not filed once space came back"
    );
    rt.block_on(q.flush());
    assert_eq!(journal_frames(dir.path()), 0, "the journal drained");
    let numbers: Vec<u64> = journal::segments(dir.path())
        .unwrap()
        .iter()
        .map(|s| s.0)
        .collect();
    assert!(numbers.iter().all(|&n| n > 3), "{numbers:?}");
    drop(q);
}

/// Quarantine ids and the index's file names can never reach outside the quarantine: an id
/// that is not id-shaped is refused at store, and a row naming a path is not read.
#[test]
fn ids_and_file_names_cannot_escape_the_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, b"not quarantine").unwrap();
    let q = Quarantine::open(QuarantineConfig::new(&dir.path().join("q"))).unwrap();
    let rt = rt();
    for id in ["../../secret", "a/b", "", "x\0y", &"A".repeat(65)] {
        let e = rt
            .block_on(q.store(meta(id, 1000, "v@victim.test"), MSG.to_vec()))
            .expect_err(id);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{id:?}");
    }
    rt.block_on(q.store(meta("OK_1-a", 1000, "v@victim.test"), MSG.to_vec()))
        .unwrap();
    rt.block_on(q.flush());
    let db = index::open_read(&index_path(&dir.path().join("q"))).unwrap();
    let mut row = index::list(&db, 10).unwrap().remove(0);
    assert_eq!(read_message(&dir.path().join("q"), &row).unwrap(), MSG);
    // Each bad name is not read; the message then comes from the journal, as for a delivery
    // not yet filed, or not at all.
    // A file outside shaped like a quarantine file of this row: read, it would pass as the
    // message.
    let mut outside = vec![b'H'; row.body_offset as usize];
    outside.extend(std::iter::repeat_n(b'S', row.size as usize));
    std::fs::write(&secret, &outside).unwrap();
    let row_ok = row.clone();
    for file in [
        "../../secret.txt",
        "../secret.txt",
        "/etc/passwd",
        "..",
        ".hidden",
        "",
    ] {
        row.file = file.to_string();
        match read_message(&dir.path().join("q"), &row) {
            Ok(bytes) => assert_eq!(bytes, MSG, "{file:?}: read outside the quarantine"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{file:?}"),
        }
        row.sha256 = "0".repeat(64);
        row.id = "NOPE".into();
        let e = read_message(&dir.path().join("q"), &row).expect_err(file);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{file:?}");
        row = row_ok.clone();
    }
}

/// An id that comes again with other content (a restart with the clock stepped back) files
/// the second message under a derived id: neither row nor file of the first is replaced, and
/// reopening (recovery, replay) changes nothing.
#[test]
fn an_id_again_with_other_content_loses_neither_message() {
    let dir = stored_and_closed(meta("0190F3A2B4C5D6E7", 5000, "first@x"));
    let other = b"Subject: another\r\n\r\nother content\r\n".to_vec();
    {
        let q = Quarantine::open(QuarantineConfig::new(dir.path())).unwrap();
        rt().block_on(q.store(meta("0190F3A2B4C5D6E7", 5100, "second@x"), other.clone()))
            .unwrap();
        rt().block_on(q.flush());
    }
    // And a third time, only in the journal, as a crash would leave it.
    let third = b"third";
    let (bytes, _) = files::encode(
        &meta("0190F3A2B4C5D6E7", 5200, "third@x"),
        third,
        &sha256_hex(third),
    );
    let mut frame = Vec::new();
    journal::frame(&bytes, &mut frame);
    std::fs::create_dir_all(journal::dir(dir.path())).unwrap();
    std::fs::write(
        journal::dir(dir.path()).join(format!("{:016}.log", 900)),
        frame,
    )
    .unwrap();
    for _ in 0..2 {
        drop(Quarantine::open(QuarantineConfig::new(dir.path())).unwrap());
        let db = index::open_read(&index_path(dir.path())).unwrap();
        let mut rows = index::list(&db, 10).unwrap();
        rows.sort_by_key(|r| r.received_ms);
        let got: Vec<(String, Vec<u8>)> = rows
            .iter()
            .map(|r| (r.id.clone(), read_message(dir.path(), r).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("0190F3A2B4C5D6E7".to_string(), MSG.to_vec()),
                (
                    other_content_id("0190F3A2B4C5D6E7", &sha256_hex(&other)),
                    other.clone()
                ),
                (
                    other_content_id("0190F3A2B4C5D6E7", &sha256_hex(third)),
                    third.to_vec()
                ),
            ]
        );
        let files: std::collections::HashSet<&str> = rows.iter().map(|r| r.file.as_str()).collect();
        assert_eq!(files.len(), 3, "one file each");
    }
}
