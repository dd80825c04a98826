//! `moat_intel::extract` and campaign fingerprinting on arbitrary bytes: captured spam is
//! written by adversaries, so no input may panic, hang or exhaust memory, and what comes out
//! must keep the invariants consumers rely on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_intel::{cluster, extract, linked, Campaigns};

/// mail-parser 0.11 has `debug_assert!`s that hostile MIME reaches (cargo-fuzz builds with
/// debug assertions); `extract` catches those panics and scans the bytes as text instead, which
/// is the behaviour under test. libFuzzer's hook would abort on them first, so they are let
/// through to the `catch_unwind`; every other panic still aborts and is reported as a crash.
fn let_mail_parser_asserts_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let from_mail_parser = info
                .location()
                .is_some_and(|l| l.file().contains("mail-parser"));
            if !from_mail_parser {
                fuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_mail_parser_asserts_unwind();
    let ind = extract(data);

    for u in &ind.urls {
        assert!(
            u.url.starts_with("http://") || u.url.starts_with("https://"),
            "{u:?}"
        );
        if let Some(d) = &u.registrable_domain {
            assert!(ind.domains.contains(d), "{d} missing from domains");
        }
    }
    let mut urls: Vec<&str> = ind.urls.iter().map(|u| u.url.as_str()).collect();
    urls.sort_unstable();
    urls.dedup();
    assert_eq!(urls.len(), ind.urls.len(), "duplicate URLs");

    // Campaigns: a message is linked to itself exactly when it has something to link on, and
    // clustering two copies agrees with that, in batch and incrementally.
    let fp = ind.fingerprint;
    let linkable = fp.url_set.is_some() || (fp.body.is_some() && !fp.subject_skeleton.is_empty());
    assert_eq!(linked(&fp, &fp), linkable);
    let items = vec![("a".to_string(), fp.clone()), ("b".to_string(), fp.clone())];
    let campaigns = cluster(&items);
    assert_eq!(campaigns.len(), if linkable { 1 } else { 2 });
    let mut index = Campaigns::default();
    let first = index.insert("a".into(), fp.clone());
    let second = index.insert("b".into(), fp);
    assert_eq!(first == second, linkable);
    assert_eq!(index.campaigns(), campaigns);
});
