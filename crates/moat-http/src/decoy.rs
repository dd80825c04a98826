//! Decoys: answers that look exactly like the upstream's success, so a script validating a list
//! cannot tell that nothing happened. A decoy with a `learn` expression records the upstream's
//! first genuine 2xx on that route (persisted in the store) and replays it from then on.

use crate::body::{full, ProxyBody};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use moat_config::Decoy;
use moat_store::{LearnedResponse, Store};
use std::sync::{Arc, RwLock};

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

pub fn is_volatile(name: &str) -> bool {
    VOLATILE.contains(&name)
}

pub struct Decoys {
    defs: Vec<Decoy>,
    learned: RwLock<Vec<Option<Arc<LearnedResponse>>>>,
    store: Arc<dyn Store>,
}

impl Decoys {
    pub fn new(defs: Vec<Decoy>, store: Arc<dyn Store>) -> Self {
        let learned = defs
            .iter()
            .map(|d| match store.learned(&d.id) {
                Ok(l) => l.map(Arc::new),
                Err(e) => {
                    tracing::warn!(decoy = %d.id, error = %e, "cannot load learned decoy");
                    None
                }
            })
            .collect();
        Decoys {
            defs,
            learned: RwLock::new(learned),
            store,
        }
    }

    pub fn defs(&self) -> &[Decoy] {
        &self.defs
    }

    /// Decoys still waiting to learn whose `learn` expression matches.
    pub fn wants_to_learn(&self, idx: usize) -> bool {
        self.defs[idx].learn.is_some()
            && self
                .learned
                .read()
                .map(|l| l[idx].is_none())
                .unwrap_or(false)
    }

    pub fn record(&self, idx: usize, status: StatusCode, headers: &http::HeaderMap, body: &Bytes) {
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
        match self.store.learn(id, &r) {
            Ok(_) => {
                tracing::info!(decoy = %id, status = r.status, "learned the upstream's success response")
            }
            Err(e) => tracing::warn!(decoy = %id, error = %e, "cannot persist learned decoy"),
        }
        if let Ok(mut l) = self.learned.write() {
            if l[idx].is_none() {
                l[idx] = Some(Arc::new(r));
            }
        }
    }

    pub fn respond(&self, idx: usize) -> Response<ProxyBody> {
        let learned = self.learned.read().ok().and_then(|l| l[idx].clone());
        let (status, headers, body): (u16, Vec<(String, String)>, Bytes) = match learned {
            Some(l) => (l.status, l.headers.clone(), Bytes::from(l.body.clone())),
            None => {
                let d = &self.defs[idx];
                (d.status, d.headers.clone(), Bytes::from(d.body.clone()))
            }
        };
        let len = body.len();
        let mut resp = Response::new(full(body));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        for (n, v) in headers {
            let v = match n.as_str() {
                "date" => httpdate::fmt_http_date(std::time::SystemTime::now()),
                "content-length" => len.to_string(),
                _ => v,
            };
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(n), HeaderValue::try_from(v)) {
                resp.headers_mut().append(n, v);
            }
        }
        resp
    }
}
