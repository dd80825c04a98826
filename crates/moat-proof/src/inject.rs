//! Streaming injection of one `<script>` tag into an HTML body.
//!
//! The tag goes right after the opening `<head …>` tag, or at the very end when no head opens in
//! the first [`SEEK_LIMIT`] bytes. Right after `<head>` rather than before `</head>`: the text
//! `</head>` may appear inside an inline script or comment in the head, while nothing but the
//! doctype and `<html>` normally comes before the opening tag. Either way exactly one tag is
//! added, so a `Content-Length` simply grows by the tag's length and the response keeps
//! streaming. Only the few bytes that could begin `<head` are held back between chunks.

use bytes::{Bytes, BytesMut};

/// How far into a body the opening head tag is looked for.
const SEEK_LIMIT: usize = 64 * 1024;
/// A head tag longer than this is not one we trust to find the end of.
const TAG_LIMIT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for `<head`.
    Seeking,
    /// Inside the opening head tag, looking for its `>`; holds how far we have looked.
    InTag(usize),
    /// Gave up looking; the tag goes at the end.
    AtEnd,
    Done,
}

#[derive(Debug)]
pub struct Injector {
    tag: Bytes,
    state: State,
    /// Bytes held back because they could begin `<head`.
    carry: BytesMut,
    scanned: usize,
}

impl Injector {
    pub fn new(tag: Bytes) -> Self {
        Injector {
            tag,
            state: State::Seeking,
            carry: BytesMut::new(),
            scanned: 0,
        }
    }

    /// Feeds one chunk of the body; what may be sent now is appended to `out`.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        match self.state {
            State::Done | State::AtEnd => out.push(chunk),
            State::InTag(n) => self.in_tag(chunk, n, out),
            State::Seeking => {
                let data = if self.carry.is_empty() {
                    chunk
                } else {
                    self.carry.extend_from_slice(&chunk);
                    self.carry.split().freeze()
                };
                match seek(&data) {
                    Seek::Found(at) => {
                        out.push(data.slice(..at));
                        self.in_tag(data.slice(at..), 0, out);
                    }
                    Seek::Partial(at) => {
                        out.push(data.slice(..at));
                        self.carry.extend_from_slice(&data[at..]);
                        self.scanned += at;
                    }
                    Seek::None => {
                        self.scanned += data.len();
                        out.push(data);
                    }
                }
                if self.state == State::Seeking && self.scanned > SEEK_LIMIT {
                    self.state = State::AtEnd;
                    if !self.carry.is_empty() {
                        out.push(self.carry.split().freeze());
                    }
                }
            }
        }
    }

    /// `data` starts inside the opening head tag (or at its `<`).
    fn in_tag(&mut self, data: Bytes, looked: usize, out: &mut Vec<Bytes>) {
        match memchr::memchr(b'>', &data) {
            Some(i) => {
                out.push(data.slice(..=i));
                out.push(self.tag.clone());
                out.push(data.slice(i + 1..));
                self.state = State::Done;
            }
            None => {
                let looked = looked + data.len();
                out.push(data);
                self.state = if looked > TAG_LIMIT {
                    State::AtEnd
                } else {
                    State::InTag(looked)
                };
            }
        }
    }

    /// The body ended: flush what was held back and, if no head was found, add the tag last.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        if !self.carry.is_empty() {
            out.push(self.carry.split().freeze());
        }
        out.push(self.tag.clone());
    }

    pub fn tag_len(&self) -> usize {
        self.tag.len()
    }
}

enum Seek {
    /// `<head` followed by a delimiter starts here.
    Found(usize),
    /// Nothing found, but the bytes from here on could begin `<head…`.
    Partial(usize),
    None,
}

/// Finds `<head` followed by `>`, `/` or whitespace (so not `<header>`), in any case.
fn seek(data: &[u8]) -> Seek {
    const OPEN: &[u8] = b"<head";
    for i in memchr::memchr_iter(b'<', data) {
        let rest = &data[i..];
        if rest.len() <= OPEN.len() {
            if rest.eq_ignore_ascii_case(&OPEN[..rest.len()]) {
                return Seek::Partial(i);
            }
            continue;
        }
        if rest[..OPEN.len()].eq_ignore_ascii_case(OPEN)
            && matches!(
                rest[OPEN.len()],
                b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | 0x0c
            )
        {
            return Seek::Found(i);
        }
    }
    Seek::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut inj = Injector::new(Bytes::from_static(b"<script src=x></script>"));
        let mut out = Vec::new();
        for c in chunks {
            inj.push(Bytes::copy_from_slice(c), &mut out);
        }
        inj.finish(&mut out);
        out.concat()
    }

    #[test]
    fn after_the_head_tag_at_every_split_point() {
        let page = b"<!doctype html><html><header-x></header-x><HEAD lang=en><title>t</title><script>var s='</head>'</script></HeAd><body>hi</body></html>";
        let want = b"<!doctype html><html><header-x></header-x><HEAD lang=en><script src=x></script><title>t</title><script>var s='</head>'</script></HeAd><body>hi</body></html>";
        for i in 0..=page.len() {
            for j in i..=page.len() {
                let got = run(&[&page[..i], &page[i..j], &page[j..]]);
                assert_eq!(got, want.to_vec(), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn at_the_end_without_a_head_and_exactly_once() {
        assert_eq!(
            run(&[b"<p>x</p><header>", b"<hea"]),
            b"<p>x</p><header><hea<script src=x></script>"
        );
        assert_eq!(run(&[]), b"<script src=x></script>");
        assert_eq!(
            run(&[b"<head><head>"]),
            b"<head><script src=x></script><head>"
        );
    }

    #[test]
    fn little_is_held_back_and_long_pages_stop_being_scanned() {
        let mut inj = Injector::new(Bytes::from_static(b"T"));
        let mut out = Vec::new();
        inj.push(Bytes::from_static(b"0123456789<he"), &mut out);
        assert_eq!(out.concat(), b"0123456789");
        inj.push(Bytes::from_static(b"ad>rest"), &mut out);
        assert_eq!(out.concat(), b"0123456789<head>Trest");

        let mut inj = Injector::new(Bytes::from_static(b"T"));
        let mut out = Vec::new();
        let filler = Bytes::from(vec![b'a'; SEEK_LIMIT + 1]);
        inj.push(filler, &mut out);
        inj.push(Bytes::from_static(b"<head>"), &mut out);
        inj.finish(&mut out);
        let all = out.concat();
        assert!(
            all.ends_with(b"<head>T"),
            "appended at the end once past the limit"
        );
    }
}
