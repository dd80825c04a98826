//! The envelope challenges and clearance tokens share: a fixed-size payload whose first byte is
//! a format version and second the signing key's id, then the first 16 bytes of its
//! HMAC-SHA256, all in base64url without padding. Fixed sizes let a reader reject anything of
//! the wrong length before decoding, so an oversized cookie costs nothing.

use crate::keys::KeyRing;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

pub(crate) const TAG: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealError {
    Malformed,
    UnknownKey,
    BadMac,
}

/// Signs `buf[..payload]` with the current key (writing its id at `buf[1]` and the tag after
/// the payload) and encodes the whole.
pub(crate) fn seal(ring: &KeyRing, buf: &mut [u8], payload: usize) -> String {
    let key = ring.current();
    buf[1] = key.id;
    let tag = key.tag(&buf[..payload]);
    buf[payload..payload + TAG].copy_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(&buf[..payload + TAG])
}

/// Decodes `text` into `buf` (payload and tag, exactly) and checks the version and the tag.
pub(crate) fn unseal(
    ring: &KeyRing,
    text: &str,
    version: u8,
    buf: &mut [u8],
) -> Result<(), SealError> {
    let t = text.as_bytes();
    if t.len() != (buf.len() * 4).div_ceil(3) {
        return Err(SealError::Malformed);
    }
    match URL_SAFE_NO_PAD.decode_slice(t, buf) {
        Ok(n) if n == buf.len() => {}
        _ => return Err(SealError::Malformed),
    }
    if buf[0] != version {
        return Err(SealError::Malformed);
    }
    let key = ring.get(buf[1]).ok_or(SealError::UnknownKey)?;
    let payload = buf.len() - TAG;
    if !key.check(&buf[..payload], &buf[payload..]) {
        return Err(SealError::BadMac);
    }
    Ok(())
}
