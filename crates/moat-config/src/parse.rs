//! TOML text to the raw serde model, with every table's structural error (unknown field, wrong
//! type) reported in one pass.

use crate::errors::{line_col, ConfigError, ConfigErrors};

/// Deserializes `src`, reporting the structural errors (unknown fields, wrong types) of every
/// table at once: serde stops at the first error, so after each one the table holding it is
/// blanked out (spaces, so offsets and lines stay put) and the text parsed again. Every table
/// of the model is optional, so blanking one cannot invent a "missing" error elsewhere. A TOML
/// syntax error stops the loop: what follows it cannot be trusted.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &str,
    src: &str,
) -> Result<T, ConfigErrors> {
    let mut text = src.to_string();
    let mut errors = Vec::new();
    for _ in 0..64 {
        let e = match toml::from_str::<T>(&text) {
            Ok(v) if errors.is_empty() => return Ok(v),
            Ok(_) => break,
            Err(e) => e,
        };
        let span = e.span();
        let at = span.clone().unwrap_or(0..0);
        let (line, column) = line_col(src, at.start);
        let token = src.get(at.clone()).unwrap_or("").trim();
        let field = if token.is_empty() || token.len() > 40 || token.contains('\n') {
            "-".to_string()
        } else {
            token.to_string()
        };
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            column,
            field,
            message: message(&e, &text, at.start),
        });
        let syntax = toml::from_str::<toml::Table>(&text).is_err();
        match span {
            Some(sp) if !syntax => blank_table_around(&mut text, sp.start),
            _ => break,
        }
    }
    Err(ConfigErrors(errors))
}

/// The error's message; toml gives none for some syntax errors (a lone carriage return), so
/// then what is at the spot is named instead of printing an empty message.
fn message(e: &toml::de::Error, text: &str, at: usize) -> String {
    let m = e.message().trim();
    if !m.is_empty() {
        return m.to_string();
    }
    match text.get(at..).and_then(|t| t.chars().next()) {
        Some(c) => format!("invalid TOML: unexpected {c:?}"),
        None => "invalid TOML: unexpected end of text".to_string(),
    }
}

/// Replaces the table (from its `[header]` line to the next header) around `offset` with
/// spaces; before the first header, only the line at `offset`.
fn blank_table_around(text: &mut String, offset: usize) {
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let mut starts = Vec::new();
    let mut pos = 0;
    for l in text.split_inclusive('\n') {
        starts.push((pos, l.len(), is_header(l)));
        pos += l.len();
    }
    let Some(cur) = starts.iter().rposition(|(s, _, _)| *s <= offset) else {
        return;
    };
    let (from, to) = match starts[..=cur].iter().rposition(|(_, _, h)| *h) {
        None => (starts[cur].0, starts[cur].0 + starts[cur].1),
        Some(h) => {
            let end = starts[cur + 1..]
                .iter()
                .find(|(_, _, h)| *h)
                .map_or(text.len(), |(s, _, _)| *s);
            (starts[h].0, end)
        }
    };
    let blanked: String = text[from..to]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    // Multi-byte characters became single spaces: pad so later offsets still line up.
    let pad = (to - from).saturating_sub(blanked.len());
    text.replace_range(from..to, &(blanked + &" ".repeat(pad)));
}
