//! The page script's side of a protected write: per-action proofs when a route is under
//! pressure (`Moat-Proof`), and the wait a limit tells a browser instead of a silent decoy
//! (`Moat-Page` marks the writes the script sends).

use super::{json, user_agent, ProofService};
use crate::body::ProxyBody;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use moat_proof::pressure;
use moat_proof::ua_hash;
use std::net::IpAddr;

/// The header the page script puts on the writes it sends: a browser running it is told to
/// wait when a limit stops its write, never given a silent decoy.
pub const PAGE_HEADER: &str = "moat-page";

/// A per-action proof, `CHALLENGE.NONCE` (see `moat_proof::action`).
pub const PROOF_HEADER: &str = "moat-proof";

/// The answer to a write from a cleared browser running the page script that a rate limit
/// stopped: 429 with how long to wait. The script tells the person and sends it again then;
/// a decoy here would drop a real sign-up without anyone knowing.
pub fn wait_response(wait: std::time::Duration) -> Response<ProxyBody> {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = json(
        StatusCode::TOO_MANY_REQUESTS,
        format!(r#"{{"error":"busy","retry_after":{secs}}}"#),
    );
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("moat-clearance", HeaderValue::from_static("wait"));
    r
}

/// The `per_action` routes a send to `?target=EMAIL` could meet, each with the target as
/// its key normalises it: what the page script solves for ahead of the send. Keys that
/// need the request itself (an address, a header) cannot be known ahead and are skipped.
pub fn presolve_routes<'p>(
    policy: &'p moat_config::Policy,
    query: &str,
) -> Vec<(&'p str, Vec<u8>)> {
    use moat_config::LimitKey;
    let Some(target) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("target="))
        .map(crate::request_view::percent_decode)
        .filter(|t| !t.trim().is_empty() && t.len() <= 320)
    else {
        return Vec::new();
    };
    let email = moat_detect::limit_key::normalize_email(&target);
    policy
        .rules
        .iter()
        .filter(|r| r.require_clearance)
        .filter_map(|r| {
            let key = match r.per_action.as_ref()? {
                LimitKey::Json(_) => email.clone().into_bytes(),
                LimitKey::JsonDomain(_) => email.rsplit_once('@')?.1.as_bytes().to_vec(),
                _ => return None,
            };
            Some((r.id.as_str(), key))
        })
        .collect()
}

impl ProofService {
    /// A cleared send on rule `route`'s `per_action` route, for `target`: counted, and `Ok`
    /// when the route is calm or the request carries a valid, unspent proof of its own
    /// (`Moat-Proof`); else `Err` with the difficulty a proof must have now.
    pub fn action(
        &self,
        route: &str,
        target: &[u8],
        headers: &HeaderMap,
        ip: IpAddr,
        now: u64,
    ) -> Result<(), u8> {
        let load = {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            match routes.get(route) {
                Some(l) => l.clone(),
                None => routes.entry(route.to_string()).or_default().clone(),
            }
        };
        let floor = self.cfg.action_threshold;
        let sends = load.record(now, floor);
        let threshold = load.threshold(floor);
        if sends <= threshold {
            return Ok(());
        }
        let difficulty = pressure::difficulty(
            self.cfg.difficulty,
            self.cfg.max_action_difficulty,
            sends,
            threshold,
        );
        let Some(proof) = headers.get(PROOF_HEADER).and_then(|v| v.to_str().ok()) else {
            return Err(difficulty);
        };
        let ua = ua_hash(user_agent(headers).as_bytes());
        let bound = moat_proof::action::target_hash(route, target);
        let checked =
            moat_proof::action::check(&self.ring.load(), proof, now, ua, self.net(ip), bound)
                .and_then(|s| self.redeem(&s, now));
        match checked {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(route, error = %e, "per-action proof refused");
                Err(difficulty)
            }
        }
    }

    /// Per-action challenges asked for ahead of the send (`GET /.moat/action?target=EMAIL`),
    /// so the page script solves while the person types rather than after they submit. One
    /// for each of `routes` (a rule id and the target as its key normalises it) that is under
    /// pressure now, at the difficulty a send now would need; nothing is counted. Only a
    /// browser cleared by the proof of work is answered: it is the one whose send will need it.
    pub fn presolve(
        &self,
        routes: &[(&str, Vec<u8>)],
        headers: &HeaderMap,
        ip: IpAddr,
        tls: bool,
        now: u64,
    ) -> Response<ProxyBody> {
        let cleared = self
            .clearance(headers, ip, tls, now)
            .is_some_and(|c| c.kind == moat_proof::token::Kind::Work);
        if !cleared {
            return json(StatusCode::FORBIDDEN, r#"{"cleared":false}"#.to_string());
        }
        let floor = self.cfg.action_threshold;
        let mut proofs = Vec::new();
        for (route, target) in routes {
            let load = self
                .routes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(*route)
                .cloned();
            let Some(load) = load else { continue };
            let (sends, threshold) = (load.current(now) + 1, load.threshold(floor));
            if sends <= threshold {
                continue;
            }
            let d = pressure::difficulty(
                self.cfg.difficulty,
                self.cfg.max_action_difficulty,
                sends,
                threshold,
            );
            let c = self.issue_action(route, target, headers, ip, d, now);
            proofs.push(format!(r#"{{"challenge":"{c}","difficulty":{d}}}"#));
        }
        let mut r = json(
            StatusCode::OK,
            format!(r#"{{"cleared":true,"proofs":[{}]}}"#, proofs.join(",")),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// The answer to a browser running the page script whose send needs a proof of its own:
    /// 403 with a challenge bound to this route and target, which the script solves and sends
    /// back as `Moat-Proof` with the same request.
    pub fn action_challenge(
        &self,
        route: &str,
        target: &[u8],
        headers: &HeaderMap,
        ip: IpAddr,
        difficulty: u8,
        now: u64,
    ) -> Response<ProxyBody> {
        let c = self.issue_action(route, target, headers, ip, difficulty, now);
        let mut r = json(
            StatusCode::FORBIDDEN,
            format!(
                r#"{{"error":"action_proof_required","challenge":"{c}","difficulty":{difficulty}}}"#
            ),
        );
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("moat-clearance", HeaderValue::from_static("action"));
        r
    }

    /// A per-action challenge for `route` and `target`, bound to this browser (its user agent
    /// and network) and due within `challenge_ttl`.
    fn issue_action(
        &self,
        route: &str,
        target: &[u8],
        headers: &HeaderMap,
        ip: IpAddr,
        difficulty: u8,
        now: u64,
    ) -> String {
        moat_proof::action::issue(
            &self.ring.load(),
            now + self.cfg.challenge_ttl.as_secs(),
            difficulty,
            ua_hash(user_agent(headers).as_bytes()),
            self.net(ip),
            moat_proof::action::target_hash(route, target),
            self.random16(),
        )
    }
}
