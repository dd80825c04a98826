//! Issue 2, config: typed compile of every section, and errors that name file, line and field,
//! all reported at once.

use moat_config::{load, Action, LimitKey, Overrides};
use std::io::Write;

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn errors(text: &str) -> Vec<String> {
    let f = write(text);
    match load(Some(f.path()), &Overrides::default()) {
        Ok(_) => panic!("expected errors"),
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}:{}:{}", e.line, e.field, e.message))
                .collect()
        }
    }
}

#[test]
fn every_semantic_error_is_reported_at_once_with_its_line() {
    let errs = errors(
        r#"[server]
listen = ["127.0.0.1:8080"]
upstream = "ftp://nope"

[limits]
header_timeout = "10 parsecs"

[[rule]]
id = "r1"
expression = 'http.user_agent contains "x" and'
action = "block"

[[rule]]
id = "r2"
expression = 'http.request.uri.path eq "/"'
action = "explode"

[[rate_limit]]
id = "l1"
key = "cookie:x"
requests = 3
period = "1h"
action = "block"
"#,
    );
    let lines: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(lines, ["3", "6", "10", "16", "20"], "{errs:#?}");
    assert!(errs[0].contains("server.upstream"));
    assert!(errs[1].contains("limits.header_timeout"));
    assert!(errs[2].contains("rule.expression"));
    assert!(errs[3].contains("unknown action `explode`"));
    assert!(errs[4].contains("rate_limit.key"));
}

#[test]
fn an_unknown_field_names_its_line_and_the_field() {
    let errs = errors("[server]\nupstream = \"http://127.0.0.1:1\"\nlistn = [\"x\"]\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("3:listn:"), "{errs:?}");
    assert!(errs[0].contains("unknown field"), "{errs:?}");
}

#[test]
fn the_error_display_names_the_file() {
    let f = write("[bans]\nbase_ttl = \"forever\"\n[server]\nupstream = \"http://127.0.0.1:1\"\n");
    let e = load(Some(f.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}:2:12: bans.base_ttl", f.path().display())),
        "{e}"
    );
}

#[test]
fn a_parse_error_in_an_expression_points_at_the_column_in_the_file() {
    let f = write("[server]\nupstream = \"http://127.0.0.1:1\"\n[[rule]]\nid = \"x\"\nexpression = 'http.usr_agent eq \"a\"'\naction = \"log\"\n");
    let e = load(Some(f.path()), &Overrides::default()).unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].column), (5, 15), "{e}");
    assert!(e.0[0].message.contains('^'), "renders a caret: {e}");
}

#[test]
fn presets_compile_and_decoys_resolve() {
    let ov = Overrides {
        upstream: Some("http://127.0.0.1:2368".into()),
        presets: vec!["ghost".into(), "wordpress".into(), "generic-form".into()],
        ..Default::default()
    };
    let cfg = load(None, &ov).unwrap();
    let ghost = cfg
        .policy
        .rules
        .iter()
        .find(|r| r.id == "ghost-script-user-agent")
        .unwrap();
    assert_eq!(
        ghost.action,
        Action::Decoy(cfg.policy.decoy("ghost-created").unwrap())
    );
    assert!(ghost.offence);
    let per_email = cfg
        .policy
        .rate_limits
        .iter()
        .find(|l| l.id == "ghost-per-email")
        .unwrap();
    assert_eq!(
        (per_email.requests, per_email.burst, per_email.key.clone()),
        (3, 3, LimitKey::Json("email".into()))
    );
    assert!(cfg.policy.needs_body());
    // Issue 18: the decoy is Ghost's whole answer, in Ghost's header order, and takes as long.
    let created = &cfg.policy.decoys[cfg.policy.decoy("ghost-created").unwrap()];
    let names: Vec<&str> = created.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "x-powered-by",
            "cache-control",
            "access-control-allow-origin",
            "date",
            "content-length"
        ]
    );
    assert_eq!(created.delay, std::time::Duration::from_millis(300));
    let admin = cfg.admin.listen.expect("admin on by default");
    assert!(admin.ip().is_loopback(), "admin defaults to loopback");
    assert_ne!(admin.port(), 9090, "not Prometheus's own port");
}

#[test]
fn an_unknown_preset_and_a_missing_decoy_are_errors() {
    let ov = Overrides {
        upstream: Some("http://127.0.0.1:1".into()),
        presets: vec!["joomla".into()],
        ..Default::default()
    };
    let e = load(None, &ov).unwrap_err().to_string();
    assert!(e.contains("unknown preset `joomla`"), "{e}");
    let errs = errors("[server]\nupstream = \"http://127.0.0.1:1\"\n[[rule]]\nid = \"x\"\nexpression = 'ssl'\naction = \"decoy\"\ndecoy = \"nope\"\n");
    assert!(
        errs[0].starts_with("7:rule.decoy:no decoy `nope`"),
        "{errs:?}"
    );
}

#[test]
fn a_decoy_header_http_cannot_carry_is_an_error_with_its_line() {
    let errs = errors(
        "[server]\nupstream = \"http://127.0.0.1:1\"\n[[decoy]]\nid = \"d\"\nheaders = [[\"X-Ok\", \"1\"], [\"Bad Name\", \"x\"]]\ndelay = \"soon\"\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("5:decoy.headers:`Bad Name: x` is not a valid HTTP header"),
        "{errs:?}"
    );
    assert!(errs[1].starts_with("6:decoy.delay:"), "{errs:?}");
}

#[test]
fn admin_refuses_a_public_address_unless_exposed() {
    let errs =
        errors("[server]\nupstream = \"http://127.0.0.1:1\"\n[admin]\nlisten = \"0.0.0.0:9090\"\n");
    assert!(errs[0].starts_with("4:admin.listen"), "{errs:?}");
}

#[test]
fn structural_errors_in_several_tables_are_all_reported() {
    let errs = errors(
        "[server]\nupstream = \"http://127.0.0.1:1\"\nlistn = [\"x\"]\n\n[limits]\nmax_body_bytes = \"big\"\n\n[[rule]]\nid = \"r\"\nexpresion = 'ssl'\naction = \"log\"\n",
    );
    let lines: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(lines, ["3", "6", "10"], "{errs:#?}");
    assert!(
        errs[0].contains("listn") && errs[2].contains("expresion"),
        "{errs:#?}"
    );
}

#[test]
fn workers_are_optional_and_bounded() {
    let f = write("[server]\nupstream = \"http://127.0.0.1:1\"\nworkers = 3\n");
    let cfg = load(Some(f.path()), &Overrides::default()).unwrap();
    assert_eq!(cfg.server.workers, Some(3));
    let f = write("[server]\nupstream = \"http://127.0.0.1:1\"\n");
    let cfg = load(Some(f.path()), &Overrides::default()).unwrap();
    assert_eq!(cfg.server.workers, None);
    let errs = errors("[server]\nupstream = \"http://127.0.0.1:1\"\nworkers = 0\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("3:server.workers:"), "{errs:?}");
}

/// Issue 14: the milter's settings, their defaults, and their errors with line and field.
#[test]
fn the_milter_settings_default_safely_and_name_their_errors() {
    let f = write("[mail]\nmilter_listen = \"127.0.0.1:10030\"\ndns_server = \"127.0.0.53\"\n");
    let cfg = load(Some(f.path()), &Overrides::default()).unwrap();
    let m = cfg.mail.unwrap();
    assert_eq!(m.milter_listen, Some("127.0.0.1:10030".parse().unwrap()));
    assert!(m.hide_recipients, "on by default with a milter");
    assert_eq!(m.dsn_relay, Some("127.0.0.1:25".parse().unwrap()));
    assert_eq!(m.dns_server, Some("127.0.0.53:53".parse().unwrap()));
    assert_eq!(m.postfix_config_dir, std::path::Path::new("/etc/postfix"));
    assert!(!m.hostname.is_empty());

    let f = write(
        "[mail]\npolicy_listen = \"127.0.0.1:10040\"\nhide_recipients = true\ndsn_relay = \"\"\n",
    );
    let m = load(Some(f.path()), &Overrides::default())
        .unwrap()
        .mail
        .unwrap();
    assert!(
        !m.hide_recipients,
        "hiding needs the milter to drop what it hid"
    );
    assert_eq!(m.dsn_relay, None);

    let errs = errors(
        "[mail]\nmilter_listen = \"0.0.0.0:10030\"\ndsn_relay = \"nowhere\"\ndns_server = \"x\"\n",
    );
    assert!(errs[0].starts_with("2:mail.milter_listen:"), "{errs:?}");
    assert!(errs[1].starts_with("3:mail.dsn_relay:"), "{errs:?}");
    assert!(errs[2].starts_with("4:mail.dns_server:"), "{errs:?}");

    let f = write("[mail]\nmilter_listen = \"127.0.0.1:10030\"\ndns_server = \"2001:db8::53\"\n");
    let m = load(Some(f.path()), &Overrides::default())
        .unwrap()
        .mail
        .unwrap();
    assert_eq!(
        m.dns_server,
        Some("[2001:db8::53]:53".parse().unwrap()),
        "a bare IPv6 address"
    );

    // A unix socket: the same defaults as a port; a relative path is refused where it stands.
    let f = write("[mail]\nmilter_listen = \"unix:/var/spool/postfix/private/moat-milter\"\n");
    let m = load(Some(f.path()), &Overrides::default())
        .unwrap()
        .mail
        .unwrap();
    assert_eq!(
        m.milter_socket.as_deref(),
        Some(std::path::Path::new(
            "/var/spool/postfix/private/moat-milter"
        ))
    );
    assert_eq!(m.milter_listen, None);
    assert!(m.hide_recipients);
    assert_eq!(m.dsn_relay, Some("127.0.0.1:25".parse().unwrap()));
    let errs = errors("[mail]\nmilter_listen = \"unix:private/moat-milter\"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("2:mail.milter_listen:") && errs[0].contains("absolute path"),
        "{errs:?}"
    );
}

/// Issue 15: behind a proxy Moat does not trust, every visitor looks like the proxy.
#[test]
fn a_client_ip_header_needs_trusted_proxies_except_on_fly() {
    let text =
        "[server]\nupstream = \"http://127.0.0.1:2368\"\nclient_ip_headers = [\"fly-client-ip\"]\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("3:server.client_ip_headers:") && errs[0].contains("trusted_proxies"),
        "{errs:?}"
    );
    // With PROXY protocol the address comes from the PROXY header: nothing to refuse.
    assert!(load(
        Some(write(&format!("{text}proxy_protocol = true\n")).path()),
        &Overrides::default()
    )
    .is_ok());

    // On a Fly Machine: Fly's proxy is trusted for Fly-Client-IP, with or without the header.
    let fly = Overrides {
        fly_app: Some("ghost-blog".into()),
        ..Default::default()
    };
    for text in [text, "[server]\nupstream = \"http://127.0.0.1:2368\"\n"] {
        let s = load(Some(write(text).path()), &fly).unwrap().server;
        assert!(s.fly_proxy);
        let nets: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["172.16.0.0/12", "fdaa::/16"]);
        assert_eq!(
            s.client_ip_headers,
            [moat_config::ClientIpHeader::FlyClientIp]
        );
    }
    // What the config says wins over the platform's default.
    let own = "[server]\nupstream = \"http://127.0.0.1:2368\"\ntrusted_proxies = [\"10.0.0.0/8\"]\nclient_ip_headers = [\"x-forwarded-for\"]\n";
    let s = load(Some(write(own).path()), &fly).unwrap().server;
    assert!(!s.fly_proxy);
    assert_eq!(s.trusted_proxies.len(), 1);
    assert_eq!(
        s.client_ip_headers,
        [moat_config::ClientIpHeader::XForwardedFor]
    );
    // Off Fly, nothing is trusted by default.
    let s = load(
        Some(write("[server]\nupstream = \"http://127.0.0.1:2368\"\n").path()),
        &Overrides::default(),
    )
    .unwrap()
    .server;
    assert!(!s.fly_proxy && s.trusted_proxies.is_empty());
}

/// Issue 15: the admin listener can be turned off, and `/metrics` can be served without a
/// token, but never on a public address unless exposed (or on a Fly Machine's wildcard).
#[test]
fn admin_can_be_off_and_token_less_metrics_stay_private() {
    let base = "[server]\nupstream = \"http://127.0.0.1:2368\"\n[admin]\n";
    let cfg = load(
        Some(write(&format!("{base}enabled = false\n")).path()),
        &Overrides::default(),
    )
    .unwrap();
    assert!(cfg.admin.listen.is_none());
    for ok in [
        "127.0.0.1:9100",
        "10.1.2.3:9100",
        "[fdaa:0:1::3]:9100",
        "192.168.1.5:9100",
    ] {
        let cfg = load(
            Some(write(&format!("{base}metrics_listen = \"{ok}\"\n")).path()),
            &Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        assert_eq!(cfg.admin.metrics_listen, Some(ok.parse().unwrap()));
    }
    for public in [
        "0.0.0.0:9100",
        "203.0.113.5:9100",
        "[::]:9100",
        "[2001:db8::1]:9100",
    ] {
        let errs = errors(&format!("{base}metrics_listen = \"{public}\"\n"));
        assert!(
            errs[0].starts_with("4:admin.metrics_listen:"),
            "{public}: {errs:?}"
        );
    }
    let fly = Overrides {
        fly_app: Some("ghost".into()),
        ..Default::default()
    };
    assert!(load(
        Some(write(&format!("{base}metrics_listen = \"[::]:9100\"\n")).path()),
        &fly
    )
    .is_ok());
    assert!(load(
        Some(
            write(&format!(
                "{base}metrics_listen = \"203.0.113.5:9100\"\nexpose = true\n"
            ))
            .path()
        ),
        &Overrides::default()
    )
    .is_ok());
}

#[test]
fn per_action_needs_require_clearance_and_a_key_with_their_lines() {
    let errs = errors(
        "[server]\nupstream = \"http://127.0.0.1:1\"\n[[rule]]\nid = \"a\"\nexpression = 'ssl'\naction = \"block\"\nper_action = \"json:email\"\n[[rule]]\nid = \"b\"\nexpression = 'ssl'\naction = \"block\"\nrequire_clearance = true\nper_action = \"email\"\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "7:rule.per_action:per-action proofs are for a rule with require_clearance"
        ),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("13:rule.per_action:`email`"),
        "{errs:?}"
    );
    // The ghost preset asks for them on its sign-in route, keyed by the email.
    let ov = Overrides {
        upstream: Some("http://127.0.0.1:2368".into()),
        presets: vec!["ghost".into()],
        ..Default::default()
    };
    let cfg = load(None, &ov).unwrap();
    let rule = cfg
        .policy
        .rules
        .iter()
        .find(|r| r.id == "ghost-no-clearance")
        .unwrap();
    assert_eq!(rule.per_action, Some(LimitKey::Json("email".into())));
    assert_eq!(
        (cfg.proof.action_threshold, cfg.proof.max_action_difficulty),
        (6, 20)
    );
}

#[test]
fn cohorts_need_a_confirm_and_their_settings_name_their_lines() {
    // A rule reading the cohort and a limit counting by it, with no [[confirm]] to give any
    // cohort a standing: both would silently never act.
    let errs = errors(
        "[server]\nupstream = \"http://127.0.0.1:1\"\n[[rule]]\nid = \"a\"\nexpression = 'moat.cohort eq \"silent\"'\naction = \"block\"\n[[rate_limit]]\nid = \"b\"\nkey = \"cohort\"\nrequests = 1\nperiod = \"1h\"\naction = \"block\"\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("5:rule.expression:reads the client's cohort"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("8:rate_limit:reads the client's cohort"),
        "{errs:?}"
    );

    let errs = errors(
        "[server]\nupstream = \"http://127.0.0.1:1\"\n[cohorts]\nconfirmed_ratio = 1.5\nsilent_ratio = 0.5\nprefix_v4 = 40\nlag = \"soon\"\n[[confirm]]\nid = \"c\"\nsend = 'ssl'\nclick = 'ssl and'\nclick_cookie = \"a b\"\n",
    );
    let want = [
        "4:cohorts.confirmed_ratio:must be a share between 0 and 1",
        "5:cohorts.silent_ratio:must not be above cohorts.confirmed_ratio",
        "6:cohorts.prefix_v4:must be between 8 and 32",
        "7:cohorts.lag:",
        "11:confirm.click:",
        "12:confirm.click_cookie:`a b` is not a cookie name",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.starts_with(w)), "{w} not in {errs:?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:?}");
}

#[test]
fn a_broken_asn_table_is_an_error_naming_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("ip2asn.tsv");
    std::fs::write(
        &table,
        "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.4.0\t1.0.7.255\n",
    )
    .unwrap();
    let cfg = dir.path().join("moat.toml");
    std::fs::write(
        &cfg,
        "[server]\nupstream = \"http://127.0.0.1:1\"\n[cohorts]\nasn_table = \"ip2asn.tsv\"\n",
    )
    .unwrap();
    let e = load(Some(&cfg), &Overrides::default()).unwrap_err().0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].file, table.display().to_string());
    assert_eq!((e[0].line, e[0].field.as_str()), (2, "cohorts.asn_table"));

    // A good one is loaded; the ghost preset's confirm and cohort limits compile with it.
    std::fs::write(&table, "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n").unwrap();
    let ov = Overrides {
        presets: vec!["ghost".into()],
        ..Default::default()
    };
    let c = load(Some(&cfg), &ov).unwrap();
    let t = c.cohorts.asn_table.as_ref().unwrap();
    assert_eq!(t.lookup("1.0.0.9".parse().unwrap()), Some(13335));
    assert_eq!(c.policy.confirms.len(), 1);
    assert!(c
        .policy
        .rate_limits
        .iter()
        .any(|l| l.key == LimitKey::Cohort));
}

#[test]
fn bouncer_keys_are_long_and_distinct() {
    let errs = errors(
        "[server]\nupstream = \"http://127.0.0.1:1\"\n[crowdsec]\nbouncer_keys = [\n  \"short\",\n  \"a-good-bouncer-key-1\",\n  \"a-good-bouncer-key-1\",\n]\n",
    );
    assert_eq!(
        errs,
        vec![
            "5:crowdsec.bouncer_keys:a key needs at least 16 characters".to_string(),
            "7:crowdsec.bouncer_keys:this key is listed twice".to_string(),
        ]
    );
}

/// The digest by mail goes through the report relay only: an address without the relay, or
/// a bad address, names the line of `mail_to`; with the relay it loads.
#[test]
fn a_mailed_digest_needs_the_report_relay_and_an_address() {
    let errs = errors("[digest]\nmail_to = \"owner@blog.example\"\n");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("2:digest.mail_to:") && e.contains("[report.arf.smtp] host")),
        "{errs:?}"
    );
    let relay = "[report]\n[report.arf]\nfrom = \"moat@blog.example\"\n[report.arf.smtp]\n\
                 host = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n";
    let errs = errors(&format!("[digest]\nmail_to = \"not an address\"\n{relay}"));
    assert!(
        errs.iter().any(|e| e.starts_with("2:digest.mail_to:")),
        "{errs:?}"
    );
    let f = write(&format!(
        "[server]\nupstream = \"http://127.0.0.1:9\"\n[digest]\nmail_to = \"owner@blog.example\"\n{relay}"
    ));
    let cfg = load(Some(f.path()), &Overrides::default()).unwrap();
    assert_eq!(cfg.digest.mail_to.as_deref(), Some("owner@blog.example"));
}
