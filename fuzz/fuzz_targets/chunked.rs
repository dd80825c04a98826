//! Where a chunked body ends (`crates/moat-http/src/fast/chunked.rs`), on arbitrary bytes fed in
//! pieces where the input says. Beyond "never panics":
//!
//! - the verdict (the body ends after byte `n`, more is needed, or the framing is bad) does not
//!   depend on where the pieces split: fed whole, in the input's pieces, or byte by byte;
//! - a piece's reported end is within that piece (never more than was fed), and `done()` is
//!   false until then and sticky after: what follows is refused and leaves it done;
//! - the verdict is a small reference decoder's: the RFC 9112 §7.1 grammar with the
//!   implementation's documented leniency (any bytes in a chunk extension or a trailer line up
//!   to its CR, at most 15 size digits) must agree exactly, and a strict decoder of the RFC's
//!   grammar (extension tokens and quoted strings, `name: value` trailer lines) must never find
//!   an end or a valid prefix the implementation disagrees with.
//!
//! Input: a control byte (bits 0-2: a number of splits; bit 7: also feed byte by byte), that
//! many big-endian u16 split offsets, then the body.
//!
//! `chunked.rs` is compiled into this target by path (the fast path's modules are private to
//! `moat-http`). The same file runs on stable as a plain test
//! (`crates/moat-http/tests/parser_garbage.rs`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

#[allow(dead_code)]
#[path = "../../crates/moat-http/src/fast/chunked.rs"]
pub mod fast_chunked;

use fast_chunked::Chunked;

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// A verdict on a whole stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The body ends after this many bytes.
    End(usize),
    /// Valid so far; more is needed.
    More,
    Bad,
    /// Only from the strict decoder: a size with more digits than the implementation takes.
    Limit,
}

/// Feeds `stream` in pieces ending at `cuts` (ascending, the last one `stream.len()`), checking
/// the per-piece promises, and returns the verdict.
fn feed(stream: &[u8], cuts: &[usize]) -> Verdict {
    let mut c = Chunked::default();
    let mut from = 0;
    for &cut in cuts {
        let piece = &stream[from..cut];
        assert!(!c.done());
        match c.feed(piece) {
            Ok(Some(n)) => {
                assert!(
                    n >= 1 && n <= piece.len(),
                    "end {n} of a {}-byte piece",
                    piece.len()
                );
                assert!(c.done());
                // Sticky: it stays done, and the body does not end a second time.
                assert_eq!(c.feed(&[]), Ok(None));
                assert!(c.done());
                let after = if n < piece.len() {
                    &piece[n..]
                } else {
                    b"0\r\n\r\n"
                };
                assert!(!matches!(c.feed(after), Ok(Some(_))));
                assert!(c.done());
                return Verdict::End(from + n);
            }
            Ok(None) => assert!(!c.done()),
            Err(_) => {
                assert!(!c.done());
                return Verdict::Bad;
            }
        }
        from = cut;
    }
    Verdict::More
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The RFC 9112 §7.1 chunked grammar over a whole stream. `strict`: the RFC's extension and
/// trailer grammar, sizes of any length (`Limit` past 15 digits); otherwise the leniency the
/// implementation documents: an extension is anything from `;`, SP or HTAB after the size up
/// to its CR, a trailer line anything up to its CR, and a 16th size digit is bad.
pub fn reference(s: &[u8], strict: bool) -> Verdict {
    use Verdict::*;
    let mut pos = 0;
    // Each `need!` returns More at the end of the stream: everything so far was valid.
    macro_rules! need {
        () => {
            if pos >= s.len() {
                return More;
            }
        };
    }
    macro_rules! expect {
        ($b:expr) => {
            need!();
            if s[pos] != $b {
                return Bad;
            }
            pos += 1;
        };
    }
    let ows = |pos: &mut usize| {
        while *pos < s.len() && (s[*pos] == b' ' || s[*pos] == b'\t') {
            *pos += 1;
        }
    };
    loop {
        // chunk-size
        let start = pos;
        let mut size: u64 = 0;
        let mut limited = false;
        while pos < s.len() && s[pos].is_ascii_hexdigit() {
            if pos - start == 15 {
                if !strict {
                    return Bad;
                }
                limited = true;
            }
            if !limited {
                size = size * 16 + u64::from((s[pos] as char).to_digit(16).unwrap());
            }
            pos += 1;
        }
        if limited {
            return Limit;
        }
        need!();
        if pos == start {
            return Bad;
        }
        // chunk-ext, then CRLF
        if strict {
            loop {
                need!();
                if s[pos] == b'\r' {
                    break;
                }
                ows(&mut pos);
                expect!(b';');
                ows(&mut pos);
                need!();
                if !is_tchar(s[pos]) {
                    return Bad;
                }
                while pos < s.len() && is_tchar(s[pos]) {
                    pos += 1;
                }
                need!();
                let before = pos;
                ows(&mut pos);
                need!();
                if s[pos] == b'=' {
                    pos += 1;
                    ows(&mut pos);
                    need!();
                    if s[pos] == b'"' {
                        pos += 1;
                        loop {
                            need!();
                            match s[pos] {
                                b'"' => {
                                    pos += 1;
                                    break;
                                }
                                b'\\' => {
                                    pos += 1;
                                    need!();
                                    let q = s[pos];
                                    if !(q == b'\t'
                                        || q == b' '
                                        || q.is_ascii_graphic()
                                        || q >= 0x80)
                                    {
                                        return Bad;
                                    }
                                    pos += 1;
                                }
                                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80.. => {
                                    pos += 1
                                }
                                _ => return Bad,
                            }
                        }
                    } else {
                        if !is_tchar(s[pos]) {
                            return Bad;
                        }
                        while pos < s.len() && is_tchar(s[pos]) {
                            pos += 1;
                        }
                    }
                } else if pos > before && s[pos] != b';' {
                    // Whitespace after a name is only allowed before `=` or the next `;`.
                    return Bad;
                }
            }
        } else if matches!(s[pos], b';' | b' ' | b'\t') {
            while pos < s.len() && s[pos] != b'\r' {
                if s[pos] == b'\n' {
                    return Bad;
                }
                pos += 1;
            }
        }
        expect!(b'\r');
        expect!(b'\n');
        if size == 0 {
            break;
        }
        // chunk-data CRLF
        if ((s.len() - pos) as u64) < size {
            return More;
        }
        pos += size as usize;
        expect!(b'\r');
        expect!(b'\n');
    }
    // trailer-section CRLF
    loop {
        need!();
        if s[pos] == b'\r' {
            pos += 1;
            expect!(b'\n');
            return End(pos);
        }
        if strict {
            // field-name ":" OWS field-value OWS
            if !is_tchar(s[pos]) {
                return Bad;
            }
            while pos < s.len() && is_tchar(s[pos]) {
                pos += 1;
            }
            expect!(b':');
            while pos < s.len() && s[pos] != b'\r' {
                let b = s[pos];
                if !(b == b' ' || b == b'\t' || b.is_ascii_graphic() || b >= 0x80) {
                    return Bad;
                }
                pos += 1;
            }
        } else {
            while pos < s.len() && s[pos] != b'\r' {
                if s[pos] == b'\n' {
                    return Bad;
                }
                pos += 1;
            }
        }
        expect!(b'\r');
        expect!(b'\n');
    }
}

pub fn run(data: &[u8]) -> Verdict {
    let Some((&ctl, rest)) = data.split_first() else {
        return Verdict::More;
    };
    let splits = usize::from(ctl & 7);
    if rest.len() < 2 * splits {
        return Verdict::More;
    }
    let (head, stream) = rest.split_at(2 * splits);
    let mut cuts: Vec<usize> = head
        .chunks(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());

    let whole = feed(stream, &[stream.len()]);
    assert_eq!(feed(stream, &cuts), whole, "split at {cuts:?}");
    if ctl & 0x80 != 0 {
        let every: Vec<usize> = (1..=stream.len()).collect();
        assert_eq!(feed(stream, &every), whole, "byte by byte");
    }
    assert_eq!(reference(stream, false), whole, "the lenient reference");
    match reference(stream, true) {
        Verdict::End(n) => assert_eq!(whole, Verdict::End(n), "a strictly valid body"),
        Verdict::More => assert_eq!(whole, Verdict::More, "a strictly valid prefix"),
        Verdict::Bad | Verdict::Limit => {}
    }
    whole
}

/// Realistic and edge bodies, each as a fuzz input (no splits, three splits, or byte by
/// byte): the seeds in `fuzz/seeds/chunked`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let bodies: &[(&str, &[u8])] = &[
        ("one-chunk", b"5\r\nhello\r\n0\r\n\r\n"),
        (
            "then-next-response",
            b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
        ),
        (
            "extensions",
            b"5;name=value;q=\"a \\\"b\\\"\"\r\nhello\r\n0;last\r\n\r\n",
        ),
        ("extension-bws", b"3 ; a = b\r\nabc\r\n0\r\n\r\n"),
        (
            "trailers",
            b"3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nServer-Timing: db;dur=53\r\n\r\n",
        ),
        (
            "uppercase-hex",
            b"1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
        ),
        ("leading-zeros", b"0005\r\nhello\r\n000\r\n\r\n"),
        ("crlf-in-data", b"7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n"),
        ("largest-size", b"fffffffffffffff\r\n"),
        ("sixteen-digits", b"0000000000000001\r\nx\r\n0\r\n\r\n"),
        ("bare-lf", b"5\nhello\n0\n\n"),
        ("missing-crlf-after-data", b"5\r\nhelloX\r\n"),
        ("lf-in-extension", b"3;ext\nabc\r\n"),
        ("lf-in-trailer", b"0\r\nX: 1\n\r\n"),
        ("no-size", b"\r\n"),
        ("not-hex", b"x\r\n"),
        ("incomplete-data", b"10\r\nshort"),
        ("empty", b""),
    ];
    let mut out = Vec::new();
    for (i, (name, body)) in bodies.iter().enumerate() {
        let mut plain = vec![0u8];
        plain.extend_from_slice(body);
        out.push((format!("{:02}-{name}", 3 * i), plain));
        let mut split = vec![3u8];
        for cut in [1usize, body.len() / 2, body.len().saturating_sub(2)] {
            split.extend_from_slice(&(cut as u16).to_be_bytes());
        }
        split.extend_from_slice(body);
        out.push((format!("{:02}-{name}-split", 3 * i + 1), split));
        let mut bytes = vec![0x80u8];
        bytes.extend_from_slice(body);
        out.push((format!("{:02}-{name}-bytes", 3 * i + 2), bytes));
    }
    out
}
