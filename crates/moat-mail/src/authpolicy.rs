//! Dovecot's authentication policy protocol (`auth_policy_server_url`), without I/O.
//!
//! Dovecot POSTs JSON to `URL?command=allow` before (and after) authenticating and to
//! `?command=report` after; Moat answers `{"status":N,"msg":"…"}`. Before authentication -1
//! rejects, 0 accepts and N > 0 makes Dovecot delay the client N seconds; after authentication
//! -1 fails the login. The password never arrives, only `pwhash`: hex of
//! SHA-256(nonce ‖ login ‖ NUL ‖ password), truncated to `auth_policy_hash_truncate` bits
//! (0 = the whole hash, which lets Moat tell *which* common password a bot is trying).

use ring::digest::{Context, SHA256};
use serde_json::Value;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Allow,
    Report,
}

impl Command {
    /// From the request's query string (`command=allow`).
    pub fn from_query(q: &str) -> Option<Command> {
        q.split('&').find_map(|kv| match kv.split_once('=') {
            Some(("command", "allow")) => Some(Command::Allow),
            Some(("command", "report")) => Some(Command::Report),
            _ => None,
        })
    }
}

/// Why a login failed, as Dovecot reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailType {
    None,
    /// Wrong password.
    Credentials,
    /// The account does not exist: enumeration, and the honey trigger.
    Account,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub login: String,
    pub pwhash: String,
    pub remote: Option<IpAddr>,
    /// Dovecot's `device_id` (`%{client_id}`: the IMAP ID a client sends), empty if none.
    pub device_id: String,
    pub protocol: String,
    pub success: Option<bool>,
    pub fail_type: FailType,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthPolicyError {
    #[error("the body is not a JSON object")]
    NotJson,
}

impl AuthRequest {
    pub fn parse(body: &[u8]) -> Result<AuthRequest, AuthPolicyError> {
        let v: Value = serde_json::from_slice(body).map_err(|_| AuthPolicyError::NotJson)?;
        let obj = v.as_object().ok_or(AuthPolicyError::NotJson)?;
        let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let success = match obj.get("success") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(t)) => Some(t == "true" || t == "1"),
            Some(Value::Number(n)) => Some(n.as_i64() == Some(1)),
            _ => None,
        };
        let fail_type = match s("fail_type").as_str() {
            "" => FailType::None,
            "credentials" => FailType::Credentials,
            "account" => FailType::Account,
            _ => FailType::Other,
        };
        Ok(AuthRequest {
            login: s("login"),
            pwhash: s("pwhash").to_ascii_lowercase(),
            remote: s("remote")
                .parse::<IpAddr>()
                .ok()
                .map(|ip| ip.to_canonical()),
            device_id: s("device_id"),
            protocol: s("protocol"),
            success,
            fail_type,
        })
    }
}

pub fn response(status: i32, msg: &str) -> String {
    serde_json::json!({ "status": status, "msg": msg }).to_string()
}

/// Dovecot's `pwhash` for `password`, untruncated, as lowercase hex.
pub fn pwhash(nonce: &str, login: &str, password: &str) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(nonce.as_bytes());
    ctx.update(login.as_bytes());
    ctx.update(&[0]);
    ctx.update(password.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Which of `candidates` (most common first) hashes to `hash` for this login. Only a full
/// 64-digit hash can be matched; a truncated one fits too many passwords to say.
pub fn recover<'a>(
    nonce: &str,
    login: &str,
    hash: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if hash.len() != 64 {
        return None;
    }
    candidates
        .into_iter()
        .find(|p| pwhash(nonce, login, p) == hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_requests_parse() {
        let r = AuthRequest::parse(br#"{"device_id":"","login":"info@moat.test","protocol":"smtp","pwhash":"ABC","remote":"127.10.0.5","session_id":"x","fail_type":"account","success":false,"policy_reject":false,"tls":false}"#).unwrap();
        assert_eq!(r.login, "info@moat.test");
        assert_eq!(r.pwhash, "abc");
        assert_eq!(r.remote, Some("127.10.0.5".parse().unwrap()));
        assert_eq!(r.fail_type, FailType::Account);
        assert_eq!(r.success, Some(false));
        let r = AuthRequest::parse(br#"{"login":"a","remote":"::ffff:192.0.2.1"}"#).unwrap();
        assert_eq!(r.remote, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(r.success, None);
        assert!(AuthRequest::parse(b"[1]").is_err());
        assert!(AuthRequest::parse(b"{garbage").is_err());
        assert_eq!(Command::from_query("command=report"), Some(Command::Report));
        assert_eq!(
            Command::from_query("x=1&command=allow"),
            Some(Command::Allow)
        );
        assert_eq!(Command::from_query("command=drop"), None);
        assert_eq!(response(-1, "no"), r#"{"msg":"no","status":-1}"#);
    }

    #[test]
    fn the_password_is_found_from_its_hash() {
        let h = pwhash("nonce", "info", "qwerty");
        assert_eq!(h.len(), 64);
        let list = ["123456", "password", "qwerty"];
        assert_eq!(recover("nonce", "info", &h, list), Some("qwerty"));
        assert_eq!(recover("other", "info", &h, list), None);
        assert_eq!(recover("nonce", "info", &h[..3], list), None);
    }
}
