//! Samples are real `doveconf -c FILE -n -P` output of Dovecot 2.3.19.1 (Debian 12).

use super::*;

const GOOD: &str = "\
# 2.3.19.1 (9b53102964): dovecot.conf
# Pigeonhole version 0.5.19 (4eae2f79)
# OS: Linux 6.18.44-fc-v1252 x86_64 Debian 12.11 
# Hostname: vm
auth_policy_hash_nonce = nonce-abcdefghijkl
auth_policy_hash_truncate = 0
auth_policy_server_api_header = Authorization: Bearer tok-0123456789abcdef
auth_policy_server_url = http://127.0.0.1:10080/
listen = 127.0.0.1
passdb {
  args = scheme=CRYPT username_format=%u /etc/dovecot/users
  driver = passwd-file
}
passdb {
  args = scheme=PLAIN /var/lib/moat/honey.passwd
  driver = passwd-file
}
protocols = imap
ssl_cert = </etc/ssl/certs/ssl-cert-snakeoil.pem
ssl_key = </etc/ssl/private/ssl-cert-snakeoil.key
userdb {
  args = uid=65534 gid=65534 home=/tmp/%u
  driver = static
}
";

const BAD: &str = "\
# 2.3.19.1 (9b53102964): bad.conf
# Pigeonhole version 0.5.19 (4eae2f79)
# OS: Linux 6.18.44-fc-v1252 x86_64 Debian 12.11 
# Hostname: vm
auth_policy_hash_nonce = other-nonce-xyz
auth_policy_reject_on_fail = yes
auth_policy_server_api_header = X-Api-Key: abc
auth_policy_server_url = http://localhost:10081/
passdb {
  args = scheme=PLAIN username_format=%u /var/lib/moat/./honey.passwd
  driver = passwd-file
}
passdb {
  args = /etc/dovecot/master-users
  driver = passwd-file
  master = yes
}
passdb {
  driver = pam
}
protocols = imap
service auth {
  unix_listener auth-userdb {
    mode = 0666
  }
  user = root
}
userdb {
  driver = passwd
}
";

fn expect() -> DovecotExpect<'static> {
    DovecotExpect {
        honey_passwd: Path::new("/var/lib/moat/honey.passwd"),
        auth_policy_listen: Some("127.0.0.1:10080".parse().unwrap()),
        nonce: Some("nonce-abcdefghijkl"),
        token: Some("tok-0123456789abcdef"),
        token_source: "the contents of /var/lib/moat/mail-policy.token",
    }
}

#[test]
fn a_correct_configuration_has_no_problems() {
    let a = audit_doveconf(GOOD, &expect());
    assert!(a.problems.is_empty(), "{:?}", a.problems);
    assert_eq!(a.oks.len(), 5, "{:?}", a.oks);
    assert_eq!(a.version.as_deref(), Some("2.3.19.1"));
    assert_eq!(a.auth_user, "dovecot");
}

#[test]
fn every_mistake_is_named_without_printing_secrets() {
    let a = audit_doveconf(BAD, &expect());
    let text: String = a
        .problems
        .iter()
        .map(|p| format!("{}\n{}\n", p.what, p.fix))
        .collect();
    for want in [
        "comes before your users' passdb",
        "auth_policy_server_url is http://localhost:10081/, but Moat listens on 127.0.0.1:10080",
        "auth_policy_server_url = http://127.0.0.1:10080/",
        "auth_policy_hash_truncate is 12 (the default)",
        "auth_policy_hash_nonce differs",
        "does not send `Authorization: Bearer",
        "Authorization: Bearer <the contents of /var/lib/moat/mail-policy.token>",
        "auth_policy_reject_on_fail = no",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    for secret in [
        "nonce-abcdefghijkl",
        "tok-0123456789abcdef",
        "other-nonce-xyz",
        "abc\n",
    ] {
        assert!(!text.contains(secret), "{secret} printed");
    }
    assert_eq!(a.auth_user, "root");
}

#[test]
fn a_missing_honey_passdb_gets_the_block_for_the_running_version() {
    let only_pam =
        "# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf\npassdb {\n  driver = pam\n}\n";
    let a = audit_doveconf(only_pam, &expect());
    let p = &a.problems[0];
    assert!(p.what.starts_with("no passdb reads Moat's honey accounts"));
    assert!(p.fix.contains(
        "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN /var/lib/moat/honey.passwd\n}"
    ));
    // Dovecot 2.4's form (from its settings source; not run here).
    let v24 = "# 2.4.1 (abcdef): /etc/dovecot/dovecot.conf\npassdb pam {\n}\n";
    let a = audit_doveconf(v24, &expect());
    assert!(a.problems[0].fix.contains("passdb moat-honey {\n  driver = passwd-file\n  passwd_file_path = /var/lib/moat/honey.passwd\n}"));
}

#[test]
fn dovecot_2_4_names_are_understood() {
    let v24 = "\
# 2.4.1 (abcdef): /etc/dovecot/dovecot.conf
auth_policy {
  auth_policy_hash_truncate = 0
}
auth_policy_hash_nonce = nonce-abcdefghijkl
auth_policy_server_api_header = authorization: bearer tok-0123456789abcdef
auth_policy_server_url = http://[::1]:10080/
passdb pam {
}
passdb passwd-file {
  passwd_file_path = /var/lib/moat/honey.passwd
}
";
    let mut e = expect();
    e.auth_policy_listen = Some("[::]:10080".parse().unwrap());
    let a = audit_doveconf(v24, &e);
    assert!(a.problems.is_empty(), "{:?}", a.problems);
}
