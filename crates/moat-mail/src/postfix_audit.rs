//! Does every Postfix service that offers SASL AUTH pass its mail through Moat?
//!
//! Honey accounts are safe only if everything they send is captured. `master.cf` services
//! override `main.cf` per service (the stock `submission`/`submissions` empty the restriction
//! lists, so a policy check in `main.cf` is never asked there; `-o smtpd_milters=` would drop a
//! milter too), so this reads Postfix's effective configuration (`postconf`, `-M`, `-P`, see
//! [`crate::postfix_probe`]) and evaluates each smtpd service the way smtpd would: its `-o`
//! overrides over `main.cf`, `$name` expanded, lists read with their `{ … }` groups.
//!
//! A SASL service is covered when Moat's milter is in its `smtpd_milters` (and nothing turns
//! milters off or hides the login from them), or when a restriction list that is evaluated
//! after AUTH for every message asks Moat's policy service before anything permits an
//! authenticated client. Free of I/O: texts in, an [`Audit`] out.

mod conf;
mod coverage;
mod fixes;
#[cfg(test)]
mod tests;

use conf::{Scope, Service};
use coverage::{Milter, Policy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

/// What `postconf` printed for one configuration directory.
#[derive(Debug, Clone, Default)]
pub struct PostconfTexts {
    /// `postconf -c DIR`: every `main.cf` parameter, defaults included, unexpanded, so that a
    /// service's overrides can take part in expanding them (`postconf -x` expands against
    /// `main.cf` alone).
    pub main: String,
    /// `postconf -c DIR -M`: one service per line.
    pub master_m: String,
    /// `postconf -c DIR -P`: `service/type/name = value`, the last `-o` of a name.
    pub master_p: String,
}

/// Where Moat listens for Postfix.
#[derive(Debug, Clone, Default)]
pub struct MoatHooks {
    pub milter: Option<SocketAddr>,
    /// An absolute path (`unix:` milter listener).
    pub milter_socket: Option<PathBuf>,
    pub policy: Option<SocketAddr>,
    /// An absolute path (`unix:` policy listener).
    pub policy_socket: Option<PathBuf>,
    /// The capture listener the policy's `FILTER smtp:[…]` hands honey mail to.
    pub capture: Option<SocketAddr>,
    /// Moat's milter gives valid and unknown recipients the same answer, which only works if
    /// Postfix does not reject unknown ones first.
    pub hide_recipients: bool,
}

/// One smtpd service as Moat sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAudit {
    /// `submission/inet`, `127.0.0.1:40123/inet`, `smtpd/pass`, as `postconf -P` names it.
    pub name: String,
    /// It offers SASL AUTH (or its setting could not be read, which counts as yes).
    pub sasl: bool,
    /// Its mail passes through Moat's milter.
    pub milter: bool,
    /// Moat's policy service is asked for every message, after AUTH.
    pub policy: bool,
}

impl ServiceAudit {
    /// Offers AUTH but Moat never sees what it accepts: honey accounts would send freely.
    pub fn bypasses(&self) -> bool {
        self.sasl && !self.milter && !self.policy
    }
}

/// Something to change, and the exact line that changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub services: Vec<ServiceAudit>,
    pub problems: Vec<Problem>,
}

impl Audit {
    /// `Ok` when honey accounts may be created: no SASL service bypasses Moat. The error names
    /// every one that does.
    pub fn honey_safe(&self) -> Result<(), String> {
        let bad: Vec<&str> = self
            .services
            .iter()
            .filter(|s| s.bypasses())
            .map(|s| s.name.as_str())
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} offer{} SASL AUTH without passing mail through Moat",
            bad.join(", "),
            if bad.len() == 1 { "s" } else { "" }
        ))
    }
}

/// Postfix's configuration parsed once: what `main.cf` and each service see.
pub struct Effective {
    main: HashMap<String, String>,
    services: Vec<Service>,
}

impl Effective {
    pub fn new(texts: &PostconfTexts) -> Self {
        Effective {
            main: conf::parse_params(&texts.main).into_iter().collect(),
            services: conf::parse_master(&texts.master_m, &texts.master_p),
        }
    }

    /// The value smtpd would use: `service` is `submission/inet` (its overrides first), or
    /// `None` for `main.cf` alone. An error says why it cannot be evaluated.
    pub fn value(&self, service: Option<&str>, param: &str) -> Result<String, String> {
        let scope = match service {
            None => Scope::main(&self.main),
            Some(id) => Scope::service(
                self.services
                    .iter()
                    .find(|s| s.id() == id)
                    .ok_or_else(|| format!("no service {id}"))?,
                &self.main,
            ),
        };
        scope.get(param).map_err(|e| e.0)
    }

    /// Every `main.cf` parameter postconf printed.
    pub fn main_params(&self) -> Vec<&str> {
        self.main.keys().map(String::as_str).collect()
    }

    /// Every service (`name/type`) with the names of its `-o` overrides.
    pub fn services(&self) -> Vec<(String, Vec<&str>)> {
        self.services
            .iter()
            .map(|s| (s.id(), s.overrides.keys().map(String::as_str).collect()))
            .collect()
    }
}

pub fn audit(texts: &PostconfTexts, hooks: &MoatHooks) -> Audit {
    let eff = Effective::new(texts);
    let (main, services) = (&eff.main, &eff.services);
    let mut out = Audit::default();
    let mut found: Vec<(String, Problem)> = Vec::new();
    for svc in services.iter().filter(|s| s.command == "smtpd") {
        let ev = Eval {
            svc,
            scope: Scope::service(svc, main),
            main,
            hooks,
            unique: services.iter().filter(|s| s.name == svc.name).count() == 1,
        };
        let (sa, problems) = ev.run();
        found.extend(problems.into_iter().map(|p| (sa.name.clone(), p)));
        out.services.push(sa);
    }
    if let Some(p) = capture_transport(services, hooks) {
        found.push((String::new(), p));
    }
    out.problems = merge(found);
    out
}

/// The policy route hands honey mail to Moat with `FILTER smtp:[ADDR]:PORT`: master.cf must
/// have the `smtp` transport (`default_transport` does not matter: FILTER overrides it).
fn capture_transport(services: &[Service], hooks: &MoatHooks) -> Option<Problem> {
    if hooks_milter(hooks) || hooks.capture.is_none() || !hooks_policy(hooks) {
        return None;
    }
    let smtp = services
        .iter()
        .any(|s| s.name == "smtp" && s.kind == "unix" && s.command == "smtp");
    (!smtp).then(|| Problem {
        what: "master.cf has no `smtp unix` service: honey mail for Moat's capture listener \
               (FILTER smtp:[…]) would wait in the queue"
            .into(),
        fix: "in master.cf: smtp      unix  -       -       y       -       -       smtp".into(),
    })
}

/// `.` and `..` resolved by name, as far as comparing two configured paths needs.
pub(crate) fn normal_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn hooks_policy(h: &MoatHooks) -> bool {
    h.policy.is_some() || h.policy_socket.is_some()
}

fn hooks_milter(h: &MoatHooks) -> bool {
    h.milter.is_some() || h.milter_socket.is_some()
}

/// Problems with the same fix become one, naming every service they concern.
fn merge(found: Vec<(String, Problem)>) -> Vec<Problem> {
    let mut out: Vec<(Vec<String>, Problem)> = Vec::new();
    for (svc, p) in found {
        match out
            .iter_mut()
            .find(|(_, q)| q.fix == p.fix && q.what == p.what)
        {
            Some((names, _)) => names.push(svc),
            None => out.push((vec![svc], p)),
        }
    }
    out.into_iter()
        .map(|(names, p)| {
            let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
            if names.is_empty() {
                p
            } else {
                Problem {
                    what: format!("{}: {}", names.join(", "), p.what),
                    fix: p.fix,
                }
            }
        })
        .collect()
}

/// One service being evaluated.
struct Eval<'a> {
    svc: &'a Service,
    scope: Scope<'a>,
    main: &'a HashMap<String, String>,
    hooks: &'a MoatHooks,
    /// No other service has this name (so "under NAME" identifies it in master.cf).
    unique: bool,
}

impl Eval<'_> {
    fn run(&self) -> (ServiceAudit, Vec<Problem>) {
        let mut problems = Vec::new();
        let sasl = match self.scope.get("smtpd_sasl_auth_enable") {
            Ok(v) => v.trim().eq_ignore_ascii_case("yes"),
            Err(e) => {
                problems.push(self.unreadable("smtpd_sasl_auth_enable", &e.0));
                true
            }
        };
        let milter = hooks_milter(self.hooks).then(|| self.milter());
        let policy = hooks_policy(self.hooks).then(|| self.policy());
        let sa = ServiceAudit {
            name: self.svc.id(),
            sasl,
            milter: matches!(milter, Some(Milter::Passes(_))),
            policy: matches!(policy, Some(Policy::Asked(_))),
        };
        if let Some(Milter::Passes(attrs)) = &milter {
            problems.extend(self.milter_settings(attrs));
        }
        if let (Some(Milter::Gap(_)), false, true) = (&milter, sasl, self.hooks.hide_recipients) {
            let want = self.milter_name();
            // Not a relay risk (no AUTH here), but strangers on it get Postfix's own answers.
            problems.push(Problem {
                what: format!(
                    "its smtpd_milters lacks Moat's {want}: recipient probes on it learn which \
                     addresses exist"
                ),
                fix: self.set_fix("smtpd_milters", &want),
            });
        }
        if let Some(Policy::Asked(attrs)) = &policy {
            problems.extend(self.policy_settings(attrs));
        }
        if sa.bypasses() {
            problems.push(match (milter, policy) {
                (Some(Milter::Gap(p)), _) | (None, Some(Policy::Gap(p))) => p,
                _ => Problem {
                    what: "offers SASL AUTH, and Moat listens for neither a milter nor a policy \
                           service"
                        .into(),
                    fix: "in Moat's config, [mail] milter_listen = \"127.0.0.1:10030\", then \
                          postconf -e 'smtpd_milters = inet:127.0.0.1:10030' \
                          'milter_default_action = accept'"
                        .into(),
                },
            });
        }
        (sa, problems)
    }

    fn unreadable(&self, param: &str, why: &str) -> Problem {
        Problem {
            what: format!("cannot evaluate {param}: {why}"),
            fix: format!(
                "write {param} without that `$` construct (`postconf -x {param}` shows what Postfix makes of it)"
            ),
        }
    }
}
