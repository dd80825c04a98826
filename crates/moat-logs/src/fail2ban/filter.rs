//! A fail2ban filter read from `filter.d` as fail2ban reads it (`FilterReader`): the
//! layered files, the `[Definition]` options with the jail's `filter = name[opt=value]`
//! options taking precedence, `[Init]`, and the `<tag>`s resolved. The result is plain
//! text; [`super::matcher::Filter`] compiles it.

use super::ini::{read_layered, Ini, IniError, Options};
use super::tags::substitute_recursive;
use std::path::{Path, PathBuf};

/// The options fail2ban's `FilterReader` takes from `[Definition]`.
const FILTER_OPTIONS: &[&str] = &[
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Ini(#[from] IniError),
    #[error("{}: {message}", path.display())]
    Value { path: PathBuf, message: String },
    #[error("filter `{0}`: expected `name` or `name[option=value, …]`")]
    Spec(String),
}

/// A filter as a jail names it: `postfix[mode=aggressive]`, or a path to a `.conf` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec {
    pub name: String,
    pub options: Options,
}

impl FilterSpec {
    /// Parses `name[opt=value, opt2="value, with comma"]` (fail2ban's `extractOptions`).
    pub fn parse(spec: &str) -> Result<Self, FilterError> {
        let spec = spec.trim();
        let bad = || FilterError::Spec(spec.to_string());
        let Some(open) = spec.find('[') else {
            return (!spec.is_empty())
                .then(|| FilterSpec {
                    name: spec.to_string(),
                    options: Options::new(),
                })
                .ok_or_else(bad);
        };
        let name = spec[..open].trim();
        let inner = spec[open + 1..].strip_suffix(']').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let mut options = Options::new();
        let mut rest = inner.trim();
        while !rest.is_empty() {
            let eq = rest.find('=').ok_or_else(bad)?;
            let key = rest[..eq].trim().to_lowercase();
            let after = rest[eq + 1..].trim_start();
            let (value, tail) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let end = after[1..].find(q).ok_or_else(bad)? + 1;
                    (&after[1..end], &after[end + 1..])
                }
                _ => match after.find(',') {
                    Some(c) => (after[..c].trim_end(), &after[c..]),
                    None => (after.trim_end(), ""),
                },
            };
            if key.is_empty() {
                return Err(bad());
            }
            options.insert(key, value.to_string());
            rest = tail.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        Ok(FilterSpec {
            name: name.to_string(),
            options,
        })
    }
}

/// A filter's resolved options, ready to compile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterDef {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    pub prefregex: Option<String>,
    pub failregex: Vec<String>,
    pub ignoreregex: Vec<String>,
    pub datepattern: Option<String>,
    pub maxlines: usize,
    /// `journalmatch`, one match set per line (`FIELD=value` words, `+` between sets).
    pub journalmatch: Vec<String>,
}

/// Reads filter `spec` from `dir` (a `filter.d`), or from the file a spec's name is a path
/// to. `extra` are options given outside the spec (a replay's `--mode`), which the spec's own
/// override.
pub fn load(dir: &Path, spec: &FilterSpec, extra: &Options) -> Result<FilterDef, FilterError> {
    let (dir, name) = locate(dir, &spec.name);
    let ini = read_layered(&dir, &name)?;
    let path = dir.join(format!("{name}.conf"));
    let value_err = |message: String| FilterError::Value {
        path: path.clone(),
        message,
    };
    let mut params = extra.clone();
    params.extend(spec.options.clone());
    // fail2ban passes the jail's filter options both as `vars` (they override the file's
    // values) and as [Init] options.
    let mut init = params.clone();
    if let Some(section) = ini.sections.get("Init") {
        for opt in section.keys() {
            let v = ini
                .get("Init", opt, &Options::new())
                .map_err(&value_err)?
                .unwrap_or_default();
            if !opt.starts_with("known/") {
                init.insert(format!("known/{opt}"), v.clone());
            }
            init.entry(opt.clone()).or_insert(v);
        }
    }
    let mut combined = Options::new();
    for opt in FILTER_OPTIONS {
        if let Some(v) = ini.get_ex("Definition", opt, &params).map_err(&value_err)? {
            combined.insert(opt.to_string(), v);
        }
    }
    combined.extend(init);
    let ignore: Vec<String> = combined
        .keys()
        .filter_map(|k| k.split_once('?').map(|(n, _)| n.to_string()))
        .collect();
    let mut lookup_err = None;
    let resolved = substitute_recursive(&combined, &ignore, &mut |tag| match lookup(
        &ini, tag, &params,
    ) {
        Ok(v) => v,
        Err(e) => {
            lookup_err.get_or_insert(e);
            None
        }
    })
    .map_err(&value_err)?;
    if let Some(e) = lookup_err {
        return Err(value_err(e));
    }
    let lines = |opt: &str| -> Vec<String> {
        resolved
            .get(opt)
            .map(|v| {
                v.split('\n')
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let maxlines = match resolved.get("maxlines").map(|v| v.trim()) {
        None | Some("") => 1,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| value_err(format!("maxlines: `{v}` is not a number")))?
            .max(1),
    };
    Ok(FilterDef {
        prefregex: resolved
            .get("prefregex")
            .filter(|v| !v.trim().is_empty())
            .cloned(),
        failregex: lines("failregex"),
        ignoreregex: lines("ignoreregex"),
        datepattern: resolved
            .get("datepattern")
            .filter(|v| !v.trim().is_empty())
            .cloned(),
        maxlines,
        journalmatch: lines("journalmatch"),
        path,
    })
}

/// A tag that is no option of the filter's own: another `[Definition]` option (or
/// `section/option`), interpolated with the jail's options.
fn lookup(ini: &Ini, tag: &str, params: &Options) -> Result<Option<String>, String> {
    ini.get_ex("Definition", tag, params)
}

/// `name` in `dir`, or the directory and stem of a path to a `.conf`/`.local` file.
fn locate(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = Path::new(name);
    let is_path = name.contains('/') || name.ends_with(".conf") || name.ends_with(".local");
    match (is_path, p.file_stem()) {
        (true, Some(stem)) => (
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            stem.to_string_lossy().into_owned(),
        ),
        _ => (dir.to_path_buf(), name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s = FilterSpec::parse(r#"postfix[mode=aggressive, x="a, b"]"#).unwrap();
        assert_eq!(s.name, "postfix");
        assert_eq!(s.options["mode"], "aggressive");
        assert_eq!(s.options["x"], "a, b");
        assert!(FilterSpec::parse("p[mode").is_err());
        assert!(FilterSpec::parse("").is_err());
    }
}
