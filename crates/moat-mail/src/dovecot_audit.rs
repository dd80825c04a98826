//! Is Dovecot wired to Moat? Reads `doveconf -c FILE -n -P` (the settings that differ from the
//! defaults, includes resolved, secrets shown so the nonce can be compared; nothing here
//! prints them) and checks what honey accounts and the auth policy need:
//! - a `passwd-file` passdb on Moat's honey file, after the real users' passdb;
//! - `auth_policy_server_url` on Moat's auth-policy listener, `auth_policy_hash_truncate = 0`
//!   (whole hashes), `auth_policy_hash_nonce` equal to Moat's, and
//!   `auth_policy_server_api_header = Authorization: Bearer <Moat's token>`.
//!
//! Dovecot 2.3 writes `passdb { driver = passwd-file  args = … PATH }`; 2.4 writes
//! `passdb NAME { driver = passwd-file  passwd_file_path = PATH }` (the driver defaults to the
//! name) and keeps the `auth_policy_*` names, which may also sit in an `auth_policy { }`
//! filter. Only 2.3.19 was run here; the 2.4 forms follow Dovecot 2.4's settings source.
//! Parsing is free of I/O; [`audit_dovecot`] runs doveconf and reads Moat's token.

use crate::postfix_audit::{normal_path as normal, Problem};
use crate::postfix_probe::{find_program, run, ProbeError, TIMEOUT};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// What Moat expects to find. Secrets are compared, never copied into findings.
#[derive(Debug, Clone)]
pub struct DovecotExpect<'a> {
    pub honey_passwd: &'a Path,
    pub auth_policy_listen: Option<SocketAddr>,
    pub nonce: Option<&'a str>,
    /// `None`: Moat has not made its token yet; a Bearer header is then not compared.
    pub token: Option<&'a str>,
    /// Where the token is kept (a path or a config key), for fix lines.
    pub token_source: &'a str,
}

#[derive(Debug, Clone, Default)]
pub struct DovecotAudit {
    /// From doveconf's first line (`2.3.19.1`).
    pub version: Option<String>,
    /// The user Dovecot's auth process runs as: it reads the honey passwd-file.
    pub auth_user: String,
    pub oks: Vec<String>,
    pub problems: Vec<Problem>,
}

/// A `name [label] { … }` block of doveconf output; the root has an empty kind.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    name: String,
    settings: Vec<(String, String)>,
    children: Vec<Section>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse(text: &str) -> (Option<String>, Section) {
    let mut version = None;
    let mut stack = vec![Section::default()];
    for line in text.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix('#') {
            if version.is_none() {
                version = c.split_whitespace().next().map(str::to_string);
            }
        } else if line == "}" {
            close(&mut stack);
        } else if let Some(head) = line.strip_suffix('{') {
            let (kind, name) = head.trim().split_once(' ').unwrap_or((head.trim(), ""));
            stack.push(Section {
                kind: kind.to_string(),
                name: name.trim().trim_matches('"').to_string(),
                ..Default::default()
            });
        } else if let Some((k, v)) = line.split_once('=') {
            // doveconf quotes values with outer spaces; the quotes are not part of them.
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            if let Some(top) = stack.last_mut() {
                top.settings.push((k.trim().to_string(), v.to_string()));
            }
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    (version, stack.pop().unwrap_or_default())
}

/// Ends the innermost open block (never the root).
fn close(stack: &mut Vec<Section>) {
    if stack.len() > 1 {
        if let Some(s) = stack.pop() {
            if let Some(parent) = stack.last_mut() {
                parent.children.push(s);
            }
        }
    }
}

pub fn audit_doveconf(text: &str, want: &DovecotExpect) -> DovecotAudit {
    let (version, root) = parse(text);
    let v24 = version
        .as_deref()
        .is_some_and(|v| !v.starts_with("2.3") && !v.starts_with("2.2"));
    let mut a = DovecotAudit {
        version,
        ..Default::default()
    };
    let internal = root.get("default_internal_user").unwrap_or("dovecot");
    a.auth_user = root
        .children
        .iter()
        .find(|s| s.kind == "service" && s.name == "auth")
        .and_then(|s| s.get("user"))
        .unwrap_or(internal)
        .replace("$default_internal_user", internal);
    passdbs(&root, want, v24, &mut a);
    if let Some(listen) = want.auth_policy_listen {
        policy(&root, want, listen, &mut a);
    }
    a
}

/// The honey passdb exists and comes after the real users'.
fn passdbs(root: &Section, want: &DovecotExpect, v24: bool, a: &mut DovecotAudit) {
    let honey = normal(want.honey_passwd);
    let global_path = root.get("passwd_file_path");
    let dbs: Vec<(bool, bool)> = root
        .children
        .iter()
        .filter(|s| s.kind == "passdb")
        .map(|s| {
            let driver = s
                .get("driver")
                .or(s.get("passdb_driver"))
                .unwrap_or(&s.name);
            let path = s.get("passwd_file_path").or(global_path);
            let is_honey = driver == "passwd-file"
                && (path.is_some_and(|p| normal(Path::new(p)) == honey)
                    || s.get("args").is_some_and(|args| {
                        args.split_whitespace()
                            .any(|t| normal(Path::new(t)) == honey)
                    }));
            let master = s.get("master").or(s.get("passdb_master")) == Some("yes");
            (is_honey, master)
        })
        .collect();
    let path = want.honey_passwd.display();
    match dbs.iter().position(|(h, _)| *h) {
        None => a.problems.push(Problem {
            what: format!("no passdb reads Moat's honey accounts ({path})"),
            fix: if v24 {
                format!("add after your users' passdb in dovecot.conf:\npassdb moat-honey {{\n  driver = passwd-file\n  passwd_file_path = {path}\n}}")
            } else {
                format!("add after your users' passdb in dovecot.conf:\npassdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {path}\n}}")
            },
        }),
        Some(i) if dbs[..i].iter().any(|(h, m)| !h && !m) => {
            a.oks.push(format!("Dovecot reads honey accounts from {path}, after the real users"))
        }
        Some(_) => a.problems.push(Problem {
            what: format!("the honey passdb ({path}) comes before your users' passdb"),
            fix: "move the passdb block that reads it after your users' passdb block".into(),
        }),
    }
}

fn setting<'a>(root: &'a Section, key: &str) -> Option<&'a str> {
    root.get(key).or_else(|| {
        let filter = root.children.iter().find(|s| s.kind == "auth_policy")?;
        filter
            .get(key)
            .or_else(|| filter.get(key.trim_start_matches("auth_policy_")))
    })
}

fn policy(root: &Section, want: &DovecotExpect, listen: SocketAddr, a: &mut DovecotAudit) {
    let host = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!("http://{host}:{}/", listen.port());
    match setting(root, "auth_policy_server_url").filter(|u| !u.is_empty()) {
        Some(u) if url_matches(u, listen) => a.oks.push(format!("auth_policy_server_url = {u}")),
        got => a.problems.push(Problem {
            what: match got {
                Some(u) => format!("auth_policy_server_url is {u}, but Moat listens on {listen}"),
                None => "auth_policy_server_url is not set: Dovecot never asks Moat".into(),
            },
            fix: format!("auth_policy_server_url = {url}"),
        }),
    }
    match setting(root, "auth_policy_hash_truncate") {
        Some("0") => a.oks.push("auth_policy_hash_truncate = 0".into()),
        got => a.problems.push(Problem {
            what: format!(
                "auth_policy_hash_truncate is {}: Moat needs whole hashes to tell which common \
                 password is tried",
                got.unwrap_or("12 (the default)")
            ),
            fix: "auth_policy_hash_truncate = 0".into(),
        }),
    }
    let nonce = setting(root, "auth_policy_hash_nonce").filter(|n| !n.is_empty());
    match (want.nonce, nonce) {
        (Some(w), Some(n)) if w == n => a.oks.push("auth_policy_hash_nonce matches Moat's".into()),
        (Some(_), got) => a.problems.push(Problem {
            what: match got {
                Some(n) if n.starts_with('#') => {
                    "auth_policy_hash_nonce is hidden by doveconf".into()
                }
                Some(_) => {
                    "auth_policy_hash_nonce differs from Moat's mail.auth_policy_nonce".into()
                }
                None => "auth_policy_hash_nonce is not set".into(),
            },
            fix: "auth_policy_hash_nonce = <the value of mail.auth_policy_nonce in Moat's config>"
                .into(),
        }),
        (None, _) => a.problems.push(Problem {
            what: "Moat's config has no mail.auth_policy_nonce: it cannot tell which password \
                   bots try, so it makes no honey accounts"
                .into(),
            fix:
                "in Moat's config, [mail] auth_policy_nonce = \"<a long random secret>\", and the \
                  same secret in Dovecot's auth_policy_hash_nonce"
                    .into(),
        }),
    }
    let header = setting(root, "auth_policy_server_api_header").unwrap_or("");
    let bearer = header.split_once(':').and_then(|(name, v)| {
        let (scheme, token) = v.trim().split_once(' ')?;
        (name.trim().eq_ignore_ascii_case("authorization") && scheme.eq_ignore_ascii_case("bearer"))
            .then(|| token.trim())
    });
    let fix = format!(
        "auth_policy_server_api_header = Authorization: Bearer <{}>",
        want.token_source
    );
    match (bearer, want.token) {
        (Some(b), Some(t)) if b == t => a
            .oks
            .push("auth_policy_server_api_header carries Moat's token".into()),
        // Moat has no token yet: nothing to compare with; the caller reports the missing file.
        (Some(_), None) => {}
        (b, _) => a.problems.push(Problem {
            what: match b {
                Some(_) => "auth_policy_server_api_header has a token that differs from Moat's",
                None => {
                    "auth_policy_server_api_header does not send `Authorization: Bearer …`: \
                         Moat refuses Dovecot's requests"
                }
            }
            .into(),
            fix,
        }),
    }
    if setting(root, "auth_policy_reject_on_fail") == Some("yes") {
        a.problems.push(Problem {
            what: "auth_policy_reject_on_fail = yes: while Moat is down, every login fails".into(),
            fix: "auth_policy_reject_on_fail = no".into(),
        });
    }
}

/// `http://HOST:PORT/…` reaches `listen` (same port; same address, loopback for a wildcard).
fn url_matches(url: &str, listen: SocketAddr) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let hostport = rest.split(['/', '?']).next().unwrap_or("");
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(listen.port()) {
        return false;
    }
    let w = listen.ip();
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => {
            ip == w || (w.is_unspecified() && ip.is_loopback() && (w.is_ipv6() || ip.is_ipv4()))
        }
        Err(_) => host.eq_ignore_ascii_case("localhost") && (w.is_loopback() || w.is_unspecified()),
    }
}

/// Moat's bearer token for Dovecot and where it is kept: `mail.auth_policy_token`, else
/// `state_dir/mail-policy.token` (read, never created: that is `moat run`'s job).
pub fn moat_token(mail: &moat_config::Mail, state_dir: &Path) -> (Option<String>, String) {
    if let Some(t) = &mail.auth_policy_token {
        return (
            Some(t.clone()),
            "mail.auth_policy_token in Moat's config".into(),
        );
    }
    let path = state_dir.join("mail-policy.token");
    let token = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    (token, format!("the contents of {}", path.display()))
}

/// Runs `doveconf -c CONFIG -n -P` and audits it against Moat's mail config.
pub fn audit_dovecot(
    mail: &moat_config::Mail,
    state_dir: &Path,
    config: &Path,
) -> Result<DovecotAudit, ProbeError> {
    let doveconf = find_program("doveconf")?;
    let c = config.to_string_lossy();
    let text = run(&doveconf, &["-c", &c, "-n", "-P"], TIMEOUT)?;
    let (token, source) = moat_token(mail, state_dir);
    Ok(audit_doveconf(
        &text,
        &DovecotExpect {
            honey_passwd: &mail.honey_passwd,
            auth_policy_listen: mail.auth_policy_listen,
            nonce: mail.auth_policy_nonce.as_deref(),
            token: token.as_deref(),
            token_source: &source,
        },
    ))
}

#[cfg(test)]
mod tests;
