//! The `[mail]` table: the Postfix policy and Dovecot auth-policy servers, honey accounts and the
//! capture listener. Listeners stay on loopback unless `expose = true`: Postfix and Dovecot
//! normally run on the same machine, and these ports must not be reachable by the attackers.

use crate::compile::{addr, dur, num};
use crate::errors::Sink;
use crate::model::Mail;
use crate::raw::{RawMail, S};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `unix:/absolute/path`: a socket Postfix reaches (`check_policy_service unix:…`,
/// `smtpd_milters = unix:…`); `None` for an address or a missing setting.
fn unix_socket(v: &Option<S<String>>, field: &str, name: &str, s: &mut Sink) -> Option<PathBuf> {
    let v = v.as_ref()?;
    let p = PathBuf::from(v.get_ref().strip_prefix("unix:")?);
    if p.is_absolute() {
        return Some(p);
    }
    s.at(
        v.span(),
        field,
        format!(
            "a unix socket needs an absolute path, e.g. unix:/var/spool/postfix/private/{name}"
        ),
    );
    None
}

pub(crate) fn mail(r: &RawMail, s: &mut Sink, state_dir: &Path) -> Mail {
    let policy_socket = unix_socket(&r.policy_listen, "mail.policy_listen", "moat-policy", s);
    let milter_socket = unix_socket(&r.milter_listen, "mail.milter_listen", "moat-milter", s);
    let mut listen = |v: &Option<S<String>>, field: &str| -> Option<SocketAddr> {
        let v = v.as_ref()?;
        let a = addr(v.get_ref(), Some(v.span()), field, s)?;
        if !a.ip().is_loopback() && !r.expose {
            s.at(
                v.span(),
                field,
                "not a loopback address; set mail.expose = true to allow it",
            );
        }
        Some(a)
    };
    let is_unix =
        |v: &Option<S<String>>| v.as_ref().is_some_and(|v| v.get_ref().starts_with("unix:"));
    let policy_listen = if is_unix(&r.policy_listen) {
        None
    } else {
        listen(&r.policy_listen, "mail.policy_listen")
    };
    let auth_policy_listen = listen(&r.auth_policy_listen, "mail.auth_policy_listen");
    let capture_listen = listen(&r.capture_listen, "mail.capture_listen");
    let milter_listen = if is_unix(&r.milter_listen) {
        None
    } else {
        listen(&r.milter_listen, "mail.milter_listen")
    };
    let milter = milter_listen.is_some() || milter_socket.is_some();
    // Set but wrong is already reported where it stands.
    if r.policy_listen.is_none() && r.auth_policy_listen.is_none() && r.milter_listen.is_none() {
        s.nowhere(
            "mail",
            "set milter_listen or policy_listen (Postfix) and/or auth_policy_listen (Dovecot)",
        );
    }
    let dsn_relay = match &r.dsn_relay {
        None if milter => Some(SocketAddr::from(([127, 0, 0, 1], 25))),
        None => None,
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => addr(v.get_ref(), Some(v.span()), "mail.dsn_relay", s),
    };
    // A bare address (IPv6 included) means port 53.
    let dns_server =
        r.dns_server
            .as_ref()
            .and_then(|v| match v.get_ref().parse::<std::net::IpAddr>() {
                Ok(ip) => Some(SocketAddr::new(ip, 53)),
                Err(_) => addr(v.get_ref(), Some(v.span()), "mail.dns_server", s),
            });
    let hide_recipients = r.hide_recipients.unwrap_or(true) && milter;
    if let Some(t) = &r.auth_policy_token {
        if t.get_ref().len() < 16 {
            s.at(
                t.span(),
                "mail.auth_policy_token",
                "use at least 16 characters",
            );
        }
    }
    let rel = |v: &Option<S<String>>, default: &str| -> PathBuf {
        v.as_ref()
            .map_or_else(|| state_dir.join(default), |p| state_dir.join(p.get_ref()))
    };
    let secs = |d: Duration| d.as_secs().max(1);
    let enum_discard = match r
        .enum_response
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("defer", _)) => false,
        Some(("discard", _)) => true,
        Some((other, span)) => {
            s.at(
                span,
                "mail.enum_response",
                format!("`{other}`: use defer or discard"),
            );
            false
        }
    };
    Mail {
        policy_listen,
        policy_socket,
        auth_policy_listen,
        auth_policy_token: r.auth_policy_token.as_ref().map(|t| t.get_ref().clone()),
        auth_policy_nonce: r.auth_policy_nonce.clone(),
        capture_listen,
        quarantine_dir: rel(&r.quarantine_dir, "quarantine"),
        recipients: r.recipients.clone(),
        recipient_maps: r
            .recipient_maps
            .iter()
            .map(|p| PathBuf::from(p.get_ref()))
            .collect(),
        honey_passwd: rel(&r.honey_passwd, "honey.passwd"),
        honey_after_attempts: num(
            r.honey_after_attempts.as_ref(),
            "mail.honey_after_attempts",
            1,
            5u32,
            s,
        ),
        honey_after_addresses: num(
            r.honey_after_addresses.as_ref(),
            "mail.honey_after_addresses",
            1,
            3u32,
            s,
        ),
        honey_ttl_secs: secs(dur(
            r.honey_ttl.as_ref(),
            "mail.honey_ttl",
            Duration::from_secs(7 * 86400),
            s,
        )),
        protected_logins: r.protected_logins.clone().unwrap_or_else(|| {
            ["root", "postmaster", "abuse", "hostmaster", "admin"]
                .map(String::from)
                .to_vec()
        }),
        enum_window_secs: secs(dur(
            r.enum_window.as_ref(),
            "mail.enum_window",
            Duration::from_secs(600),
            s,
        )),
        enum_per_client: num(
            r.enum_per_client.as_ref(),
            "mail.enum_per_client",
            1,
            5u32,
            s,
        ),
        enum_per_network: num(
            r.enum_per_network.as_ref(),
            "mail.enum_per_network",
            1,
            15u32,
            s,
        ),
        enum_per_sender: num(
            r.enum_per_sender.as_ref(),
            "mail.enum_per_sender",
            1,
            15u32,
            s,
        ),
        enum_judged_secs: secs(dur(
            r.enum_judged.as_ref(),
            "mail.enum_judged",
            Duration::from_secs(3600),
            s,
        )),
        enum_discard,
        brute_window_secs: secs(dur(
            r.brute_window.as_ref(),
            "mail.brute_window",
            Duration::from_secs(3600),
            s,
        )),
        brute_login_addresses: num(
            r.brute_login_addresses.as_ref(),
            "mail.brute_login_addresses",
            2,
            5u32,
            s,
        ),
        brute_login_passwords: num(
            r.brute_login_passwords.as_ref(),
            "mail.brute_login_passwords",
            2,
            8u32,
            s,
        ),
        brute_address_failures: num(
            r.brute_address_failures.as_ref(),
            "mail.brute_address_failures",
            2,
            10u32,
            s,
        ),
        brute_network_failures: num(
            r.brute_network_failures.as_ref(),
            "mail.brute_network_failures",
            2,
            30u32,
            s,
        ),
        brute_global_per_minute: num(
            r.brute_global_per_minute.as_ref(),
            "mail.brute_global_per_minute",
            1,
            600u32,
            s,
        ),
        brute_delay_secs: secs(dur(
            r.brute_delay.as_ref(),
            "mail.brute_delay",
            Duration::from_secs(5),
            s,
        )) as i32,
        idle_timeout: dur(
            r.idle_timeout.as_ref(),
            "mail.idle_timeout",
            Duration::from_secs(330),
            s,
        ),
        // Postfix opens one policy and one milter connection per smtpd process (100 by
        // default), Dovecot a few per auth process: 1024 is ten times the usual need.
        max_connections: num(
            r.max_connections.as_ref(),
            "mail.max_connections",
            1,
            1024u64,
            s,
        ) as usize,
        milter_listen,
        milter_socket,
        postfix_config_dir: r.postfix_config_dir.as_ref().map_or_else(
            || PathBuf::from("/etc/postfix"),
            |p| PathBuf::from(p.get_ref()),
        ),
        hide_recipients,
        dsn_relay,
        hostname: r
            .hostname
            .as_ref()
            .map(|h| h.get_ref().clone())
            .unwrap_or_else(system_hostname),
        dns_server,
    }
}

/// This machine's name, for `Reporting-MTA`: /etc/mailname (Debian's choice for mail), else
/// the kernel's hostname.
fn system_hostname() -> String {
    ["/etc/mailname", "/proc/sys/kernel/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
