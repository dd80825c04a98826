//! Splitting a byte stream into lines, with the stream offset after each line.
//!
//! Kept free of I/O so that files, the journal's JSON stream and stdin share one splitter and
//! so that it can be unit-tested and fuzzed on its own.

/// The line length cap used when the caller has no reason to pick another: long enough for any
/// real log line (syslog's own limit is 8 KiB, journald's 48 KiB), short enough that garbage
/// without newlines cannot grow memory without bound.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Collecting the current line into the buffer.
    Normal,
    /// The current line passed the cap: the buffer holds its first `max_line` bytes, the rest
    /// is dropped up to the newline, and the cut line is emitted then.
    Cut,
    /// The current line is dropped entirely up to the newline: we started in the middle of it,
    /// so its head is not ours to parse.
    Discard,
}

/// Splits bytes on `\n`, removes a trailing `\r`, and keeps at most `max_line` bytes of a
/// line.
///
/// An unfinished line stays buffered until its newline arrives, since a writer may be in the
/// middle of appending it; [`LineSplitter::finish`] emits it when the stream is known to be
/// complete (a rotated file, stdin at EOF).
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
    mode: Mode,
    /// Stream offset of the next byte to be pushed.
    offset: u64,
}

impl LineSplitter {
    /// A splitter whose first pushed byte is at `offset` in the stream.
    pub fn new(max_line: usize, offset: u64) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max_line: max_line.max(1),
            mode: Mode::Normal,
            offset,
        }
    }

    /// Starts over at `offset`, dropping whatever was buffered.
    pub fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.mode = Mode::Normal;
        self.offset = offset;
        if self.buf.capacity() > self.max_line.min(64 * 1024) {
            // One long line must not pin its buffer for the life of the tail.
            self.buf.shrink_to(4096);
        }
    }

    /// Drops the bytes up to and including the next newline without emitting them.
    pub fn discard_first_line(&mut self) {
        self.buf.clear();
        self.mode = Mode::Discard;
    }

    /// Stream offset after the last byte pushed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether bytes of an unfinished line are held (or being skipped).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.mode != Mode::Normal
    }

    /// Feeds `chunk`; `emit` gets each complete line (without `\n` or a trailing `\r`) and the
    /// stream offset just after its newline.
    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(&[u8], u64)) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let end = self.offset + nl as u64 + 1;
            let piece = &rest[..nl];
            match self.mode {
                Mode::Normal if self.buf.is_empty() => {
                    // The common case: the whole line is in this chunk, no copy.
                    emit(trim_cr(&piece[..piece.len().min(self.max_line)]), end);
                }
                Mode::Normal | Mode::Cut => {
                    self.take(piece);
                    emit(trim_cr(&self.buf), end);
                }
                Mode::Discard => {}
            }
            self.buf.clear();
            self.mode = Mode::Normal;
            self.offset = end;
            rest = &rest[nl + 1..];
        }
        if self.mode != Mode::Discard {
            self.take(rest);
        }
        self.offset += rest.len() as u64;
    }

    /// Emits the unfinished line, if any, as a line of its own: the stream has ended.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], u64)) {
        if self.mode != Mode::Discard && !self.buf.is_empty() {
            emit(trim_cr(&self.buf), self.offset);
        }
        self.buf.clear();
        self.mode = Mode::Normal;
    }

    /// Appends to the buffer up to the cap, switching to `Cut` when the cap is passed.
    fn take(&mut self, bytes: &[u8]) {
        let room = self.max_line - self.buf.len();
        if bytes.len() > room {
            self.buf.extend_from_slice(&bytes[..room]);
            self.mode = Mode::Cut;
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Lossy UTF-8: a log line with a stray invalid byte is still worth matching.
pub fn to_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> (Vec<(String, u64)>, LineSplitter) {
        let mut s = LineSplitter::new(max, 0);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, end| out.push((to_text(l), end)));
        }
        (out, s)
    }

    #[test]
    fn lines_across_chunks_with_offsets() {
        let (out, s) = split(100, &[b"ab\r\ncd", b"e\nf", b"g\n\nh"]);
        let want = [("ab", 4), ("cde", 8), ("fg", 11), ("", 12)];
        let got: Vec<(&str, u64)> = out.iter().map(|(t, e)| (t.as_str(), *e)).collect();
        assert_eq!(got, want);
        assert_eq!(s.offset(), 13);
        assert!(s.has_partial());
    }

    #[test]
    fn partial_line_only_on_finish() {
        let (out, mut s) = split(100, &[b"one\ntw", b"o"]);
        assert_eq!(out.len(), 1);
        let mut fin = Vec::new();
        s.finish(|l, end| fin.push((to_text(l), end)));
        assert_eq!(fin, vec![("two".to_string(), 7)]);
        s.finish(|_, _| panic!("nothing left"));
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let (out, s) = split(4, &[b"abcdefgh", b"ijk\nxy\n123456\n"]);
        let got: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(got, ["abcd", "xy", "1234"]);
        assert_eq!(out[0].1, 12);
        assert!(s.buf.capacity() <= 16);
    }

    #[test]
    fn discard_drops_the_head_of_a_line() {
        let mut s = LineSplitter::new(100, 50);
        s.discard_first_line();
        let mut out = Vec::new();
        s.push(b"tail of old\nnew\n", |l, end| out.push((to_text(l), end)));
        assert_eq!(out, vec![("new".to_string(), 66)]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (out, _) = split(100, &[b"a\xffb\n"]);
        assert_eq!(out[0].0, "a\u{fffd}b");
    }
}
