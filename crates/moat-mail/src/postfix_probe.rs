//! Reads Postfix's effective configuration with `postconf` (no running Postfix needed) and
//! audits it with [`crate::postfix_audit`]. The only I/O of the audit lives here.
//!
//! Three commands, each bounded by a timeout so a wedged NSS lookup or NFS mount cannot hold
//! Moat's start or `moat doctor`:
//! - `postconf -c DIR`: every `main.cf` parameter with its default, *unexpanded*, because
//!   smtpd expands `$name` against a service's `-o` overrides first, which `-x` cannot know;
//! - `postconf -c DIR -M`: the services, one per line;
//! - `postconf -c DIR -P`: their `-o` overrides, one per line, braces already removed.

use crate::postfix_audit::{audit, Audit, MoatHooks, PostconfTexts};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// How long one `postconf` (or `doveconf`) run may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0} not found (looked on PATH and in /usr/sbin, /usr/bin)")]
    NotFound(String),
    #[error("`{cmd}` could not start: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` did not finish within {secs} s")]
    Timeout { cmd: String, secs: u64 },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
}

/// `name` on PATH, else in the system directories (PATH is often short under systemd or
/// sudo, and Debian puts postconf in /usr/sbin).
pub fn find_program(name: &str) -> Result<PathBuf, ProbeError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ProbeError::NotFound(name.to_string()))
}

/// Runs `program args…` and returns its standard output; a non-zero exit, or no exit within
/// `timeout` (the child is then killed), is an error naming the command.
pub fn run(program: &Path, args: &[&str], timeout: Duration) -> Result<String, ProbeError> {
    let cmd = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    // Both pipes are drained while waiting, so a chatty child cannot block on a full pipe.
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Timeout {
                    cmd,
                    secs: timeout.as_secs(),
                });
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        return Err(ProbeError::Failed {
            cmd,
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(stdout)
}

/// The three `postconf` outputs for the configuration in `dir`.
pub fn read_postconf(dir: &Path) -> Result<PostconfTexts, ProbeError> {
    let postconf = find_program("postconf")?;
    let d = dir.to_string_lossy();
    let q = |extra: &[&str]| {
        let mut args = vec!["-c", d.as_ref()];
        args.extend_from_slice(extra);
        run(&postconf, &args, TIMEOUT)
    };
    Ok(PostconfTexts {
        main: q(&[])?,
        master_m: q(&["-M"])?,
        master_p: q(&["-P"])?,
    })
}

/// Where Moat listens, as the audit needs it.
pub fn hooks(cfg: &moat_config::Mail) -> MoatHooks {
    MoatHooks {
        milter: cfg.milter_listen,
        milter_socket: cfg.milter_socket.clone(),
        policy: cfg.policy_listen,
        policy_socket: cfg.policy_socket.clone(),
        capture: cfg.capture_listen,
        hide_recipients: cfg.hide_recipients,
    }
}

/// Audits the Postfix configuration in `cfg.postfix_config_dir` against Moat's listeners.
pub fn audit_postfix(cfg: &moat_config::Mail) -> Result<Audit, ProbeError> {
    let texts = read_postconf(&cfg.postfix_config_dir)?;
    Ok(audit(&texts, &hooks(cfg)))
}

/// Modification times of `main.cf` and `master.cf` in `dir` (`None`: missing or unreadable):
/// a caller compares them between calls and audits again when they change.
pub fn config_mtimes(dir: &Path) -> Vec<Option<SystemTime>> {
    ["main.cf", "master.cf"]
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postfix_audit::Effective;

    /// A private copy of this machine's Postfix configuration (None without Postfix).
    fn private_dir() -> Option<tempfile::TempDir> {
        find_program("postconf").ok()?;
        let d = tempfile::tempdir().ok()?;
        for f in ["main.cf", "master.cf"] {
            std::fs::copy(Path::new("/etc/postfix").join(f), d.path().join(f)).ok()?;
        }
        Some(d)
    }

    /// `-x` prints runs of whitespace as one space.
    fn words(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Our expansion agrees with `postconf -x` for every parameter Postfix prints, and with
    /// `postconf -P -x` for every service override.
    #[test]
    fn expansion_matches_postconf_x() {
        let Some(d) = private_dir() else {
            eprintln!("skipped: postconf or /etc/postfix missing");
            return;
        };
        let pc = find_program("postconf").unwrap();
        let dir = d.path().to_string_lossy().into_owned();
        let set = |args: &[&str]| {
            let mut a = vec!["-c", dir.as_str()];
            a.extend_from_slice(args);
            run(&pc, &a, TIMEOUT).unwrap();
        };
        set(&["-X", "smtpd_relay_restrictions"]);
        set(&[
            "-e",
            "mua_sender_restrictions = check_policy_service { inet:127.0.0.1:10040, default_action=DUNNO }",
            "smtpd_data_restrictions = ${mua_sender_restrictions?{reject_unauth_pipelining}:{}}",
        ]);
        std::fs::write(
            d.path().join("master.cf"),
            std::fs::read_to_string(d.path().join("master.cf")).unwrap()
                + "127.0.0.1:2525 inet n - n - - smtpd\n  -o smtpd_sender_restrictions=$mua_sender_restrictions\n  -o mua_sender_restrictions=permit\n  -o { smtpd_client_restrictions = ${mua_sender_restrictions:{x}} $$ }\n",
        )
        .unwrap();
        let texts = read_postconf(d.path()).unwrap();
        let eff = Effective::new(&texts);
        // What Postfix itself makes of each value: `name = value` per line.
        let expanded = |args: &[&str]| -> std::collections::HashMap<String, String> {
            let mut a = vec!["-c", dir.as_str(), "-x"];
            a.extend_from_slice(args);
            run(&pc, &a, TIMEOUT)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect()
        };
        let (main_x, over_x) = (expanded(&[]), expanded(&["-P"]));
        let mut n = 0;
        // process_id is each postconf run's own; `-x` leaves names smtpd fills in at run
        // time ($rbl_code, $client_address, …) as they are.
        for p in eff.main_params().into_iter().filter(|p| *p != "process_id") {
            if !main_x[p].contains('$') {
                assert_eq!(
                    words(&eff.value(None, p).unwrap()),
                    words(&main_x[p]),
                    "{p}"
                );
                n += 1;
            }
        }
        assert!(n > 900, "only {n} parameters");
        for (id, names) in eff.services() {
            for p in names {
                let want = &over_x[&format!("{id}/{p}")];
                assert_eq!(
                    words(&eff.value(Some(&id), p).unwrap()),
                    words(want),
                    "{id} {p}"
                );
            }
        }
        assert_eq!(
            eff.value(Some("127.0.0.1:2525/inet"), "smtpd_sender_restrictions")
                .unwrap(),
            "permit"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_command() {
        if find_program("postconf").is_err() {
            eprintln!("skipped: no postconf");
            return;
        }
        let e = read_postconf(Path::new("/nonexistent/moat-test")).unwrap_err();
        assert!(
            e.to_string().contains("postconf -c /nonexistent/moat-test"),
            "{e}"
        );
    }

    #[test]
    fn a_hung_command_is_killed_at_the_timeout() {
        let e = run(Path::new("/bin/sleep"), &["5"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, ProbeError::Timeout { .. }), "{e}");
        assert_eq!(config_mtimes(Path::new("/nonexistent")), vec![None, None]);
    }
}
