//! Issue 15, item 6: `moat allow` lifts only the bans it makes pointless, the allowlist keeps
//! when and why, JSON carries numbers (no Rust debug text), reading commands find no database
//! rather than create one, and writes through a shared handle are visible to `changed()`.

use moat_core::{Decision, Origin, Scope, Verdict};
use moat_store::{
    add_manual_ban, allow_and_lift, decision_json, MemoryStore, SqliteStore, Store, StoreError,
};
use std::sync::Arc;
use std::time::Duration;

/// Both stores, each with the directory that must outlive it.
fn stores() -> Vec<(&'static str, Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    vec![
        ("sqlite", sqlite, dir),
        (
            "memory",
            Arc::new(MemoryStore::new()),
            tempfile::tempdir().unwrap(),
        ),
    ]
}

fn scopes(s: &dyn Store) -> Vec<String> {
    let mut v: Vec<String> = s
        .decisions(10)
        .unwrap()
        .iter()
        .map(|d| d.scope.to_string())
        .collect();
    v.sort();
    v
}

fn ban(s: &dyn Store, scope: &str) {
    add_manual_ban(s, Scope::parse(scope).unwrap(), None, "t", 1).unwrap();
}

#[test]
fn allowing_an_address_keeps_the_prefix_ban_around_it() {
    for (name, s, _dir) in stores() {
        ban(&*s, "203.0.113.0/24");
        ban(&*s, "203.0.113.5");
        ban(&*s, "203.0.113.6");
        let lifted = allow_and_lift(&*s, "203.0.113.5/32".parse().unwrap(), "me", 5).unwrap();
        assert_eq!(lifted, vec![Scope::parse("203.0.113.5").unwrap()], "{name}");
        assert_eq!(
            scopes(&*s),
            vec!["203.0.113.0/24".to_string(), "203.0.113.6".to_string()],
            "{name}: the /24 ban must stay for everyone else in it"
        );
        assert_eq!(
            s.allowlist().unwrap(),
            vec!["203.0.113.5/32".parse().unwrap()]
        );
    }
}

#[test]
fn allowing_a_prefix_lifts_the_bans_inside_it_only() {
    for (name, s, _dir) in stores() {
        ban(&*s, "10.0.0.0/16");
        ban(&*s, "10.0.1.0/24");
        ban(&*s, "10.0.1.7");
        ban(&*s, "10.0.2.7");
        let mut lifted = allow_and_lift(&*s, "10.0.1.0/24".parse().unwrap(), "lan", 5).unwrap();
        lifted.sort_by_key(|s| s.to_string());
        assert_eq!(
            lifted,
            vec![
                Scope::parse("10.0.1.0/24").unwrap(),
                Scope::parse("10.0.1.7").unwrap()
            ],
            "{name}"
        );
        assert_eq!(
            scopes(&*s),
            vec!["10.0.0.0/16".to_string(), "10.0.2.7".to_string()],
            "{name}"
        );
    }
}

#[test]
fn allow_entries_keep_when_and_why_and_can_be_removed() {
    for (name, s, _dir) in stores() {
        s.allow("192.0.2.1/32".parse().unwrap(), "my laptop", 1_000)
            .unwrap();
        s.allow("198.51.100.0/24".parse().unwrap(), "office", 2_000)
            .unwrap();
        let e = s.allow_entries().unwrap();
        let got: Vec<(String, &str, u64)> = e
            .iter()
            .map(|e| (e.net.to_string(), e.note.as_str(), e.created_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("192.0.2.1/32".to_string(), "my laptop", 1_000),
                ("198.51.100.0/24".to_string(), "office", 2_000)
            ],
            "{name}"
        );
        assert!(s.unallow("192.0.2.1/32".parse().unwrap()).unwrap());
        assert!(!s.unallow("192.0.2.1/32".parse().unwrap()).unwrap());
        assert_eq!(s.allow_entries().unwrap().len(), 1, "{name}");
    }
}

#[test]
fn decision_json_has_numbers_and_null_not_debug_text() {
    let mut d = Decision {
        scope: Scope::parse("192.0.2.9").unwrap(),
        verdict: Verdict::Ban,
        created_ms: 1_700_000_000_000,
        expires_ms: Some(1_796_558_940_255),
        reason: "manual ban".into(),
        origin: Origin::Manual,
        offences: 2,
    };
    let v = decision_json(&d);
    assert_eq!(v["expires_ms"], serde_json::json!(1_796_558_940_255u64));
    assert_eq!(v["created_ms"], serde_json::json!(1_700_000_000_000u64));
    assert_eq!(v["offences"], serde_json::json!(2));
    d.expires_ms = None;
    let v = decision_json(&d);
    assert!(v["expires_ms"].is_null(), "{v}");
    let text = v.to_string();
    assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
}

#[test]
fn a_manual_ban_counts_in_the_history_and_expires_after_its_ttl() {
    let s = MemoryStore::new();
    let scope = Scope::parse("192.0.2.0/24").unwrap();
    let d = add_manual_ban(
        &s,
        scope.clone(),
        Some(Duration::from_secs(60)),
        "why",
        1_000,
    )
    .unwrap();
    assert_eq!(
        (d.expires_ms, d.offences, d.origin.clone()),
        (Some(61_000), 1, Origin::Manual)
    );
    let d = add_manual_ban(&s, scope, None, "again", 2_000).unwrap();
    assert_eq!((d.expires_ms, d.offences), (None, 2));
    assert_eq!(s.decisions(100_000).unwrap(), vec![d]);
}

#[test]
fn writes_through_the_same_handle_move_changed() {
    // The admin API and the decider share one store handle: a ban added or lifted through it
    // must be noticed by the decider, which republishes only when `changed()` moves.
    for (name, s, _dir) in stores() {
        let v0 = s.changed().unwrap();
        ban(&*s, "192.0.2.1");
        let v1 = s.changed().unwrap();
        assert_ne!(v1, v0, "{name}: a ban did not move changed()");
        assert!(s
            .remove_decision(&Scope::parse("192.0.2.1").unwrap())
            .unwrap());
        let v2 = s.changed().unwrap();
        assert_ne!(v2, v1, "{name}: a lifted ban did not move changed()");
        assert!(!s
            .remove_decision(&Scope::parse("192.0.2.1").unwrap())
            .unwrap());
        assert_eq!(s.changed().unwrap(), v2, "{name}: nothing changed");
        s.unallow("192.0.2.1/32".parse().unwrap()).unwrap();
        assert_eq!(s.changed().unwrap(), v2, "{name}: nothing changed");
    }
}

#[test]
fn opening_for_reading_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nope = dir.path().join("nope");
    match SqliteStore::open_existing(&nope) {
        Err(StoreError::Missing(p)) => assert!(p.ends_with("nope/moat.db"), "{p}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a database that does not exist"),
    }
    assert!(!nope.exists(), "the directory was created");
    // An empty directory: still no database made.
    std::fs::create_dir(&nope).unwrap();
    assert!(SqliteStore::open_existing(&nope).is_err());
    assert!(!nope.join("moat.db").exists(), "a database was created");
    // Once Moat made it, it opens and sees what was written.
    SqliteStore::open_dir(&nope)
        .unwrap()
        .allow("192.0.2.1/32".parse().unwrap(), "x", 1)
        .unwrap();
    let s = SqliteStore::open_existing(&nope).unwrap();
    assert_eq!(s.allow_entries().unwrap().len(), 1);
}
