//! `moat doctor mail`: is Postfix and Dovecot wired to Moat, and may honey accounts exist?
//! (`moat doctor dns` is in [`dns`].)
//!
//! Honey accounts are only safe when every Postfix service that offers SASL AUTH passes its
//! mail through Moat (a `master.cf` override can bypass `main.cf`), so this prints what the
//! audits found, one `ok:` or `problem:` line per finding with the exact line that fixes it,
//! and exits 1 when anything needs fixing. Nothing is changed, nothing is started.

use crate::ConfigArgs;
use moat_mail::dovecot_audit::{audit_dovecot, moat_token};
use moat_mail::postfix_audit::{Audit, Problem};
use moat_mail::postfix_probe::audit_postfix;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod dns;

#[derive(clap::Subcommand)]
pub enum DoctorCmd {
    /// Check Postfix (every SASL service passes its mail through Moat), Dovecot (honey passdb,
    /// auth policy) and Moat's files; print each finding and how to fix it.
    Mail {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Dovecot's configuration file, read with `doveconf -c FILE -n -P`.
        #[arg(long, default_value = "/etc/dovecot/dovecot.conf")]
        dovecot_config: PathBuf,
    },
    /// Resolve host names the way Moat's outbound connections do (its own resolver, not
    /// libc's): print where the nameservers come from and each name's addresses.
    Dns {
        /// Host names to resolve.
        #[arg(required = true)]
        names: Vec<String>,
        /// The nameserver to ask when /etc/resolv.conf is missing or names none
        /// (IP or IP:port).
        #[arg(long, value_parser = dns::parse_server)]
        fallback: Option<std::net::SocketAddr>,
    },
}

pub fn run(cmd: DoctorCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DoctorCmd::Mail {
            cfg,
            dovecot_config,
        } => mail(&cfg, &dovecot_config),
        DoctorCmd::Dns { names, fallback } => dns::run(&names, fallback),
    }
}

/// Counts problems while printing findings.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        println!("ok: {}", what.as_ref());
    }

    fn problem(&mut self, p: &Problem) {
        self.problems += 1;
        println!("problem: {}", p.what);
        let mut lines = p.fix.lines();
        println!("  fix: {}", lines.next().unwrap_or(""));
        for l in lines {
            println!("       {l}");
        }
    }

    fn problem_of(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.problem(&Problem {
            what: what.into(),
            fix: fix.into(),
        });
    }
}

fn mail(c: &ConfigArgs, dovecot_config: &Path) -> anyhow::Result<ExitCode> {
    let mut ov = crate::cmd_run::overrides(c);
    ov.upstream
        .get_or_insert_with(|| "http://127.0.0.1:1".into());
    let Some(cfg) = crate::cmd_run::load_or_report(c, ov) else {
        return Ok(ExitCode::from(1));
    };
    let mut r = Report::default();
    let Some(mail) = &cfg.mail else {
        r.problem_of(
            "the config has no [mail] section",
            "add one (see examples/postfix-dovecot.toml)",
        );
        return Ok(ExitCode::from(1));
    };
    let honey = postfix(mail, &mut r);
    let auth_user = dovecot(mail, &cfg.server.state_dir, dovecot_config, &mut r);
    files(mail, &cfg.server.state_dir, &auth_user, &mut r);
    recipients(mail, &mut r);
    let honey = match honey {
        Ok(()) => "safe".to_string(),
        Err(why) => format!("NOT safe ({why})"),
    };
    println!(
        "summary: {} problem(s); honey accounts: {honey}",
        r.problems
    );
    Ok(if r.problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The Postfix audit's findings; returns whether honey accounts are safe.
fn postfix(mail: &moat_config::Mail, r: &mut Report) -> Result<(), String> {
    let dir = mail.postfix_config_dir.display();
    let audit: Audit = match audit_postfix(mail) {
        Ok(a) => a,
        Err(e) => {
            r.problem_of(
                format!("cannot read Postfix's configuration in {dir}: {e}"),
                "install Postfix, or set [mail] postfix_config_dir to its configuration directory",
            );
            return Err("Postfix not verified".into());
        }
    };
    for s in audit.services.iter().filter(|s| !s.bypasses()) {
        let via = match (s.milter, s.policy) {
            (true, _) => "its mail passes through Moat's milter",
            (false, true) => "Moat's policy service is asked for every message",
            (false, false) => "Moat does not see its mail",
        };
        if s.sasl {
            r.ok(format!("Postfix {}: SASL AUTH, {via}", s.name));
        } else {
            r.ok(format!("Postfix {}: no SASL AUTH ({via})", s.name));
        }
    }
    if audit.services.is_empty() {
        r.ok(format!("Postfix ({dir}) has no smtpd service"));
    }
    for p in &audit.problems {
        r.problem(&Problem {
            what: format!("Postfix {}", p.what),
            fix: p.fix.clone(),
        });
    }
    audit.honey_safe()
}

/// The Dovecot audit's findings; returns the user its auth process runs as.
fn dovecot(mail: &moat_config::Mail, state_dir: &Path, conf: &Path, r: &mut Report) -> String {
    if mail.auth_policy_listen.is_none() {
        r.ok("mail.auth_policy_listen is not set: no honey accounts, Dovecot's policy settings not checked");
    }
    match audit_dovecot(mail, state_dir, conf) {
        Ok(a) => {
            for o in &a.oks {
                r.ok(format!("Dovecot: {o}"));
            }
            for p in &a.problems {
                r.problem(&Problem {
                    what: format!("Dovecot: {}", p.what),
                    fix: p.fix.clone(),
                });
            }
            a.auth_user
        }
        Err(e) => {
            r.problem_of(
                format!(
                    "cannot read Dovecot's configuration {}: {e}",
                    conf.display()
                ),
                "pass --dovecot-config FILE, or run as a user that can read it",
            );
            "dovecot".into()
        }
    }
}

/// `user`'s uid and every group it is in, from /etc/passwd and /etc/group.
fn ids(user: &str) -> Option<(u32, Vec<u32>)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let f: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))?;
    let uid = f.get(2)?.parse().ok()?;
    let mut gids = vec![f.get(3)?.parse().ok()?];
    if let Ok(group) = std::fs::read_to_string("/etc/group") {
        for g in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            let member = g.get(3).is_some_and(|m| m.split(',').any(|m| m == user));
            if let (true, Some(Ok(gid))) = (member, g.get(2).map(|s| s.parse())) {
                gids.push(gid);
            }
        }
    }
    Some((uid, gids))
}

/// `user` has `bit` (4 read, 1 search) on `path` by owner, group or others.
fn allowed(meta: &std::fs::Metadata, who: &Option<(u32, Vec<u32>)>, bit: u32) -> bool {
    let mode = meta.mode();
    match who {
        Some((0, _)) => true,
        Some((uid, _)) if meta.uid() == *uid => mode & (bit << 6) != 0,
        Some((_, gids)) if gids.contains(&meta.gid()) => mode & (bit << 3) != 0,
        _ => mode & bit != 0,
    }
}

/// The honey passwd-file must be readable by Dovecot's auth process, through every directory
/// above it; the token file must exist for Dovecot's header to be written.
fn files(mail: &moat_config::Mail, state_dir: &Path, auth_user: &str, r: &mut Report) {
    let who = ids(auth_user);
    let honey = &mail.honey_passwd;
    match std::fs::metadata(honey) {
        Err(e) => r.problem_of(
            format!("{}: {e} (Moat creates it when it starts)", honey.display()),
            "start Moat (moat run --config FILE), then run this again",
        ),
        Ok(m) if !allowed(&m, &who, 4) => r.problem_of(
            format!(
                "{} (mode {:o}) is not readable by {auth_user}, the user Dovecot's auth process runs as",
                honey.display(),
                m.mode() & 0o7777
            ),
            format!("chmod 0644 {}", honey.display()),
        ),
        Ok(_) => r.ok(format!("{} is readable by {auth_user}", honey.display())),
    }
    let blocked = honey
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
        .find(|d| std::fs::metadata(d).is_ok_and(|m| !allowed(&m, &who, 1)));
    match blocked {
        Some(d) => r.problem_of(
            format!(
                "{auth_user} cannot enter {}, above the honey passwd-file",
                d.display()
            ),
            format!("chmod o+x {}", d.display()),
        ),
        None if honey.starts_with(state_dir) => r.ok(format!(
            "{auth_user} can reach the state directory {}",
            state_dir.display()
        )),
        None => {}
    }
    if mail.auth_policy_listen.is_some() {
        match moat_token(mail, state_dir) {
            (Some(_), source) => r.ok(format!("Moat's token for Dovecot is there ({source})")),
            (None, source) => r.problem_of(
                format!("Moat's token for Dovecot is missing ({source})"),
                "start Moat once (moat run --config FILE): it creates the token",
            ),
        }
    }
}

/// Moat must know the real recipients: without them it makes no honey account (it could
/// shadow a real login) and cannot tell which recipients to hide.
fn recipients(mail: &moat_config::Mail, r: &mut Report) {
    let mut known = mail.recipients.len();
    for p in &mail.recipient_maps {
        match std::fs::read_to_string(p) {
            Ok(text) => {
                let mut one = moat_mail::recipients::Recipients::default();
                one.add_map_text(&text);
                known += one.len();
            }
            Err(e) => r.problem_of(
                format!("recipient map {}: {e}", p.display()),
                "list the source files of Postfix's virtual_mailbox_maps and virtual_alias_maps \
                 in [mail] recipient_maps (postconf -x virtual_mailbox_maps shows them)",
            ),
        }
    }
    if known == 0 {
        r.problem_of(
            "Moat knows no recipients: it makes no honey account and hides no probe",
            "[mail] recipient_maps = [\"/etc/postfix/vmailbox\"] (the files behind \
             virtual_mailbox_maps and virtual_alias_maps), or recipients = [\"you@example.org\"]",
        );
    } else {
        r.ok(format!("Moat knows {known} recipient address(es)"));
    }
}
