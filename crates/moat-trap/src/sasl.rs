//! SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) decoding, without I/O.
//!
//! Bots send whatever their credential list holds, so the decoder never fails on odd bytes: a
//! password that is not UTF-8 is kept lossily (it is recorded, not checked against anything
//! that needs exactness), and only base64 that cannot be decoded at all is an error.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The challenge `AUTH LOGIN` sends for the user name (`Username:`).
pub const LOGIN_USER_CHALLENGE: &str = "VXNlcm5hbWU6";
/// The challenge `AUTH LOGIN` sends for the password (`Password:`).
pub const LOGIN_PASS_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// One login attempt as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `PLAIN` or `LOGIN`.
    pub mechanism: &'static str,
    /// PLAIN's authorisation identity; usually empty.
    pub authzid: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("invalid base64")]
    Base64,
    #[error("PLAIN response is not authzid NUL authcid NUL passwd")]
    Plain,
}

/// Decodes one base64 client response. `=` is the empty response (RFC 4954 section 4).
pub fn decode(response: &str) -> Result<Vec<u8>, SaslError> {
    let response = response.trim();
    if response == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(response).map_err(|_| SaslError::Base64)
}

/// Splits a decoded PLAIN message.
pub fn plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.splitn(3, |b| *b == 0);
    let (Some(authzid), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Plain);
    };
    Ok(Credentials {
        mechanism: "PLAIN",
        authzid: lossy(authzid),
        username: lossy(user),
        password: lossy(pass),
    })
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Base64 for tests and clients.
pub fn encode(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_splits_on_the_first_two_nuls_only() {
        let c = plain(b"\0bob@x\0pa\0ss").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bob@x", "pa\0ss")
        );
        assert_eq!(plain(b"no nuls"), Err(SaslError::Plain));
        assert_eq!(decode("=").unwrap(), b"");
        assert_eq!(decode("!!"), Err(SaslError::Base64));
        assert_eq!(decode(&encode(b"\0u\0p")).unwrap(), b"\0u\0p");
    }

    #[test]
    fn challenges_are_the_usual_prompts() {
        assert_eq!(decode(LOGIN_USER_CHALLENGE).unwrap(), b"Username:");
        assert_eq!(decode(LOGIN_PASS_CHALLENGE).unwrap(), b"Password:");
    }
}
