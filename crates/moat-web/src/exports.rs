//! The bans in force as the plain files other programs load, on the admin listener under
//! `/api/exports/`, each with an ETag (its SHA-256) so a cron job or a config-management pull
//! fetches only what changed (`If-None-Match` → `304`):
//!
//! - `ips.txt`: one address or CIDR prefix per line (ipset, firewalld, blocklist tools);
//! - `nftables.nft`: `nft -f` loads table `inet moat_export` with sets `ban4` and `ban6`
//!   (replacing the previous load; the ruleset that drops `@ban4`/`@ban6` is the operator's);
//! - `nginx.conf`: `deny ADDR;` lines for an `include` in a `server` or `location`;
//! - `postfix.cidr`: a Postfix `cidr:` table (`ADDR REJECT …`) for `check_client_access`.
//!
//! The allowlist always wins: a ban on an allowlisted address, or a prefix that overlaps an
//! allowlisted range, is left out of every export (none of these formats can say "except").
//! Opened by the admin token or a `[crowdsec]` bouncer key: both are for machines that enforce.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use ipnet::IpNet;
use moat_core::{Decision, Scope, Verdict};
use moat_http::body::{empty, ProxyBody};
use moat_http::shield::{text, Shield};
use std::fmt::Write as _;

pub const PREFIX: &str = "/api/exports/";

/// The formats, by file name.
pub const NAMES: &[&str] = &["ips.txt", "nftables.nft", "nginx.conf", "postfix.cidr"];

/// The body of one export, or `None` for an unknown name.
pub fn render(name: &str, bans: &[Decision], allow: &[IpNet], now_ms: u64) -> Option<String> {
    let mut nets: Vec<IpNet> = bans
        .iter()
        .filter(|d| d.verdict == Verdict::Ban && d.active_at(now_ms))
        .map(|d| match &d.scope {
            Scope::Ip(ip) => IpNet::from(ip.to_canonical()),
            Scope::Prefix(n) => *n,
        })
        .filter(|n| !allow.iter().any(|a| a.contains(n) || n.contains(a)))
        .collect();
    nets.sort();
    nets.dedup();
    let show = |n: &IpNet| {
        if n.prefix_len() == n.max_prefix_len() {
            n.addr().to_string()
        } else {
            n.to_string()
        }
    };
    let mut out = String::new();
    match name {
        "ips.txt" => {
            for n in &nets {
                let _ = writeln!(out, "{}", show(n));
            }
        }
        "nginx.conf" => {
            out.push_str("# Moat's bans: include in a server or location block.\n");
            for n in &nets {
                let _ = writeln!(out, "deny {};", show(n));
            }
        }
        "postfix.cidr" => {
            out.push_str("# Moat's bans: check_client_access cidr:/path/to/this/file\n");
            for n in &nets {
                let _ = writeln!(out, "{} REJECT banned by Moat", show(n));
            }
        }
        "nftables.nft" => {
            // Declared, deleted and declared again: loading it twice replaces, never merges,
            // and the first load works on nft versions without `destroy`.
            out.push_str("table inet moat_export\ndelete table inet moat_export\n");
            out.push_str("table inet moat_export {\n");
            for (set, kind, v4) in [("ban4", "ipv4_addr", true), ("ban6", "ipv6_addr", false)] {
                let _ = writeln!(out, "\tset {set} {{\n\t\ttype {kind}\n\t\tflags interval");
                let elems: Vec<String> = nets
                    .iter()
                    .filter(|n| n.addr().is_ipv4() == v4)
                    .map(show)
                    .collect();
                if !elems.is_empty() {
                    let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
                }
                out.push_str("\t}\n");
            }
            out.push_str("}\n");
        }
        _ => return None,
    }
    Some(out)
}

/// `GET /api/exports/NAME`.
pub fn route(
    shield: &Shield,
    admin_ok: bool,
    req: &Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let key_ok = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| {
            shield
                .cfg
                .crowdsec
                .bouncer_keys
                .iter()
                .any(|want| moat_core::secret::token_eq(k.as_bytes(), want.as_bytes()))
        });
    // Errors in the admin API's JSON shape; the files themselves are the formats' own text.
    let error = |status, msg: String| {
        crate::admin::json_response(status, &serde_json::json!({ "error": msg }))
    };
    if !admin_ok && !key_ok {
        return crate::api::unauthorized();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use GET".into());
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let name = req.uri().path().strip_prefix(PREFIX).unwrap_or("");
    let (bans, allow) = shield.engine.decisions();
    let Some(body) = render(name, &bans, &allow, shield.engine.now_ms()) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such export; there are: {}", NAMES.join(", ")),
        );
    };
    let etag = format!("\"{}\"", moat_feed::head::sha256_hex(body.as_bytes()));
    let mut r = if moat_http::feed_files::etag_matches(req.headers(), &etag) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if req.method() == Method::HEAD {
        let mut r = text(StatusCode::OK, "");
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        *r.body_mut() = empty();
        r
    } else {
        text(StatusCode::OK, body)
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::Origin;

    fn ban(scope: &str) -> Decision {
        Decision {
            scope: scope.parse().unwrap(),
            verdict: Verdict::Ban,
            created_ms: 0,
            expires_ms: None,
            reason: String::new(),
            origin: Origin::Manual,
            offences: 1,
        }
    }

    #[test]
    fn every_format_leaves_out_what_the_allowlist_covers() {
        let bans = [
            ban("203.0.113.7"),
            ban("198.51.100.0/24"),
            ban("192.0.2.0/24"),
            ban("2001:db8::1"),
        ];
        let allow: Vec<IpNet> = vec!["192.0.2.10/32".parse().unwrap()];
        let ips = render("ips.txt", &bans, &allow, 1).unwrap();
        assert_eq!(ips, "198.51.100.0/24\n203.0.113.7\n2001:db8::1\n");
        let nginx = render("nginx.conf", &bans, &allow, 1).unwrap();
        assert!(nginx.contains("deny 203.0.113.7;\n") && !nginx.contains("192.0.2"));
        let pf = render("postfix.cidr", &bans, &allow, 1).unwrap();
        assert!(pf.contains("198.51.100.0/24 REJECT"));
        let nft = render("nftables.nft", &bans, &allow, 1).unwrap();
        assert!(
            nft.contains("elements = { 198.51.100.0/24, 203.0.113.7 }"),
            "{nft}"
        );
        assert!(nft.contains("elements = { 2001:db8::1 }"), "{nft}");
        let empty = render("nftables.nft", &[], &[], 1).unwrap();
        assert!(!empty.contains("elements"));
        assert!(render("nope", &bans, &allow, 1).is_none());
    }
}
