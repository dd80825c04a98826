//! Bearer tokens kept in the state directory: read if present, generated once otherwise.
//!
//! Shared by the admin API and the Dovecot auth-policy endpoint so that neither is ever open by
//! default. The file is created with mode 0600 and `create_new`, so two starts racing cannot
//! leave two different tokens, and a token shorter than 16 characters is refused rather than
//! silently replaced (someone wrote it by hand).

use std::io::Write;
use std::path::Path;

use subtle::ConstantTimeEq;

/// Whether a presented token equals the expected one, in time that depends only on their
/// lengths (never on where they first differ), so answers cannot be timed to guess a token
/// byte by byte. `subtle` keeps the compiler from turning the loop back into an early exit.
pub fn token_eq(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{0} holds fewer than 16 characters")]
    TooShort(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// 32 characters from the operating system's cryptographic source (ring's `SystemRandom`):
/// whoever holds the admin token can lift every ban, so it must not be guessable from a
/// seeded generator's other outputs. Base62, each character from a byte below 248 (a multiple
/// of 62), so every character is equally likely: about 190 bits.
pub fn random_token() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(32);
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        rng.fill(&mut buf)?;
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() < 32 {
                out.push(ALPHABET[usize::from(*b % 62)] as char);
            }
        }
    }
    Ok(out)
}

/// The token in `path`, or a new random one written there. Returns it and whether it is new.
pub fn load_or_create_token(path: &Path) -> Result<(String, bool), TokenFileError> {
    let io = |e| TokenFileError::Io(path.display().to_string(), e);
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= 16 => return Ok((t.trim().to_string(), false)),
        Ok(_) => return Err(TokenFileError::TooShort(path.display().to_string())),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        Err(_) => {}
    }
    let token = random_token().map_err(|_| {
        io(std::io::Error::other(
            "the operating system's random source failed",
        ))
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(io)?;
    f.write_all(token.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok((token, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        let t = b"0123456789abcdef0123456789abcdef";
        assert!(token_eq(t, t));
        assert!(
            !token_eq(b"0123456789abcdef0123456789abcdeX", t),
            "last byte differs"
        );
        assert!(
            !token_eq(b"X123456789abcdef0123456789abcdef", t),
            "first byte differs"
        );
        assert!(
            !token_eq(b"0123456789abcdef", t),
            "a prefix is not the token"
        );
        assert!(!token_eq(b"", t));
        assert!(!token_eq(b"0123456789abcdef0123456789abcdef0", t), "longer");
    }

    #[test]
    fn random_tokens_are_long_base62_and_differ() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        // Every character of the alphabet turns up over enough tokens (none is unreachable).
        let seen: std::collections::HashSet<u8> = (0..200)
            .flat_map(|_| random_token().unwrap().into_bytes())
            .collect();
        assert_eq!(seen.len(), 62);
    }

    #[test]
    fn generated_once_then_read_back() {
        let dir = std::env::temp_dir().join(format!("moat-secret-{}", std::process::id()));
        let p = dir.join("t.token");
        let _ = std::fs::remove_file(&p);
        let (a, new_a) = load_or_create_token(&p).unwrap();
        let (b, new_b) = load_or_create_token(&p).unwrap();
        assert!(new_a && !new_b && a == b && a.len() == 32);
        std::fs::write(&p, "short").unwrap();
        assert!(matches!(
            load_or_create_token(&p),
            Err(TokenFileError::TooShort(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
