//! fail2ban's `maxlines` > 1, its older way to match failures that span lines: the last
//! `maxlines` lines (each without its date) are kept, and the regexes (compiled multi-line,
//! `^` and `$` at every line) run on them joined by newlines. The lines a failure matched are
//! then dropped, so that they count once; lines a `<SKIPLINES>` stepped over stay for later
//! failures (fail2ban's `getUnmatchedTupleLines`).

use std::collections::VecDeque;
use std::ops::Range;

/// Most lines kept, whatever a filter says: every line joins all kept ones (up to 64 KiB
/// each) for the regexes, so a `maxlines` of a million would cost memory and time without
/// bound. fail2ban's own filters ask for 2 to 20.
const MAX_LINES: usize = 100;

/// The lines kept for a filter with `maxlines` > 1.
pub(super) struct Buffer {
    max: usize,
    lines: VecDeque<String>,
}

impl Buffer {
    pub(super) fn new(max: usize) -> Buffer {
        Buffer {
            max: max.min(MAX_LINES),
            lines: VecDeque::new(),
        }
    }

    /// The same `maxlines`, nothing kept (for another log stream).
    pub(super) fn fresh(&self) -> Buffer {
        Buffer::new(self.max)
    }

    /// Adds a line (without its date and newline), forgetting the oldest beyond `maxlines`,
    /// and writes all of them joined into `out`, each ending with a newline.
    pub(super) fn push(&mut self, line: &str, out: &mut String) {
        self.lines.push_back(line.to_string());
        while self.lines.len() > self.max {
            self.lines.pop_front();
        }
        out.clear();
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
    }

    /// The `prefregex`'s `<F-CONTENT>` replaces what is kept, as in fail2ban.
    pub(super) fn replace(&mut self, content: &str) {
        self.lines.clear();
        self.lines.push_back(content.to_string());
    }

    /// Drops the lines `matched` covers but those a `<SKIPLINES>` stepped over (`skipped`,
    /// the texts of the lines it captured), which stay in their order after the lines before.
    pub(super) fn spend(&mut self, matched: Range<usize>, skipped: &[&str]) {
        let end = matched.end.min(self.lines.len());
        let start = matched.start.min(end);
        let mut inside: Vec<String> = self.lines.drain(start..end).collect();
        let mut kept = Vec::new();
        let mut from = 0;
        for s in skipped {
            if let Some(m) = inside[from.min(inside.len())..].iter().position(|l| l == s) {
                kept.push(inside.remove(from + m));
                from += m;
            }
        }
        for (i, l) in kept.into_iter().enumerate() {
            self.lines.insert(start + i, l);
        }
    }
}

/// The lines (by index) of `subject`, newline-terminated lines, that a match from byte
/// `start` to `end` touches: from the line holding `start` to the one holding the byte
/// before `end`, as fail2ban counts them.
pub(super) fn lines_of(subject: &str, start: usize, end: usize) -> Range<usize> {
    let b = subject.as_bytes();
    let first_line_start = b[..(start + 1).min(b.len())]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1);
    let from = end.saturating_sub(1).min(b.len());
    let last_line_end = b[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| from + p + 1);
    let count = |upto: usize| b[..upto].iter().filter(|&&c| c == b'\n').count();
    count(first_line_start)..count(last_line_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_joined() {
        let mut b = Buffer::new(3);
        let mut out = String::new();
        for l in ["a", "b", "c", "d"] {
            b.push(l, &mut out);
        }
        assert_eq!(out, "b\nc\nd\n");
        let mut b = Buffer::new(usize::MAX);
        for i in 0..1000 {
            b.push(&i.to_string(), &mut out);
        }
        assert_eq!(b.lines.len(), MAX_LINES);
    }

    #[test]
    fn a_match_spends_its_lines_but_the_skipped_ones() {
        let mut b = Buffer::new(10);
        let mut out = String::new();
        for l in ["x", "open 1", "noise", "other", "close 1", "y"] {
            b.push(l, &mut out);
        }
        // "open 1\nnoise\nother\nclose 1" matched, `<SKIPLINES>` took "noise" and "other".
        let start = out.find("open").unwrap();
        let end = out.find("close 1").unwrap() + "close 1".len();
        let range = lines_of(&out, start, end);
        assert_eq!(range, 1..5);
        b.spend(range, &["noise", "other"]);
        b.push("z", &mut out);
        assert_eq!(out, "x\nnoise\nother\ny\nz\n");
    }

    #[test]
    fn lines_of_counts_as_fail2ban_does() {
        let s = "ab\ncd\nef\n";
        assert_eq!(lines_of(s, 0, 2), 0..1);
        assert_eq!(lines_of(s, 3, 5), 1..2);
        // A match that ends with a line's newline stays on that line.
        assert_eq!(lines_of(s, 3, 6), 1..2);
        assert_eq!(lines_of(s, 1, 7), 0..3);
        assert_eq!(lines_of(s, 9, 9), 3..3);
    }
}
