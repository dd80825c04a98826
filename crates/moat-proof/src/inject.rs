//! Streaming injection of one `<script>` tag into an HTML body.
//!
//! The tag goes before the first `</head>` (any case), or at the very end when the page has no
//! head; either way exactly one tag is added, so a `Content-Length` can simply grow by the
//! tag's length and the response keeps streaming. Only the last few bytes of each chunk are held
//! back, in case `</head>` straddles two chunks; nothing else is buffered.

use bytes::{Bytes, BytesMut};

const NEEDLE: &[u8] = b"</head>";

#[derive(Debug)]
pub struct Injector {
    tag: Bytes,
    done: bool,
    /// The tail of what was seen so far that could be the start of `</head>`.
    carry: BytesMut,
}

impl Injector {
    pub fn new(tag: Bytes) -> Self {
        Injector {
            tag,
            done: false,
            carry: BytesMut::new(),
        }
    }

    /// Feeds one chunk of the body; what may be sent now is appended to `out`.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        if self.done {
            out.push(chunk);
            return;
        }
        let data = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(&chunk);
            self.carry.split().freeze()
        };
        if let Some(at) = find_ci(&data, NEEDLE) {
            self.done = true;
            if at > 0 {
                out.push(data.slice(..at));
            }
            out.push(self.tag.clone());
            out.push(data.slice(at..));
            return;
        }
        let keep = partial_suffix(&data);
        let send = data.len() - keep;
        if send > 0 {
            out.push(data.slice(..send));
        }
        self.carry.extend_from_slice(&data[send..]);
    }

    /// The body ended: flush what was held back and, if no head was seen, add the tag last.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.carry.is_empty() {
            out.push(self.carry.split().freeze());
        }
        out.push(self.tag.clone());
    }

    pub fn tag_len(&self) -> usize {
        self.tag.len()
    }
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'<', hay).find(|&i| {
        hay.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// How many trailing bytes of `data` are a proper prefix of `</head>`.
fn partial_suffix(data: &[u8]) -> usize {
    (1..NEEDLE.len())
        .rev()
        .find(|&n| n <= data.len() && data[data.len() - n..].eq_ignore_ascii_case(&NEEDLE[..n]))
        .unwrap_or(0)
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
    fn before_the_head_end_at_every_split_point() {
        let page = b"<html><HEAD><title>t</title></HeAd><body>hi</body></html>";
        let want =
            b"<html><HEAD><title>t</title><script src=x></script></HeAd><body>hi</body></html>";
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
            run(&[b"<p>x</p>", b"</hea"]),
            b"<p>x</p></hea<script src=x></script>"
        );
        assert_eq!(run(&[]), b"<script src=x></script>");
        let two = run(&[b"</head></head>"]);
        assert_eq!(two, b"<script src=x></script></head></head>");
    }

    #[test]
    fn little_is_held_back() {
        let mut inj = Injector::new(Bytes::from_static(b"T"));
        let mut out = Vec::new();
        inj.push(Bytes::from_static(b"0123456789</he"), &mut out);
        assert_eq!(out.concat(), b"0123456789");
        inj.push(Bytes::from_static(b"ad>rest"), &mut out);
        assert_eq!(out.concat(), b"0123456789T</head>rest");
    }
}
