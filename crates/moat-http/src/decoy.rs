//! Decoys: answers that look exactly like the upstream's success, so a script validating a list
//! cannot tell that nothing happened. A decoy with a `learn` expression records the upstream's
//! first genuine 2xx on that route (persisted in the store) and replays it from then on.
//!
//! They also take as long as the upstream: the genuine successes on a decoy's route are timed
//! (the last [`TIMED`]), and a decoy waits for a time drawn from them, or for the configured
//! `delay` give or take a quarter until [`TIMED_ENOUGH`] were seen. An answer in a millisecond
//! where the app takes hundreds tells a script which of its methods work.

use crate::body::{full, ProxyBody};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use moat_config::Decoy;
use moat_store::{LearnedResponse, Store};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Headers that differ between two genuine responses, or must never be replayed to someone
/// else (a session cookie), plus the hop-by-hop ones. `date` and `content-length` are not here:
/// they are recorded as placeholders and regenerated in place, so the replay keeps the
/// upstream's header order (a script could otherwise tell a decoy by where `date` sits).
const VOLATILE: &[&str] = &[
    "set-cookie",
    "age",
    "expires",
    "last-modified",
    "x-request-id",
    "x-correlation-id",
    "request-id",
    "cf-ray",
    "server-timing",
    "x-runtime",
    "x-response-time",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// A response to hold back this long before it is written: a decoy waiting as long as the app
/// would. The wait happens after the policy's future is gone ([`release`]), so a connection
/// holding a decoy keeps the response and a timer, not the whole request pipeline's state.
#[derive(Debug, Clone, Copy)]
pub struct Hold(pub Duration);

/// Waits out a response's [`Hold`], if it has one, and dates it when it leaves.
pub async fn release(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    if let Some(Hold(wait)) = resp.extensions_mut().remove::<Hold>() {
        tokio::time::sleep(wait).await;
        if let Some(d) = resp.headers_mut().get_mut(http::header::DATE) {
            *d = http_date();
        }
    }
    resp
}

pub fn is_volatile(name: &str) -> bool {
    VOLATILE.contains(&name)
}

pub struct Decoys {
    defs: Vec<Decoy>,
    /// Per decoy, the answer it gives (learned, or its static one) and whether it was learned.
    answers: RwLock<Vec<(bool, Arc<Ready>)>>,
    store: Arc<dyn Store>,
    /// Per decoy, the genuine answer times on its route.
    timings: Vec<Mutex<Timings>>,
    /// Per decoy not yet learned, when the store was last asked whether another instance of a
    /// cluster learned it (ms since the Unix epoch; at most once a second).
    asked: Vec<std::sync::atomic::AtomicU64>,
}

/// Genuine answer times kept per route: enough to follow the app's distribution, few enough
/// that a slow app's outliers age out.
pub const TIMED: usize = 64;
/// Genuine answers timed before decoys follow them rather than the configured delay.
pub const TIMED_ENOUGH: usize = 5;

/// The last [`TIMED`] genuine answer times of one route, in microseconds (a ring).
#[derive(Default)]
struct Timings {
    micros: Vec<u32>,
    next: usize,
}

impl Timings {
    fn record(&mut self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if self.micros.len() < TIMED {
            self.micros.push(us);
        } else {
            self.micros[self.next] = us;
        }
        self.next = (self.next + 1) % TIMED;
    }
}

/// A decoy's answer parsed once, so that answering costs reference counts, not parsing: the
/// attack path answers with it hundreds of thousands of times a second.
struct Ready {
    status: StatusCode,
    /// `None`: a `date` or `content-length` written afresh where it stands.
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
    body: Bytes,
}

impl Ready {
    fn new(status: u16, headers: &[(String, String)], body: Bytes) -> Ready {
        let headers = headers
            .iter()
            .filter_map(|(n, v)| {
                let name = HeaderName::try_from(n.as_str()).ok()?;
                if name == http::header::DATE || name == http::header::CONTENT_LENGTH {
                    return Some((name, None));
                }
                Some((name, Some(HeaderValue::try_from(v.as_str()).ok()?)))
            })
            .collect();
        Ready {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            headers,
            body,
        }
    }
}

/// Now as an HTTP date, formatted once a second per worker thread (as hyper does for its own
/// `date`): no lock shared by the workers on the attack path.
fn http_date() -> HeaderValue {
    thread_local! {
        static CACHE: std::cell::RefCell<Option<(u64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|c| match c {
        Some((s, v)) if *s == secs => v.clone(),
        _ => {
            let v = HeaderValue::try_from(httpdate::fmt_http_date(now))
                .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
            *c = Some((secs, v.clone()));
            v
        }
    })
}

impl Decoys {
    pub fn new(defs: Vec<Decoy>, store: Arc<dyn Store>) -> Self {
        let answers = defs
            .iter()
            .map(|d| {
                let learned = store.learned(&d.id).unwrap_or_else(|e| {
                    tracing::warn!(decoy = %d.id, error = %e, "cannot load learned decoy");
                    None
                });
                match learned {
                    Some(l) => (
                        true,
                        Arc::new(Ready::new(l.status, &l.headers, Bytes::from(l.body))),
                    ),
                    None => (
                        false,
                        Arc::new(Ready::new(
                            d.status,
                            &d.headers,
                            Bytes::from(d.body.clone()),
                        )),
                    ),
                }
            })
            .collect();
        Decoys {
            timings: defs.iter().map(|_| Mutex::default()).collect(),
            asked: defs.iter().map(|_| Default::default()).collect(),
            defs,
            answers: RwLock::new(answers),
            store,
        }
    }

    /// The decoy whose route this request is on (its `learn` expression matches), if any.
    pub fn route(&self, view: &moat_rules::Request<'_>) -> Option<usize> {
        self.defs
            .iter()
            .position(|d| d.learn.as_ref().is_some_and(|e| e.matches(view)))
    }

    /// A genuine success on decoy `idx`'s route took `d`, from the request's head to the
    /// upstream's.
    pub fn time_genuine(&self, idx: usize, d: Duration) {
        if let Some(t) = self.timings.get(idx) {
            t.lock().unwrap_or_else(|e| e.into_inner()).record(d);
        }
    }

    /// How long decoy `idx` waits before answering: a genuine time drawn at random once enough
    /// were seen, else the configured delay give or take a quarter.
    pub fn delay(&self, idx: usize) -> Duration {
        if let Some(t) = self.timings.get(idx) {
            let t = t.lock().unwrap_or_else(|e| e.into_inner());
            if t.micros.len() >= TIMED_ENOUGH {
                let us = t.micros[fastrand::usize(..t.micros.len())];
                return Duration::from_micros(u64::from(us));
            }
        }
        let base = self.defs.get(idx).map_or(Duration::ZERO, |d| d.delay);
        base.mul_f64(0.75 + fastrand::f64() / 2.0)
    }

    pub fn defs(&self) -> &[Decoy] {
        &self.defs
    }

    /// Decoys still waiting to learn whose `learn` expression matches.
    pub fn wants_to_learn(&self, idx: usize) -> bool {
        self.defs[idx].learn.is_some() && self.answers.read().map(|a| !a[idx].0).unwrap_or(false)
    }

    /// Records decoy `idx`'s genuine answer; true when it is the first (stored), which the
    /// caller tells the engine so a cluster can share it.
    pub fn record(
        &self,
        idx: usize,
        status: StatusCode,
        headers: &http::HeaderMap,
        body: &Bytes,
    ) -> bool {
        let r = LearnedResponse {
            status: status.as_u16(),
            headers: headers
                .iter()
                .filter(|(n, _)| !is_volatile(n.as_str()))
                .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect(),
            body: body.to_vec(),
        };
        let id = &self.defs[idx].id;
        let first = match self.store.learn(id, &r) {
            Ok(first) => {
                tracing::info!(decoy = %id, status = r.status, "learned the upstream's success response");
                first
            }
            Err(e) => {
                tracing::warn!(decoy = %id, error = %e, "cannot persist learned decoy");
                false
            }
        };
        self.set_learned(idx, &r);
        first
    }

    fn set_learned(&self, idx: usize, r: &LearnedResponse) {
        if let Ok(mut a) = self.answers.write() {
            if !a[idx].0 {
                a[idx] = (
                    true,
                    Arc::new(Ready::new(
                        r.status,
                        &r.headers,
                        Bytes::from(r.body.clone()),
                    )),
                );
            }
        }
    }

    /// A decoy not learned here may have been learned by another instance of a cluster (which
    /// writes it into this instance's store): asked at most once a second, only until learned.
    fn learned_elsewhere(&self, idx: usize) {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.asked[idx].load(Ordering::Relaxed);
        if now < last + 1000
            || self.asked[idx]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Ok(Some(r)) = self.store.learned(&self.defs[idx].id) {
            self.set_learned(idx, &r);
        }
    }

    pub fn respond(&self, idx: usize) -> Response<ProxyBody> {
        let (learned, ready) = match self.answers.read() {
            Ok(a) => a[idx].clone(),
            Err(e) => e.into_inner()[idx].clone(),
        };
        let ready = if learned || self.defs[idx].learn.is_none() {
            ready
        } else {
            self.learned_elsewhere(idx);
            match self.answers.read() {
                Ok(a) => a[idx].1.clone(),
                Err(e) => e.into_inner()[idx].1.clone(),
            }
        };
        let len = ready.body.len();
        let mut resp = Response::new(full(ready.body.clone()));
        *resp.status_mut() = ready.status;
        let h = resp.headers_mut();
        h.reserve(ready.headers.len());
        for (n, v) in &ready.headers {
            let v = match v {
                Some(v) => v.clone(),
                None if n == http::header::DATE => http_date(),
                None => HeaderValue::from(len),
            };
            h.append(n.clone(), v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoys(delay: Duration) -> Decoys {
        let d = Decoy {
            id: "d".into(),
            status: 201,
            body: "Created.".into(),
            headers: vec![
                ("x-powered-by".into(), "Express".into()),
                ("date".into(), String::new()),
                ("content-length".into(), String::new()),
            ],
            learn: None,
            delay,
        };
        Decoys::new(vec![d], Arc::new(moat_store::MemoryStore::new()))
    }

    #[test]
    fn a_decoy_waits_the_configured_time_then_as_long_as_the_genuine_answers() {
        let d = decoys(Duration::from_millis(300));
        for _ in 0..200 {
            let w = d.delay(0);
            assert!(
                (Duration::from_millis(225)..Duration::from_millis(375)).contains(&w),
                "{w:?}"
            );
        }
        // Fewer genuine answers than TIMED_ENOUGH: still the configured delay.
        for _ in 0..TIMED_ENOUGH - 1 {
            d.time_genuine(0, Duration::from_secs(2));
        }
        assert!(d.delay(0) < Duration::from_millis(375));
        d.time_genuine(0, Duration::from_secs(3));
        for _ in 0..50 {
            let w = d.delay(0);
            assert!(
                w == Duration::from_secs(2) || w == Duration::from_secs(3),
                "{w:?}"
            );
        }
        // The ring keeps the last TIMED: older times age out.
        for _ in 0..TIMED {
            d.time_genuine(0, Duration::from_millis(80));
        }
        assert_eq!(d.delay(0), Duration::from_millis(80));
        assert_eq!(decoys(Duration::ZERO).delay(0), Duration::ZERO);
    }

    #[test]
    fn headers_keep_their_order_with_date_and_length_written_in_place() {
        let r = decoys(Duration::ZERO).respond(0);
        let names: Vec<&str> = r.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-powered-by", "date", "content-length"]);
        assert_eq!(r.headers()["content-length"], "8");
        assert!(r.headers()["date"].to_str().unwrap().ends_with(" GMT"));
    }
}
