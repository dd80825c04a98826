//! The app's own success signal: sends of a mailed link and the clicks that follow, counted per
//! cohort (`moat_detect::cohort`) from the upstream's answers, and the cohort's standing as
//! the rules read it (`moat.cohort`).

use moat_config::Config;
use moat_detect::{Cohorts, Standing};
use std::net::IpAddr;
use std::sync::OnceLock;

/// A request's cohort, looked up the first time a rule, a limit or a `[[confirm]]` asks.
pub(super) struct LazyCohort<'a> {
    pub cohorts: &'a Cohorts,
    pub ip: IpAddr,
    pub headers: &'a http::HeaderMap,
    /// Seconds, the cohort table's clock.
    pub now: u64,
    pub cell: OnceLock<(u64, Standing)>,
}

impl LazyCohort<'_> {
    fn get(&self) -> (u64, Standing) {
        *self.cell.get_or_init(|| {
            let h = |n| self.headers.get(n).map_or(&b""[..], |v| v.as_bytes());
            let key = self.cohorts.key(
                self.ip,
                h(http::header::USER_AGENT),
                h(http::header::ACCEPT_LANGUAGE),
            );
            (key, self.cohorts.standing(key, self.now))
        })
    }

    /// The standing, if anything asked for it (for the decision log).
    pub fn asked(&self) -> Option<Standing> {
        self.cell.get().map(|&(_, s)| s)
    }
}

impl moat_rules::CohortSource for LazyCohort<'_> {
    fn standing(&self) -> &str {
        self.get().1.as_str()
    }
    fn key(&self) -> Option<u64> {
        Some(self.get().0)
    }
}

/// A forwarded request that is a `[[confirm]]` route's send or click: the upstream's answer
/// says whether it counts.
#[derive(Debug, Clone, Copy)]
pub struct Confirming {
    /// Index into the policy's confirms (a policy has one or two).
    pub confirm: u16,
    pub cohort: u64,
    pub click: bool,
}

/// Which `[[confirm]]` route, if any, a request is a send or a click of.
pub(super) fn watch(
    cfg: &Config,
    view: &moat_rules::Request<'_>,
    cohort: &LazyCohort<'_>,
) -> Option<Confirming> {
    cfg.policy.confirms.iter().enumerate().find_map(|(i, c)| {
        let i = u16::try_from(i).ok()?;
        let click = if c.send.matches(view) {
            false
        } else if c.click.matches(view) {
            true
        } else {
            return None;
        };
        Some(Confirming {
            confirm: i,
            cohort: cohort.get().0,
            click,
        })
    })
}

/// Counts a send or click by the upstream's answer: a send when the app accepted it (2xx); a
/// click when the app did not refuse it (below 400) and set the session cookie the confirm
/// names, which a made-up or spent token does not get.
pub(super) fn settle(
    cfg: &Config,
    cohorts: &Cohorts,
    c: Confirming,
    resp: &http::Response<crate::body::ProxyBody>,
    now: u64,
) {
    let Some(def) = cfg.policy.confirms.get(usize::from(c.confirm)) else {
        return;
    };
    if !c.click {
        if resp.status().is_success() {
            cohorts.sent(c.cohort, now);
        }
        return;
    }
    let sets_cookie = |name: &str| {
        resp.headers()
            .get_all(http::header::SET_COOKIE)
            .iter()
            .any(|v| {
                let v = v.as_bytes();
                v.len() > name.len() && v.starts_with(name.as_bytes()) && v[name.len()] == b'='
            })
    };
    if resp.status().as_u16() < 400 && def.click_cookie.as_deref().is_none_or(sets_cookie) {
        cohorts.clicked(c.cohort, now);
        tracing::debug!(confirm = %def.id, cohort = format_args!("{:016x}", c.cohort), "a click confirmed its cohort's sends");
    }
}
