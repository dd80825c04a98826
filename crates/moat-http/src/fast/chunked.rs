//! Where a chunked body ends (RFC 9112 §7.1), found while its bytes are relayed unchanged.
//!
//! The fast path does not decode a chunked response: it passes the bytes on as they came and
//! only needs to know where the body ends, so that the upstream connection can serve the next
//! request and the client is never sent a byte of the one after. Malformed framing is an
//! error: the relay then closes both connections, as a proxy must when it cannot tell where a
//! message ends.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size; `digits` read so far.
    Size {
        digits: u8,
    },
    /// A chunk extension, up to the CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer line, or the CR of the final empty line.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body from the upstream")]
pub struct ChunkError;

/// The chunk-size digits accepted: 15 hex digits is far beyond any body, and cannot overflow.
const MAX_DIGITS: u8 = 15;

#[derive(Debug)]
pub struct Chunked {
    state: State,
    remaining: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { digits: 0 },
            remaining: 0,
        }
    }
}

impl Chunked {
    /// Takes the next bytes of the body. `Ok(Some(n))`: the body ends after the first `n` of
    /// them (the rest belongs to whatever follows); `Ok(None)`: all of them are body, and more
    /// is to come.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ChunkError> {
        let mut i = 0;
        while i < data.len() {
            if self.state == State::Data {
                let take = (self.remaining.min((data.len() - i) as u64)) as usize;
                self.remaining -= take as u64;
                i += take;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size { digits }, _) if b.is_ascii_hexdigit() => {
                    if digits >= MAX_DIGITS {
                        return Err(ChunkError);
                    }
                    let d = (b as char).to_digit(16).ok_or(ChunkError)? as u64;
                    self.remaining = self.remaining * 16 + d;
                    State::Size { digits: digits + 1 }
                }
                (State::Size { digits }, b';' | b' ' | b'\t') if digits > 0 => State::Extension,
                (State::Size { digits }, b'\r') if digits > 0 => State::SizeLf,
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, b'\n') => return Err(ChunkError),
                (State::Extension, _) => State::Extension,
                (State::SizeLf, b'\n') if self.remaining == 0 => State::TrailerStart,
                (State::SizeLf, b'\n') => State::Data,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size { digits: 0 },
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart, b'\n') => return Err(ChunkError),
                (State::TrailerStart, _) => State::Trailer,
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::Trailer, b'\n') => return Err(ChunkError),
                (State::Trailer, _) => State::Trailer,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(Some(i));
                }
                _ => return Err(ChunkError),
            };
        }
        Ok(None)
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of every size from 1 up, and checks each finds the same end.
    fn end_of(body: &[u8]) -> Result<Option<usize>, ChunkError> {
        let mut first = None;
        for step in 1..=body.len().max(1) {
            let mut c = Chunked::default();
            let mut at = 0;
            let mut end = None;
            for piece in body.chunks(step) {
                match c.feed(piece)? {
                    Some(n) => {
                        end = Some(at + n);
                        break;
                    }
                    None => at += piece.len(),
                }
            }
            if step == 1 {
                first = Some(end);
            } else {
                assert_eq!(Some(end), first, "piece size {step}");
            }
        }
        Ok(first.flatten())
    }

    #[test]
    fn finds_the_end_whatever_the_pieces() {
        let body = b"5\r\nhello\r\nA;name=x\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1";
        assert_eq!(end_of(body), Ok(Some(body.len() - 14)));
        let with_trailers = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\nrest";
        assert_eq!(end_of(with_trailers), Ok(Some(with_trailers.len() - 4)));
        assert_eq!(end_of(b"0\r\n\r\n"), Ok(Some(5)));
        assert_eq!(end_of(b"fF\r\n"), Ok(None), "255 bytes still to come");
    }

    #[test]
    fn a_chunk_can_hold_anything() {
        let mut body = b"7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n".to_vec();
        let end = body.len();
        body.extend_from_slice(b"junk");
        assert_eq!(end_of(&body), Ok(Some(end)));
    }

    #[test]
    fn malformed_framing_is_an_error() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\r",
            b"1234567890abcdef0\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"3;ext\n",
        ] {
            assert_eq!(
                end_of(bad),
                Err(ChunkError),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_largest_size_does_not_overflow() {
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"fffffffffffffff\r\n"), Ok(None));
        assert!(!c.done());
    }
}
