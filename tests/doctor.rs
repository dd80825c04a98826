//! `moat doctor mail` against private Postfix configuration directories (Debian's main.cf,
//! the stock submission/submissions services from master.cf.dist uncommented), read with the
//! real `postconf`; Postfix itself is never started. Skipped where postconf is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOKEN: &str = "doctor-test-token-0123456789";
const NONCE: &str = "doctor-test-nonce-0123456789";

fn postconf() -> Option<PathBuf> {
    ["/usr/sbin/postconf", "/usr/bin/postconf"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn doveconf_present() -> bool {
    ["/usr/bin/doveconf", "/usr/sbin/doveconf"]
        .iter()
        .any(|p| Path::new(p).is_file())
}

/// Debian's master.cf template with the `submission` and `submissions` blocks enabled as an
/// administrator would: the service line and its `-o` lines uncommented, the notes left.
fn stock_master() -> String {
    let dist = [
        "/usr/share/postfix/master.cf.dist",
        "/etc/postfix/master.cf",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .expect("a master.cf template");
    let mut out = String::new();
    let mut in_block = false;
    for line in dist.lines() {
        if line.starts_with("#submission ") || line.starts_with("#submissions ") {
            in_block = true;
            out.push_str(&line[1..]);
        } else if in_block && line.starts_with("#  -o") {
            out.push_str(&line[1..]);
        } else {
            in_block = in_block && line.starts_with("#     ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Adds `line` at the end of `service`'s entry in master.cf (where an administrator would).
fn add_under(dir: &Path, service: &str, line: &str) {
    let path = dir.join("master.cf");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for l in text.lines() {
        let starts = l.split_whitespace().next() == Some(service) && !l.starts_with('#');
        if inside && !l.starts_with(char::is_whitespace) && !l.starts_with("#     ") {
            out.push(format!("  {line}"));
            inside = false;
        }
        inside |= starts;
        out.push(l.to_string());
    }
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
}

/// A world-traversable temporary directory holding postfix/, state/ and dovecot.conf, set up
/// so that Dovecot and the files are right and only Postfix varies.
struct Setup {
    dir: tempfile::TempDir,
    postconf: PathBuf,
}

/// A private config dir with `settings`, or `None` (with a note) where postconf is missing.
fn setup(settings: &[&str]) -> Option<Setup> {
    let Some(pc) = postconf() else {
        eprintln!("skipped: postconf not installed");
        return None;
    };
    Some(Setup::new(pc, settings))
}

impl Setup {
    fn new(postconf: PathBuf, settings: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        set_mode(root, 0o755);
        let pf = root.join("postfix");
        std::fs::create_dir(&pf).unwrap();
        // This machine's main.cf, as a real installation has one (postconf needs none).
        let main = std::fs::read_to_string("/etc/postfix/main.cf").unwrap_or_default();
        std::fs::write(pf.join("main.cf"), main).unwrap();
        std::fs::write(pf.join("master.cf"), stock_master()).unwrap();
        let state = root.join("state");
        std::fs::create_dir(&state).unwrap();
        set_mode(&state, 0o755);
        std::fs::write(state.join("mail-policy.token"), TOKEN).unwrap();
        std::fs::write(state.join("honey.passwd"), "# none yet\n").unwrap();
        set_mode(&state.join("honey.passwd"), 0o644);
        std::fs::write(
            root.join("dovecot.conf"),
            format!(
                "protocols = imap\nssl = no\n\
                 auth_policy_server_url = http://127.0.0.1:10080/\n\
                 auth_policy_hash_nonce = {NONCE}\nauth_policy_hash_truncate = 0\n\
                 auth_policy_server_api_header = Authorization: Bearer {TOKEN}\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=CRYPT {users}\n}}\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {honey}\n}}\n\
                 userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home=/tmp/%u\n}}\n",
                users = root.join("users").display(),
                honey = state.join("honey.passwd").display(),
            ),
        )
        .unwrap();
        let s = Setup { dir, postconf };
        s.postconf(&["-e", "smtpd_reject_unlisted_recipient = no"]);
        if !settings.is_empty() {
            s.postconf(&[&["-e"], settings].concat());
        }
        s
    }

    fn postfix_dir(&self) -> PathBuf {
        self.dir.path().join("postfix")
    }

    fn postconf(&self, args: &[&str]) {
        let o = Command::new(&self.postconf)
            .arg("-c")
            .arg(self.postfix_dir())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "postconf {args:?}: {o:?}");
    }

    /// `moat doctor mail` with Moat listening on `listeners` (TOML lines for [mail]).
    fn doctor(&self, listeners: &str) -> (Output, String) {
        let root = self.dir.path();
        let cfg = root.join("moat.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nstate_dir = \"{state}\"\n\n[mail]\n{listeners}\n\
                 auth_policy_listen = \"127.0.0.1:10080\"\nauth_policy_nonce = \"{NONCE}\"\n\
                 postfix_config_dir = \"{pf}\"\n",
                state = root.join("state").display(),
                pf = self.postfix_dir().display(),
            ),
        )
        .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(["doctor", "mail", "--config"])
            .arg(&cfg)
            .arg("--dovecot-config")
            .arg(root.join("dovecot.conf"))
            .output()
            .expect("run moat");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o, out)
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

const MILTER: &str = "milter_listen = \"127.0.0.1:10030\"\nrecipients = [\"alice@moat.test\"]";
const POLICY: &str = "policy_listen = \"127.0.0.1:10040\"\ncapture_listen = \"127.0.0.1:10026\"";

#[test]
fn a_milter_in_main_cf_covers_the_stock_submission_services() {
    let Some(s) = setup(&[
        "smtpd_milters = inet:127.0.0.1:10030",
        "milter_default_action = accept",
    ]) else {
        return;
    };
    let (o, out) = s.doctor(MILTER);
    for svc in ["submission/inet", "submissions/inet"] {
        assert!(
            out.contains(&format!(
                "ok: Postfix {svc}: SASL AUTH, its mail passes through Moat's milter"
            )),
            "{out}"
        );
    }
    assert!(!out.contains("problem: Postfix"), "{out}");
    assert!(out.contains("honey accounts: safe"), "{out}");
    if doveconf_present() {
        assert!(out.contains("summary: 0 problem(s)"), "{out}");
        assert_eq!(o.status.code(), Some(0), "{out}");
    }
}

#[test]
fn an_emptied_smtpd_milters_under_submission_is_named_and_fails() {
    let Some(s) = setup(&[
        "smtpd_milters = inet:127.0.0.1:10030",
        "milter_default_action = accept",
    ]) else {
        return;
    };
    s.postconf(&["-P", "submission/inet/smtpd_milters="]);
    let (o, out) = s.doctor(MILTER);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("problem: Postfix submission/inet: offers SASL AUTH, and its smtpd_milters lacks Moat's inet:127.0.0.1:10030"),
        "{out}"
    );
    assert!(
        out.contains("  fix: in master.cf, under submission: -o smtpd_milters=inet:127.0.0.1:10030 (or remove the override)"),
        "{out}"
    );
    assert!(
        out.contains("honey accounts: NOT safe (submission/inet offers SASL AUTH"),
        "{out}"
    );
    assert!(
        out.contains("ok: Postfix submissions/inet: SASL AUTH"),
        "{out}"
    );
}

#[test]
fn a_policy_only_in_main_cf_is_bypassed_by_the_stock_submission_services() {
    let Some(s) = setup(&["smtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 }"]) else {
        return;
    };
    let (o, out) = s.doctor(POLICY);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("honey accounts: NOT safe (submission/inet, submissions/inet offer SASL AUTH without passing mail through Moat)"),
        "{out}"
    );
    let fix = "-o { smtpd_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO, try_limit=1 } }";
    for svc in ["submission", "submissions"] {
        assert!(
            out.contains(&format!("  fix: in master.cf, under {svc}: {fix}")),
            "{out}"
        );
    }
    // The fix lines, added where they say, make the services safe.
    add_under(&s.postfix_dir(), "submission", fix);
    add_under(&s.postfix_dir(), "submissions", fix);
    let (_, out) = s.doctor(POLICY);
    assert!(out.contains("honey accounts: safe"), "{out}");
    assert!(
        out.contains("ok: Postfix submission/inet: SASL AUTH, Moat's policy service is asked for every message"),
        "{out}"
    );
}

/// Issue 14: without a recipient source Moat can neither make honey accounts safely nor hide
/// probes, and says so with the setting that fixes it.
#[test]
fn no_recipient_source_is_a_problem() {
    let Some(s) = setup(&[
        "smtpd_milters = inet:127.0.0.1:10030",
        "milter_default_action = accept",
    ]) else {
        return;
    };
    let (o, out) = s.doctor(
        "milter_listen = \"127.0.0.1:10030\"\nrecipient_maps = [\"/nonexistent/vmailbox\"]",
    );
    assert!(
        out.contains("problem: recipient map /nonexistent/vmailbox"),
        "{out}"
    );
    assert!(out.contains("problem: Moat knows no recipients"), "{out}");
    assert!(out.contains("  fix: [mail] recipient_maps = "), "{out}");
    assert_eq!(o.status.code(), Some(1), "{out}");
}
