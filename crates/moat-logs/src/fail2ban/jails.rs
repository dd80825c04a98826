//! The user's fail2ban jails, read in place from `/etc/fail2ban` (`jail.conf`, `jail.d/*.conf`,
//! `jail.local`, `jail.d/*.local`, with their includes such as `paths-debian.conf`), as
//! fail2ban's `JailReader` reads them. Only what Moat needs is taken: the filter, the logs
//! (paths or the journal), `maxretry`, `findtime`, `bantime` and `bantime.*`, `ignoreip`.
//! `action` and `port` are not: Moat bans an address on every port and every shield.

use super::filter::{FilterError, FilterSpec};
use super::ini::{read_layered, Ini, Options};
use ipnet::IpNet;
use moat_detect::jail::{Increment, JailConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `bantime = -1`: fail2ban's "forever", as a ban of ten years.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Where a jail reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logs {
    /// `logpath`, globs expanded when read (a path that does not exist yet is kept: it is
    /// waited for).
    Files(Vec<PathBuf>),
    /// `backend = systemd`: the journal, with the filter's `journalmatch`.
    Journal,
}

/// An enabled jail of the user's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Fail2banJail {
    pub config: JailConfig,
    pub filter: FilterSpec,
    pub logs: Logs,
    /// What was set but not used, said once at start (`ignoreip` host names, unknown
    /// backends).
    pub notes: Vec<String>,
}

/// Every enabled jail under `root` (a fail2ban configuration directory).
pub fn read_jails(root: &Path) -> Result<Vec<Fail2banJail>, FilterError> {
    let ini = read_layered(root, "jail")?;
    let path = root.join("jail.conf");
    let err = |message: String| FilterError::Value {
        path: path.clone(),
        message,
    };
    let mut jails = Vec::new();
    for name in ini.sections.keys() {
        if name == "INCLUDES" || name.starts_with("KNOWN/") || name.contains('?') {
            continue;
        }
        let get = |opt: &str| -> Result<Option<String>, FilterError> {
            ini.get(name, opt, &Options::new())
                .map_err(|e| err(format!("[{name}] {opt}: {e}")))
        };
        let enabled = get("enabled")?.is_some_and(|v| truthy(&v));
        if !enabled {
            continue;
        }
        jails.push(jail(&ini, name, &get).map_err(|e| err(format!("[{name}] {e}")))?);
    }
    Ok(jails)
}

fn jail(
    _ini: &Ini,
    name: &str,
    get: &dyn Fn(&str) -> Result<Option<String>, FilterError>,
) -> Result<Fail2banJail, String> {
    let text =
        |opt: &str| -> Result<Option<String>, String> { get(opt).map_err(|e| e.to_string()) };
    let mut notes = Vec::new();
    let mut config = JailConfig::new(name);
    if let Some(v) = text("maxretry")? {
        config.max_retry = v
            .trim()
            .parse()
            .map_err(|_| format!("maxretry: `{v}` is not a number"))?;
    }
    if let Some(v) = text("findtime")? {
        config.find_time = duration(&v).ok_or(format!("findtime: `{v}`"))?;
    }
    if let Some(v) = text("bantime")? {
        config.ban_time = duration(&v).ok_or(format!("bantime: `{v}`"))?;
    }
    if text("bantime.increment")?.is_some_and(|v| truthy(&v)) {
        let factor = match text("bantime.factor")? {
            Some(f) => f
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("bantime.factor: `{f}`"))?,
            None => 1.0,
        };
        let multipliers = match text("bantime.multipliers")? {
            Some(m) => m
                .split_whitespace()
                .map(|x| {
                    x.parse::<u64>()
                        .map_err(|_| format!("bantime.multipliers: `{x}`"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let opt_duration = |opt: &str| -> Result<Option<Duration>, String> {
            match text(opt)? {
                Some(v) if !v.trim().is_empty() => {
                    Ok(Some(duration(&v).ok_or(format!("{opt}: `{v}`"))?))
                }
                _ => Ok(None),
            }
        };
        config.increment = Some(Increment {
            factor,
            multipliers,
            max_time: opt_duration("bantime.maxtime")?,
            rnd_time: opt_duration("bantime.rndtime")?,
        });
    }
    if let Some(v) = text("ignoreip")? {
        for item in v.split(|c: char| c.is_whitespace() || c == ',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
            {
                Ok(net) => config.ignore.push(net),
                Err(_) => notes.push(format!(
                    "ignoreip `{item}` is not an address or network; Moat does not resolve names (put it on the allowlist by address)"
                )),
            }
        }
    }
    let filter = text("filter")?.unwrap_or_else(|| name.to_string());
    let filter = FilterSpec::parse(&filter).map_err(|e| e.to_string())?;
    let backend = text("backend")?.unwrap_or_else(|| "auto".into());
    let backend = backend.trim().to_lowercase();
    let logs = if backend.starts_with("systemd") {
        Logs::Journal
    } else {
        if !matches!(
            backend.as_str(),
            "auto" | "polling" | "pyinotify" | "gamin" | ""
        ) {
            notes.push(format!("backend `{backend}` read as files"));
        }
        let paths: Vec<PathBuf> = text("logpath")?
            .unwrap_or_default()
            .split('\n')
            .flat_map(|l| l.split_whitespace())
            .filter(|p| *p != "tail" && *p != "head")
            .flat_map(expand)
            .collect();
        if paths.is_empty() {
            return Err("no logpath (and backend is not systemd)".into());
        }
        Logs::Files(paths)
    };
    Ok(Fail2banJail {
        config,
        filter,
        logs,
        notes,
    })
}

/// fail2ban's booleans.
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "true" | "yes" | "on" | "1" | "enabled"
    )
}

/// A glob's matches (sorted), or the path itself when nothing matches yet.
fn expand(pattern: &str) -> Vec<PathBuf> {
    if !pattern.contains(['*', '?', '[']) {
        return vec![PathBuf::from(pattern)];
    }
    let mut found: Vec<PathBuf> = glob::glob(pattern)
        .map(|g| g.flatten().collect())
        .unwrap_or_default();
    found.sort();
    found
}

/// fail2ban's time spans: seconds, or numbers with units (`10m`, `1h 30m`, `2d`, `1w`,
/// `1mo`, `1y`); `-1` is forever.
pub fn duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v == "-1" {
        return Some(FOREVER);
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = v;
    let mut any = false;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].to_lowercase();
        rest = &rest[unit_len..];
        let scale = match unit.as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "mi" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "wk" | "week" | "weeks" => 604_800.0,
            "mo" | "mon" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += n * scale;
        any = true;
    }
    any.then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("600"), Some(Duration::from_secs(600)));
        assert_eq!(duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(duration("48h"), Some(Duration::from_secs(172_800)));
        assert_eq!(duration("-1"), Some(FOREVER));
        assert_eq!(duration("5 parsecs"), None);
    }

    #[test]
    fn jails_in_place_with_includes_and_locals() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("jail.conf"),
            "[INCLUDES]\nbefore = paths-test.conf\n[DEFAULT]\nbantime = 10m\nmaxretry = 5\n\
             mode = normal\nfilter = %(__name__)s[mode=%(mode)s]\nbackend = auto\nenabled = false\n\
             [sshd]\nlogpath = %(sshd_log)s\n[postfix]\nlogpath = %(syslog_mail)s\n",
        )
        .unwrap();
        std::fs::write(
            root.join("paths-test.conf"),
            "[DEFAULT]\nsshd_log = /var/log/auth.log\nsyslog_mail = /var/log/mail.log\n",
        )
        .unwrap();
        std::fs::create_dir(root.join("jail.d")).unwrap();
        std::fs::write(
            root.join("jail.d/defaults.conf"),
            "[sshd]\nenabled = true\n",
        )
        .unwrap();
        std::fs::write(
            root.join("jail.local"),
            "[sshd]\nmode = aggressive\nmaxretry = 3\nbantime.increment = true\n\
             ignoreip = 127.0.0.1/8 ::1 myhost.example\n",
        )
        .unwrap();
        let jails = read_jails(root).unwrap();
        assert_eq!(jails.len(), 1, "postfix is not enabled");
        let j = &jails[0];
        assert_eq!(j.config.name, "sshd");
        assert_eq!(j.filter.name, "sshd");
        assert_eq!(j.filter.options["mode"], "aggressive");
        assert_eq!(j.config.max_retry, 3);
        assert_eq!(j.config.ban_time, Duration::from_secs(600));
        assert!(j.config.increment.is_some());
        assert_eq!(j.config.ignore.len(), 2);
        assert_eq!(j.notes.len(), 1, "{:?}", j.notes);
        assert_eq!(j.logs, Logs::Files(vec!["/var/log/auth.log".into()]));
    }
}
