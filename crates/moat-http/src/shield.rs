//! The request pipeline, in the order a request meets it:
//!
//! 1. client address (socket, or a trusted proxy's header), ACME HTTP-01 answers;
//! 2. the guard: allowlisted clients go straight through, banned ones are marked;
//! 3. the browser proof's own endpoints (`/.moat/`), then the request's standing with the
//!    proof (clearance cookie, verified good bot) and its header-shape fingerprint;
//! 4. the rules-and-limits detector (`moat_detect::rules`): rules, first match wins, a banned
//!    client that no rule answered gets the ban response, then the rate limits; what it
//!    found goes to the decision log and, as events, to the engine;
//! 5. forwarding, where a decoy in learning mode records the upstream's first success, HTML
//!    pages on injecting routes get the page script, and a `[[confirm]]` route's send or click
//!    is counted for the client's cohort once the app has answered it.

pub mod cohort_file;
mod confirm;
mod upstream;

pub use confirm::Confirming;

use crate::acme::{http01_response, Http01Tokens};
use crate::body::{
    full, peek, BodyBudget, BodyError, BodyReservation, BoxError, Guarded, ProxyBody,
};
use crate::client_addr::{self, ClientAddrPolicy, ClientIpSource, TrustedProxies};
use crate::decoy::Decoys;
use crate::forward;
use crate::metrics::Metrics;
use crate::proof::{self, ProofService, Standing};
use crate::request_view::{normalize_path, parse_body, secure_context};
use crate::sightings::ProofOutcome;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use moat_config::{Action, ClientIpHeader, Config};
use moat_core::{Sensor, Subject};
use moat_engine::{Engine, GuardVerdict};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What the connection layer knows about a request's transport.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The socket peer, or the source a trusted PROXY-protocol header disclosed.
    pub peer: SocketAddr,
    pub tls: bool,
}

/// How long a body read waits for memory held by others before it is refused with 503.
pub const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Shield {
    pub cfg: Arc<Config>,
    pub engine: Arc<Engine>,
    pub decoys: Decoys,
    /// Shared with the shields that reloads replace, so counters run on.
    pub metrics: Arc<Metrics>,
    /// The user agents and shapes behind decisions, and the proof's outcomes (the dashboard's
    /// Who and People pages), shared across reloads like the metrics.
    pub sightings: Arc<crate::sightings::Sightings>,
    /// The rules and rate limits of this shield's policy (the limiters' counters kept across
    /// reloads where a limit is unchanged).
    detector: moat_detect::RulesAndLimits,
    addr_policy: ClientAddrPolicy,
    tarpit: Arc<Semaphore>,
    /// Memory for bodies read before deciding (kept across reloads of the same size).
    body_budget: BodyBudget,
    upstream_authority: Arc<str>,
    acme_tokens: Option<Http01Tokens>,
    needs_body: bool,
    /// Present when the policy uses the browser proof in any way.
    proof: Option<Arc<ProofService>>,
    /// Every cohort's sends and clicks (kept across reloads).
    cohorts: Arc<moat_detect::Cohorts>,
}

/// The request's header-shape fingerprint, built the first time a rule reads it.
struct LazyShape<'a> {
    h2: bool,
    method: &'a str,
    headers: &'a http::HeaderMap,
    secure: bool,
    cell: std::sync::OnceLock<moat_proof::fingerprint::Shape>,
}

impl LazyShape<'_> {
    fn get(&self) -> &moat_proof::fingerprint::Shape {
        self.cell.get_or_init(|| {
            moat_proof::fingerprint::shape(self.h2, self.method, self.headers, self.secure)
        })
    }
}

impl moat_rules::ShapeSource for LazyShape<'_> {
    fn text(&self) -> &str {
        &self.get().text
    }
    fn consistent(&self) -> bool {
        self.get().consistent
    }
}

/// A request's standing with the proof, as the rules-and-limits detector asks for it.
struct RequestProofs<'a> {
    shield: &'a Shield,
    standing: &'a Standing,
    method: &'a Method,
    headers: &'a http::HeaderMap,
    path: &'a str,
    /// Whether the path is exempt from the proof, worked out once for all the rules asking.
    exempt: Option<bool>,
    client: IpAddr,
    now: u64,
    /// The difficulty a per-action proof must have, when one was missing.
    difficulty: Option<u8>,
}

impl moat_detect::rules::Proofs for RequestProofs<'_> {
    fn cleared(&mut self, nojs_ok: bool) -> bool {
        self.shield.passes_proof(
            self.standing,
            nojs_ok,
            self.method,
            self.path,
            &mut self.exempt,
        )
    }

    fn action(&mut self, rule: &moat_config::Rule, target: Option<&[u8]>) -> bool {
        let Some(p) = &self.shield.proof else {
            return true;
        };
        // A verified crawler does not send sign-ups; it is not asked to solve.
        if self.standing.good_bot {
            return true;
        }
        match p.action(
            &rule.id,
            target.unwrap_or_default(),
            self.headers,
            self.client,
            self.now,
        ) {
            Ok(()) => true,
            Err(d) => {
                self.difficulty = Some(d);
                false
            }
        }
    }
}

/// What the policy made of a request.
// A Decision lives for one move, from `decide` to its caller, never in a connection's state:
// boxing the forward would cost an allocation per forwarded request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Moat answers itself: a block, a decoy, a challenge, a proof endpoint, an error.
    Respond(Response<ProxyBody>),
    /// The request goes on to the upstream.
    Forward(Forward),
}

/// A request the policy lets through, with what forwarding it needs to know.
pub struct Forward {
    pub parts: http::request::Parts,
    pub body: ProxyBody,
    pub client: IpAddr,
    pub ssl: bool,
    pub host: String,
    /// What Moat reads from the upstream's answer.
    pub watch: Watch,
}

/// What Moat reads from the upstream's answer to a forwarded request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch {
    /// The decoy that learns from the answer, if any.
    pub learn: Option<usize>,
    /// The decoy whose route this is: the upstream's success is timed for it.
    pub route: Option<usize>,
    /// A `[[confirm]]` route's send or click, counted for its cohort by the answer.
    pub confirm: Option<Confirming>,
}

impl Watch {
    /// Nothing to read: the answer can be relayed as bytes.
    pub fn is_empty(&self) -> bool {
        self.route.is_none() && self.learn.is_none() && self.confirm.is_none()
    }
}

/// A request rewritten for the upstream (see [`Shield::prepare_forward`]).
pub struct Prepared {
    pub parts: http::request::Parts,
    /// The page gets the proof's script.
    pub inject: bool,
    /// An upgrade (WebSocket) asked for, and the client side of it.
    protocol: Option<HeaderValue>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Prepared {
    /// Whether the upstream's bytes can go to the client as they are: no upgrade, no script.
    pub fn passes_through(&self) -> bool {
        !self.inject && self.protocol.is_none()
    }
}

impl Shield {
    pub fn new(
        cfg: Arc<Config>,
        engine: Arc<Engine>,
        acme_tokens: Option<Http01Tokens>,
        proof: Option<Arc<ProofService>>,
    ) -> Self {
        let sources = cfg
            .server
            .client_ip_headers
            .iter()
            .map(|h| match h {
                ClientIpHeader::XForwardedFor => ClientIpSource::XForwardedFor,
                ClientIpHeader::Forwarded => ClientIpSource::Forwarded,
                ClientIpHeader::FlyClientIp => ClientIpSource::FlyClientIp,
                ClientIpHeader::CfConnectingIp => ClientIpSource::CfConnectingIp,
            })
            .collect();
        let addr_policy = ClientAddrPolicy {
            trusted: TrustedProxies::new(cfg.server.trusted_proxies.clone()),
            sources,
        };
        Shield {
            decoys: Decoys::new(cfg.policy.decoys.clone(), engine.store().clone()),
            metrics: Arc::new(Metrics::default()),
            sightings: Arc::default(),
            detector: moat_detect::RulesAndLimits::new(cfg.clone()),
            tarpit: Arc::new(Semaphore::new(cfg.limits.tarpit_max_concurrent)),
            body_budget: BodyBudget::new(cfg.limits.max_body_memory_bytes),
            needs_body: cfg.policy.needs_body(),
            proof,
            upstream_authority: forward::authority(&cfg.server.upstream).into(),
            addr_policy,
            acme_tokens,
            engine,
            cohorts: Arc::new(moat_detect::Cohorts::new(cfg.cohorts.clone())),
            cfg,
        }
    }

    /// The shield for a reloaded config: the same engine (bans, counters of unchanged limits),
    /// metrics, tarpit, ACME tokens, and browser proof (its keys and spent proofs) when the
    /// proof's settings did not change; the new rules, limits, decoys and client-address
    /// policy. Listeners, TLS, the store and the admin listener are not reloaded.
    pub fn reloaded(&self, cfg: Arc<Config>) -> Result<Shield, crate::proof::ProofError> {
        let proof = match (&self.proof, cfg.proof.active) {
            (_, false) => None,
            (Some(p), true) if format!("{:?}", p.config()) == format!("{:?}", cfg.proof) => {
                Some(p.clone())
            }
            (_, true) => Some(Arc::new(ProofService::new(&cfg)?)),
        };
        let mut next = Shield::new(
            cfg.clone(),
            self.engine.clone(),
            self.acme_tokens.clone(),
            proof,
        );
        next.metrics = self.metrics.clone();
        next.sightings = self.sightings.clone();
        next.tarpit = self.tarpit.clone();
        if next.body_budget.total() == self.body_budget.total() {
            next.body_budget = self.body_budget.clone();
        }
        next.detector = self.detector.reloaded(cfg.clone());
        next.cohorts = Arc::new(self.cohorts.reloaded(cfg.cohorts.clone()));
        Ok(next)
    }

    /// Keys the rate limiters track (a metric).
    pub fn limiter_keys(&self) -> usize {
        self.detector.limiter_keys()
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.addr_policy.trusted.contains(peer)
    }

    /// Reserves memory for reading up to `cap` bytes of a body (less when it declares a
    /// shorter length), waiting at most [`BODY_BUDGET_WAIT`] for slow clients to finish.
    pub(crate) async fn reserve_body(
        &self,
        cap: usize,
        declared: Option<u64>,
    ) -> Option<BodyReservation> {
        let n = declared.map_or(cap, |d| (d as usize).saturating_add(1).min(cap));
        self.body_budget.reserve(n, BODY_BUDGET_WAIT).await
    }

    /// The answer when bodies being read hold all of `limits.max_body_memory_bytes`: a
    /// temporary refusal the client is told about, never a silent drop.
    pub(crate) fn body_budget_spent(&self) -> Response<ProxyBody> {
        self.metrics.body_budget_spent.inc();
        let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        r
    }

    /// Serves one request that hyper parsed: the policy's decision, then forwarding.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Response<ProxyBody> {
        // Hyper has parsed the head: the request's latency counts from here.
        let start = std::time::Instant::now();
        let (parts, incoming) = req.into_parts();
        if let Some(r) = crate::framing::oversized(&parts, self.cfg.limits.max_header_bytes) {
            self.metrics.observe_answered(start);
            return r;
        }
        match self.decide(parts, incoming, conn).await {
            Decision::Respond(r) => {
                let r = crate::decoy::release(r).await;
                self.metrics.observe_answered(start);
                r
            }
            Decision::Forward(f) => {
                let p = self.prepare_forward(f.parts, f.client, f.ssl, &f.host);
                self.send_forward(p, f.body, f.watch, start).await
            }
        }
    }

    /// Counts a request against the limits that apply: in the cluster's shared store when
    /// there is one (one round trip for all of them), else, or when it does not answer and the
    /// cluster fails open, with this instance's own limiters.
    async fn limits<'s>(&'s self, p: &moat_detect::Pending, j: &mut moat_detect::Judgement<'s>) {
        use moat_core::shared::WhenUnreachable;
        let Some(shared) = self.engine.shared_limits() else {
            self.detector.limits_local(p, self.engine.now_ns(), j);
            return;
        };
        match shared.check(self.detector.shared_checks(p)).await {
            Ok(outcome) => self.detector.apply_shared(p, &outcome, j),
            Err(_) => match shared.when_unreachable() {
                WhenUnreachable::Local => self.detector.limits_local(p, self.engine.now_ns(), j),
                WhenUnreachable::Closed => self.detector.apply_closed(p, j),
            },
        }
    }

    /// Runs the whole policy on a request (rules, bans, limits, the proof's endpoints) and
    /// says whether Moat answers it or forwards it. Both the hyper path and the fast path
    /// (`crate::fast`) call this, so a request meets the same policy whichever serves it.
    pub async fn decide<B>(
        &self,
        req: http::request::Parts,
        incoming: B,
        conn: ConnInfo,
    ) -> Decision
    where
        B: hyper::body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        self.metrics.requests.inc();
        // Framing the upstream could read otherwise than Moat did is refused before anything
        // else: a request smuggled past the rules is the worst a proxy can do.
        if let Some(refused) = crate::framing::refusal(&req) {
            return Decision::Respond(refused);
        }
        let peer = conn.peer.ip().to_canonical();
        let client = client_addr::resolve(&self.addr_policy, peer, &req.headers);
        let forwarded_https = self.trusts(peer)
            && req
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        let ssl = conn.tls || forwarded_https;
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();

        if let Some(tokens) = &self.acme_tokens {
            if let Some(ka) = http01_response(tokens, req.uri.path()) {
                return Decision::Respond(text(StatusCode::OK, ka));
            }
        }
        if self.cfg.feed.enabled {
            let (dir, m, path) = (&self.cfg.server.state_dir, &req.method, req.uri.path());
            if let Some(r) = crate::feed_files::answer(dir, m, path, &req.headers).await {
                return Decision::Respond(r);
            }
        }
        if let Some(p) = &self.proof {
            if req.method == Method::GET && req.uri.path() == "/.moat/action" {
                let routes =
                    proof::presolve_routes(&self.cfg.policy, req.uri.query().unwrap_or(""));
                let now = proof::now_secs();
                return Decision::Respond(p.presolve(&routes, &req.headers, client, ssl, now));
            }
            if req.uri.path().starts_with("/.moat/") {
                let mut body = None;
                if req.method == Method::POST {
                    let lim = &self.cfg.limits;
                    let guarded = Guarded::new(incoming, lim.max_body_bytes, lim.body_timeout);
                    // An answer is a few hundred bytes; anything longer is not one.
                    let Some(_held) = self.reserve_body(4096 + 1, None).await else {
                        return Decision::Respond(self.body_budget_spent());
                    };
                    match peek(guarded, 4096).await {
                        Ok(p) => body = p.complete,
                        Err(e) => return Decision::Respond(body_error(&e)),
                    }
                }
                if let Some(r) = p.endpoint(&req, body.as_deref(), client, ssl) {
                    let path = req.uri.path();
                    if let Some(o) = ProofOutcome::of(&req.method, path, r.status()) {
                        self.sightings.proof(self.engine.now_ms(), client, o);
                    }
                    return Decision::Respond(r);
                }
                return Decision::Respond(text(StatusCode::NOT_FOUND, "Not Found\n"));
            }
        }
        let declared = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.cfg.limits.max_body_bytes) {
            return Decision::Respond(text(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n"));
        }

        let verdict = self.engine.check(client);
        let lim = &self.cfg.limits;
        let guarded = |b: B| Guarded::new(b, lim.max_body_bytes, lim.body_timeout);
        if verdict == GuardVerdict::Allowlisted {
            let body = guarded(incoming).boxed();
            return Decision::Forward(Forward {
                parts: req,
                body,
                client,
                ssl,
                host,
                watch: Watch::default(),
            });
        }
        let banned = matches!(verdict, GuardVerdict::Banned(_));

        // Read (a capped prefix of) the body only when a rule or limit looks inside it.
        let (json, body) = if self.needs_body && has_body(&req.method) {
            // Held while the client sends the body, given back once it is read.
            let reserved = self.reserve_body(lim.max_json_body_bytes + 1, declared);
            let Some(_held) = reserved.await else {
                return Decision::Respond(self.body_budget_spent());
            };
            match peek(guarded(incoming), lim.max_json_body_bytes).await {
                Ok(p) => {
                    let ct = req
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    (
                        p.complete.as_deref().and_then(|b| parse_body(ct, b)),
                        p.body,
                    )
                }
                Err(e) => return Decision::Respond(body_error(&e)),
            }
        } else {
            (None, guarded(incoming).boxed())
        };

        let path = normalize_path(req.uri.path());
        let now = proof::now_secs();
        let standing = match &self.proof {
            Some(p) => p.standing(&req.headers, client, ssl, now).await,
            None => Standing::default(),
        };
        let secure = secure_context(ssl, &host);
        let shape = LazyShape {
            h2: req.version == http::Version::HTTP_2,
            method: req.method.as_str(),
            headers: &req.headers,
            secure,
            cell: std::sync::OnceLock::new(),
        };
        let cohort = confirm::LazyCohort {
            cohorts: &self.cohorts,
            ip: client,
            headers: &req.headers,
            now,
            cell: std::sync::OnceLock::new(),
        };
        let view = moat_rules::Request {
            method: req.method.as_str(),
            uri: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            path: &path,
            query: req.uri.query().unwrap_or(""),
            host: &host,
            headers: &req.headers,
            ip: client,
            prefix_lens: self.cfg.server.prefix_lens,
            json: json.as_ref(),
            ssl,
            secure_context: secure,
            banned,
            proof: moat_rules::ProofFields {
                clearance: standing.clearance.is_some(),
                good_bot: standing.good_bot,
                shape: &shape,
                cohort: &cohort,
            },
        };
        let mut proofs = RequestProofs {
            shield: self,
            standing: &standing,
            method: &req.method,
            headers: &req.headers,
            path: &path,
            exempt: None,
            client,
            now,
            difficulty: None,
        };
        let (mut judged, pending) = self.detector.judge_rules(&view, &mut proofs);
        let action_difficulty = proofs.difficulty;
        if let Some(p) = pending.filter(|p| !p.is_empty()) {
            self.limits(&p, &mut judged).await;
        }
        let page_script = standing.clearance == Some(moat_proof::token::Kind::Work)
            && req.headers.contains_key(proof::PAGE_HEADER);
        if let Some(p) = &self.proof {
            for _ in 0..judged.missing_proof {
                p.note_missing(client, now);
            }
        }
        for n in &judged.noted {
            self.log_decision(
                client,
                &cohort,
                n.id,
                n.action.name(),
                n.key.as_deref(),
                &view,
            );
        }
        for kind in judged.events {
            self.engine.emit(Sensor::Http, Subject::ip(client), kind);
        }
        if let Some(h) = judged.hit {
            // A send on a route under pressure without a proof of its own, from a browser
            // running the page script: it gets a challenge bound to this send, which the
            // script solves and sends back with the request. Scripts get the rule's answer.
            if let (Some((rule, target)), Some(p), Some(d), true) = (
                &judged.action_needed,
                &self.proof,
                action_difficulty,
                page_script,
            ) {
                if *rule == h.id {
                    self.log_decision(client, &cohort, rule, "action-proof", None, &view);
                    return Decision::Respond(p.action_challenge(
                        rule,
                        target,
                        &req.headers,
                        client,
                        d,
                        now,
                    ));
                }
            }
            // A limit stopped a write from a browser running the page script (cleared by the
            // proof of work, and saying so): it is told how long to wait, and the script
            // tells the person and sends it again. A script that copies the header learns
            // it was limited, and gets no further than the limit lets it.
            if let Some(wait) = h.wait {
                if page_script {
                    self.log_decision(client, &cohort, h.id, "wait", h.key.as_deref(), &view);
                    return Decision::Respond(proof::wait_response(wait));
                }
            }
            self.log_decision(
                client,
                &cohort,
                h.id,
                h.action.name(),
                h.key.as_deref(),
                &view,
            );
            if let (Action::Challenge { fallback }, Some(p)) = (h.action, &self.proof) {
                // A navigation gets the page that solves and comes back; anything else (a
                // POST above all) gets the fallback, never a redirect that would turn it
                // into a GET. A client that already has clearance and still trips a limit
                // gets the fallback too, or it would loop through the challenge.
                if proof::is_navigation(&req.method, &req.headers) && standing.clearance.is_none() {
                    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
                    return Decision::Respond(p.challenge_page(&req.headers, client, target));
                }
                return Decision::Respond(self.act(fallback).await);
            }
            return Decision::Respond(self.act(h.action).await);
        }
        let route = self.decoys.route(&view);
        let watch = Watch {
            learn: route.filter(|&i| self.decoys.wants_to_learn(i)),
            route,
            confirm: confirm::watch(&self.cfg, &view, &cohort),
        };
        Decision::Forward(Forward {
            parts: req,
            body,
            client,
            ssl,
            host,
            watch,
        })
    }

    /// Whether a rule that asks for the proof lets this request by: it has clearance (of a
    /// kind the rule accepts), it is a verified good bot, or the path is never challenged.
    fn passes_proof(
        &self,
        standing: &Standing,
        allow_nojs: bool,
        method: &Method,
        path: &str,
        exempt: &mut Option<bool>,
    ) -> bool {
        let Some(p) = &self.proof else {
            return false;
        };
        standing.good_bot
            || standing
                .clearance
                .is_some_and(|k| k == moat_proof::token::Kind::Work || allow_nojs)
            || *exempt.get_or_insert_with(|| p.config().exempt(method, path))
    }

    /// Runs a terminal action.
    async fn act(&self, action: &Action) -> Response<ProxyBody> {
        match action {
            Action::Tarpit { delay, then } => {
                match self.tarpit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::time::sleep(*delay).await;
                        drop(permit);
                    }
                    // Over the cap the tarpit answers at once: holding more would let the
                    // attacker spend our memory and sockets instead of their time.
                    Err(_) => {
                        self.metrics.tarpit_overflow.inc();
                    }
                }
                self.immediate(then)
            }
            Action::Challenge { fallback } => match fallback.as_ref() {
                Action::Tarpit { .. } | Action::Decoy(_) => Box::pin(self.act(fallback)).await,
                other => self.immediate(other),
            },
            Action::Decoy(i) => {
                // As long as the app takes: a connection held no longer than a genuine answer
                // would hold it. The wait is the writer's (`decoy::release`).
                let wait = self.decoys.delay(*i);
                let mut r = self.decoys.respond(*i);
                if !wait.is_zero() {
                    r.extensions_mut().insert(crate::decoy::Hold(wait));
                }
                r
            }
            other => self.immediate(other),
        }
    }

    fn immediate(&self, action: &Action) -> Response<ProxyBody> {
        match action {
            Action::Decoy(i) => self.decoys.respond(*i),
            Action::Block { status, body } => text(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN),
                body.clone(),
            ),
            Action::Retry => proof::retry_response(),
            _ => text(StatusCode::FORBIDDEN, "Forbidden\n"),
        }
    }

    fn log_decision(
        &self,
        client: IpAddr,
        cohort: &confirm::LazyCohort<'_>,
        rule: &str,
        action: &'static str,
        key: Option<&str>,
        v: &moat_rules::Request<'_>,
    ) {
        use moat_engine::decision_log::clip;
        self.metrics.decision(rule, action);
        let ua = clip(
            v.headers
                .get(header::USER_AGENT)
                .and_then(|h| h.to_str().ok())
                .unwrap_or(""),
        );
        self.sightings.decision(
            self.engine.now_ms(),
            client,
            rule,
            action,
            ua,
            v.proof.shape.text(),
        );
        let (key, path, host) = (clip(key.unwrap_or("")), clip(v.path), clip(v.host));
        // The line as JSON is about its fields plus 220 bytes of names and time.
        let size = 220 + rule.len() + key.len() + path.len() + host.len() + ua.len();
        if !self
            .engine
            .decision_log()
            .admit(self.engine.now_ms(), rule, action, client, size)
        {
            return;
        }
        tracing::info!(
            target: "moat::decision",
            client = %client,
            rule,
            action,
            key,
            method = v.method,
            path,
            host,
            user_agent = ua,
            banned = v.banned,
            cohort = cohort.asked().map_or("", |s| s.as_str()),
            "decision"
        );
    }
}

fn has_body(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn find_body_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

/// The answer to a body that broke a limit, on hyper's path and the fast path alike.
pub(crate) fn body_error_kind(b: &BodyError) -> Response<ProxyBody> {
    match b {
        BodyError::TooLarge(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n"),
        BodyError::Timeout(_) => text(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n"),
        BodyError::Client(_) => text(StatusCode::BAD_REQUEST, "Bad Request\n"),
    }
}

fn body_error(e: &BoxError) -> Response<ProxyBody> {
    match find_body_error(e.as_ref()) {
        Some(b) => body_error_kind(b),
        None => text(StatusCode::BAD_REQUEST, "Bad Request\n"),
    }
}
