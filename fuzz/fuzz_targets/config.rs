//! The config loader (`moat_config::load_text`, what `moat run` and `moat check` do with a
//! config file's text) on arbitrary text. Beyond "never panics":
//!
//! - a bad config is an `Err` listing at least one error, each naming the file, with a line
//!   and column inside the text (or none at all, for a setting missing rather than wrong), a
//!   field and a message;
//! - loading is deterministic: the same text gives the same errors (as a set), or loads again.
//!
//! Texts that name `rule_files` are skipped once they parse: the loader would read those paths
//! from this machine's disk. Input: the bytes as text (invalid UTF-8 replaced, as no config
//! file can hold it). Seeds: `presets/*.toml`, `deploy/moat.toml`, `examples/*.toml`. The same
//! file runs on stable as a plain test (`crates/moat-config/tests/config_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use moat_config::{load_text, raw::RawConfig, ConfigErrors, Overrides};
use std::path::Path;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

const FILE: &str = "fuzz.toml";

/// What a run found, for the stable test to check that the seeds go where they should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Skipped,
    Loaded,
    Errors(usize),
}

fn check_errors(src: &str, errs: &ConfigErrors) {
    assert!(!errs.0.is_empty(), "an Err without errors");
    let lines: Vec<&str> = src.split('\n').collect();
    for e in &errs.0 {
        assert!(
            e.file == FILE || e.file.starts_with("preset:"),
            "error in {:?}: {e}",
            e.file
        );
        assert!(
            !e.field.is_empty() && !e.message.is_empty(),
            "{e:?} in {src:?}"
        );
        if e.line == 0 {
            assert_eq!(e.column, 0, "{e:?}");
            continue;
        }
        if e.file != FILE {
            continue;
        }
        assert!(
            e.line <= lines.len(),
            "line {} of {}: {e}",
            e.line,
            lines.len()
        );
        let width = lines[e.line - 1].chars().count();
        assert!(
            e.column >= 1 && e.column <= width + 1,
            "column {} of {width}: {e}",
            e.column
        );
        assert!(e
            .to_string()
            .starts_with(&format!("{FILE}:{}:{}: ", e.line, e.column)));
    }
    let _ = errs.to_string();
}

fn sorted(errs: &ConfigErrors) -> Vec<String> {
    let mut v: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
    v.sort();
    v
}

pub fn run(data: &[u8]) -> Seen {
    let src = String::from_utf8_lossy(data);
    if toml::from_str::<RawConfig>(&src).is_ok_and(|raw| !raw.rule_files.is_empty()) {
        return Seen::Skipped;
    }
    let base = Path::new("/nonexistent/moat-fuzz");
    let ov = Overrides::default();
    match load_text(FILE, &src, base, &ov) {
        Ok(cfg) => {
            let _ = format!("{cfg:?}");
            assert!(load_text(FILE, &src, base, &ov).is_ok(), "loads once only");
            Seen::Loaded
        }
        Err(errs) => {
            check_errors(&src, &errs);
            let again = load_text(FILE, &src, base, &ov).expect_err("fails once only");
            assert_eq!(sorted(&again), sorted(&errs));
            Seen::Errors(errs.0.len())
        }
    }
}

/// Short configs that reach what the shipped files do not (each error path, odd TOML), as
/// fuzz inputs; the shipped files are seeds as they are (`fuzz/seeds/config`).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let cases: &[(&str, &str)] = &[
        ("empty", ""),
        ("minimal", "[server]\nupstream = \"http://127.0.0.1:2368\"\n"),
        ("typo-in-table", "[server]\nlisten = [\"127.0.0.1:8080\"]\nupstrem = \"http://127.0.0.1:2368\"\n\n[limits]\nheader_timeout = 5\n"),
        ("bad-values", "[server]\nlisten = [\"localhost\"]\nupstream = \"ftp://x\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n\n[limits]\nheader_timeout = \"10 parsecs\"\n"),
        ("bad-rule", "[[rule]]\nid = \"r\"\nexpression = 'http.usr_agent contains \"x\"'\naction = \"block\"\n\n[[rule]]\nid = \"r\"\nexpression = \"ssl\"\naction = \"decoy\"\ndecoy = \"missing\"\n"),
        ("rate-limit", "[[rate_limit]]\nid = \"per-email\"\nexpression = 'http.request.uri.path eq \"/x\"'\nkey = \"json:email\"\nrequests = 0\nperiod = \"1h\"\naction = \"decoy\"\n"),
        ("unknown-preset", "presets = [\"ghost\", \"nope\", \"ghost\"]\n"),
        ("tls-half", "[tls]\ncert = \"a.pem\"\n"),
        ("acme-empty", "[acme]\ndomains = []\nemail = \"ops@moat.test\"\n"),
        ("mail-and-trap", "[mail]\npolicy_listen = \"127.0.0.1:10040\"\nhoney_accounts = 3\n\n[trap]\nlisten = [\"0.0.0.0:2525\"]\nmax_message_bytes = 0\n"),
        ("syntax-error", "[server\nlisten = [\"127.0.0.1:8080\"\n"),
        ("duplicate-key", "[server]\nupstream = \"http://a\"\nupstream = \"http://b\"\n"),
        ("wrong-types-everywhere", "server = 1\nlimits = \"x\"\n[[rule]]\nid = 5\n[bans]\nban_duration = []\n"),
        ("multibyte", "# caf\u{e9}\n[server]\nupstream = \"http://\u{e9}\u{1f600}\"\n  x\u{e9} = 1\n"),
        // Found by the fuzzer: toml has no message for a lone CR, and the error had none.
        ("lone-cr", "\r"),
        ("crlf", "[server]\r\nlisten = [\"127.0.0.1:8080\"]\r\nupstream = \"http://127.0.0.1:2368\"\r\nnope = 1\r\n"),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, (name, src))| (format!("{i:02}-{name}.toml"), src.as_bytes().to_vec()))
        .collect()
}
