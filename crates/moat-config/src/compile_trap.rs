//! The `[trap]` table: the SMTP trap's listeners, login policy, caps and quarantine. Unlike the
//! mail shield's listeners, a trap listener is meant to face the internet (bots must find it),
//! so any address is accepted.

use crate::compile::{addr, dur, num};
use crate::errors::Sink;
use crate::model::{trap_defaults as d, Trap, TrapListener, TrapTls};
use crate::raw::RawTrap;
use std::path::Path;

pub(crate) fn trap(r: &RawTrap, s: &mut Sink, state_dir: &Path, base: &Path) -> Trap {
    if r.listener.is_empty() {
        s.nowhere(
            "trap.listener",
            "add at least one [[trap.listener]] with listen = \"ADDR:PORT\"",
        );
    }
    let mut listeners = Vec::new();
    for (i, l) in r.listener.iter().enumerate() {
        let tls = match l.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
            None | Some(("starttls", _)) => TrapTls::StartTls,
            Some(("implicit", _)) => TrapTls::Implicit,
            Some(("none", _)) => TrapTls::None,
            Some((_, span)) => {
                s.at(span, "trap.listener.tls", "use starttls, implicit or none");
                TrapTls::StartTls
            }
        };
        if let Some(a) = addr(
            l.listen.get_ref(),
            Some(l.listen.span()),
            "trap.listener.listen",
            s,
        ) {
            listeners.push(TrapListener {
                name: l.name.clone().unwrap_or_else(|| format!("trap{i}")),
                listen: a,
                tls,
            });
        }
    }
    let tls_files = match (&r.tls_cert, &r.tls_key) {
        (Some(c), Some(k)) => Some((
            base.join(c.get_ref().as_str()),
            base.join(k.get_ref().as_str()),
        )),
        (None, None) => None,
        (Some(c), None) => {
            s.at(
                c.span(),
                "trap.tls_cert",
                "trap.tls_cert and trap.tls_key go together",
            );
            None
        }
        (None, Some(k)) => {
            s.at(
                k.span(),
                "trap.tls_key",
                "trap.tls_cert and trap.tls_key go together",
            );
            None
        }
    };
    let hostname = match &r.hostname {
        Some(h) if h.get_ref().is_empty() || h.get_ref().contains(char::is_whitespace) => {
            s.at(h.span(), "trap.hostname", "a host name without spaces");
            d::HOSTNAME.to_string()
        }
        Some(h) => h.get_ref().clone(),
        None => d::HOSTNAME.to_string(),
    };
    Trap {
        quarantine_dir: state_dir.join(
            r.quarantine_dir
                .as_ref()
                .map_or("quarantine", |d| d.get_ref().as_str()),
        ),
        quota_bytes: num(r.quota_mb.as_ref(), "trap.quota_mb", 0, d::QUOTA_MB, s) << 20,
        hostname,
        tls_files,
        top_passwords: num(
            r.top_passwords.as_ref(),
            "trap.top_passwords",
            0,
            d::TOP_PASSWORDS,
            s,
        ),
        kth_attempt: num(
            r.kth_attempt.as_ref(),
            "trap.kth_attempt",
            0,
            d::KTH_ATTEMPT,
            s,
        ),
        max_sessions: num(
            r.max_sessions.as_ref(),
            "trap.max_sessions",
            1,
            d::MAX_SESSIONS,
            s,
        ),
        max_sessions_per_ip: num(
            r.max_sessions_per_ip.as_ref(),
            "trap.max_sessions_per_ip",
            1,
            d::MAX_SESSIONS_PER_IP,
            s,
        ),
        max_message_bytes: u64::from(num(
            r.max_message_mb.as_ref(),
            "trap.max_message_mb",
            1,
            d::MAX_MESSAGE_MB,
            s,
        )) << 20,
        max_recipients: num(
            r.max_recipients.as_ref(),
            "trap.max_recipients",
            1,
            d::MAX_RECIPIENTS,
            s,
        ),
        command_timeout: dur(
            r.command_timeout.as_ref(),
            "trap.command_timeout",
            d::COMMAND_TIMEOUT,
            s,
        ),
        session_timeout: dur(
            r.session_timeout.as_ref(),
            "trap.session_timeout",
            d::SESSION_TIMEOUT,
            s,
        ),
        auth_failure_delay: dur(
            r.auth_failure_delay.as_ref(),
            "trap.auth_failure_delay",
            d::AUTH_FAILURE_DELAY,
            s,
        ),
        listeners,
    }
}
