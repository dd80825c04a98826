//! fail2ban's `maxlines` > 1, on the multi-line filters Debian's fail2ban ships (read in place
//! from `/etc/fail2ban/filter.d`, as tests/fail2ban_debian.rs does): a failure spread over
//! lines is found once, at the line that completes it, with the address of the line that has
//! it; lines a `<SKIPLINES>` steps over stay for other failures; lines of a connection that
//! did not fail give nothing. fail2ban's sample logs for these filters are not among the
//! peer samples (`shared/peers/fail2ban` holds only single-line filters), so the lines here
//! are written in each daemon's format.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use moat_logs::fail2ban::{self, ini::Options, Filter, FilterSpec, Outcome};
use std::path::Path;

fn debian(name: &str) -> Option<Filter> {
    let dir = Path::new("/etc/fail2ban/filter.d");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Debian's fail2ban (scripts/install-test-deps.sh)"
        );
        eprintln!("skipped: no /etc/fail2ban/filter.d (Debian: fail2ban)");
        return None;
    }
    let spec = FilterSpec::parse(name).unwrap();
    let opts: Options = [("logtype".to_string(), "file".to_string())].into();
    let def = fail2ban::load(dir, &spec, &opts).unwrap();
    assert!(def.maxlines > 1, "{name}: maxlines {}", def.maxlines);
    Some(Filter::compile(&def, TimeZone::UTC).unwrap())
}

/// Each line's failures, as (line number from 1, address).
fn run(filter: &mut Filter, log: &str, now: Timestamp) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in log.lines().enumerate() {
        if let Outcome::Failures(fs) = filter.process_line(line, now) {
            found.extend(fs.into_iter().map(|f| (i + 1, f.host.to_string())));
        }
    }
    found
}

#[test]
fn slapd_ties_a_bind_failure_to_its_connections_address() {
    let Some(mut f) = debian("slapd") else { return };
    let now: Timestamp = "2026-03-02T12:00:00Z".parse().unwrap();
    let log = "\
Mar  2 09:14:01 ldap slapd[811]: conn=1201 fd=14 ACCEPT from IP=198.51.100.23:51544 (IP=0.0.0.0:389)
Mar  2 09:14:01 ldap slapd[811]: conn=1202 fd=15 ACCEPT from IP=192.0.2.80:40112 (IP=0.0.0.0:389)
Mar  2 09:14:01 ldap slapd[811]: conn=1201 op=0 BIND dn=\"uid=admin,dc=example,dc=org\" method=128
Mar  2 09:14:01 ldap slapd[811]: conn=1202 op=0 BIND dn=\"uid=jo,dc=example,dc=org\" method=128
Mar  2 09:14:02 ldap slapd[811]: conn=1202 op=0 RESULT tag=97 err=0 text=
Mar  2 09:14:02 ldap slapd[811]: conn=1201 op=0 RESULT tag=97 err=49 text=
Mar  2 09:14:02 ldap slapd[811]: conn=1201 op=1 UNBIND
Mar  2 09:14:02 ldap slapd[811]: conn=1201 fd=14 closed
Mar  2 09:14:03 ldap slapd[811]: conn=1202 op=1 RESULT tag=97 err=49 text=
";
    // Connection 1201 failed at line 6; 1202's ACCEPT (line 2) lay inside 1201's failure,
    // skipped, so its own failure at line 9 still finds its address.
    assert_eq!(
        run(&mut f, log, now),
        [
            (6, "198.51.100.23".to_string()),
            (9, "192.0.2.80".to_string())
        ]
    );
}

#[test]
fn slapd_counts_a_failure_once_and_forgets_beyond_maxlines() {
    let Some(mut f) = debian("slapd") else { return };
    let now: Timestamp = "2026-03-02T12:00:00Z".parse().unwrap();
    let mut log = String::from(
        "Mar  2 09:20:00 ldap slapd[811]: conn=7 fd=9 ACCEPT from IP=203.0.113.9:6000 (IP=0.0.0.0:389)\n\
         Mar  2 09:20:01 ldap slapd[811]: conn=7 op=0 RESULT tag=97 err=49 text=\n\
         Mar  2 09:20:02 ldap slapd[811]: conn=7 op=1 RESULT tag=97 err=49 text=\n",
    );
    // A connection whose failure comes 25 lines after its ACCEPT: beyond slapd's maxlines (20).
    log.push_str("Mar  2 09:21:00 ldap slapd[811]: conn=8 fd=9 ACCEPT from IP=203.0.113.10:6000 (IP=0.0.0.0:389)\n");
    for op in 0..24 {
        log.push_str(&format!(
            "Mar  2 09:21:01 ldap slapd[811]: conn=8 op={op} SRCH base=\"dc=example,dc=org\" scope=2\n"
        ));
    }
    log.push_str("Mar  2 09:21:02 ldap slapd[811]: conn=8 op=24 RESULT tag=97 err=49 text=\n");
    // The second err=49 of connection 7 finds no ACCEPT left: its lines were spent.
    assert_eq!(run(&mut f, &log, now), [(2, "203.0.113.9".to_string())]);
}

#[test]
fn mongodb_skips_other_connections_lines() {
    let Some(mut f) = debian("mongodb-auth") else {
        return;
    };
    let now: Timestamp = "2026-03-02T12:00:00Z".parse().unwrap();
    let log = "\
2026-03-02T09:30:00.100+0000 [conn41] Failed to authenticate root@admin with mechanism SCRAM-SHA-1: AuthenticationFailed
2026-03-02T09:30:00.150+0000 [conn42] Failed to authenticate app@admin with mechanism SCRAM-SHA-1: AuthenticationFailed
2026-03-02T09:30:00.200+0000 [initandlisten] connection accepted from 192.0.2.99:50000 #43 (3 connections now open)
2026-03-02T09:30:00.300+0000 [conn41] end connection 198.51.100.41:53276 (2 connections now open)
2026-03-02T09:30:00.400+0000 [conn43] end connection 192.0.2.99:50000 (1 connection now open)
2026-03-02T09:30:00.500+0000 [conn42] end connection 198.51.100.42:53277 (0 connections now open)
";
    assert_eq!(
        run(&mut f, log, now),
        [
            (4, "198.51.100.41".to_string()),
            (6, "198.51.100.42".to_string())
        ]
    );
}

#[test]
fn guacamole_joins_the_warning_to_the_dated_line_before_it() {
    let Some(mut f) = debian("guacamole") else {
        return;
    };
    let dated =
        "Mar 02, 2026 9:14:01 AM org.apache.guacamole.rest.auth.AuthenticationService authenticate";
    let warning = "WARNING: Authentication attempt from 198.51.100.7 for user \"admin\" failed.";
    let now: Timestamp = "2026-03-02T09:14:05Z".parse().unwrap();
    assert!(matches!(f.process_line(dated, now), Outcome::None));
    let Outcome::Failures(found) = f.process_line(warning, now) else {
        panic!("no failure");
    };
    assert_eq!(found[0].host.to_string(), "198.51.100.7");
    // The time is the dated line's (the warning's own "date" is empty).
    assert_eq!(
        found[0].time,
        "2026-03-02T09:14:01Z".parse::<Timestamp>().unwrap()
    );
    // Both lines were spent: the warning again, alone, is no failure.
    assert!(!matches!(
        f.process_line(warning, now),
        Outcome::Failures(_)
    ));
}
