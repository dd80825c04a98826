//! Samples are real output of Postfix 3.7.11 (Debian 12): `postconf -c DIR` (the lines the
//! audit reads), `-M` (the smtpd, postscreen and `smtp unix` lines) and `-P`, for private
//! config dirs made from Debian's main.cf and master.cf.dist with the stock submission and
//! submissions blocks uncommented, then changed with `postconf -c DIR -e` / `-P`.

use super::*;

/// Debian's main.cf as postconf prints it (defaults included).
const MAIN: &str = "\
compatibility_level = 3.6
milter_default_action = tempfail
milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}
milter_protocol = 6
queue_directory = /var/spool/postfix
receive_override_options =
smtpd_client_restrictions =
smtpd_data_restrictions =
smtpd_delay_reject = yes
smtpd_end_of_data_restrictions =
smtpd_helo_restrictions =
smtpd_milter_maps =
smtpd_milters =
smtpd_policy_service_default_action = 451 4.3.5 Server configuration problem
smtpd_recipient_restrictions =
smtpd_reject_unlisted_recipient = yes
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
smtpd_restriction_classes =
smtpd_sasl_auth_enable = no
smtpd_sender_restrictions =
";

const M_STOCK: &str = "\
smtp       inet  n       -       y       -       -       smtpd
submission inet  n       -       y       -       -       smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes -o smtpd_reject_unlisted_recipient=no -o smtpd_client_restrictions= -o smtpd_helo_restrictions= -o smtpd_sender_restrictions= -o smtpd_relay_restrictions= -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject -o milter_macro_daemon_name=ORIGINATING
submissions inet n       -       y       -       -       smtpd -o syslog_name=postfix/submissions -o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes -o smtpd_reject_unlisted_recipient=no -o smtpd_client_restrictions= -o smtpd_helo_restrictions= -o smtpd_sender_restrictions= -o smtpd_relay_restrictions= -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject -o milter_macro_daemon_name=ORIGINATING
smtp       unix  -       -       y       -       -       smtp
";

const P_STOCK: &str = "\
submission/inet/milter_macro_daemon_name = ORIGINATING
submission/inet/smtpd_client_restrictions =
submission/inet/smtpd_helo_restrictions =
submission/inet/smtpd_recipient_restrictions = permit_sasl_authenticated,reject
submission/inet/smtpd_reject_unlisted_recipient = no
submission/inet/smtpd_relay_restrictions =
submission/inet/smtpd_sasl_auth_enable = yes
submission/inet/smtpd_sender_restrictions =
submission/inet/smtpd_tls_auth_only = yes
submission/inet/smtpd_tls_security_level = encrypt
submission/inet/syslog_name = postfix/submission
submissions/inet/milter_macro_daemon_name = ORIGINATING
submissions/inet/smtpd_client_restrictions =
submissions/inet/smtpd_helo_restrictions =
submissions/inet/smtpd_recipient_restrictions = permit_sasl_authenticated,reject
submissions/inet/smtpd_reject_unlisted_recipient = no
submissions/inet/smtpd_relay_restrictions =
submissions/inet/smtpd_sasl_auth_enable = yes
submissions/inet/smtpd_sender_restrictions =
submissions/inet/smtpd_tls_wrappermode = yes
submissions/inet/syslog_name = postfix/submissions
relay/unix/syslog_name = postfix/$service_name
";

/// `MAIN` with `extra` lines (later lines win, as they would in postconf's output).
fn texts(extra_main: &str, m: &str, extra_p: &str) -> PostconfTexts {
    PostconfTexts {
        main: format!("{MAIN}{extra_main}"),
        master_m: m.to_string(),
        master_p: format!("{P_STOCK}{extra_p}"),
    }
}

fn milter() -> MoatHooks {
    MoatHooks {
        milter: Some("127.0.0.1:10030".parse().unwrap()),
        hide_recipients: true,
        ..Default::default()
    }
}

fn policy() -> MoatHooks {
    MoatHooks {
        policy: Some("127.0.0.1:10040".parse().unwrap()),
        capture: Some("127.0.0.1:10026".parse().unwrap()),
        ..Default::default()
    }
}

fn svc<'a>(a: &'a Audit, name: &str) -> &'a ServiceAudit {
    a.services.iter().find(|s| s.name == name).expect(name)
}

fn fixes(a: &Audit) -> Vec<&str> {
    a.problems.iter().map(|p| p.fix.as_str()).collect()
}

/// `postconf -e 'smtpd_milters = inet:127.0.0.1:10030' 'milter_default_action = accept'`.
const MILTER_MAIN: &str = "milter_default_action = accept\nsmtpd_milters = inet:127.0.0.1:10030\n";

#[test]
fn a_milter_in_main_cf_covers_the_stock_submission_services() {
    let a = audit(&texts(MILTER_MAIN, M_STOCK, ""), &milter());
    assert_eq!(a.services.len(), 3);
    assert!(a.honey_safe().is_ok(), "{:?}", a.honey_safe());
    let smtp = svc(&a, "smtp/inet");
    assert!(!smtp.sasl && smtp.milter && !smtp.policy);
    for s in ["submission/inet", "submissions/inet"] {
        assert!(svc(&a, s).sasl && svc(&a, s).milter, "{s}");
    }
    // Port 25 still answers unknown recipients itself (the submission services turn it off).
    assert_eq!(
        fixes(&a),
        ["postconf -e 'smtpd_reject_unlisted_recipient = no'"]
    );
    assert!(a.problems[0].what.starts_with("smtp/inet: "));
    // Without recipient hiding, Postfix may answer unknown recipients itself.
    let keep = MoatHooks {
        hide_recipients: false,
        ..milter()
    };
    assert!(audit(&texts(MILTER_MAIN, M_STOCK, ""), &keep)
        .problems
        .is_empty());
}

#[test]
fn an_emptied_smtpd_milters_under_submission_is_named_with_its_fix() {
    // postconf -P 'submission/inet/smtpd_milters='
    let m = M_STOCK.replace(
        "milter_macro_daemon_name=ORIGINATING\nsubmissions",
        "milter_macro_daemon_name=ORIGINATING -o smtpd_milters=\nsubmissions",
    );
    let a = audit(
        &texts(MILTER_MAIN, &m, "submission/inet/smtpd_milters =\n"),
        &milter(),
    );
    assert!(svc(&a, "submission/inet").bypasses());
    assert!(!svc(&a, "submissions/inet").bypasses());
    let err = a.honey_safe().unwrap_err();
    assert!(
        err.contains("submission/inet") && !err.contains("submissions/inet"),
        "{err}"
    );
    assert!(fixes(&a).contains(
        &"in master.cf, under submission: -o smtpd_milters=inet:127.0.0.1:10030 (or remove the override)"
    ));
}

#[test]
fn a_policy_in_main_cf_is_bypassed_by_the_stock_submission_services() {
    let main = "smtpd_sasl_auth_enable = yes\nsmtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 }\n";
    let a = audit(&texts(main, M_STOCK, ""), &policy());
    assert!(svc(&a, "smtp/inet").policy && !svc(&a, "smtp/inet").bypasses());
    assert!(svc(&a, "submission/inet").bypasses() && svc(&a, "submissions/inet").bypasses());
    let err = a.honey_safe().unwrap_err();
    assert_eq!(
        err,
        "submission/inet, submissions/inet offer SASL AUTH without passing mail through Moat"
    );
    let f = fixes(&a);
    assert_eq!(f.len(), 2, "{:?}", a.problems);
    assert!(f.contains(&"in master.cf, under submission: -o { smtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 } }"));
    assert!(f.contains(&"in master.cf, under submissions: -o { smtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 } }"));
}

#[test]
fn with_both_hooks_the_milter_fix_is_offered() {
    let main = "smtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 }\n";
    let hooks = MoatHooks {
        milter: Some("127.0.0.1:10030".parse().unwrap()),
        ..policy()
    };
    let a = audit(&texts(main, M_STOCK, ""), &hooks);
    assert!(a.honey_safe().is_err());
    assert!(fixes(&a).contains(
        &"postconf -e 'smtpd_milters = inet:127.0.0.1:10030' 'milter_default_action = accept'"
    ));
}

#[test]
fn mua_references_are_expanded_and_a_policy_after_a_permit_does_not_count() {
    // The pre-3.6 template style: -o smtpd_<x>_restrictions=$mua_<x>_restrictions.
    let main = "mua_client_restrictions = permit_sasl_authenticated, check_policy_service inet:127.0.0.1:10040\nmua_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO }\n";
    let p = "submission/inet/smtpd_sender_restrictions = $mua_sender_restrictions\nsubmissions/inet/smtpd_client_restrictions = $mua_client_restrictions\n";
    let a = audit(&texts(main, M_STOCK, p), &policy());
    let sub = svc(&a, "submission/inet");
    assert!(sub.sasl && sub.policy);
    assert!(svc(&a, "submissions/inet").bypasses());
    let late = a
        .problems
        .iter()
        .find(|p| p.what.starts_with("submissions/inet"))
        .expect("submissions named");
    assert!(late
        .what
        .contains("after permit_sasl_authenticated in smtpd_client_restrictions"));
    assert_eq!(late.fix, "in master.cf, under submissions: -o { smtpd_client_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 }, $mua_client_restrictions }");
}

#[test]
fn postscreen_pass_services_brace_milters_and_no_milters() {
    let main = "milter_protocol = 2\nsmtpd_milters = { inet:localhost:10030, default_action=tempfail }, inet:127.0.0.1:8891\nsmtpd_sasl_auth_enable = yes\n";
    let m = "\
smtp       inet  n       -       y       -       1       postscreen
smtpd      pass  -       -       y       -       -       smtpd
submission inet  n       -       y       -       -       smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes -o smtpd_reject_unlisted_recipient=no -o smtpd_client_restrictions= -o smtpd_helo_restrictions= -o smtpd_sender_restrictions= -o smtpd_relay_restrictions= -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject -o milter_macro_daemon_name=ORIGINATING
submissions inet n       -       y       -       -       smtpd -o syslog_name=postfix/submissions -o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes -o smtpd_reject_unlisted_recipient=no -o smtpd_client_restrictions= -o smtpd_helo_restrictions= -o smtpd_sender_restrictions= -o smtpd_relay_restrictions= -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject -o milter_macro_daemon_name=ORIGINATING
smtp       unix  -       -       y       -       -       smtp
127.0.0.1:10025 inet n   -       n       -       -       smtpd -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters -o smtpd_sasl_auth_enable=no
127.0.0.1:10026 inet n   -       n       -       -       smtpd -o receive_override_options=no_milters
";
    let p = "127.0.0.1:10025/inet/receive_override_options = no_unknown_recipient_checks,no_header_body_checks,no_milters\n127.0.0.1:10025/inet/smtpd_sasl_auth_enable = no\n127.0.0.1:10026/inet/receive_override_options = no_milters\n";
    let a = audit(&texts(main, m, p), &milter());
    let names: Vec<&str> = a.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "smtpd/pass",
            "submission/inet",
            "submissions/inet",
            "127.0.0.1:10025/inet",
            "127.0.0.1:10026/inet"
        ]
    );
    assert!(
        svc(&a, "smtpd/pass").milter,
        "inet:localhost:10030 in braces"
    );
    // A content filter's re-injection port without AUTH is fine; one with AUTH is not.
    assert!(!svc(&a, "127.0.0.1:10025/inet").bypasses());
    assert!(svc(&a, "127.0.0.1:10026/inet").bypasses());
    assert_eq!(
        a.honey_safe().unwrap_err(),
        "127.0.0.1:10026/inet offers SASL AUTH without passing mail through Moat"
    );
    let f = fixes(&a);
    assert!(f.contains(&"in master.cf, under 127.0.0.1:10026: -o receive_override_options="));
    assert!(f.contains(&"in smtpd_milters, default_action=accept in Moat's { … } entry"));
    let proto = a
        .problems
        .iter()
        .find(|p| p.fix == "postconf -e 'milter_protocol = 6'")
        .expect("protocol");
    assert!(proto
        .what
        .starts_with("smtpd/pass, submission/inet, submissions/inet: milter_protocol is 2"));
}

#[test]
fn unix_policy_paths_are_relative_to_the_queue_directory_even_in_a_chroot() {
    let main = "moat_policy = check_policy_service unix:private/moat-policy\nsmtpd_recipient_restrictions = moat_policy, permit_sasl_authenticated, reject_unauth_destination\nsmtpd_restriction_classes = moat_policy\nsmtpd_sasl_auth_enable = yes\n";
    let m = format!("{M_STOCK}\
2525       inet  n       -       n       -       -       smtpd -o smtpd_sender_restrictions=check_policy_service,unix:/var/spool/postfix/private/moat-policy
2526       inet  n       -       y       -       -       smtpd -o smtpd_recipient_restrictions= -o smtpd_sender_restrictions=check_policy_service,unix:/var/spool/postfix/private/moat-policy
");
    let p = "2525/inet/smtpd_sender_restrictions = check_policy_service,unix:/var/spool/postfix/private/moat-policy\n2526/inet/smtpd_recipient_restrictions =\n2526/inet/smtpd_sender_restrictions = check_policy_service,unix:/var/spool/postfix/private/moat-policy\n";
    let hooks = MoatHooks {
        policy_socket: Some("/var/spool/postfix/private/moat-policy".into()),
        ..Default::default()
    };
    let a = audit(&texts(main, &m, p), &hooks);
    assert!(svc(&a, "smtp/inet").policy, "through the restriction class");
    assert!(svc(&a, "2525/inet").policy, "absolute path, no chroot");
    // Chrooted, /var/spool/postfix/... is looked up inside the queue directory.
    assert!(svc(&a, "2526/inet").bypasses());
    assert!(fixes(&a).contains(&"in master.cf, under 2526: -o { smtpd_sender_restrictions = check_policy_service { unix:private/moat-policy, default_action=DUNNO, try_limit=1 }, check_policy_service, unix:/var/spool/postfix/private/moat-policy }"));
    // Postfix's default answer when the policy service is down refuses all mail.
    assert!(a
        .problems
        .iter()
        .any(|p| p.what.contains("answers `451 4.3.5")));
}

#[test]
fn no_hooks_means_every_sasl_service_bypasses() {
    let a = audit(&texts("", M_STOCK, ""), &MoatHooks::default());
    assert_eq!(a.services.iter().filter(|s| s.bypasses()).count(), 2);
    assert_eq!(
        a.problems.len(),
        1,
        "one problem for both: {:?}",
        a.problems
    );
    assert!(a.problems[0].fix.contains("milter_listen"));
}

#[test]
fn the_filter_transport_must_exist_for_the_policy_route() {
    let main = "smtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO }\n";
    let m = M_STOCK.replace(
        "smtp       unix  -       -       y       -       -       smtp\n",
        "",
    );
    let a = audit(&texts(main, &m, ""), &policy());
    assert!(a
        .problems
        .iter()
        .any(|p| p.what.contains("no `smtp unix` service")));
}

#[test]
fn values_postfix_would_compute_are_computed_and_others_are_not_trusted() {
    // The real default when main.cf does not set it (postconf -X smtpd_relay_restrictions).
    let main = "smtpd_relay_restrictions = ${{$compatibility_level} <level {1} ? {} : {permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}\nx = a\nempty =\nchoose = ${x?{yes}:{no}} ${empty?{yes}:{no}} ${empty:fallback} $(x)$$ ${x:not}\n";
    let t = texts(main, M_STOCK, "");
    let e = Effective::new(&t);
    assert_eq!(
        e.value(None, "smtpd_relay_restrictions").unwrap(),
        "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
    );
    assert_eq!(e.value(None, "choose").unwrap(), "yes no fallback a$ ");
    assert_eq!(
        e.value(Some("submission/inet"), "smtpd_sasl_auth_enable")
            .unwrap(),
        "yes"
    );
    let loops = texts(
        "a = $b\nb = ${a}\nsmtpd_sasl_auth_enable = $a\n",
        M_STOCK,
        "",
    );
    assert!(Effective::new(&loops).value(None, "a").is_err());
    // An unreadable AUTH setting counts as AUTH offered, and is reported.
    let a = audit(&loops, &milter());
    assert!(svc(&a, "smtp/inet").sasl);
    assert!(a
        .problems
        .iter()
        .any(|p| p.what.contains("cannot evaluate smtpd_sasl_auth_enable")));
}

#[test]
fn folded_and_braced_master_output_reads_the_same() {
    // postconf -Mf folds; -P unwraps `-o { name = value }`.
    let m = "127.0.0.1:40123 inet n   -       n       -       -       smtpd\n    -o {smtpd_sender_restrictions=check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO }, permit}\n    -o smtpd_milters=\n";
    let p = "127.0.0.1:40123/inet/smtpd_milters =\n127.0.0.1:40123/inet/smtpd_sasl_auth_enable = yes\n127.0.0.1:40123/inet/smtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO }, permit\n";
    let a = audit(&texts("", m, p), &policy());
    let s = svc(&a, "127.0.0.1:40123/inet");
    assert!(s.sasl && s.policy && !s.milter);
}

#[test]
fn addresses_match_the_way_postfix_connects() {
    let lo: SocketAddr = "127.0.0.1:10030".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:10030".parse().unwrap();
    let any6: SocketAddr = "[::]:10030".parse().unwrap();
    for n in [
        "inet:127.0.0.1:10030",
        "inet:[127.0.0.1]:10030",
        "inet:localhost:10030",
    ] {
        assert!(fixes::inet_matches(n, lo), "{n}");
        assert!(fixes::inet_matches(n, any), "{n}");
    }
    assert!(!fixes::inet_matches("inet:127.0.0.1:10031", lo));
    assert!(!fixes::inet_matches("inet:127.0.0.2:10030", lo));
    assert!(!fixes::inet_matches("inet:[::1]:10030", any));
    assert!(fixes::inet_matches("inet:[::1]:10030", any6));
    assert!(!fixes::inet_matches("unix:/x", lo));
    assert_eq!(
        conf::tokens("a, { b, c=d },e\tf"),
        ["a", "{ b, c=d }", "e", "f"]
    );
}

#[test]
fn client_and_helo_lists_count_only_when_evaluated_after_auth() {
    let client = "smtpd_client_restrictions = check_policy_service inet:127.0.0.1:10040\nsmtpd_sasl_auth_enable = yes\n";
    let a = audit(&texts(client, M_STOCK, ""), &policy());
    assert!(
        svc(&a, "smtp/inet").policy,
        "at RCPT time with smtpd_delay_reject = yes"
    );
    let early = format!("{client}smtpd_delay_reject = no\n");
    let a = audit(&texts(&early, M_STOCK, ""), &policy());
    assert!(
        svc(&a, "smtp/inet").bypasses(),
        "at CONNECT time, before AUTH"
    );
    // Mail to local domains would be delivered before the policy is asked.
    let local = "smtpd_recipient_restrictions = permit_auth_destination, check_policy_service inet:127.0.0.1:10040\nsmtpd_sasl_auth_enable = yes\n";
    let a = audit(&texts(local, M_STOCK, ""), &policy());
    assert!(svc(&a, "smtp/inet").bypasses());
}

/// docs/mail.md's setup: recipients hidden by the milter while Moat runs, Postfix's own
/// `reject_unlisted_recipient` after Moat's policy as the fallback when it does not. That
/// fallback is not a problem; the same check ahead of the policy, or no fallback at all, is.
#[test]
fn the_unlisted_fallback_after_the_policy_is_the_documented_setup() {
    let hooks = MoatHooks {
        policy: Some("127.0.0.1:10040".parse().unwrap()),
        ..milter()
    };
    let base = "smtpd_milters = inet:127.0.0.1:10030\nmilter_default_action = accept\nsmtpd_reject_unlisted_recipient = no\n";
    let problems = |rcpt: &str| {
        let t = texts(
            &format!("{base}smtpd_recipient_restrictions = {rcpt}\n"),
            M_STOCK,
            "",
        );
        audit(&t, &hooks)
            .problems
            .into_iter()
            .map(|p| p.what)
            .collect::<Vec<_>>()
    };
    let documented = problems(
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 }, reject_unlisted_recipient",
    );
    assert!(documented.is_empty(), "{documented:?}");
    let early = problems(
        "reject_unauth_destination, reject_unlisted_recipient, check_policy_service inet:127.0.0.1:10040",
    );
    assert!(
        early
            .iter()
            .any(|w| w.contains("has reject_unlisted_recipient")),
        "{early:?}"
    );
    let none = problems("permit_mynetworks, reject_unauth_destination");
    assert!(
        none.iter().any(|w| w.contains("with Moat down")),
        "{none:?}"
    );
}

/// With hiding on, a service without Moat's milter leaks recipients even without AUTH.
#[test]
fn a_service_without_the_milter_is_named_when_recipients_are_hidden() {
    let t = texts(
        "milter_default_action = accept\nsmtpd_reject_unlisted_recipient = no\n",
        M_STOCK,
        "",
    );
    let a = audit(&t, &milter());
    assert!(
        a.problems
            .iter()
            .any(|p| p.what.contains("learn which addresses exist")
                && p.what.starts_with("smtp/inet")),
        "{:?}",
        a.problems
    );
}

#[test]
fn a_unix_milter_is_matched_where_each_smtpd_finds_it() {
    // Stock chrooted services reach `unix:private/moat-milter` (relative to the queue
    // directory); an absolute path is looked up inside the chroot, so it misses there.
    let main = "smtpd_milters = unix:private/moat-milter\nmilter_default_action = accept\nmilter_mail_macros = i {auth_authen}\n";
    let m = M_STOCK.replace(
        "milter_macro_daemon_name=ORIGINATING\nsubmissions",
        "milter_macro_daemon_name=ORIGINATING -o smtpd_milters=unix:/var/spool/postfix/private/moat-milter\nsubmissions",
    );
    let p = "submission/inet/smtpd_milters = unix:/var/spool/postfix/private/moat-milter\n";
    let hooks = MoatHooks {
        milter_socket: Some("/var/spool/postfix/private/moat-milter".into()),
        hide_recipients: true,
        ..Default::default()
    };
    let a = audit(&texts(main, &m, p), &hooks);
    assert!(svc(&a, "submissions/inet").milter, "{:?}", a.problems);
    assert!(svc(&a, "smtp/inet").milter);
    assert!(
        svc(&a, "submission/inet").bypasses(),
        "absolute path inside a chroot"
    );
    assert!(
        fixes(&a).contains(
            &"in master.cf, under submission: -o smtpd_milters=unix:private/moat-milter (or remove the override)"
        ),
        "{:?}",
        fixes(&a)
    );
    // Moat listening elsewhere: nothing matches, and the fix names Moat's socket.
    let other = MoatHooks {
        milter_socket: Some("/run/moat/milter.sock".into()),
        ..Default::default()
    };
    let a = audit(&texts(main, &m, p), &other);
    assert!(svc(&a, "submissions/inet").bypasses());
    assert!(fixes(&a).iter().any(
        |f| f.contains("smtpd_milters = unix:private/moat-milter, unix:/run/moat/milter.sock")
    ));
}
