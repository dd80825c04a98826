//! The `[nftables]` table: on or off, the table's name, and the redirects of banned
//! addresses' mail connections to the trap. A redirect is checked against the trap's
//! listeners here, at start: redirecting to a port nothing listens on (or a listener the
//! redirected connections cannot reach, or one speaking the other TLS mode) would be a silent
//! black hole, exactly what the redirect is meant to replace.

use crate::errors::Sink;
use crate::model::{Nftables, Trap, TrapListener, TrapRedirect, TrapTls};
use crate::raw::{RawNftables, RawTrapRedirect};
use std::net::IpAddr;

pub(crate) fn nftables(r: Option<&RawNftables>, trap: Option<&Trap>, s: &mut Sink) -> Nftables {
    let Some(n) = r else {
        return Nftables::default();
    };
    let table = match &n.table {
        Some(t) => {
            let name = t.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                s.at(
                    t.span(),
                    "nftables.table",
                    "letters, digits, `_` and `-` only",
                );
            }
            name.clone()
        }
        None => "moat".into(),
    };
    let mut seen: Vec<u16> = Vec::new();
    let trap_redirect = n
        .trap_redirect
        .iter()
        .filter_map(|r| redirect(r, trap, &mut seen, s))
        .collect();
    Nftables {
        enabled: n.enabled.as_ref().map(|e| *e.get_ref()),
        table,
        trap_redirect,
    }
}

const FIELD: &str = "nftables.trap_redirect";

fn redirect(
    r: &RawTrapRedirect,
    trap: Option<&Trap>,
    seen: &mut Vec<u16>,
    s: &mut Sink,
) -> Option<TrapRedirect> {
    let to = *r.to.get_ref();
    let mut ok = true;
    if r.ports.get_ref().is_empty() {
        s.at(
            r.ports.span(),
            &format!("{FIELD}.ports"),
            "name at least one port, e.g. [25, 587]",
        );
        ok = false;
    }
    for p in r.ports.get_ref() {
        let port = *p.get_ref();
        if port == 0 {
            s.at(
                p.span(),
                &format!("{FIELD}.ports"),
                "a port from 1 to 65535",
            );
            ok = false;
        } else if seen.contains(&port) {
            s.at(
                p.span(),
                &format!("{FIELD}.ports"),
                format!("port {port} is redirected twice"),
            );
            ok = false;
        }
        seen.push(port);
    }
    let listeners: Vec<&TrapListener> = trap
        .map(|t| {
            t.listeners
                .iter()
                .filter(|l| l.listen.port() == to)
                .collect()
        })
        .unwrap_or_default();
    let to_field = format!("{FIELD}.to");
    if listeners.is_empty() {
        let known: Vec<String> = trap
            .map(|t| t.listeners.iter().map(|l| l.listen.to_string()).collect())
            .unwrap_or_default();
        let msg = match (trap, known.is_empty()) {
            (None, _) => format!(
                "there is no [trap] to redirect to: connections redirected to port {to} would \
                 find nothing and be lost; add [trap] with a [[trap.listener]] on port {to}"
            ),
            (Some(_), true) => format!("no [[trap.listener]] listens on port {to}"),
            (Some(_), false) => format!(
                "no [[trap.listener]] listens on port {to} (they listen on {}): connections \
                 redirected there would find nothing and be lost",
                known.join(", ")
            ),
        };
        s.at(r.to.span(), &to_field, msg);
        return None;
    }
    // Connections from other machines cannot be redirected to loopback (the kernel drops
    // them as martians), so a listener on 127.0.0.1 or ::1 takes none.
    let reachable = |l: &&&TrapListener| !l.listen.ip().is_loopback();
    let v4 = listeners
        .iter()
        .filter(reachable)
        .filter(|l| l.listen.is_ipv4() || l.listen.ip().is_unspecified())
        .min_by_key(|l| !l.listen.ip().is_unspecified());
    let v6 = listeners
        .iter()
        .filter(reachable)
        .filter(|l| l.listen.is_ipv6())
        .min_by_key(|l| !l.listen.ip().is_unspecified());
    if v4.is_none() && v6.is_none() {
        s.at(
            r.to.span(),
            &to_field,
            format!(
                "the trap listens on port {to} on loopback only ({}): connections from other \
                 machines cannot be redirected there; listen on 0.0.0.0:{to} or [::]:{to}",
                listeners[0].listen
            ),
        );
        return None;
    }
    let chosen: Vec<&TrapListener> = v4.iter().chain(v6.iter()).map(|l| **l).collect();
    ok &= tls_matches(r, &chosen, s);
    let ip = |l: Option<&&TrapListener>| l.map(|l| l.listen.ip());
    ok.then(|| TrapRedirect {
        ports: r.ports.get_ref().iter().map(|p| *p.get_ref()).collect(),
        to,
        listen4: ip(v4).map(|a| match a {
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from([0, 0, 0, 0]),
            a => a,
        }),
        listen6: ip(v6),
    })
}

/// Port 465 speaks TLS from the first byte and 25 and 587 start in plain text: a client
/// redirected to a listener of the other kind fails its handshake, and the trap sees nothing.
fn tls_matches(r: &RawTrapRedirect, listeners: &[&TrapListener], s: &mut Sink) -> bool {
    let mut ok = true;
    for p in r.ports.get_ref() {
        let wrong = |l: &&&TrapListener| match *p.get_ref() {
            465 => l.tls != TrapTls::Implicit,
            25 | 587 => l.tls == TrapTls::Implicit,
            _ => false,
        };
        let Some(l) = listeners.iter().find(wrong) else {
            continue;
        };
        let msg = match (*p.get_ref(), l.tls == TrapTls::Implicit) {
            (465, false) => format!(
                "port 465 speaks TLS from the first byte, but the trap listener on {} does not \
                 (set its tls = \"implicit\", or redirect 465 to another listener)",
                l.listen
            ),
            (port @ (25 | 587), true) => format!(
                "port {port} starts in plain text, but the trap listener on {} has tls = \
                 \"implicit\"; redirect {port} to a starttls listener",
                l.listen
            ),
            _ => continue,
        };
        s.at(p.span(), &format!("{FIELD}.ports"), msg);
        ok = false;
    }
    ok
}
