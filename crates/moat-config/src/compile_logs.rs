//! The `[logs]` table: fail2ban's jails read in place, and Moat's own `[[logs.jail]]`s.
//! What can be checked without reading fail2ban's files is checked here (each jail has a
//! filter and somewhere to read from, durations and networks parse); the filters themselves
//! are read and compiled when the watcher starts, which names the file and line of any error.

use crate::compile::{dur, nets};
use crate::errors::Sink;
use crate::model::{LogFilter, LogJail, Logs};
use crate::raw::RawLogs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) fn logs(r: &RawLogs, s: &mut Sink, state_dir: &Path, base: &Path) -> Logs {
    let fail2ban = r.fail2ban.as_ref().map(|p| base.join(p.get_ref()));
    let filter_dir = match (&r.filter_dir, &fail2ban) {
        (Some(d), _) => base.join(d.get_ref()),
        (None, Some(f)) => f.join("filter.d"),
        (None, None) => PathBuf::from("/etc/fail2ban/filter.d"),
    };
    let from_beginning = match r.start.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("end", _)) => false,
        Some(("beginning", _)) => true,
        Some((_, span)) => {
            s.at(span, "logs.start", "use end or beginning");
            false
        }
    };
    if fail2ban.is_none() && r.jail.is_empty() {
        s.nowhere(
            "logs",
            "set logs.fail2ban = \"/etc/fail2ban\" or add a [[logs.jail]]",
        );
    }
    let mut jails = Vec::new();
    for j in &r.jail {
        let name = j.name.get_ref().trim().to_string();
        if name.is_empty() {
            s.at(j.name.span(), "logs.jail.name", "a jail needs a name");
        }
        let filter = match (&j.filter, j.failregex.is_empty()) {
            (Some(f), true) => LogFilter::Named(f.get_ref().clone()),
            (None, false) => LogFilter::Inline {
                failregex: j.failregex.iter().map(|r| r.get_ref().clone()).collect(),
                ignoreregex: j.ignoreregex.iter().map(|r| r.get_ref().clone()).collect(),
                prefregex: j.prefregex.as_ref().map(|r| r.get_ref().clone()),
                datepattern: j.datepattern.as_ref().map(|r| r.get_ref().clone()),
            },
            (Some(f), false) => {
                s.at(
                    f.span(),
                    "logs.jail.filter",
                    "give either filter or failregex, not both",
                );
                LogFilter::Named(f.get_ref().clone())
            }
            (None, true) => {
                s.at(
                    j.name.span(),
                    "logs.jail",
                    "a jail needs filter = \"NAME\" or failregex = [\"...<HOST>...\"]",
                );
                LogFilter::Named(name.clone())
            }
        };
        let journal = j
            .journalmatch
            .as_ref()
            .map(|m| m.iter().map(|x| x.get_ref().clone()).collect::<Vec<_>>());
        if journal.is_none() && j.logpath.is_empty() {
            s.at(
                j.name.span(),
                "logs.jail",
                "a jail needs logpath = [\"/var/log/...\"] or journalmatch = [...]",
            );
        }
        let max_retry = match &j.maxretry {
            Some(m) if *m.get_ref() == 0 => {
                s.at(m.span(), "logs.jail.maxretry", "must be at least 1");
                5
            }
            Some(m) => *m.get_ref(),
            None => 5,
        };
        jails.push(LogJail {
            name,
            filter,
            logpath: j
                .logpath
                .iter()
                .map(|p| base.join(p.get_ref()).to_string_lossy().into_owned())
                .collect(),
            journal,
            max_retry,
            find_time: dur(
                j.findtime.as_ref(),
                "logs.jail.findtime",
                Duration::from_secs(600),
                s,
            ),
            ban_time: dur(
                j.bantime.as_ref(),
                "logs.jail.bantime",
                Duration::from_secs(600),
                s,
            ),
            ignore: nets(&j.ignoreip, "logs.jail.ignoreip", s),
        });
    }
    Logs {
        fail2ban,
        filter_dir,
        timezone: r.timezone.as_ref().map(|t| t.get_ref().clone()),
        from_beginning,
        jails,
        checkpoints: state_dir.join("log-positions.json"),
    }
}
