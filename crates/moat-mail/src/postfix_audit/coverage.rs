//! Whether Moat sees a service's mail: its milter in `smtpd_milters` (and nothing turning
//! milters off or hiding the SASL login from them), or its policy service in a restriction
//! list smtpd evaluates for every message after AUTH, before anything permits the client.

use super::conf::{group, tokens};
use super::{fixes, normal_path, Eval, Problem};

/// Restriction lists smtpd evaluates for every message, in order; `client` and `helo` only
/// count with `smtpd_delay_reject = yes`, otherwise they run before AUTH.
const LISTS: [&str; 7] = [
    "client",
    "helo",
    "sender",
    "recipient",
    "relay",
    "data",
    "end_of_data",
];

/// Restrictions that end a list with OK for an authenticated client (or, for
/// `permit_auth_destination`, for its mail to local domains) before a later policy check.
const PERMITS: [&str; 3] = [
    "permit",
    "permit_sasl_authenticated",
    "permit_auth_destination",
];

/// Moat's milter in a service: its `{ … }` attributes, or why it does not count.
pub(super) enum Milter {
    Passes(Vec<(String, String)>),
    Gap(Problem),
}

/// Moat's policy service in a service's restriction lists.
pub(super) enum Policy {
    Asked(Vec<(String, String)>),
    Gap(Problem),
}

impl Eval<'_> {
    pub(super) fn milter(&self) -> Milter {
        let list = match self.scope.get("smtpd_milters") {
            Ok(v) => v,
            Err(e) => return Milter::Gap(self.unreadable("smtpd_milters", &e.0)),
        };
        let Some(attrs) = tokens(&list).iter().find_map(|t| {
            let (name, attrs) = group(t);
            self.milter_matches(&name).then_some(attrs)
        }) else {
            return Milter::Gap(self.milter_missing());
        };
        // A setting that cannot be evaluated could be the one that turns the milter off.
        let get = |param: &str| {
            self.scope
                .get(param)
                .map_err(|e| Milter::Gap(self.unreadable(param, &e.0)))
        };
        let ro = match get("receive_override_options") {
            Ok(v) => v,
            Err(gap) => return gap,
        };
        if tokens(&ro).iter().any(|t| t == "no_milters") {
            return Milter::Gap(self.no_milters(&ro));
        }
        match get("smtpd_milter_maps") {
            Ok(v) if v.trim().is_empty() => {}
            Ok(_) => {
                return Milter::Gap(Problem {
                    what: "offers SASL AUTH, and smtpd_milter_maps may replace smtpd_milters \
                           per client (Moat cannot read the tables)"
                        .into(),
                    fix: format!(
                        "{} (or make every result in its tables list {})",
                        self.set_fix("smtpd_milter_maps", ""),
                        self.milter_name()
                    ),
                })
            }
            Err(gap) => return gap,
        }
        let macros = match get("milter_mail_macros") {
            Ok(v) => v,
            Err(gap) => return gap,
        };
        if !tokens(&macros).iter().any(|t| t == "{auth_authen}") {
            let raw = self.scope.raw("milter_mail_macros").map_or("", |r| r.0);
            return Milter::Gap(Problem {
                what: "offers SASL AUTH, and milter_mail_macros lacks {auth_authen}: Moat's \
                       milter cannot tell who logged in"
                    .into(),
                fix: self.set_fix("milter_mail_macros", &format!("{raw} {{auth_authen}}")),
            });
        }
        Milter::Passes(attrs)
    }

    /// Moat's policy service asked, after AUTH and before any permit, in some list.
    pub(super) fn policy(&self) -> Policy {
        let delay = self
            .scope
            .get("smtpd_delay_reject")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("yes"));
        let mut late: Option<(&str, String)> = None;
        let mut unreadable = None;
        for list in LISTS {
            if !delay && (list == "client" || list == "helo") {
                continue;
            }
            let param = format!("smtpd_{list}_restrictions");
            let value = match self.scope.get(&param) {
                Ok(v) => v,
                Err(e) => {
                    unreadable = unreadable.or(Some(self.unreadable(&param, &e.0)));
                    continue;
                }
            };
            let mut toks = Vec::new();
            self.inline_classes(&value, &mut toks, 0);
            let mut permit: Option<&String> = None;
            for (i, t) in toks.iter().enumerate() {
                if PERMITS.contains(&t.as_str()) && permit.is_none() {
                    permit = Some(t);
                }
                if t != "check_policy_service" {
                    continue;
                }
                let Some(arg) = toks.get(i + 1) else { continue };
                let (name, attrs) = group(arg);
                if !self.policy_matches(&name) {
                    continue;
                }
                match permit {
                    None => return Policy::Asked(attrs),
                    Some(p) => late = late.or(Some((list, p.clone()))),
                }
            }
        }
        Policy::Gap(unreadable.unwrap_or_else(|| self.policy_missing(late)))
    }

    /// Restriction class names replaced by their lists (a class's OK ends the list too).
    fn inline_classes(&self, value: &str, out: &mut Vec<String>, depth: usize) {
        let classes = self
            .scope
            .get("smtpd_restriction_classes")
            .unwrap_or_default();
        let classes = tokens(&classes);
        for t in tokens(value) {
            if depth < 8 && classes.contains(&t) {
                let v = self.scope.get(&t).unwrap_or_default();
                self.inline_classes(&v, out, depth + 1);
            } else {
                out.push(t);
            }
        }
    }

    pub(super) fn policy_matches(&self, name: &str) -> bool {
        if let (Some(want), true) = (self.hooks.policy, name.starts_with("inet:")) {
            return fixes::inet_matches(name, want);
        }
        self.hooks
            .policy_socket
            .as_ref()
            .is_some_and(|want| self.socket_matches(name, want))
    }

    /// `name` in `smtpd_milters` (`inet:…` or `unix:…`) is Moat's milter.
    pub(super) fn milter_matches(&self, name: &str) -> bool {
        if let (Some(want), true) = (self.hooks.milter, name.starts_with("inet:")) {
            return fixes::inet_matches(name, want);
        }
        self.hooks
            .milter_socket
            .as_ref()
            .is_some_and(|want| self.socket_matches(name, want))
    }

    /// A `unix:` (or `local:`, or bare path) endpoint as this service's smtpd reaches it is
    /// the socket Moat listens on.
    fn socket_matches(&self, name: &str, want: &std::path::Path) -> bool {
        let path = name
            .strip_prefix("unix:")
            .or_else(|| name.strip_prefix("local:"))
            .unwrap_or(name);
        if path.contains(':') {
            return false;
        }
        let queue = self.scope.get("queue_directory").unwrap_or_default();
        fixes::socket_path(path, &queue, self.svc.chroot == Some(true)) == normal_path(want)
    }
}
