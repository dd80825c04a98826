//! fail2ban's configuration files, read as fail2ban reads them: Python's `configparser` (with
//! `;` as an inline comment after whitespace, `%(x)s` interpolation, option names in lower
//! case, indented continuation lines) plus fail2ban's additions: `[INCLUDES] before/after`,
//! `%(section/option)s`, `%(known/option)s` for the value a later file replaced, and
//! conditional sections such as `[Init?family=inet6]`.
//!
//! Written here rather than taken from a crate: the INI crates on crates.io implement neither
//! Python's continuation and interpolation rules nor fail2ban's includes, and a filter that
//! reads differently matches differently. Parsing is free of I/O ([`parse`]); [`Ini::merge`]
//! layers files in fail2ban's order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of one section, by lower-case name.
pub type Options = BTreeMap<String, String>;

/// Python's configparser gives up interpolating after this many nested references.
const MAX_DEPTH: usize = 10;

/// Interpolating one value gives up after this many references: they multiply level by level
/// (ten of them at each of ten levels are 10^10 copies of the innermost value, from a few lines
/// of text). One value of fail2ban's own filters takes a few hundred.
const MAX_REFERENCES: usize = 10_000;

/// ... or once references have made it this long (fail2ban's longest values take a few KiB).
pub const MAX_VALUE: usize = 64 * 1024;

/// A configuration error, with the file and line it is on (line 0 when it is about a value,
/// not a place).
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct IniError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

/// One file as written: its sections in order (`DEFAULT` among them), each option's value
/// with its continuation lines joined by `\n`.
#[derive(Debug, Default, Clone)]
pub struct IniFile {
    pub sections: Vec<(String, Options)>,
}

impl IniFile {
    pub fn section(&self, name: &str) -> Option<&Options> {
        self.sections
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
    }
}

/// Finds where an inline `;` comment starts: at the line's start or after whitespace.
fn inline_comment(line: &str) -> Option<usize> {
    line.char_indices().find_map(|(i, c)| {
        (c == ';' && (i == 0 || line[..i].ends_with(char::is_whitespace))).then_some(i)
    })
}

/// Parses one file's text the way Python's `configparser.read_string` does with fail2ban's
/// settings.
pub fn parse(text: &str, path: &Path) -> Result<IniFile, IniError> {
    let err = |line: usize, message: String| IniError {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut file = IniFile::default();
    // The option being read: (section index, name, value lines, its indentation).
    let mut current: Option<(usize, String, Vec<String>, usize)> = None;
    let mut indent_level = usize::MAX;
    let flush = |file: &mut IniFile, current: &mut Option<(usize, String, Vec<String>, usize)>| {
        if let Some((s, name, lines, _)) = current.take() {
            let value = lines.join("\n").trim_end().to_string();
            file.sections[s].1.insert(name, value);
        }
    };
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let full_comment = {
            let t = raw.trim();
            t.starts_with('#') || t.starts_with(';')
        };
        let cut = if full_comment {
            Some(0)
        } else {
            inline_comment(raw)
        };
        let value = raw[..cut.unwrap_or(raw.len())].trim();
        if value.is_empty() {
            // An empty line inside a value is kept (joined as a blank line, trimmed at the
            // end); a comment line is not.
            if cut.is_none() {
                if let Some((_, _, lines, _)) = current.as_mut() {
                    lines.push(String::new());
                }
            }
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if let Some((_, _, lines, _)) = current.as_mut().filter(|_| indent > indent_level) {
            lines.push(value.to_string());
            continue;
        }
        indent_level = indent;
        if let Some(name) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            flush(&mut file, &mut current);
            if name.is_empty() {
                return Err(err(lineno, "empty section name".into()));
            }
            file.sections.push((name.to_string(), Options::new()));
            continue;
        }
        if file.sections.is_empty() {
            return Err(err(
                lineno,
                format!("`{value}` before any [section] header"),
            ));
        }
        let Some(sep) = value.find(['=', ':']) else {
            return Err(err(
                lineno,
                format!("`{value}` is neither `name = value` nor a [section]"),
            ));
        };
        let name = value[..sep].trim_end().to_lowercase();
        if name.is_empty() {
            return Err(err(lineno, "an option without a name".into()));
        }
        flush(&mut file, &mut current);
        let section = file.sections.len() - 1;
        current = Some((
            section,
            name,
            vec![value[sep + 1..].trim().to_string()],
            indent,
        ));
    }
    flush(&mut file, &mut current);
    Ok(file)
}

/// Files merged in the order fail2ban reads them: `DEFAULT` options, sections by name, and
/// for each section the values a later file replaced (`KNOWN/<section>`).
#[derive(Debug, Default, Clone)]
pub struct Ini {
    pub defaults: Options,
    pub sections: BTreeMap<String, Options>,
}

impl Ini {
    /// Layers `file` over what is already read. A conditional section `[Name?cond]` lands in
    /// `Name` with `?cond` after each option name.
    pub fn merge(&mut self, file: &IniFile) {
        for (name, options) in &file.sections {
            if name == "DEFAULT" {
                self.defaults
                    .extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
                continue;
            }
            let (name, options) = match conditional(name) {
                Some((base, cond)) => (
                    base.to_string(),
                    options
                        .iter()
                        .map(|(k, v)| (format!("{k}{cond}"), v.clone()))
                        .collect(),
                ),
                None => (name.clone(), options.clone()),
            };
            if let Some(existing) = self.sections.get(&name) {
                let replaced: Options = existing
                    .iter()
                    .filter(|(k, _)| options.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.sections
                    .entry(format!("KNOWN/{name}"))
                    .or_default()
                    .extend(replaced);
            }
            self.sections.entry(name).or_default().extend(options);
        }
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// A raw value: the section's own, else `DEFAULT`'s.
    pub fn raw(&self, section: &str, option: &str) -> Option<&str> {
        let option = option.to_lowercase();
        self.sections
            .get(section)
            .and_then(|s| s.get(&option))
            .or_else(|| self.defaults.get(&option))
            .map(String::as_str)
    }

    /// A value with `%(…)s` interpolated, as `ConfigParser.get(section, option, vars=vars)`:
    /// `vars` first, then the section, then `DEFAULT`. `Ok(None)` when the option is not set.
    pub fn get(
        &self,
        section: &str,
        option: &str,
        vars: &Options,
    ) -> Result<Option<String>, String> {
        let option = option.to_lowercase();
        let raw = vars
            .get(&option)
            .map(String::as_str)
            .or_else(|| self.raw(section, &option));
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mut out = String::new();
        self.interpolate(section, raw, vars, 0, &mut { MAX_REFERENCES }, &mut out)?;
        Ok(Some(out))
    }

    /// fail2ban's `get_ex`: `section/option` names another section's option (`known/…` the
    /// value this section's option had before a later file replaced it, `default/…` the
    /// `DEFAULT` one); anything else is [`Ini::get`].
    pub fn get_ex(
        &self,
        section: &str,
        option: &str,
        vars: &Options,
    ) -> Result<Option<String>, String> {
        if let Some((sec, opt)) = section_option(option) {
            let candidates: Vec<String> = match sec.to_lowercase().as_str() {
                "known" => vec![format!("KNOWN/{section}"), section.to_string()],
                "default" => vec!["DEFAULT".to_string()],
                _ => vec![sec.to_string()],
            };
            for sec in candidates {
                if sec == "DEFAULT" {
                    if let Some(v) = self.defaults.get(&opt.to_lowercase()) {
                        let mut out = String::new();
                        let mut budget = MAX_REFERENCES;
                        self.interpolate("DEFAULT", v, &Options::new(), 0, &mut budget, &mut out)?;
                        return Ok(Some(out));
                    }
                } else if self.has_section(&sec) {
                    if let Some(v) = self.get(&sec, opt, &Options::new())? {
                        return Ok(Some(v));
                    }
                }
            }
        }
        self.get(section, option, vars)
    }

    /// The value of `%(name)s` inside `section`: `vars`, the section, `DEFAULT`, the section's
    /// own name for `__name__`, and fail2ban's `section/option` forms.
    fn lookup(&self, section: &str, name: &str, vars: &Options) -> Option<String> {
        if let Some(v) = vars.get(name) {
            return Some(v.clone());
        }
        if let Some(v) = self.raw(section, name) {
            return Some(v.to_string());
        }
        if name == "__name__" {
            return Some(section.to_string());
        }
        let (sec, opt) = section_option(name)?;
        let from = match sec.to_lowercase().as_str() {
            "known" => self
                .sections
                .get(&format!("KNOWN/{section}"))
                .and_then(|s| s.get(opt)),
            "default" => None,
            _ => self.sections.get(sec).and_then(|s| s.get(opt)),
        };
        from.or_else(|| self.defaults.get(opt)).cloned()
    }

    fn interpolate(
        &self,
        section: &str,
        mut rest: &str,
        vars: &Options,
        depth: usize,
        budget: &mut usize,
        out: &mut String,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "more than {MAX_DEPTH} nested %(…)s references (a loop?)"
            ));
        }
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            if let Some(r) = rest.strip_prefix("%%") {
                out.push('%');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("%(") {
                let Some(end) = r.find(")s") else {
                    return Err(format!("bad interpolation syntax in `{rest}`"));
                };
                let name = r[..end].to_lowercase();
                if name.contains(')') {
                    return Err(format!("bad interpolation syntax in `{rest}`"));
                }
                rest = &r[end + 2..];
                *budget = budget.checked_sub(1).ok_or_else(|| {
                    format!("more than {MAX_REFERENCES} %(…)s references (a loop?)")
                })?;
                let Some(v) = self.lookup(section, &name, vars) else {
                    return Err(format!("`%({name})s`: no such option in [{section}]"));
                };
                if v.contains('%') {
                    self.interpolate(section, &v, vars, depth + 1, budget, out)?;
                } else {
                    out.push_str(&v);
                }
                if out.len() > MAX_VALUE {
                    return Err(format!(
                        "%(…)s references make a value longer than {} KiB (a loop?)",
                        MAX_VALUE / 1024
                    ));
                }
            } else {
                return Err(format!(
                    "`%` must be followed by `%` or `(` in `{}`",
                    rest.chars().take(40).collect::<String>()
                ));
            }
        }
        out.push_str(rest);
        Ok(())
    }
}

/// `section/option` as fail2ban's `SECTION_OPTNAME_CRE` reads it.
fn section_option(name: &str) -> Option<(&str, &str)> {
    let (sec, opt) = name.split_once('/')?;
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    (word(sec) && !opt.is_empty() && !opt.contains(|c: char| c.is_whitespace() || c == '>'))
        .then_some((sec, opt))
}

/// `Name?cond` → (`Name`, `?cond`).
fn conditional(name: &str) -> Option<(&str, &str)> {
    let q = name.find('?')?;
    let base = &name[..q];
    (q > 0 && q + 1 < name.len() && base.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then_some((base, &name[q..]))
}

/// The files fail2ban reads for `name` in `dir` (`name.conf`, `name.d/*.conf`, `name.local`,
/// `name.d/*.local`), each preceded by its `[INCLUDES] before` files and followed by its
/// `after` files (recursively, each once), parsed and merged. Files that do not exist are
/// skipped; at least one must exist.
pub fn read_layered(dir: &Path, name: &str) -> Result<Ini, IniError> {
    let mut bases = vec![dir.join(format!("{name}.conf"))];
    bases.extend(sorted_glob(&dir.join(format!("{name}.d")), "conf"));
    bases.push(dir.join(format!("{name}.local")));
    bases.extend(sorted_glob(&dir.join(format!("{name}.d")), "local"));
    let mut order = Vec::new();
    for base in bases.iter().filter(|p| p.is_file()) {
        with_includes(base, &mut Vec::new(), &mut order)?;
    }
    if order.is_empty() {
        return Err(IniError {
            path: dir.join(format!("{name}.conf")),
            line: 0,
            message: "not found".into(),
        });
    }
    let mut ini = Ini::default();
    for (_, file) in &order {
        ini.merge(file);
    }
    Ok(ini)
}

fn sorted_glob(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext) && p.is_file())
        .collect();
    found.sort();
    found
}

/// Reads `path` and a sibling `.local` with their includes, appending to `order` in fail2ban's
/// order; `seen` breaks include loops.
fn with_includes(
    path: &Path,
    seen: &mut Vec<PathBuf>,
    order: &mut Vec<(PathBuf, IniFile)>,
) -> Result<(), IniError> {
    if seen.iter().any(|p| p == path) || order.iter().any(|(p, _)| p == path) {
        return Ok(());
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(IniError {
                path: path.to_path_buf(),
                line: 0,
                message: e.to_string(),
            })
        }
    };
    let file = parse(&text, path)?;
    let includes = |key: &str| -> Vec<PathBuf> {
        let dir = path.parent().unwrap_or(Path::new("."));
        file.section("INCLUDES")
            .and_then(|s| s.get(key))
            .map(|v| {
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| dir.join(l))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (includes("before"), includes("after"));
    seen.push(path.to_path_buf());
    for inc in &before {
        with_local(inc, seen, order)?;
    }
    order.push((path.to_path_buf(), file));
    for inc in &after {
        with_local(inc, seen, order)?;
    }
    seen.pop();
    Ok(())
}

/// An included file and then its `.local`, as fail2ban expands includes.
fn with_local(
    path: &Path,
    seen: &mut Vec<PathBuf>,
    order: &mut Vec<(PathBuf, IniFile)>,
) -> Result<(), IniError> {
    with_includes(path, seen, order)?;
    let local = path.with_extension("local");
    if local != path && local.is_file() {
        with_includes(&local, seen, order)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(texts: &[&str]) -> Ini {
        let mut ini = Ini::default();
        for t in texts {
            ini.merge(&parse(t, Path::new("t.conf")).unwrap());
        }
        ini
    }

    #[test]
    fn continuation_comments_and_interpolation() {
        let i = ini(&["[DEFAULT]\n_daemon = sshd\n[Definition]\n\
             failregex = ^a %(_daemon)s$\n   ^b <HOST>  ; comment\n\n  # no\n   ^c 100%% ;x\nx=1;2\n"]);
        let v = i.get("Definition", "failregex", &Options::new()).unwrap();
        assert_eq!(v.as_deref(), Some("^a sshd$\n^b <HOST>\n\n^c 100%"));
        assert_eq!(
            i.raw("Definition", "X"),
            Some("1;2"),
            "`;` needs whitespace"
        );
    }

    #[test]
    fn vars_win_and_known_keeps_the_replaced_value() {
        let i = ini(&[
            "[Definition]\nmode = normal\nf = a\n",
            "[Definition]\nf = %(known/f)s b\n",
        ]);
        let vars: Options = [("mode".to_string(), "aggressive".to_string())].into();
        assert_eq!(
            i.get("Definition", "mode", &vars).unwrap().as_deref(),
            Some("aggressive")
        );
        assert_eq!(
            i.get("Definition", "f", &Options::new())
                .unwrap()
                .as_deref(),
            Some("a b")
        );
        assert_eq!(
            i.get_ex("Definition", "known/f", &Options::new())
                .unwrap()
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn other_sections_and_errors() {
        let i = ini(&["[lt_file]\np = x\n[lt_short]\np = %(lt_file/p)sy\n[D]\nq = %(nope)s\n"]);
        assert_eq!(
            i.get_ex("D", "lt_short/p", &Options::new())
                .unwrap()
                .as_deref(),
            Some("xy")
        );
        assert!(i
            .get("D", "q", &Options::new())
            .unwrap_err()
            .contains("nope"));
        let e = parse("x = 1\n", Path::new("f.conf")).unwrap_err();
        assert_eq!((e.line, e.path.to_str()), (1, Some("f.conf")));
        let loop_ = ini(&["[D]\na = %(b)s\nb = %(a)s\n"]);
        assert!(loop_.get("D", "a", &Options::new()).is_err());
    }
}
