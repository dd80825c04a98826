//! Matching Moat's addresses as Postfix writes them, and the exact lines that fix each gap: a
//! `master.cf` `-o` line when the service overrides the setting, a `postconf -e` otherwise.

use super::conf::{group, tokens, Scope};
use super::{Eval, Problem};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// `inet:HOST:PORT` (`HOST` an address, `[address]` or `localhost`) reaches `want`: same port,
/// and the same address, or a loopback one when Moat listens on every address.
pub(super) fn inet_matches(name: &str, want: SocketAddr) -> bool {
    let Some(hp) = name.strip_prefix("inet:") else {
        return false;
    };
    let Some((host, port)) = hp.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(want.port()) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let w = want.ip();
    let any_v4 = w == IpAddr::from([0, 0, 0, 0]);
    let any_v6 = w.is_unspecified() && w.is_ipv6();
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            ip == w || (any_v6 && ip.is_loopback()) || (any_v4 && ip.is_ipv4() && ip.is_loopback())
        }
        Err(_) => host.eq_ignore_ascii_case("localhost") && (w.is_loopback() || w.is_unspecified()),
    }
}

/// How Postfix should name an address Moat listens on (a wildcard becomes loopback).
pub(super) fn inet(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("inet:127.0.0.1:{}", a.port()),
        IpAddr::V4(ip) => format!("inet:{ip}:{}", a.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("inet:[::1]:{}", a.port()),
        IpAddr::V6(ip) => format!("inet:[{ip}]:{}", a.port()),
    }
}

/// Where a chrooted or plain smtpd finds `path`: relative paths are relative to the queue
/// directory (its working directory), and a chrooted one sees absolute paths inside it.
pub(super) fn socket_path(path: &str, queue: &str, chroot: bool) -> PathBuf {
    let p = Path::new(path);
    let full = if p.is_absolute() && !chroot {
        p.to_path_buf()
    } else {
        Path::new(queue).join(path.trim_start_matches('/'))
    };
    super::normal_path(&full)
}

/// A shell word for `postconf -e`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Eval<'_> {
    /// `master.cf` names a service by name and type; the name alone when it is unique.
    fn under(&self) -> String {
        if self.unique {
            self.svc.name.clone()
        } else {
            format!("{} {}", self.svc.name, self.svc.kind)
        }
    }

    fn overrides(&self, param: &str) -> bool {
        self.svc.overrides.contains_key(param)
    }

    /// The line that sets `param` to `value` where this service takes it from.
    pub(super) fn set_fix(&self, param: &str, value: &str) -> String {
        let value = value.trim();
        if self.overrides(param) {
            let o = if value.contains(char::is_whitespace) {
                format!("-o {{ {param} = {value} }}")
            } else {
                format!("-o {param}={value}")
            };
            format!("in master.cf, under {}: {o}", self.under())
        } else {
            format!("postconf -e {}", quote(&format!("{param} = {value}")))
        }
    }

    fn raw(&self, param: &str) -> &str {
        self.scope.raw(param).map_or("", |r| r.0)
    }

    pub(super) fn milter_missing(&self) -> Problem {
        let addr = self.milter_name();
        let mut raw = self.raw("smtpd_milters").trim().to_string();
        // Moat's socket by a path this smtpd cannot reach (absolute, inside a chroot) is
        // replaced, not kept beside the right name: it would fail on every session.
        if let Some(want) = &self.hooks.milter_socket {
            let all = tokens(&raw);
            let keep: Vec<&String> = all
                .iter()
                .filter(|t| {
                    let name = group(t).0;
                    let path = name.strip_prefix("unix:").unwrap_or(&name);
                    super::normal_path(Path::new(path)) != super::normal_path(want)
                })
                .collect();
            if keep.len() < all.len() {
                raw = keep
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
            }
        }
        let list = if raw.is_empty() {
            addr.clone()
        } else {
            format!("{raw}, {addr}")
        };
        let fix = if self.overrides("smtpd_milters") {
            let main = Scope::main(self.main);
            let main_has = main
                .get("smtpd_milters")
                .is_ok_and(|v| tokens(&v).iter().any(|t| self.milter_matches(&group(t).0)));
            let list = list.replace(", ", ",");
            let line = self.set_fix("smtpd_milters", &list);
            if main_has {
                format!("{line} (or remove the override)")
            } else {
                line
            }
        } else {
            let mut fix = self.set_fix("smtpd_milters", &list);
            let action = self.scope.get("milter_default_action").unwrap_or_default();
            if !action.trim().eq_ignore_ascii_case("accept") {
                fix.push_str(" 'milter_default_action = accept'");
            }
            fix
        };
        Problem {
            what: format!("offers SASL AUTH, and its smtpd_milters lacks Moat's {addr}"),
            fix,
        }
    }

    pub(super) fn no_milters(&self, options: &str) -> Problem {
        let rest: Vec<String> = tokens(options)
            .into_iter()
            .filter(|t| t != "no_milters")
            .collect();
        Problem {
            what: "offers SASL AUTH, and receive_override_options has no_milters: no milter sees \
                   its mail"
                .into(),
            fix: self.set_fix("receive_override_options", &rest.join(",")),
        }
    }

    /// How Postfix should name a socket Moat listens on: relative to the queue directory
    /// when it is inside it, which a chrooted smtpd reaches too.
    fn unix_name(&self, p: &Path) -> String {
        let queue = Scope::main(self.main)
            .get("queue_directory")
            .unwrap_or_default();
        match p.strip_prefix(&queue) {
            Ok(rel) if !queue.is_empty() => format!("unix:{}", rel.display()),
            _ => format!("unix:{}", p.display()),
        }
    }

    /// Moat's milter as `smtpd_milters` should list it.
    pub(super) fn milter_name(&self) -> String {
        match (self.hooks.milter, &self.hooks.milter_socket) {
            (Some(a), _) => inet(a),
            (None, Some(p)) => self.unix_name(p),
            (None, None) => String::new(),
        }
    }

    /// The policy entry Moat wants, fail-open and quick to give up when Moat is down.
    fn policy_entry(&self) -> String {
        let server = match (self.hooks.policy, &self.hooks.policy_socket) {
            (Some(a), _) => inet(a),
            (None, Some(p)) => self.unix_name(p),
            (None, None) => String::new(),
        };
        format!("check_policy_service {{ {server}, default_action=DUNNO, try_limit=1 }}")
    }

    /// `late`: a list where the policy comes after a permit, and that permit.
    pub(super) fn policy_missing(&self, late: Option<(&str, String)>) -> Problem {
        let entry = self.policy_entry();
        let (list, what) = match &late {
            Some((list, permit)) => (
                *list,
                format!(
                    "offers SASL AUTH, and Moat's policy service comes after {permit} in \
                     smtpd_{list}_restrictions, so authenticated clients never reach it"
                ),
            ),
            None => (
                "sender",
                "offers SASL AUTH, and no restriction list it evaluates for every message asks \
                 Moat's policy service"
                    .to_string(),
            ),
        };
        let param = format!("smtpd_{list}_restrictions");
        let toks = tokens(self.raw(&param));
        let mut value = entry;
        let mut i = 0;
        while i < toks.len() {
            // The late entry goes, keyword and operand; the new one leads the list.
            let moat = toks[i] == "check_policy_service"
                && toks
                    .get(i + 1)
                    .is_some_and(|a| self.policy_matches(&group(a).0));
            if late.is_some() && moat {
                i += 2;
                continue;
            }
            value.push_str(", ");
            value.push_str(&toks[i]);
            i += 1;
        }
        Problem {
            what,
            fix: self.set_fix(&param, &value),
        }
    }

    /// Settings that do not let mail bypass Moat but make it misbehave.
    pub(super) fn milter_settings(&self, attrs: &[(String, String)]) -> Vec<Problem> {
        let mut out = Vec::new();
        let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let action = attr("default_action")
            .unwrap_or_else(|| self.scope.get("milter_default_action").unwrap_or_default());
        if !action.trim().eq_ignore_ascii_case("accept") {
            out.push(Problem {
                what: format!(
                    "milter_default_action is {}: while Moat is down, Postfix refuses or holds \
                     every message",
                    action.trim()
                ),
                fix: if attr("default_action").is_some() {
                    "in smtpd_milters, default_action=accept in Moat's { … } entry".into()
                } else {
                    self.set_fix("milter_default_action", "accept")
                },
            });
        }
        let proto = attr("protocol")
            .unwrap_or_else(|| self.scope.get("milter_protocol").unwrap_or_default());
        if proto.trim().parse::<u32>().map_or(true, |v| v < 6) {
            out.push(Problem {
                what: format!("milter_protocol is {}: Moat speaks version 6", proto.trim()),
                fix: if attr("protocol").is_some() {
                    "in smtpd_milters, protocol=6 in Moat's { … } entry".into()
                } else {
                    self.set_fix("milter_protocol", "6")
                },
            });
        }
        if !self.hooks.hide_recipients {
            return out;
        }
        let unlisted = self
            .scope
            .get("smtpd_reject_unlisted_recipient")
            .unwrap_or_default();
        if unlisted.trim().eq_ignore_ascii_case("yes") {
            out.push(Problem {
                what: "smtpd_reject_unlisted_recipient = yes: Postfix answers unknown \
                       recipients itself, so probes tell valid from invalid ones"
                    .into(),
                fix: self.set_fix("smtpd_reject_unlisted_recipient", "no"),
            });
        }
        for list in ["recipient", "relay", "sender"] {
            let param = format!("smtpd_{list}_restrictions");
            let v = self.scope.get(&param).unwrap_or_default();
            let toks = tokens(&v);
            let Some(at) = toks.iter().position(|t| t == "reject_unlisted_recipient") else {
                continue;
            };
            // After Moat's policy it is the fallback for when Moat is down (the policy's
            // `OK` for a hidden recipient skips it): that is the documented setup.
            let after_policy = toks[..at]
                .windows(2)
                .any(|w| w[0] == "check_policy_service" && self.policy_matches(&group(&w[1]).0));
            if !after_policy {
                let rest: Vec<String> = tokens(self.raw(&param))
                    .into_iter()
                    .filter(|t| t != "reject_unlisted_recipient")
                    .collect();
                out.push(Problem {
                    what: format!(
                        "{param} has reject_unlisted_recipient: Postfix answers unknown \
                         recipients itself"
                    ),
                    fix: self.set_fix(&param, &rest.join(", ")),
                });
            }
        }
        // A service strangers deliver to (its recipient list does not end them with a plain
        // `reject`) needs the fallback, or with Moat down it accepts unknown recipients and
        // bounces them later, to senders who may be forged.
        let rcpt = tokens(
            &self
                .scope
                .get("smtpd_recipient_restrictions")
                .unwrap_or_default(),
        );
        let strangers = !rcpt.iter().any(|t| t == "reject");
        let unlisted_off = !unlisted.trim().eq_ignore_ascii_case("yes");
        let fallback = rcpt.iter().any(|t| t == "reject_unlisted_recipient");
        if strangers
            && unlisted_off
            && !fallback
            && (self.hooks.policy.is_some() || self.hooks.policy_socket.is_some())
        {
            out.push(Problem {
                what: "with Moat down, this service accepts mail for unknown recipients and \
                       bounces it later"
                    .into(),
                fix: format!(
                    "end smtpd_recipient_restrictions with `{}, reject_unlisted_recipient` \
                     (after reject_unauth_destination)",
                    self.policy_entry()
                ),
            });
        }
        out
    }

    pub(super) fn policy_settings(&self, attrs: &[(String, String)]) -> Vec<Problem> {
        let action = attrs
            .iter()
            .find(|(n, _)| n == "default_action")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                self.scope
                    .get("smtpd_policy_service_default_action")
                    .unwrap_or_default()
            });
        if action.trim().eq_ignore_ascii_case("DUNNO") {
            return Vec::new();
        }
        vec![Problem {
            what: format!(
                "Moat's check_policy_service answers `{}` while Moat is down: every message \
                 is refused",
                action.trim()
            ),
            fix: format!("write it as {}", self.policy_entry()),
        }]
    }
}
