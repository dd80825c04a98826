//! The part of CrowdSec's Local API that bouncers poll, on the admin listener, so the
//! enforcement people already run (CrowdSec's firewall, nginx, Traefik and custom bouncers)
//! enforces Moat's bans:
//!
//! - `GET /v1/decisions/stream?startup=true` answers every ban in force as `new`; later calls
//!   (`startup` false or absent) answer what changed since that key's previous call: bans added
//!   as `new`, bans lifted or expired as `deleted`. Either may be `null`, as CrowdSec sends it.
//!   `scopes` (comma-separated, default `ip,range` as CrowdSec's) narrows it down.
//! - `GET /v1/decisions?ip=ADDR` answers the bans covering one address (`null` for none), for
//!   bouncers in live mode.
//!
//! A bouncer authenticates with `X-Api-Key`, one of `[crowdsec] bouncer_keys`; the admin token
//! is not accepted here (a bouncer only reads), and a bouncer key opens nothing else. Each
//! decision is CrowdSec's shape: `id`, `origin` (`moat`), `type` (`ban`), `scope` (`Ip` or
//! `Range`), `value`, `duration` (Go's duration text, which bouncers parse; a ban until
//! removed is given a year, and its removal is sent as a deletion), `scenario`
//! (`moat/` and what made the ban), `simulated`.

use http::{header, Method, Request, Response, StatusCode};
use moat_core::{Decision, Scope, Verdict};
use moat_http::body::ProxyBody;
use moat_http::shield::{text, Shield};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// What each bouncer key was last told, by scope: the base its next delta is computed from.
#[derive(Default)]
pub struct Streams {
    sent: Mutex<HashMap<String, HashMap<String, serde_json::Value>>>,
}

/// How long a ban without an end is said to last: bouncers need a duration; its lifting is
/// sent as a deletion whenever it comes.
const UNTIL_REMOVED_SECS: u64 = 365 * 86_400;

/// Whether the request is one of the Local API's, which this module answers.
pub fn is_lapi(path: &str) -> bool {
    path == "/v1/decisions/stream" || path == "/v1/decisions"
}

pub fn route(
    shield: &Shield,
    streams: &Streams,
    req: &Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let keys = &shield.cfg.crowdsec.bouncer_keys;
    let key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| {
            keys.iter()
                .any(|want| moat_core::secret::token_eq(k.as_bytes(), want.as_bytes()))
        });
    let Some(key) = key else {
        return json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({"message": "access forbidden"}),
        );
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"message": "use GET"}),
        );
        r.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let now = shield.engine.now_ms();
    let bans: Vec<Decision> = shield
        .engine
        .decisions()
        .0
        .into_iter()
        .filter(|d| d.verdict == Verdict::Ban && d.active_at(now))
        .collect();
    if req.uri().path() == "/v1/decisions" {
        let Some(ip) = param("ip") else {
            return json(StatusCode::OK, &serde_json::Value::Null);
        };
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": "ip: not an address"}),
            );
        };
        let hits: Vec<_> = bans
            .iter()
            .filter(|d| covers(&d.scope, ip))
            .map(|d| crowdsec_json(d, now))
            .collect();
        return json(StatusCode::OK, &or_null(hits));
    }
    let startup = param("startup") == Some("true");
    // `scopes=ip,range` is CrowdSec's default; a bouncer that handles addresses only asks for
    // `scopes=ip`.
    let scopes: Vec<String> = param("scopes")
        .unwrap_or("ip,range")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let current: HashMap<String, serde_json::Value> = bans
        .iter()
        .map(|d| (d.scope.to_string(), crowdsec_json(d, now)))
        .filter(|(_, j)| {
            let scope = j["scope"].as_str().unwrap_or("").to_ascii_lowercase();
            scopes.contains(&scope)
        })
        .collect();
    let mut all = streams.sent.lock().unwrap_or_else(|p| p.into_inner());
    let sent = all.entry(key.to_string()).or_default();
    if startup {
        sent.clear();
    }
    let new: Vec<_> = current
        .iter()
        .filter(|(scope, _)| !sent.contains_key(*scope))
        .map(|(_, d)| d.clone())
        .collect();
    let deleted: Vec<_> = sent
        .iter()
        .filter(|(scope, _)| !current.contains_key(*scope))
        .map(|(_, d)| d.clone())
        .collect();
    *sent = current;
    json(
        StatusCode::OK,
        &serde_json::json!({"new": or_null(new), "deleted": or_null(deleted)}),
    )
}

fn covers(scope: &Scope, ip: IpAddr) -> bool {
    match scope {
        Scope::Ip(a) => a.to_canonical() == ip.to_canonical(),
        Scope::Prefix(n) => n.contains(&ip.to_canonical()),
    }
}

/// An empty list is `null`, as CrowdSec answers it.
fn or_null(v: Vec<serde_json::Value>) -> serde_json::Value {
    if v.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(v)
    }
}

/// One ban as a CrowdSec decision.
fn crowdsec_json(d: &Decision, now_ms: u64) -> serde_json::Value {
    // A one-address prefix (a /32 or /128) is an address to a bouncer.
    let (scope, value) = match &d.scope {
        Scope::Ip(a) => ("Ip", a.to_string()),
        Scope::Prefix(n) if n.prefix_len() == n.max_prefix_len() => ("Ip", n.addr().to_string()),
        Scope::Prefix(n) => ("Range", n.to_string()),
    };
    let secs = d.expires_ms.map_or(UNTIL_REMOVED_SECS, |e| {
        e.saturating_sub(now_ms).div_ceil(1000)
    });
    serde_json::json!({
        "id": id_of(&value),
        "origin": "moat",
        "type": "ban",
        "scope": scope,
        "value": value,
        "duration": go_duration(secs),
        "scenario": format!("moat/{}", d.origin),
        "simulated": false,
    })
}

/// A decision's id: stable for its scope (a bouncer matches a deletion to what it added by
/// value, and some by id), within JavaScript's safe integers.
fn id_of(value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h & ((1 << 53) - 1)).max(1)
}

/// Seconds as Go's `time.ParseDuration` reads them: `3h59m58s`.
fn go_duration(secs: u64) -> String {
    format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = text(status, v.to_string());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(go_duration(14_398), "3h59m58s");
        assert_eq!(go_duration(59), "0h0m59s");
        assert_eq!(go_duration(UNTIL_REMOVED_SECS), "8760h0m0s");
    }

    #[test]
    fn a_range_covers_its_addresses() {
        let n: ipnet::IpNet = "192.0.2.0/24".parse().unwrap();
        assert!(covers(&Scope::Prefix(n), "192.0.2.9".parse().unwrap()));
        assert!(covers(
            &Scope::Prefix(n),
            "::ffff:192.0.2.9".parse().unwrap()
        ));
        assert!(!covers(&Scope::Prefix(n), "192.0.3.9".parse().unwrap()));
        assert!(covers(
            &Scope::Ip("2001:db8::1".parse().unwrap()),
            "2001:db8::1".parse().unwrap()
        ));
        assert_ne!(id_of("192.0.2.7"), id_of("192.0.2.8"));
        assert!(id_of("192.0.2.7") < 1 << 53);
    }
}
