//! Parse errors that point at the offending spot.
//!
//! Rules are written by hand in config files, so an error must say *where* it is (line and
//! column, counted the way an editor counts them) and be printable with a caret under that spot.

use std::fmt::Write as _;

/// Why a rule expression could not be compiled, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
pub struct ParseError {
    pub message: String,
    /// Byte offset into the source.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (not bytes) so it matches what an editor shows.
    pub column: usize,
}

impl ParseError {
    /// An error at byte `offset` of `src`; line and column are derived here so that every
    /// caller reports positions the same way.
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        // Clamp onto a char boundary: offsets come from the lexer and are always boundaries,
        // but a wrong offset must never turn into a slicing panic.
        let mut offset = offset.min(src.len());
        while !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = src[line_start..offset].chars().count() + 1;
        ParseError {
            message: message.into(),
            offset,
            line,
            column,
        }
    }

    /// The offending source line with a caret under the column, e.g.
    ///
    /// ```text
    /// error: unknown field `http.usr_agent`
    ///   http.usr_agent contains "x"
    ///   ^
    /// ```
    pub fn render(&self, src: &str) -> String {
        let text = src
            .split('\n')
            .nth(self.line.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r');
        let mut out = format!("error: {}\n  {}\n  ", self.message, text);
        // Tabs are copied so the caret lines up whatever the terminal's tab width is.
        for c in text.chars().take(self.column.saturating_sub(1)) {
            out.push(if c == '\t' { '\t' } else { ' ' });
        }
        let _ = write!(out, "^");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_chars_not_bytes() {
        let src = "a\n\u{e9}\u{e9}x";
        let off = src.find('x').unwrap();
        let e = ParseError::at(src, off, "boom");
        assert_eq!((e.line, e.column, e.offset), (2, 3, off));
        assert_eq!(e.render(src), "error: boom\n  \u{e9}\u{e9}x\n    ^");
    }

    #[test]
    fn offset_past_end_and_inside_a_char_is_clamped() {
        let src = "\u{e9}";
        let e = ParseError::at(src, 1, "x");
        assert_eq!((e.offset, e.column), (0, 1));
        let e = ParseError::at(src, 99, "x");
        assert_eq!((e.offset, e.column), (2, 2));
    }

    #[test]
    fn render_keeps_tabs_and_drops_carriage_returns() {
        let src = "ssl and\r\n\tfoo";
        let e = ParseError::at(src, src.find("foo").unwrap(), "unknown field `foo`");
        assert_eq!(e.render(src), "error: unknown field `foo`\n  \tfoo\n  \t^");
        assert_eq!(e.to_string(), "unknown field `foo` at line 2, column 2");
    }
}
