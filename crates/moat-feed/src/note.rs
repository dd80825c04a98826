//! Keys and signed notes in the C2SP `signed-note` format (the one Go's checksum database and
//! transparency logs use), with Ed25519:
//!
//! - a note is UTF-8 text ending in a newline, then a blank line, then one line per signature:
//!   `— NAME BASE64(KEYHASH[4] || SIGNATURE[64])`;
//! - the key hash is the first 4 bytes of SHA-256(NAME || "\n" || 0x01 || PUBLIC_KEY);
//! - a verifier key is written `NAME+HEX8(KEYHASH)+BASE64(0x01 || PUBLIC_KEY)`, a signer key
//!   `PRIVATE+KEY+NAME+HEX8(KEYHASH)+BASE64(0x01 || SEED)`.
//!
//! Written here rather than taken from a crate: the format is a page long, ring (already in the
//! tree for TLS) does the Ed25519, and the notes crates on crates.io pull in a second Ed25519.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// Ed25519's algorithm byte in C2SP keys.
const ALG_ED25519: u8 = 0x01;
/// Signature lines start with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// A note longer than this is refused before parsing (a head lists a few dozen files).
pub const MAX_NOTE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("key: {0}")]
    Key(String),
    #[error("note: {0}")]
    Malformed(String),
    #[error("no signature by {0}'s key")]
    Unsigned(String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

/// A key name: what a note's signature line names, and a feed's origin.
pub fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name.len() > 128
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(NoteError::Key(format!(
            "name {name:?}: 1 to 128 characters, without spaces or `+`"
        )));
    }
    Ok(())
}

fn key_hash(name: &str, public: &[u8]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public);
    let d = ctx.finish();
    u32::from_be_bytes([d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]])
}

/// A public key a subscriber pins.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    hash: u32,
    public: [u8; 32],
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.hash, B64.encode(raw))
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = NoteError;
    /// `NAME+HASH+KEY`, checked: the hash must be the one of the name and key.
    fn from_str(s: &str) -> Result<Self, NoteError> {
        let s = s.trim();
        let bad = |why: &str| {
            NoteError::Key(format!(
                "{why} (expected NAME+HASH+KEY as `moat keys show` prints it)"
            ))
        };
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not a verifier key"));
        };
        check_name(name)?;
        let hash = (hash.len() == 8)
            .then(|| u32::from_str_radix(hash, 16).ok())
            .flatten()
            .ok_or_else(|| bad("the key hash is not 8 hex digits"))?;
        let raw = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, rest)) => rest
                .try_into()
                .map_err(|_| bad("not a 32-byte Ed25519 key"))?,
            _ => return Err(bad("not an Ed25519 key")),
        };
        if key_hash(name, &public) != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(VerifierKey {
            name: name.to_string(),
            hash,
            public,
        })
    }
}

impl VerifierKey {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The note's text if `note` carries a valid signature by this key (other signatures,
    /// such as a witness's, are ignored).
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, sigs) = split(note)?;
        let mut seen = false;
        for line in sigs.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
                NoteError::Malformed("a signature line must start with `— `".into())
            })?;
            let (name, sig) = rest.split_once(' ').ok_or_else(|| {
                NoteError::Malformed("a signature line is `— NAME SIGNATURE`".into())
            })?;
            let raw = B64
                .decode(sig)
                .map_err(|_| NoteError::Malformed("a signature is not base64".into()))?;
            if name != self.name || raw.len() != 68 || raw[..4] != self.hash.to_be_bytes() {
                continue;
            }
            seen = true;
            if UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &raw[4..])
                .is_ok()
            {
                return Ok(text);
            }
        }
        Err(if seen {
            NoteError::BadSignature(self.name.clone())
        } else {
            NoteError::Unsigned(self.name.clone())
        })
    }
}

/// The text (up to and with its last newline) and the signature block.
fn split(note: &str) -> Result<(&str, &str), NoteError> {
    if note.len() > MAX_NOTE {
        return Err(NoteError::Malformed(format!(
            "longer than {MAX_NOTE} bytes"
        )));
    }
    let at = note
        .rfind("\n\n")
        .ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
    let (text, sigs) = (&note[..at + 1], &note[at + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("no signature lines".into()));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed(
            "control characters in the text".into(),
        ));
    }
    Ok((text, sigs))
}

/// An instance's signing key. Its text form holds the secret seed: keep it 0600.
pub struct SignerKey {
    name: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl SignerKey {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<SignerKey, NoteError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| NoteError::Key("no randomness from the system".into()))?;
        Self::from_seed(name, seed)
    }

    /// The key made from `seed`: for tests and fuzz seeds that need the same key every run.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, NoteError> {
        check_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::Key("not an Ed25519 seed".into()))?;
        Ok(SignerKey {
            name: name.to_string(),
            seed,
            pair,
        })
    }

    /// Reads `PRIVATE+KEY+NAME+HASH+KEY`.
    pub fn parse(s: &str) -> Result<SignerKey, NoteError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::Key("not a signer key (PRIVATE+KEY+…)".into()))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key("not a signer key".into()));
        };
        check_name(name)?;
        let raw = B64
            .decode(key)
            .map_err(|_| NoteError::Key("the signer key is not base64".into()))?;
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, rest)) => rest
                .try_into()
                .map_err(|_| NoteError::Key("not a 32-byte Ed25519 seed".into()))?,
            _ => return Err(NoteError::Key("not an Ed25519 signer key".into())),
        };
        let k = Self::from_seed(name, seed)?;
        if format!("{:08x}", k.verifier().hash) != hash {
            return Err(NoteError::Key("the key hash does not match".into()));
        }
        Ok(k)
    }

    /// The text form, secret included.
    pub fn to_secret_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}\n",
            self.name,
            self.verifier().hash,
            B64.encode(raw)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> VerifierKey {
        let public: [u8; 32] = self
            .pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("Ed25519 public keys are 32 bytes");
        VerifierKey {
            hash: key_hash(&self.name, &public),
            name: self.name.clone(),
            public,
        }
    }

    /// `text` (which must end in a newline and hold no blank line at its end) signed.
    pub fn sign(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
        let sig = self.pair.sign(text.as_bytes());
        let mut raw = self.verifier().hash.to_be_bytes().to_vec();
        raw.extend_from_slice(sig.as_ref());
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_verifies_under_its_key_only() {
        let k = SignerKey::generate("alice.example").unwrap();
        let note = k.sign("hello\nworld\n");
        assert_eq!(k.verifier().open(&note).unwrap(), "hello\nworld\n");
        let vkey: VerifierKey = k.verifier().to_string().parse().unwrap();
        assert_eq!(vkey, k.verifier());
        assert_eq!(vkey.open(&note).unwrap(), "hello\nworld\n");

        let other = SignerKey::generate("alice.example").unwrap();
        assert!(matches!(
            other.verifier().open(&note),
            Err(NoteError::Unsigned(_))
        ));
        let tampered = note.replace("world", "worle");
        assert!(matches!(
            k.verifier().open(&tampered),
            Err(NoteError::BadSignature(_))
        ));
    }

    #[test]
    fn the_secret_text_round_trips_and_checks_its_hash() {
        let k = SignerKey::generate("bob").unwrap();
        let back = SignerKey::parse(&k.to_secret_text()).unwrap();
        assert_eq!(back.verifier(), k.verifier());
        let broken = k.to_secret_text().replacen("+bob+", "+bobby+", 1);
        assert!(SignerKey::parse(&broken).is_err());
    }

    #[test]
    fn malformed_keys_and_notes_are_errors() {
        for bad in [
            "",
            "a+b",
            "a+zzzzzzzz+AAAA",
            "a b+00000000+AQ==",
            "x+00000000+AQ==",
        ] {
            assert!(bad.parse::<VerifierKey>().is_err(), "{bad}");
        }
        let k = SignerKey::generate("n").unwrap();
        assert!(k.verifier().open("no signatures\n").is_err());
        assert!(k.verifier().open("text\n\n— n !!!\n").is_err());
        assert!(k.verifier().open("te\u{7}xt\n\n— n AAAA\n").is_err());
    }
}
