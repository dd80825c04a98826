//! The browser proof as the proxy runs it: the `/.moat/` endpoints, the clearance check on each
//! request, the challenge page, and verified good bots.
//!
//! Endpoints (all under `/.moat/`, answered by Moat and never forwarded):
//! - `GET proof.js[?worker]`: the page script and, with `?worker`, the solver;
//! - `GET challenge`: `{"cleared":true}` or `{"cleared":false,"challenge":…,"difficulty":N}`;
//! - `POST verify` with `{"challenge":…,"nonce":"…"}`: sets the clearance cookie;
//! - `GET nojs?t=TICKET&r=PATH`: the no-JavaScript path, after the delay.

use crate::body::{full, ProxyBody};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use moat_config::Config;
use moat_dns::{GoodBotVerifier, Resolver, VerifierConfig};
use moat_proof::challenge::{self, Spent};
use moat_proof::pressure::{self, Pressure, RouteLoad};

mod action;
pub use action::{presolve_routes, wait_response, PAGE_HEADER, PROOF_HEADER};
use moat_proof::token::{self, Clearance, Kind};
use moat_proof::{assets, keyfile, ua_hash, KeyRing, Net};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

/// Cookie names: `__Host-` makes the browser refuse it unless Secure, host-only and `Path=/`,
/// so a sibling subdomain cannot plant or shadow it. Plain HTTP cannot use the prefix.
pub const COOKIE_TLS: &str = "__Host-moat";
pub const COOKIE_PLAIN: &str = "moat_clearance";
/// No-JS tickets are valid from the end of the delay for this long.
const NOJS_WINDOW: u64 = 600;
/// The most one network adds to the pressure in a minute.
const PRESSURE_PER_NETWORK: u32 = 10;

pub struct ProofService {
    cfg: moat_config::Proof,
    v4_len: u8,
    v6_len: u8,
    ring: ArcSwap<KeyRing>,
    key_path: PathBuf,
    rotating: Mutex<()>,
    spent: Mutex<Spent>,
    pressure: Pressure,
    /// Pressure counted per network this minute: one /24 counts at most
    /// [`PRESSURE_PER_NETWORK`], so a single client cannot raise everyone's price.
    pressure_by_net: Mutex<(u64, HashMap<[u8; 8], u32>)>,
    rng: SystemRandom,
    bots: Option<GoodBotVerifier>,
    /// The sends on each `per_action` route, by rule id.
    routes: Mutex<HashMap<String, std::sync::Arc<RouteLoad>>>,
}

/// A request's standing with the proof.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standing {
    pub clearance: Option<Kind>,
    pub good_bot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Keys(#[from] keyfile::KeyFileError),
}

/// Unix seconds from the project's clock (`moat_core::SystemClock`).
pub fn now_secs() -> u64 {
    use moat_core::Clock;
    moat_core::SystemClock.now_ms() / 1000
}

impl ProofService {
    pub fn new(cfg: &Config) -> Result<Self, ProofError> {
        let p = cfg.proof.clone();
        let key_path = cfg.server.state_dir.join("proof.keys");
        let ring = keyfile::load_or_create(&key_path, now_secs(), p.key_rotation.as_secs())?;
        let bots = p.good_bots.then(|| {
            let resolver = match p.dns_server {
                Some(s) => Resolver::new(s),
                None => Resolver::from_system(),
            };
            GoodBotVerifier::new(resolver, VerifierConfig::default())
        });
        Ok(ProofService {
            v4_len: cfg.server.prefix_lens.v4,
            v6_len: cfg.server.prefix_lens.v6,
            ring: ArcSwap::from_pointee(ring),
            key_path,
            rotating: Mutex::new(()),
            spent: Mutex::new(Spent::new(1_000_000)),
            pressure: Pressure::default(),
            pressure_by_net: Mutex::new((0, HashMap::new())),
            rng: SystemRandom::new(),
            bots,
            routes: Mutex::new(HashMap::new()),
            cfg: p,
        })
    }

    pub fn config(&self) -> &moat_config::Proof {
        &self.cfg
    }

    fn net(&self, ip: IpAddr) -> Net {
        Net::of(ip, self.v4_len, self.v6_len)
    }

    /// The valid clearance this request carries, if any: one HMAC per candidate cookie, no
    /// store. Every candidate is tried, so a cookie planted by a sibling subdomain under the
    /// plain name cannot shadow the real one; over TLS only the `__Host-` cookie counts.
    pub fn clearance(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        tls: bool,
        now: u64,
    ) -> Option<Clearance> {
        let mut candidates = cookie_tokens(headers, tls).peekable();
        // Most requests carry no clearance cookie: they cost no hashing at all.
        candidates.peek()?;
        let ua = ua_hash(user_agent(headers).as_bytes());
        let ring = self.ring.load();
        let net = self.net(ip);
        candidates.find_map(|t| token::verify(&ring, t, now, ua, net).ok())
    }

    /// Clearance and good-bot status. The DNS check runs only for user agents that claim a
    /// known crawler, and is cached.
    pub async fn standing(&self, headers: &HeaderMap, ip: IpAddr, tls: bool, now: u64) -> Standing {
        let clearance = self.clearance(headers, ip, tls, now).map(|c| c.kind);
        let ua = user_agent(headers);
        let good_bot = match &self.bots {
            Some(v) if clearance.is_none() => match v.cached(ip, ua) {
                Some(b) => b,
                None => v.verify(ip, ua).await,
            },
            _ => false,
        };
        Standing {
            clearance,
            good_bot,
        }
    }

    /// A request that needed clearance came without it: pressure for adaptive difficulty.
    pub fn note_missing(&self, ip: IpAddr, now: u64) {
        let minute = now / 60;
        let key = self.net(ip).bytes();
        let counts = {
            let mut g = self
                .pressure_by_net
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if g.0 != minute || g.1.len() > 100_000 {
                *g = (minute, HashMap::new());
            }
            let n = g.1.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        if counts <= PRESSURE_PER_NETWORK {
            self.pressure.record(now);
        }
    }

    /// The no-JS wait, doubled with each extra bit of difficulty (capped at a minute), so the
    /// path that costs no CPU gets dearer under attack like the proof of work does.
    fn nojs_delay(&self, now: u64) -> Option<u64> {
        let base = self.cfg.nojs_delay?.as_secs().max(1);
        let extra = self
            .difficulty(now)
            .saturating_sub(self.cfg.difficulty)
            .min(6);
        Some((base << extra).min(60).max(base))
    }

    fn redeem(
        &self,
        solved: &challenge::Solved,
        now: u64,
    ) -> Result<(), challenge::ChallengeError> {
        self.spent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .redeem(solved, now)
    }

    pub fn difficulty(&self, now: u64) -> u8 {
        pressure::difficulty(
            self.cfg.difficulty,
            self.cfg.max_difficulty,
            self.pressure.per_minute(now),
            self.cfg.pressure_threshold,
        )
    }

    fn random16(&self) -> [u8; 16] {
        let mut r = [0u8; 16];
        if self.rng.fill(&mut r).is_err() {
            r = fastrand::u128(..).to_le_bytes();
        }
        r
    }

    /// Rotates the key ring when its current key is due. Cheap when it is not.
    fn rotate_if_due(&self, now: u64) {
        let period = self.cfg.key_rotation.as_secs();
        if !self.ring.load().needs_rotation(now, period) {
            return;
        }
        let Ok(_guard) = self.rotating.try_lock() else {
            return;
        };
        let current = self.ring.load_full();
        if !current.needs_rotation(now, period) {
            return;
        }
        match keyfile::rotate(&self.key_path, &current, now) {
            Ok(next) => {
                tracing::info!(key = next.current().id, "proof key rotated");
                self.ring.store(std::sync::Arc::new(next));
            }
            Err(e) => tracing::error!(error = %e, "proof key rotation failed; keeping the key"),
        }
    }

    /// Answers a `/.moat/` request, or `None` if the path is not one of ours.
    pub fn endpoint(
        &self,
        req: &http::request::Parts,
        body: Option<&[u8]>,
        ip: IpAddr,
        tls: bool,
    ) -> Option<Response<ProxyBody>> {
        let (method, path) = (&req.method, req.uri.path());
        let (query, headers) = (req.uri.query().unwrap_or(""), &req.headers);
        let now = now_secs();
        Some(match (method, path) {
            (&Method::GET | &Method::HEAD, "/.moat/proof.js") => script(query),
            (&Method::GET, "/.moat/challenge") => {
                self.rotate_if_due(now);
                // Only a proof-of-work clearance counts here: a browser holding a no-JS one
                // (JavaScript was off, now on) must be able to upgrade it.
                if self
                    .clearance(headers, ip, tls, now)
                    .is_some_and(|c| c.kind == Kind::Work)
                {
                    return Some(json(StatusCode::OK, r#"{"cleared":true}"#.to_string()));
                }
                let d = self.difficulty(now);
                let c = challenge::issue(
                    &self.ring.load(),
                    now + self.cfg.challenge_ttl.as_secs(),
                    d,
                    ua_hash(user_agent(headers).as_bytes()),
                    self.net(ip),
                    self.random16(),
                );
                json(
                    StatusCode::OK,
                    format!(r#"{{"cleared":false,"challenge":"{c}","difficulty":{d}}}"#),
                )
            }
            (&Method::POST, "/.moat/verify") => self.verify(headers, body, ip, tls, now),
            (&Method::GET, "/.moat/nojs") => self.nojs(query, headers, ip, tls, now),
            _ => return None,
        })
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: Option<&[u8]>,
        ip: IpAddr,
        tls: bool,
        now: u64,
    ) -> Response<ProxyBody> {
        #[derive(serde::Deserialize)]
        struct Answer {
            challenge: String,
            nonce: String,
        }
        let Some(a) = body.and_then(|b| serde_json::from_slice::<Answer>(b).ok()) else {
            return refuse("expected {\"challenge\":…,\"nonce\":…}");
        };
        let ua = ua_hash(user_agent(headers).as_bytes());
        let ring = self.ring.load();
        let solved = match challenge::check(&ring, &a.challenge, &a.nonce, now, ua, self.net(ip)) {
            Ok(s) => s,
            Err(e) => return refuse(&e.to_string()),
        };
        if let Err(e) = self.redeem(&solved, now) {
            return refuse(&e.to_string());
        }
        let mut r = json(StatusCode::OK, r#"{"ok":true}"#.to_string());
        self.set_cookie(&mut r, Kind::Work, headers, ip, tls, now);
        r
    }

    /// A signed ticket for the no-JS path, valid from `now + delay`; also returns the delay.
    pub fn nojs_url(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        return_to: &str,
    ) -> Option<(String, u64)> {
        let now = now_secs();
        let delay = self.nojs_delay(now)?;
        let ua = ua_hash(user_agent(headers).as_bytes());
        // A ticket is a challenge marked TICKET_MARK whose expiry encodes "not before": it
        // becomes redeemable `delay` from now and stays so for NOJS_WINDOW.
        let t = challenge::issue(
            &self.ring.load(),
            now + delay + NOJS_WINDOW,
            TICKET_MARK,
            ua,
            self.net(ip),
            self.random16(),
        );
        let url = format!(
            "/.moat/nojs?t={t}&r={}",
            percent_encode(assets::safe_return(return_to))
        );
        Some((url, delay))
    }

    fn nojs(
        &self,
        query: &str,
        headers: &HeaderMap,
        ip: IpAddr,
        tls: bool,
        now: u64,
    ) -> Response<ProxyBody> {
        if self.cfg.nojs_delay.is_none() {
            return refuse("the no-JavaScript path is off");
        }
        let (mut t, mut r) = ("", "/".to_string());
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("t", v)) => t = v,
                Some(("r", v)) => r = crate::request_view::percent_decode(v),
                _ => {}
            }
        }
        let ua = ua_hash(user_agent(headers).as_bytes());
        let ring = self.ring.load();
        let solved = match challenge::open(&ring, t, now, ua, self.net(ip)) {
            Ok(s) if s.difficulty == TICKET_MARK => s,
            Ok(_) => return refuse("not a no-JavaScript ticket"),
            Err(e) => return refuse(&e.to_string()),
        };
        let valid_from = solved.expires.saturating_sub(NOJS_WINDOW);
        if now < valid_from {
            // Too early: the same page again, so a browser that followed the link by hand
            // just waits the rest of the delay.
            let wait = valid_from - now;
            let mut resp = html(
                StatusCode::OK,
                format!(
                    "<!doctype html><meta http-equiv=\"refresh\" content=\"{wait};url={}\"><p>Please wait {wait} more seconds.</p>",
                    assets::escape_html(&format!("/.moat/nojs?{query}"))
                ),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return resp;
        }
        if let Err(e) = self.redeem(&solved, now) {
            return refuse(&e.to_string());
        }
        let mut resp = Response::new(crate::body::empty());
        *resp.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(assets::safe_return(&r)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        self.set_cookie(&mut resp, Kind::NoScript, headers, ip, tls, now);
        resp
    }

    fn set_cookie(
        &self,
        resp: &mut Response<ProxyBody>,
        kind: Kind,
        headers: &HeaderMap,
        ip: IpAddr,
        tls: bool,
        now: u64,
    ) {
        let ua = ua_hash(user_agent(headers).as_bytes());
        let ring = self.ring.load();
        // Keep the other address family's binding from a token this client already holds.
        let previous = cookie_tokens(headers, tls).find_map(|t| token::open(&ring, t).ok());
        let ttl = match kind {
            Kind::Work => self.cfg.clearance_ttl.as_secs(),
            Kind::NoScript => self.cfg.nojs_ttl.as_secs(),
        };
        let c = Clearance::new(kind, now + ttl, ua, self.net(ip), previous.as_ref());
        let t = token::mint(&ring, &c);
        let cookie = if tls {
            format!("{COOKIE_TLS}={t}; Path=/; Max-Age={ttl}; Secure; HttpOnly; SameSite=Lax")
        } else {
            format!("{COOKIE_PLAIN}={t}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Lax")
        };
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// The page a GET navigation gets from a `challenge` rule.
    pub fn challenge_page(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        return_to: &str,
    ) -> Response<ProxyBody> {
        let target = assets::safe_return(return_to);
        let nojs = self.nojs_url(headers, ip, target);
        let delay = nojs.as_ref().map_or(0, |n| n.1);
        let mut r = html(
            StatusCode::FORBIDDEN,
            assets::challenge_page(target, nojs.as_ref().map(|n| n.0.as_str()), delay),
        );
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("moat-clearance", HeaderValue::from_static("required"));
        r
    }

    pub fn verifier(&self) -> Option<&GoodBotVerifier> {
        self.bots.as_ref()
    }
}

/// Marks a challenge as a no-JS ticket, redeemed by waiting at `/.moat/nojs`. Its difficulty
/// of 255 bits also means no nonce can ever redeem it at `/.moat/verify`.
const TICKET_MARK: u8 = 255;

/// The 403 a POST without clearance gets where the route says `retry`: the page script sees
/// `Moat-Clearance: required`, solves, and sends the request again.
pub fn retry_response() -> Response<ProxyBody> {
    let mut r = json(
        StatusCode::FORBIDDEN,
        r#"{"error":"clearance_required","challenge":"/.moat/challenge"}"#.to_string(),
    );
    r.headers_mut()
        .insert("moat-clearance", HeaderValue::from_static("required"));
    r
}

/// Whether a request is a page navigation (so a challenge page makes sense), rather than a
/// fetch, an image or a feed reader.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    if let Some(m) = headers.get("sec-fetch-mode") {
        return m.as_bytes() == b"navigate";
    }
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn user_agent(h: &HeaderMap) -> &str {
    h.get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Every clearance candidate in the cookie jar: over TLS only `__Host-moat` (the plain name
/// could have been set by a sibling subdomain), over plain HTTP either name.
fn cookie_tokens(h: &HeaderMap, tls: bool) -> impl Iterator<Item = &str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE_TLS || (!tls && k == COOKIE_PLAIN)).then_some(v.trim())
        })
}

/// Removes Moat's own clearance cookies (both names) from the request before it goes to the
/// app: the token is Moat's business, and an app that logs or echoes cookies must not hand it
/// to anyone. Other cookies keep their order; a `Cookie` header left empty is dropped. Costs a
/// substring search per `Cookie` header when there is nothing to remove.
pub fn strip_clearance(h: &mut HeaderMap) {
    let ours = |c: &str| {
        c.trim()
            .split_once('=')
            .is_some_and(|(k, _)| k == COOKIE_TLS || k == COOKIE_PLAIN)
    };
    let mentions = |v: &HeaderValue| {
        memchr::memmem::find(v.as_bytes(), COOKIE_TLS.as_bytes()).is_some()
            || memchr::memmem::find(v.as_bytes(), COOKIE_PLAIN.as_bytes()).is_some()
    };
    if !h.get_all(header::COOKIE).iter().any(mentions) {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| {
            if !mentions(v) {
                return Some(v.clone());
            }
            // A value that is not text is not one of ours: keep it untouched.
            let Ok(text) = v.to_str() else {
                return Some(v.clone());
            };
            let rest: Vec<&str> = text
                .split(';')
                .filter(|c| !ours(c) && !c.trim().is_empty())
                .map(str::trim)
                .collect();
            (!rest.is_empty()).then(|| HeaderValue::from_str(&rest.join("; ")).ok())?
        })
        .collect();
    h.remove(header::COOKIE);
    for v in kept {
        h.append(header::COOKIE, v);
    }
}

fn script(query: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from_static(assets::PROOF_JS.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    // Versioned URLs (`?v=…`, the worker's too) never change.
    let cache = if query.starts_with("v=") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn refuse(why: &str) -> Response<ProxyBody> {
    tracing::debug!(target: "moat::proof", why, "proof refused");
    json(
        StatusCode::FORBIDDEN,
        serde_json::json!({ "ok": false, "error": why }).to_string(),
    )
}

fn percent_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(h: &HeaderMap) -> Vec<&str> {
        h.get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn clearance_cookies_never_reach_the_app() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; moat_clearance=TOK;b=2; __Host-moat=T2"),
        );
        // HTTP/2 may split the jar into one header per cookie.
        h.append(header::COOKIE, HeaderValue::from_static("__Host-moat=T3"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("ghost-members-ssr=x"),
        );
        // A name that only contains ours is someone else's cookie.
        h.append(
            header::COOKIE,
            HeaderValue::from_static("my_moat_clearance=keep; moat_clearance_x=keep"),
        );
        strip_clearance(&mut h);
        assert_eq!(
            cookies(&h),
            [
                "a=1; b=2",
                "ghost-members-ssr=x",
                "my_moat_clearance=keep; moat_clearance_x=keep"
            ]
        );
        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("moat_clearance=TOK"),
        );
        strip_clearance(&mut only);
        assert!(
            only.get(header::COOKIE).is_none(),
            "an emptied jar is dropped"
        );
        let mut none = HeaderMap::new();
        none.insert(header::COOKIE, HeaderValue::from_static("a=1;b=2"));
        strip_clearance(&mut none);
        assert_eq!(
            cookies(&none),
            ["a=1;b=2"],
            "untouched when nothing is ours"
        );
    }

    #[test]
    fn every_candidate_cookie_is_found() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("moat_clearance=PLANTED; a=1; moat_clearance=TOK"),
        );
        let all: Vec<_> = cookie_tokens(&h, false).collect();
        assert_eq!(all, ["PLANTED", "TOK"]);
        assert_eq!(cookie_tokens(&h, true).count(), 0, "TLS takes only __Host-");
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("__Host-moat=T2"));
        assert_eq!(cookie_tokens(&h, true).collect::<Vec<_>>(), ["T2"]);
    }

    #[test]
    fn navigation_is_told_from_fetch() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        assert!(is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::POST, &h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(!is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn return_paths_survive_the_round_trip() {
        let p = "/a b?x=1&y=é";
        assert_eq!(crate::request_view::percent_decode(&percent_encode(p)), p);
    }
}
