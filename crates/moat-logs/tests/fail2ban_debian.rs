//! Issue 17: every filter Debian's fail2ban package ships (`/etc/fail2ban/filter.d`, read in
//! place) loads and compiles, in each of its modes, except the include files that are not
//! filters (`*-common.conf`, `common.conf`). scripts/install-test-deps.sh installs the
//! package, so CI always runs this.

use jiff::tz::TimeZone;
use moat_logs::fail2ban::{self, ini::Options, Filter, FilterSpec};
use std::path::Path;

#[test]
fn every_debian_filter_loads_and_compiles() {
    let dir = Path::new("/etc/fail2ban/filter.d");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Debian's fail2ban (scripts/install-test-deps.sh)"
        );
        eprintln!("skipped: no /etc/fail2ban/filter.d (Debian: fail2ban)");
        return;
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".conf").map(str::to_string))
        .filter(|n| n != "common" && !n.ends_with("-common"))
        .collect();
    names.sort();
    assert!(names.len() >= 80, "only {} filters", names.len());
    let mut failed = Vec::new();
    let mut compiled = 0;
    for name in &names {
        // The modes a filter documents in its `mode` option's comment are not machine-readable;
        // its default and the common ones cover what jails use.
        for mode in [None, Some("aggressive"), Some("ddos"), Some("extra")] {
            let mut spec = FilterSpec::parse(name).unwrap();
            if let Some(m) = mode {
                spec.options.insert("mode".into(), m.into());
            }
            let opts: Options = [("logtype".to_string(), "file".to_string())].into();
            let result = fail2ban::load(dir, &spec, &opts)
                .map_err(|e| e.to_string())
                .and_then(|def| Filter::compile(&def, TimeZone::UTC).map(|_| ()));
            match result {
                Ok(()) => compiled += 1,
                Err(e) => failed.push(format!("{name} {mode:?}: {e}")),
            }
        }
    }
    println!(
        "{} filters, {compiled} filter/mode pairs compiled",
        names.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
