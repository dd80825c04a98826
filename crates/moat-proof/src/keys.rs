//! The MAC keys that sign challenges and clearance tokens.
//!
//! Two keys are live at once: the current one signs, and the previous one still verifies, so a
//! rotation never invalidates a token issued just before it (the rotation period is at least the
//! token lifetime, so by the time a key is dropped every token it signed has expired). Each
//! token carries the one-byte id of its key, so verification never tries keys in turn.
//!
//! The text form (one `id created_unix hex_secret` line per key, current first) is what
//! [`crate::keyfile`] keeps in the state directory, so tokens survive a restart.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("line {line}: {msg}")]
    Parse { line: usize, msg: &'static str },
    #[error("no key in the key file")]
    Empty,
    #[error("the system random generator failed")]
    Random,
}

/// One HMAC-SHA256 key and when it was made.
#[derive(Clone)]
pub struct Key {
    pub id: u8,
    pub created: u64,
    secret: [u8; 32],
    mac: hmac::Key,
}

impl std::fmt::Debug for Key {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn from_secret(id: u8, created: u64, secret: [u8; 32]) -> Self {
        Key {
            id,
            created,
            secret,
            mac: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    fn generate(id: u8, created: u64) -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| KeyError::Random)?;
        Ok(Key::from_secret(id, created, secret))
    }

    /// The first 16 bytes of HMAC-SHA256: 128 bits is beyond any forgery budget, and it keeps
    /// the cookie short.
    pub fn tag(&self, msg: &[u8]) -> [u8; 16] {
        let full = hmac::sign(&self.mac, msg);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_ref()[..16]);
        out
    }

    /// Compares in constant time, so the response time leaks nothing about a forged tag.
    pub fn check(&self, msg: &[u8], tag: &[u8]) -> bool {
        let want = self.tag(msg);
        moat_core::secret::token_eq(tag, &want)
    }
}

#[derive(Debug, Clone)]
pub struct KeyRing {
    current: Key,
    previous: Option<Key>,
}

impl KeyRing {
    pub fn generate(now: u64) -> Result<Self, KeyError> {
        Ok(KeyRing {
            current: Key::generate(0, now)?,
            previous: None,
        })
    }

    pub fn from_keys(current: Key, previous: Option<Key>) -> Self {
        KeyRing { current, previous }
    }

    pub fn current(&self) -> &Key {
        &self.current
    }

    /// The key a token names, if it is still live.
    pub fn get(&self, id: u8) -> Option<&Key> {
        if self.current.id == id {
            return Some(&self.current);
        }
        self.previous.as_ref().filter(|k| k.id == id)
    }

    pub fn needs_rotation(&self, now: u64, period_secs: u64) -> bool {
        now.saturating_sub(self.current.created) >= period_secs
    }

    /// A ring whose new current key signs from now on, with today's key kept for verifying.
    pub fn rotated(&self, now: u64) -> Result<Self, KeyError> {
        Ok(KeyRing {
            current: Key::generate(self.current.id.wrapping_add(1), now)?,
            previous: Some(self.current.clone()),
        })
    }

    pub fn to_text(&self) -> String {
        let mut s = String::from("# Moat proof keys: id created_unix secret. Keep private.\n");
        for k in std::iter::once(&self.current).chain(self.previous.as_ref()) {
            s.push_str(&format!("{} {} {}\n", k.id, k.created, hex(&k.secret)));
        }
        s
    }

    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |msg| KeyError::Parse { line: i + 1, msg };
            let mut parts = line.split_whitespace();
            let id = parts
                .next()
                .and_then(|p| p.parse::<u8>().ok())
                .ok_or(err("bad key id"))?;
            let created = parts
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or(err("bad creation time"))?;
            let secret = parts
                .next()
                .and_then(unhex32)
                .ok_or(err("the secret must be 64 hex digits"))?;
            if parts.next().is_some() {
                return Err(err("unexpected text after the secret"));
            }
            keys.push(Key::from_secret(id, created, secret));
        }
        let mut it = keys.into_iter();
        let current = it.next().ok_or(KeyError::Empty)?;
        Ok(KeyRing {
            current,
            previous: it.next(),
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_previous_key_for_verifying() {
        let r0 = KeyRing::generate(100).unwrap();
        let tag = r0.current().tag(b"hello");
        let r1 = r0.rotated(200).unwrap();
        assert_eq!(r1.current().id, 1);
        assert!(r1.get(0).unwrap().check(b"hello", &tag));
        let r2 = r1.rotated(300).unwrap();
        assert!(r2.get(0).is_none(), "two rotations retire a key");
        assert!(r1.needs_rotation(300, 100));
        assert!(!r1.needs_rotation(299, 100));
    }

    #[test]
    fn text_round_trip_and_errors() {
        let r = KeyRing::generate(5).unwrap().rotated(9).unwrap();
        let back = KeyRing::from_text(&r.to_text()).unwrap();
        assert_eq!(back.current().id, 1);
        let tag = r.get(0).unwrap().tag(b"m");
        assert!(back.get(0).unwrap().check(b"m", &tag));
        assert_eq!(
            KeyRing::from_text("# nothing\n").unwrap_err(),
            KeyError::Empty
        );
        assert!(matches!(
            KeyRing::from_text("1 2 zz\n"),
            Err(KeyError::Parse { line: 1, .. })
        ));
        assert!(format!("{:?}", r.current()).contains("id"));
        assert!(!format!("{:?}", r.current()).contains(&hex(&r.current().secret)));
    }

    #[test]
    fn a_tampered_tag_fails() {
        let r = KeyRing::generate(1).unwrap();
        let mut tag = r.current().tag(b"x");
        assert!(r.current().check(b"x", &tag));
        tag[3] ^= 1;
        assert!(!r.current().check(b"x", &tag));
        assert!(!r.current().check(b"x", &tag[..8]));
    }
}
