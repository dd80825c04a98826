//! Issue 15: defaults for a packaged install. The config comes from `--config`, else
//! `MOAT_CONFIG`, else /etc/moat/moat.toml; the state directory from `--state-dir`, else
//! `MOAT_STATE_DIR`, else the config. Commands that only read state say where they looked and
//! create nothing. (/etc/moat/moat.toml itself is exercised by tests/e2e/test_deb.py, which
//! installs the package; these tests must not write to /etc.)

use std::path::Path;
use std::process::{Command, Output};

fn moat(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_moat"));
    c.args(args)
        .current_dir(dir)
        .env_remove("MOAT_CONFIG")
        .env_remove("MOAT_STATE_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run moat")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn moat_config_names_the_file_check_reads() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("site.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"http://127.0.0.1:2368\"\n",
    )
    .unwrap();
    let o = moat(
        d.path(),
        &["check"],
        &[("MOAT_CONFIG", cfg.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("config: {}", cfg.display())),
        "{}",
        text(&o)
    );

    // A broken file named by MOAT_CONFIG is an error naming that file and its line.
    std::fs::write(&cfg, "[server]\nlisten = 5\n").unwrap();
    let o = moat(
        d.path(),
        &["check"],
        &[("MOAT_CONFIG", cfg.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{}:2", cfg.display())),
        "{}",
        text(&o)
    );

    // --config wins over MOAT_CONFIG.
    let good = d.path().join("good.toml");
    std::fs::write(&good, "[server]\nupstream = \"http://127.0.0.1:2368\"\n").unwrap();
    let o = moat(
        d.path(),
        &["check", "--config", good.to_str().unwrap()],
        &[("MOAT_CONFIG", cfg.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn moat_state_dir_is_where_bans_are_kept_and_read() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let env = [("MOAT_STATE_DIR", state.to_str().unwrap())];
    let o = moat(
        d.path(),
        &["bans", "add", "198.51.100.7", "--reason", "test"],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(state.join("moat.sqlite").exists() || state.read_dir().unwrap().count() > 0);
    let o = moat(d.path(), &["bans", "list"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("198.51.100.7"), "{}", text(&o));
    // Nothing went to the working directory's default.
    assert!(!d.path().join("moat-state").exists());
}

#[test]
fn reading_state_that_is_not_there_says_where_it_looked_and_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let o = moat(d.path(), &["bans", "list"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("moat-state"), "{t}");
    assert!(t.contains("MOAT_STATE_DIR"), "{t}");
    assert!(!d.path().join("moat-state").exists(), "{t}");

    let missing = d.path().join("nope");
    let o = moat(
        d.path(),
        &["allow", "list"],
        &[("MOAT_STATE_DIR", missing.to_str().unwrap())],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains(missing.to_str().unwrap()), "{t}");
    assert!(t.contains("MOAT_STATE_DIR"), "{t}");
    assert!(!missing.exists(), "{t}");
}
