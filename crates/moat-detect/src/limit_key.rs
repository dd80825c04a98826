//! The key a request counts under for a rate limit: the client (an IPv6 client by its
//! prefix), a header, or a field of the JSON body such as the target email, normalised so that
//! trivial variations of one victim's address share one limit.

use moat_config::LimitKey;
use moat_core::prefix_of;
use serde_json::Value;
use std::net::IpAddr;

/// An email as one mailbox: lowercased, trimmed, `+tag` removed, and Gmail's ignored dots
/// dropped, so trivial variations of one victim's address share one limit.
pub fn normalize_email(s: &str) -> String {
    let s = s.trim().to_lowercase();
    let Some((local, domain)) = s.rsplit_once('@') else {
        return s;
    };
    let local = local.split('+').next().unwrap_or(local);
    let local = if domain == "gmail.com" || domain == "googlemail.com" {
        local.replace('.', "")
    } else {
        local.to_string()
    };
    format!("{local}@{domain}")
}

fn json_str(json: Option<&Value>, field: &str) -> Option<String> {
    match json?.get(field)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The key a request counts under for a limit, or None when the request has no such key (no
/// email field, no header, no cohort tracked), in which case that limit does not apply to it.
pub fn limit_key(key: &LimitKey, view: &moat_rules::Request<'_>) -> Option<Vec<u8>> {
    let (ip, lens, headers, json) = (view.ip, view.prefix_lens, view.headers, view.json);
    Some(match key {
        // IPv6 clients by their /64: one host owns the whole block (see `offender`).
        LimitKey::Ip => match ip.to_canonical() {
            v4 @ IpAddr::V4(_) => v4.to_string().into_bytes(),
            v6 => prefix_of(v6, lens).to_string().into_bytes(),
        },
        LimitKey::Prefix => prefix_of(ip, lens).to_string().into_bytes(),
        LimitKey::Global => b"*".to_vec(),
        LimitKey::Header(name) => headers.get(name.as_str())?.as_bytes().to_vec(),
        LimitKey::Json(f) => normalize_email(&json_str(json, f)?).into_bytes(),
        LimitKey::JsonDomain(f) => {
            let e = json_str(json, f)?;
            e.trim().rsplit_once('@')?.1.to_lowercase().into_bytes()
        }
        LimitKey::Cohort => format!("cohort:{:016x}", view.proof.cohort.key()?).into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalize_to_one_mailbox() {
        assert_eq!(normalize_email(" J.Doe+news@GMail.com "), "jdoe@gmail.com");
        assert_eq!(normalize_email("j.doe+x@example.org"), "j.doe@example.org");
    }
}
