//! Issue 17, `[nftables]`: the redirect of banned addresses' mail connections to the trap is
//! checked against the trap's listeners at start, every mistake with its line and field.

use moat_config::{load_text, Config, Overrides};
use std::net::IpAddr;
use std::path::Path;

const BASE: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
upstream = "http://127.0.0.1:2368"
state_dir = "/tmp/moat-nft-config-test"
"#;

fn load(extra: &str) -> Result<Config, Vec<String>> {
    let text = format!("{BASE}{extra}");
    load_text("moat.toml", &text, Path::new("/tmp"), &Overrides::default()).map_err(|e| {
        e.0.iter()
            .map(|e| format!("{}:{}:{}", e.line, e.field, e.message))
            .collect()
    })
}

fn errors(extra: &str) -> Vec<String> {
    match load(extra) {
        Ok(_) => panic!("expected errors for {extra}"),
        Err(e) => e,
    }
}

const TRAP: &str = r#"
[trap]
[[trap.listener]]
listen = "0.0.0.0:2525"
tls = "starttls"
[[trap.listener]]
listen = "[fd00::2]:2525"
[[trap.listener]]
listen = "[::]:4650"
tls = "implicit"
[[trap.listener]]
listen = "127.0.0.1:2626"
"#;

#[test]
fn a_redirect_to_a_trap_listener_compiles_per_family() {
    let c = load(&format!(
        "{TRAP}\n[nftables]\ntrap_redirect = [{{ ports = [25, 587], to = 2525 }}, {{ ports = [465], to = 4650 }}]\n"
    ))
    .unwrap();
    let r = &c.nftables.trap_redirect;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].ports, vec![25, 587]);
    assert_eq!(r[0].to, 2525);
    // 0.0.0.0 takes IPv4 (a redirect); IPv6 goes to the one address listening.
    assert_eq!(r[0].listen4, Some("0.0.0.0".parse::<IpAddr>().unwrap()));
    assert_eq!(r[0].listen6, Some("fd00::2".parse::<IpAddr>().unwrap()));
    // [::] takes both families.
    assert_eq!(r[1].listen4, Some("0.0.0.0".parse::<IpAddr>().unwrap()));
    assert_eq!(r[1].listen6, Some("::".parse::<IpAddr>().unwrap()));
    // Without the option, nothing is redirected.
    let c = load(&format!("{TRAP}\n[nftables]\ntable = \"moat\"\n")).unwrap();
    assert!(c.nftables.trap_redirect.is_empty());
}

#[test]
fn a_redirect_to_nothing_is_refused_with_its_line() {
    // No [trap] at all: line 6 of the text (BASE is 5 lines, then `[nftables]`).
    let e = errors("[nftables]\ntrap_redirect = [{ ports = [25], to = 2525 }]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("7:nftables.trap_redirect.to:"), "{e:?}");
    assert!(e[0].contains("no [trap]"), "{e:?}");
    // A port no listener has.
    let e = errors(&format!(
        "{TRAP}\n[nftables]\ntrap_redirect = [{{ ports = [25], to = 2600 }}]\n"
    ));
    assert!(
        e[0].contains("nftables.trap_redirect.to:no [[trap.listener]] listens on port 2600"),
        "{e:?}"
    );
    assert!(
        e[0].contains("0.0.0.0:2525"),
        "the message lists the listeners: {e:?}"
    );
    // A listener on loopback only cannot take connections from other machines.
    let e = errors(&format!(
        "{TRAP}\n[nftables]\ntrap_redirect = [{{ ports = [25], to = 2626 }}]\n"
    ));
    assert!(e[0].contains("loopback only"), "{e:?}");
}

#[test]
fn tls_modes_duplicate_and_zero_ports_are_refused() {
    let e = errors(&format!(
        "{TRAP}\n[nftables]\ntrap_redirect = [{{ ports = [465], to = 2525 }}, {{ ports = [587, 0], to = 4650 }}, {{ ports = [465], to = 4650 }}]\n"
    ));
    let all = e.join("\n");
    assert!(
        all.contains("port 465 speaks TLS from the first byte"),
        "{all}"
    );
    assert!(all.contains("port 587 starts in plain text"), "{all}");
    assert!(all.contains("a port from 1 to 65535"), "{all}");
    assert!(all.contains("port 465 is redirected twice"), "{all}");
    assert_eq!(e.len(), 4, "one error per mistake: {all}");
    assert!(
        e.iter()
            .all(|l| l.starts_with("20:nftables.trap_redirect.ports")),
        "{all}"
    );
    let e = errors(&format!(
        "{TRAP}\n[nftables]\ntrap_redirect = [{{ ports = [], to = 2525 }}]\n"
    ));
    assert!(e[0].contains("at least one port"), "{e:?}");
}

#[test]
fn bad_input_is_an_error_not_a_crash() {
    for bad in [
        "[nftables]\ntrap_redirect = [{ ports = [70000], to = 2525 }]\n",
        "[nftables]\ntrap_redirect = [{ ports = [25], to = -1 }]\n",
        "[nftables]\ntrap_redirect = [{ ports = 25, to = 2525 }]\n",
        "[nftables]\ntrap_redirect = [{ ports = [25], to = 2525, via = 1 }]\n",
        "[nftables]\ntrap_redirect = { ports = [25], to = \"x\" }\n",
        "[nftables]\ntrap_redirect = [{ to = 2525 }]\n",
    ] {
        // A parse error, on the line of the redirect (TRAP ends on line 18).
        let e = errors(&format!("{TRAP}\n{bad}"));
        assert!(e.iter().any(|l| l.starts_with("20:")), "{bad}: {e:?}");
    }
}
