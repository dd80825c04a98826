//! The HTTP policy as a detector: the rules, first match wins, then the rate limits, over one
//! request as the rules see it (`moat_rules::Request`).
//!
//! It decides which rule or limit answers the request and what that counts for; the HTTP
//! sensor owns everything around it (reading the body, the proof's standing, the response,
//! the decision log's lines, emitting the events). The order is the one users write rules
//! for:
//!
//! 1. rules, first match wins: `log` goes on, `skip` stops the rules, `allow` forwards at once
//!    (no limits); a rule that asks for the proof (`require_clearance`, `challenge`) is passed
//!    over by a client that has it, and, on a `per_action` route under pressure, only by a
//!    request that also carries a proof of its own for its target;
//! 2. a banned client that no rule answered gets the ban response;
//! 3. rate limits, each keyed its own way, spent only if the request goes through all of them.

use crate::limit_key::limit_key;
use crate::limiter::LimiterSet;
use moat_config::{Action, Config, Rule};
use moat_core::shared::{SharedCheck, SharedOutcome};
use moat_core::EventKind;
use std::sync::Arc;

/// A rule or limit that acted on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a> {
    /// The rule's or limit's id, or `ban` for the ban response.
    pub id: &'a str,
    pub action: &'a Action,
    /// The key a limit counted the request under.
    pub key: Option<String>,
    /// For a limit: how long until it has room for this key again.
    pub wait: Option<std::time::Duration>,
}

/// What the policy made of one request.
#[derive(Debug, Default)]
pub struct Judgement<'a> {
    /// The rule or limit that answers the request, or the ban response; none forwards it.
    pub hit: Option<Hit<'a>>,
    /// The rules and limits that only recorded it (`log`, `skip`, `allow`), in order.
    pub noted: Vec<Hit<'a>>,
    /// What counts towards a ban: an offending rule, an exceeded limit that bans.
    pub events: Vec<EventKind>,
    /// Rules asking for the proof that matched a client without it (the proof's difficulty
    /// rises with them).
    pub missing_proof: u32,
    /// A cleared request on a `per_action` route under pressure that lacked a proof of its
    /// own: the rule (its hit is the answer for scripts) and the target the proof binds to.
    pub action_needed: Option<(&'a str, Vec<u8>)>,
}

/// What the HTTP sensor knows of a request's standing with the proof, asked by the detector
/// only for the rules that need it.
pub trait Proofs {
    /// Whether the client is cleared for a rule asking for the proof (`nojs_ok`: the
    /// no-JavaScript clearance is enough there).
    fn cleared(&mut self, nojs_ok: bool) -> bool;
    /// A cleared request on `rule`'s `per_action` route, for `target` (none when the request
    /// lacks the key): counts the send, and says whether it may go on (the route is calm, or
    /// the request carries a valid proof of its own).
    fn action(&mut self, rule: &Rule, target: Option<&[u8]>) -> bool;
}

/// One policy's rules and limits, with the limiters that count for it.
pub struct RulesAndLimits {
    cfg: Arc<Config>,
    /// The rules' guards by field, so a request evaluates only the rules it might match.
    filter: moat_rules::Prefilter,
    limiters: Arc<LimiterSet>,
    /// The answer to a banned client no rule answered.
    ban: Action,
}

impl RulesAndLimits {
    pub fn new(cfg: Arc<Config>) -> Self {
        Self::with_limiters(cfg, &LimiterSet::default())
    }

    /// The detector for a reloaded policy: a limit whose definition did not change keeps its
    /// limiter and so its counters; a new or changed one starts empty.
    pub fn reloaded(&self, cfg: Arc<Config>) -> Self {
        Self::with_limiters(cfg, &self.limiters)
    }

    fn with_limiters(cfg: Arc<Config>, prev: &LimiterSet) -> Self {
        RulesAndLimits {
            filter: moat_rules::Prefilter::new(cfg.policy.rules.iter().map(|r| &*r.expr)),
            limiters: Arc::new(LimiterSet::build(&cfg.policy.rate_limits, prev)),
            ban: Action::Block {
                status: cfg.bans.status,
                body: cfg.bans.body.clone(),
            },
            cfg,
        }
    }

    /// Keys the limiters track (a metric).
    pub fn limiter_keys(&self) -> usize {
        self.limiters.keys()
    }

    /// Judges one request at `now_ns` (the limiters' time); `proofs` answers for the client's
    /// standing with the proof, which the sensor knows.
    pub fn judge(
        &self,
        view: &moat_rules::Request<'_>,
        now_ns: u64,
        proofs: &mut impl Proofs,
    ) -> Judgement<'_> {
        let (mut j, pending) = self.judge_rules(view, proofs);
        if let Some(p) = pending {
            self.limits_local(&p, now_ns, &mut j);
        }
        j
    }

    /// The rules alone; when no rule answered, the limits that apply, for
    /// [`Self::limits_local`] or a shared store ([`Self::shared_checks`],
    /// [`Self::apply_shared`]).
    pub fn judge_rules(
        &self,
        view: &moat_rules::Request<'_>,
        proofs: &mut impl Proofs,
    ) -> (Judgement<'_>, Option<Pending>) {
        let policy = &self.cfg.policy;
        let mut j = Judgement::default();
        let mut skip_limits = false;
        for rule in self
            .filter
            .candidates(view)
            .iter()
            .map(|i| &policy.rules[i])
        {
            let challenge = matches!(rule.action, Action::Challenge { .. });
            let asks_proof = rule.require_clearance || challenge;
            // The challenge page offers the no-JS path itself, so its clearance counts there;
            // a write route that requires clearance accepts it only if the rule says so.
            let nojs_ok = rule.allow_nojs || challenge;
            if asks_proof && proofs.cleared(nojs_ok) {
                let Some(key) = &rule.per_action else {
                    continue;
                };
                if !rule.expr.matches(view) {
                    continue;
                }
                let target = limit_key(key, view);
                if proofs.action(rule, target.as_deref()) {
                    continue;
                }
                j.action_needed = Some((&rule.id, target.unwrap_or_default()));
            } else {
                if !rule.expr.matches(view) {
                    continue;
                }
                if asks_proof {
                    j.missing_proof += 1;
                }
            }
            let hit = Hit {
                id: &rule.id,
                action: &rule.action,
                key: None,
                wait: None,
            };
            match rule.action {
                Action::Log => j.noted.push(hit),
                Action::Skip => {
                    j.noted.push(hit);
                    break;
                }
                Action::Allow => {
                    j.noted.push(hit);
                    skip_limits = true;
                    break;
                }
                _ => {
                    if rule.offence {
                        j.events.push(EventKind::RuleOffence {
                            rule: rule.id.clone(),
                        });
                    }
                    j.hit = Some(hit);
                    break;
                }
            }
        }
        if j.hit.is_none() && view.banned {
            j.hit = Some(Hit {
                id: "ban",
                action: &self.ban,
                key: None,
                wait: None,
            });
        }
        let pending = (j.hit.is_none() && !skip_limits).then(|| self.applicable(view));
        (j, pending)
    }

    /// The limits whose expression matches the request, each with its key.
    fn applicable(&self, view: &moat_rules::Request<'_>) -> Pending {
        let mut items = Vec::new();
        for (i, l) in self.cfg.policy.rate_limits.iter().enumerate() {
            if l.expr.as_ref().is_some_and(|e| !e.matches(view)) {
                continue;
            }
            if let Some(key) = limit_key(&l.key, view) {
                items.push((i, key));
            }
        }
        Pending { items }
    }

    /// Two passes over this instance's own limiters: find the first limit the request
    /// exceeds without spending anything, then spend on every limit only if the request goes
    /// through. A request a later limit stops must not use up a person's allowance on an
    /// earlier one.
    pub fn limits_local<'s>(&'s self, p: &Pending, now_ns: u64, j: &mut Judgement<'s>) {
        for (i, key) in &p.items {
            // One lookup says both whether the limit has room and, if not, for how long.
            let wait = self.limiters.wait(*i, key, now_ns);
            if wait != 0 && self.exceeded(*i, key, wait, j) {
                return;
            }
        }
        for (i, key) in &p.items {
            self.limiters.check(*i, key, now_ns);
        }
    }

    /// Records that limit `i` is exceeded for `key`; true if it stops the request.
    fn exceeded<'s>(&'s self, i: usize, key: &[u8], wait_ns: u64, j: &mut Judgement<'s>) -> bool {
        let l = &self.cfg.policy.rate_limits[i];
        if l.ban {
            j.events.push(EventKind::RateLimited {
                limit: l.id.clone(),
            });
        }
        let hit = Hit {
            id: &l.id,
            action: &l.action,
            key: Some(String::from_utf8_lossy(key).into_owned()),
            wait: Some(std::time::Duration::from_nanos(wait_ns)),
        };
        if matches!(l.action, Action::Log) {
            j.noted.push(hit);
            return false;
        }
        j.hit = Some(hit);
        true
    }

    /// The pending limits as a shared store checks them (the same GCRA as the local limiter,
    /// in microseconds).
    pub fn shared_checks(&self, p: &Pending) -> Vec<SharedCheck> {
        p.items
            .iter()
            .map(|(i, key)| {
                let l = &self.cfg.policy.rate_limits[*i];
                let interval_us =
                    ((l.period.as_micros() as u64) / u64::from(l.requests.max(1))).max(1);
                SharedCheck {
                    limit: l.id.clone(),
                    key: key.clone(),
                    interval_us,
                    tau_us: interval_us.saturating_mul(u64::from(l.burst.max(1)) - 1),
                    stops: !matches!(l.action, Action::Log),
                }
            })
            .collect()
    }

    /// What a shared store answered, recorded as [`Self::limits_local`] records its own.
    pub fn apply_shared<'s>(&'s self, p: &Pending, outcome: &SharedOutcome, j: &mut Judgement<'s>) {
        for &(idx, wait_us) in &outcome.exceeded {
            if let Some((i, key)) = p.items.get(idx) {
                let wait = wait_us.saturating_mul(1000).max(1);
                if self.exceeded(*i, key, wait, j) {
                    return;
                }
            }
        }
    }

    /// The shared store is unreachable and the cluster fails closed: the first stopping limit
    /// answers, as if exceeded by one interval.
    pub fn apply_closed<'s>(&'s self, p: &Pending, j: &mut Judgement<'s>) {
        for (i, key) in &p.items {
            let l = &self.cfg.policy.rate_limits[*i];
            if matches!(l.action, Action::Log) {
                continue;
            }
            let wait = (l.period.as_nanos() as u64 / u64::from(l.requests.max(1))).max(1);
            self.exceeded(*i, key, wait, j);
            return;
        }
    }
}

/// The limits that apply to a request no rule answered, by limit index, with their keys.
#[derive(Debug, Default)]
pub struct Pending {
    items: Vec<(usize, Vec<u8>)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const POLICY: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
upstream = "http://127.0.0.1:2368"
state_dir = "/tmp/moat-detect-rules-test"

[[rule]]
id = "note"
expression = 'http.request.uri.path eq "/signup"'
action = "log"

[[rule]]
id = "needs-proof"
expression = 'http.request.uri.path eq "/signup" and http.user_agent eq "script"'
action = "block"
require_clearance = true
offence = true

[[decoy]]
id = "sent"
status = 201
body = "Created."

[[rule]]
id = "send"
expression = 'http.request.uri.path eq "/send"'
action = "decoy"
decoy = "sent"
require_clearance = true
per_action = "json:email"

[[rule]]
id = "friend"
expression = 'http.user_agent eq "friend"'
action = "allow"

[[rule]]
id = "stop-rules"
expression = 'http.user_agent eq "skipper"'
action = "skip"

[[rule]]
id = "evil"
expression = 'http.user_agent eq "evil"'
action = "block"

[[rate_limit]]
id = "per-ip"
expression = 'http.request.uri.path eq "/signup"'
key = "ip"
requests = 3
period = "1h"
action = "block"
status = 429
ban = true

[[rate_limit]]
id = "global"
expression = 'http.request.uri.path eq "/signup"'
key = "global"
requests = 2
period = "1h"
action = "block"
status = 429
"#;

    fn detector() -> RulesAndLimits {
        let cfg = moat_config::load_text(
            "moat.toml",
            POLICY,
            std::path::Path::new("/tmp"),
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        RulesAndLimits::new(Arc::new(cfg))
    }

    /// Judges a request for `path` from `ip` with user agent `ua`.
    fn judge<'d>(
        d: &'d RulesAndLimits,
        ip: &str,
        path: &str,
        ua: &str,
        banned: bool,
        cleared: bool,
    ) -> Judgement<'d> {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::USER_AGENT, ua.parse().unwrap());
        let shape = moat_rules::FixedShape {
            text: String::new(),
            consistent: true,
        };
        let ip: IpAddr = ip.parse().unwrap();
        let view = moat_rules::Request {
            method: "POST",
            uri: path,
            path,
            query: "",
            host: "blog.example",
            headers: &headers,
            ip,
            prefix_lens: Default::default(),
            json: None,
            ssl: true,
            secure_context: true,
            banned,
            proof: moat_rules::ProofFields {
                clearance: cleared,
                good_bot: false,
                shape: &shape,
                cohort: &"unknown",
            },
        };
        d.judge(
            &view,
            0,
            &mut TestProofs {
                cleared,
                calm: true,
            },
        )
    }

    /// A client cleared or not, on routes calm or under pressure (with no proofs of their own).
    struct TestProofs {
        cleared: bool,
        calm: bool,
    }

    impl Proofs for TestProofs {
        fn cleared(&mut self, _nojs_ok: bool) -> bool {
            self.cleared
        }
        fn action(&mut self, _rule: &Rule, _target: Option<&[u8]>) -> bool {
            self.calm
        }
    }

    fn ids<'a>(hits: &'a [Hit<'_>]) -> Vec<&'a str> {
        hits.iter().map(|h| h.id).collect()
    }

    #[test]
    fn the_first_terminal_rule_answers_after_the_rules_that_only_record() {
        let d = detector();
        let j = judge(&d, "192.0.2.1", "/signup", "script", false, false);
        assert_eq!(j.hit.as_ref().map(|h| h.id), Some("needs-proof"));
        assert_eq!(ids(&j.noted), ["note"]);
        assert_eq!(j.missing_proof, 1);
        assert_eq!(
            j.events,
            [EventKind::RuleOffence {
                rule: "needs-proof".into()
            }]
        );
        // With clearance the rule that asks for the proof is passed over: the limits decide.
        let j = judge(&d, "192.0.2.1", "/signup", "script", false, true);
        assert_eq!(j.hit, None);
        assert_eq!(j.missing_proof, 0);
        assert!(j.events.is_empty());
    }

    #[test]
    fn a_banned_client_gets_the_ban_unless_a_rule_answered_it() {
        let d = detector();
        let j = judge(&d, "192.0.2.2", "/", "curl", true, false);
        let hit = j.hit.unwrap();
        assert_eq!((hit.id, hit.action.name()), ("ban", "block"));
        let j = judge(&d, "192.0.2.2", "/", "evil", true, false);
        assert_eq!(j.hit.unwrap().id, "evil");
        // An `allow` rule skips the limits, not a ban: a script that copies a good bot's user
        // agent stays banned (only the allowlist and `moat unban` lift a ban).
        let j = judge(&d, "192.0.2.2", "/", "friend", true, false);
        assert_eq!(ids(&j.noted), ["friend"]);
        assert_eq!(j.hit.unwrap().id, "ban");
    }

    #[test]
    fn allow_skips_the_limits_and_skip_does_not() {
        let d = detector();
        for _ in 0..5 {
            let j = judge(&d, "192.0.2.3", "/signup", "friend", false, false);
            assert_eq!(j.hit, None, "allow is never limited");
        }
        // The global limit (2) is still untouched: allowed requests spent nothing.
        for n in 0..3 {
            let j = judge(&d, "192.0.2.4", "/signup", "skipper", false, false);
            assert_eq!(ids(&j.noted), ["note", "stop-rules"]);
            assert_eq!(j.hit.map(|h| h.id), (n == 2).then_some("global"));
        }
    }

    #[test]
    fn a_request_a_later_limit_stops_spends_nothing_on_the_earlier_ones() {
        let d = detector();
        // Two sends from one address use up the global limit; the next ones are refused by
        // it and must not count against the address's own limit (3).
        for _ in 0..2 {
            assert_eq!(
                judge(&d, "192.0.2.5", "/signup", "a", false, true).hit,
                None
            );
        }
        for _ in 0..5 {
            let j = judge(&d, "192.0.2.5", "/signup", "a", false, true);
            let hit = j.hit.unwrap();
            assert_eq!((hit.id, hit.key.as_deref()), ("global", Some("*")));
            // Two an hour, both spent at 0: the next has room in half an hour.
            assert_eq!(hit.wait, Some(std::time::Duration::from_secs(1800)));
            assert!(j.events.is_empty(), "the global limit does not ban");
        }
        // A reload with a smaller global limit starts it afresh; the per-address limit keeps
        // its count (2 of 3), so the address now trips it, and that limit bans.
        let text = POLICY.replace("requests = 2", "requests = 10");
        let cfg = moat_config::load_text(
            "moat.toml",
            &text,
            std::path::Path::new("/tmp"),
            &Default::default(),
        )
        .unwrap();
        let d = d.reloaded(Arc::new(cfg));
        assert_eq!(
            judge(&d, "192.0.2.5", "/signup", "a", false, true).hit,
            None
        );
        let j = judge(&d, "192.0.2.5", "/signup", "a", false, true);
        let hit = j.hit.unwrap();
        assert_eq!((hit.id, hit.key.as_deref()), ("per-ip", Some("192.0.2.5")));
        assert_eq!(
            j.events,
            [EventKind::RateLimited {
                limit: "per-ip".into()
            }]
        );
    }

    #[test]
    fn under_pressure_a_cleared_send_needs_a_proof_of_its_own_for_its_target() {
        let d = detector();
        let headers = http::HeaderMap::new();
        let shape = moat_rules::FixedShape {
            text: String::new(),
            consistent: true,
        };
        let json = serde_json::json!({"email": " Reader+news@Example.com "});
        let view = moat_rules::Request {
            method: "POST",
            uri: "/send",
            path: "/send",
            query: "",
            host: "blog.example",
            headers: &headers,
            ip: "192.0.2.9".parse().unwrap(),
            prefix_lens: Default::default(),
            json: Some(&json),
            ssl: true,
            secure_context: true,
            banned: false,
            proof: moat_rules::ProofFields {
                clearance: true,
                good_bot: false,
                shape: &shape,
                cohort: &"unknown",
            },
        };
        let mut calm = TestProofs {
            cleared: true,
            calm: true,
        };
        let j = d.judge(&view, 0, &mut calm);
        assert_eq!((j.hit, j.action_needed), (None, None));
        let mut pressed = TestProofs {
            cleared: true,
            calm: false,
        };
        let j = d.judge(&view, 0, &mut pressed);
        assert_eq!(j.hit.map(|h| h.id), Some("send"));
        let (rule, target) = j.action_needed.unwrap();
        assert_eq!(
            (rule, target.as_slice()),
            ("send", &b"reader@example.com"[..]),
            "bound to the normalised email"
        );
        assert_eq!(j.missing_proof, 0, "the client has clearance");
        // Without clearance the rule applies as before, with no proof of its own to ask for.
        let mut none = TestProofs {
            cleared: false,
            calm: false,
        };
        let j = d.judge(&view, 0, &mut none);
        assert_eq!((j.hit.map(|h| h.id), j.missing_proof), (Some("send"), 1));
        assert_eq!(j.action_needed, None);
    }
}
