//! Raw TOML to runtime config. Each check reports into a [`Sink`] and carries on, so one load
//! lists every problem; defaults live here, in one place, next to the checks.

use crate::duration::parse_duration;
use crate::errors::{ConfigError, ConfigErrors, Sink};
use crate::model::*;
use crate::parse::parse_toml;
use crate::presets;
use crate::raw::*;
use ipnet::IpNet;
use moat_core::PrefixLens;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Command-line settings that win over the file, so `moat run --listen … --upstream …` works
/// with no config file at all.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub presets: Vec<String>,
    pub state_dir: Option<String>,
    pub rule_files: Vec<PathBuf>,
    /// The Fly.io app's name (`FLY_APP_NAME`, set on every Fly Machine): requests then come
    /// through Fly's proxy, whose `Fly-Client-IP` is trusted unless the config says otherwise.
    pub fly_app: Option<String>,
}

/// Where Fly's proxy connects from inside a Machine: its private IPv4 range and the
/// organisation's private IPv6 network (6PN). Other Machines of the same organisation can also
/// connect from 6PN; they are the owner's own.
pub const FLY_PROXY_NETS: [&str; 2] = ["172.16.0.0/12", "fdaa::/16"];

/// Loads `path` (or the embedded defaults when `None`), applies `ov`, and compiles.
pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigErrors> {
    let (file, src) = match path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(s) => (p.display().to_string(), s),
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    file: p.display().to_string(),
                    line: 0,
                    column: 0,
                    field: "-".into(),
                    message: format!("cannot read: {e}"),
                }]))
            }
        },
        None => ("<defaults>".to_string(), String::new()),
    };
    let base = path
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    load_text(&file, &src, &base, ov)
}

/// What [`load`] does with a config file's text once read: `file` names it in errors, and
/// relative paths in it (`rule_files`, certificates) are taken from `base`. Errors are always
/// values (each with its file, and its line and column where it has one), never a panic,
/// whatever the text (the `config` fuzz target checks it).
pub fn load_text(
    file: &str,
    src: &str,
    base: &Path,
    ov: &Overrides,
) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = parse_toml(file, src)?;
    compile(raw, file, src, base, ov)
}

fn compile(
    raw: RawConfig,
    file: &str,
    src: &str,
    base: &Path,
    ov: &Overrides,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut sink = Sink {
        file,
        src,
        errors: &mut errors,
    };
    let mail_only = raw.mail.is_some() || raw.trap.is_some();
    let mut server = server(&raw.server, &mut sink, ov, mail_only);
    // A mail-only Moat (no web app to protect) runs no HTTP listener.
    if mail_only && ov.upstream.is_none() && raw.server.upstream.is_none() {
        server.listen.clear();
    }
    let limits = limits(&raw.limits, &mut sink);
    // As in Caddy, naming ACME domains is enough: TLS then listens on :443 with the obtained
    // certificate unless [tls] says otherwise.
    let tls = match (&raw.tls, &raw.acme) {
        (Some(t), _) => Some(tls(t, &mut sink, base)),
        (None, Some(_)) => Some(Tls {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 443))],
            cert: None,
            key: None,
        }),
        (None, None) => None,
    };
    let acme = raw.acme.as_ref().map(|a| acme(a, &mut sink, base));
    let admin = admin(&raw.admin, &mut sink, base, ov.fly_app.is_some());
    let bans = bans(&raw.bans, &mut sink);

    // Policy sources in evaluation order: the operator's own rules first, so an `allow` there
    // wins over a preset, then rule files, then presets.
    let mut sources: Vec<(String, String, RawRuleFile)> = vec![(
        file.to_string(),
        src.to_string(),
        RawRuleFile {
            rule: raw.rule,
            rate_limit: raw.rate_limit,
            decoy: raw.decoy,
            confirm: raw.confirm,
        },
    )];
    let mut files: Vec<(PathBuf, Option<std::ops::Range<usize>>)> = raw
        .rule_files
        .iter()
        .map(|f| (base.join(f.get_ref()), Some(f.span())))
        .collect();
    files.extend(ov.rule_files.iter().map(|p| (p.clone(), None)));
    for (path, span) in files {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_toml::<RawRuleFile>(&name, &text) {
                Ok(rf) => sources.push((name, text, rf)),
                Err(e) => sink.errors.extend(e.0),
            },
            Err(e) => match span {
                Some(s) => sink.at(s, "rule_files", format!("cannot read {name}: {e}")),
                None => sink.nowhere("--rules", format!("cannot read {name}: {e}")),
            },
        }
    }
    let mut preset_names: Vec<(String, Option<std::ops::Range<usize>>)> = raw
        .presets
        .iter()
        .map(|p| (p.get_ref().clone(), Some(p.span())))
        .collect();
    preset_names.extend(ov.presets.iter().map(|p| (p.clone(), None)));
    let mut seen = std::collections::HashSet::new();
    for (name, span) in preset_names {
        if !seen.insert(name.clone()) {
            continue;
        }
        match presets::get(&name) {
            Some(text) => {
                let pfile = format!("preset:{name}");
                match parse_toml::<RawRuleFile>(&pfile, text) {
                    Ok(rf) => sources.push((pfile, text.to_string(), rf)),
                    Err(e) => sink.errors.extend(e.0),
                }
            }
            None => {
                let msg = format!(
                    "unknown preset `{name}`; known: {}",
                    presets::NAMES.join(", ")
                );
                match span {
                    Some(s) => sink.at(s, "presets", msg),
                    None => sink.nowhere("--preset", msg),
                }
            }
        }
    }
    let policy = crate::compile_policy::policy(&sources, sink.errors);
    let mut sink = Sink {
        file,
        src,
        errors: &mut errors,
    };
    let proof = crate::compile_proof::proof(&raw.proof, &policy, &mut sink);
    let cohorts = crate::compile_cohorts::cohorts(&raw.cohorts, &mut sink, base);
    let crowdsec = crowdsec(raw.crowdsec.as_ref(), &mut sink);
    let feed = crate::compile_feeds::feed(raw.feed.as_ref(), &mut sink);
    let feeds = crate::compile_feeds::feeds(raw.feeds.as_ref(), &mut sink);
    let cluster = raw
        .cluster
        .as_ref()
        .map(|c| crate::compile_feeds::cluster(c, &mut sink));
    let mail = raw
        .mail
        .as_ref()
        .map(|m| crate::compile_mail::mail(m, &mut sink, &server.state_dir));
    let report = raw.report.as_ref().map(|r| {
        if let Err(e) = r.get_ref().validate() {
            for msg in e
                .to_string()
                .trim_start_matches("report config: ")
                .split("; ")
            {
                sink.at(r.span(), "report", msg);
            }
        }
        r.get_ref().clone()
    });
    let digest = crate::compile_feeds::digest(
        raw.digest.as_ref(),
        raw.report.as_ref().map(|r| r.get_ref()),
        &mut sink,
    );
    let trap = raw
        .trap
        .as_ref()
        .map(|t| crate::compile_trap::trap(t, &mut sink, &server.state_dir, base));
    let nftables =
        crate::compile_nftables::nftables(raw.nftables.as_ref(), trap.as_ref(), &mut sink);
    let logs = raw
        .logs
        .as_ref()
        .map(|l| crate::compile_logs::logs(l, &mut sink, &server.state_dir, base));

    if errors.is_empty() {
        Ok(Config {
            server,
            limits,
            tls,
            acme,
            admin,
            bans,
            proof,
            mail,
            trap,
            logs,
            nftables,
            report,
            policy,
            cohorts,
            crowdsec,
            feed,
            feeds,
            cluster,
            digest,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

pub(crate) fn dur(v: Option<&S<String>>, field: &str, default: Duration, s: &mut Sink) -> Duration {
    match v {
        None => default,
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|m| {
            s.at(v.span(), field, m);
            default
        }),
    }
}

pub(crate) fn num<T: Copy + Into<u64>>(
    v: Option<&S<T>>,
    field: &str,
    min: u64,
    default: T,
    s: &mut Sink,
) -> T {
    match v {
        Some(x) if (*x.get_ref()).into() < min => {
            s.at(x.span(), field, format!("must be at least {min}"));
            default
        }
        Some(x) => *x.get_ref(),
        None => default,
    }
}

pub(crate) fn addr(
    v: &str,
    span: Option<std::ops::Range<usize>>,
    field: &str,
    s: &mut Sink,
) -> Option<SocketAddr> {
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let m = format!("`{v}` is not an address:port such as 127.0.0.1:8080 or [::]:443");
            match span {
                Some(sp) => s.at(sp, field, m),
                None => s.nowhere(field, m),
            }
            None
        }
    }
}

pub(crate) fn nets(list: &[S<String>], field: &str, s: &mut Sink) -> Vec<IpNet> {
    list.iter()
        .filter_map(|v| {
            let t = v.get_ref().trim();
            t.parse::<IpNet>()
                .ok()
                .or_else(|| t.parse::<IpAddr>().ok().map(IpNet::from))
                .or_else(|| {
                    s.at(
                        v.span(),
                        field,
                        format!("`{t}` is not an IP address or CIDR prefix"),
                    );
                    None
                })
        })
        .collect()
}

fn server(r: &RawServer, s: &mut Sink, ov: &Overrides, mail: bool) -> Server {
    let listen = match (&ov.listen, &r.listen) {
        (Some(l), _) => l
            .iter()
            .filter_map(|a| addr(a, None, "--listen", s))
            .collect(),
        (None, Some(l)) => l
            .iter()
            .filter_map(|a| addr(a.get_ref(), Some(a.span()), "server.listen", s))
            .collect(),
        (None, None) => vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
    };
    let upstream_src = ov.upstream.as_ref().map(|u| (u.clone(), None)).or_else(|| {
        r.upstream
            .as_ref()
            .map(|u| (u.get_ref().clone(), Some(u.span())))
    });
    let upstream = match upstream_src {
        None if mail => http::Uri::from_static("http://127.0.0.1:1"),
        None => {
            s.nowhere(
                "server.upstream",
                "required: the URL of the app to protect (or --upstream)",
            );
            http::Uri::from_static("http://127.0.0.1:1")
        }
        Some((u, span)) => match u.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => uri,
            _ => {
                let m = format!("`{u}` must be an http:// URL with a host and port");
                match span {
                    Some(sp) => s.at(sp, "server.upstream", m),
                    None => s.nowhere("--upstream", m),
                }
                http::Uri::from_static("http://127.0.0.1:1")
            }
        },
    };
    let state_dir = ov
        .state_dir
        .clone()
        .or_else(|| r.state_dir.as_ref().map(|d| d.get_ref().clone()))
        .unwrap_or_else(|| "moat-state".to_string());
    let store = match r.store.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("sqlite", _)) => StoreKind::Sqlite,
        Some(("memory", _)) => StoreKind::Memory,
        Some((other, sp)) => {
            s.at(
                sp,
                "server.store",
                format!("`{other}`: use sqlite or memory"),
            );
            StoreKind::Sqlite
        }
    };
    // One source only: a proxy passes through the headers it does not manage, so with several
    // sources a client could send `Fly-Client-IP` through an nginx that only appends to
    // X-Forwarded-For, and pick its own address. X-Forwarded-For, walked right to left past the
    // trusted hops, is what every proxy maintains.
    if let Some(list) = r.client_ip_headers.as_ref().filter(|l| l.len() > 1) {
        s.at(
            list[1].span(),
            "server.client_ip_headers",
            "name one header: the one your trusted proxy sets (fly-client-ip on Fly.io, cf-connecting-ip behind Cloudflare); a client could send the others through it",
        );
    }
    let client_ip_headers = match &r.client_ip_headers {
        None => vec![ClientIpHeader::XForwardedFor],
        Some(list) => list
            .iter()
            .filter_map(|h| match h.get_ref().to_ascii_lowercase().as_str() {
                "x-forwarded-for" => Some(ClientIpHeader::XForwardedFor),
                "forwarded" => Some(ClientIpHeader::Forwarded),
                "fly-client-ip" => Some(ClientIpHeader::FlyClientIp),
                "cf-connecting-ip" => Some(ClientIpHeader::CfConnectingIp),
                other => {
                    s.at(h.span(), "server.client_ip_headers", format!("`{other}`: use x-forwarded-for, forwarded, fly-client-ip or cf-connecting-ip"));
                    None
                }
            })
            .collect(),
    };
    let mut trusted_proxies = nets(&r.trusted_proxies, "server.trusted_proxies", s);
    // Behind a proxy whose address Moat does not trust, every request seems to come from the
    // proxy: one script's offences would ban it, and with it every visitor.
    let fly_only = r.client_ip_headers.as_ref().is_none_or(|l| {
        l.iter()
            .all(|h| h.get_ref().eq_ignore_ascii_case("fly-client-ip"))
    });
    let fly_proxy = ov.fly_app.is_some() && r.trusted_proxies.is_empty() && fly_only;
    let client_ip_headers = if fly_proxy {
        trusted_proxies = FLY_PROXY_NETS
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        vec![ClientIpHeader::FlyClientIp]
    } else {
        client_ip_headers
    };
    if let Some(first) = r.client_ip_headers.as_ref().and_then(|l| l.first()) {
        if r.trusted_proxies.is_empty() && !fly_proxy && !r.proxy_protocol {
            s.at(
                first.span(),
                "server.client_ip_headers",
                "is read only from trusted proxies, and server.trusted_proxies is empty: every \
                 request would seem to come from the proxy, and one script's offences would ban \
                 every visitor behind it. Set server.trusted_proxies to the proxy's addresses \
                 (e.g. [\"10.0.0.0/8\"]), or remove client_ip_headers if clients connect \
                 directly (on Fly.io, FLY_APP_NAME makes Moat trust Fly's proxy by itself)",
            );
        }
    }
    let dns_fallback = r.dns_fallback.as_ref().and_then(|d| {
        let v = d.get_ref();
        v.parse::<SocketAddr>()
            .or_else(|_| v.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| {
                s.at(
                    d.span(),
                    "server.dns_fallback",
                    format!("`{v}` is not an address such as 9.9.9.9 or 127.0.0.1:5353"),
                )
            })
            .ok()
    });
    let mut lens = PrefixLens::default();
    if let Some(v) = &r.prefix_v4 {
        if !(8..=32).contains(v.get_ref()) {
            s.at(v.span(), "server.prefix_v4", "must be between 8 and 32");
        } else {
            lens.v4 = *v.get_ref();
        }
    }
    if let Some(v) = &r.prefix_v6 {
        if !(16..=128).contains(v.get_ref()) {
            s.at(v.span(), "server.prefix_v6", "must be between 16 and 128");
        } else {
            lens.v6 = *v.get_ref();
        }
    }
    let workers = r.workers.as_ref().and_then(|w| {
        if (1..=1024).contains(w.get_ref()) {
            Some(*w.get_ref())
        } else {
            s.at(w.span(), "server.workers", "must be between 1 and 1024");
            None
        }
    });
    Server {
        workers,
        listen,
        upstream,
        state_dir: PathBuf::from(state_dir),
        store,
        trusted_proxies,
        client_ip_headers,
        fly_proxy,
        dns_fallback,
        proxy_protocol: r.proxy_protocol,
        prefix_lens: lens,
    }
}

fn limits(r: &RawLimits, s: &mut Sink) -> Limits {
    Limits {
        header_timeout: dur(
            r.header_timeout.as_ref(),
            "limits.header_timeout",
            Duration::from_secs(10),
            s,
        ),
        body_timeout: dur(
            r.body_timeout.as_ref(),
            "limits.body_timeout",
            Duration::from_secs(30),
            s,
        ),
        idle_timeout: dur(
            r.idle_timeout.as_ref(),
            "limits.idle_timeout",
            Duration::from_secs(60),
            s,
        ),
        upstream_timeout: dur(
            r.upstream_timeout.as_ref(),
            "limits.upstream_timeout",
            Duration::from_secs(60),
            s,
        ),
        max_header_bytes: num(
            r.max_header_bytes.as_ref(),
            "limits.max_header_bytes",
            8192,
            32 * 1024,
            s,
        ) as usize,
        max_body_bytes: num(
            r.max_body_bytes.as_ref(),
            "limits.max_body_bytes",
            0,
            10 * 1024 * 1024,
            s,
        ),
        max_json_body_bytes: num(
            r.max_json_body_bytes.as_ref(),
            "limits.max_json_body_bytes",
            64,
            // At least what the apps' own JSON parsers accept (Express: 100 kB), so a body
            // padded past our cap cannot reach the app unread.
            128 * 1024,
            s,
        ) as usize,
        max_body_memory_bytes: num(
            r.max_body_memory_bytes.as_ref(),
            "limits.max_body_memory_bytes",
            64 * 1024,
            // 512 bodies at the JSON cap at once; a flood of small forms declares its length
            // and reserves only that.
            64 * 1024 * 1024,
            s,
        ) as usize,
        max_connections: num(
            r.max_connections.as_ref(),
            "limits.max_connections",
            1,
            10_000,
            s,
        ) as usize,
        tarpit_max_concurrent: num(
            r.tarpit_max_concurrent.as_ref(),
            "limits.tarpit_max_concurrent",
            0,
            256,
            s,
        ) as usize,
    }
}

fn path(v: &S<String>, base: &Path) -> PathBuf {
    base.join(v.get_ref())
}

fn tls(r: &RawTls, s: &mut Sink, base: &Path) -> Tls {
    let listen = match &r.listen {
        Some(l) => l
            .iter()
            .filter_map(|a| addr(a.get_ref(), Some(a.span()), "tls.listen", s))
            .collect(),
        None => vec![SocketAddr::from(([0, 0, 0, 0], 443))],
    };
    if r.cert.is_some() != r.key.is_some() {
        s.nowhere("tls.cert", "tls.cert and tls.key go together");
    }
    Tls {
        listen,
        cert: r.cert.as_ref().map(|c| path(c, base)),
        key: r.key.as_ref().map(|k| path(k, base)),
    }
}

fn acme(r: &RawAcme, s: &mut Sink, base: &Path) -> Acme {
    if r.domains.is_empty() {
        s.nowhere("acme.domains", "name at least one domain");
    }
    let challenge = match r
        .challenge
        .as_ref()
        .map(|c| (c.get_ref().as_str(), c.span()))
    {
        None | Some(("http-01", _)) => AcmeChallengeKind::Http01,
        Some(("tls-alpn-01", _)) => AcmeChallengeKind::TlsAlpn01,
        Some((o, sp)) => {
            s.at(
                sp,
                "acme.challenge",
                format!("`{o}`: use http-01 or tls-alpn-01"),
            );
            AcmeChallengeKind::Http01
        }
    };
    Acme {
        domains: r
            .domains
            .iter()
            .map(|d| d.get_ref().to_ascii_lowercase())
            .collect(),
        email: r.email.as_ref().map(|e| e.get_ref().clone()),
        directory: r
            .directory
            .as_ref()
            .map(|d| d.get_ref().clone())
            .unwrap_or_else(|| "https://acme-v02.api.letsencrypt.org/directory".into()),
        challenge,
        renew_before: dur(
            r.renew_before.as_ref(),
            "acme.renew_before",
            Duration::from_secs(30 * 86400),
            s,
        ),
        directory_ca: r.directory_ca.as_ref().map(|c| path(c, base)),
    }
}

/// The admin listener's default: loopback, and not Prometheus's own 9090, which a Prometheus
/// on the same machine would already hold.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9791";

fn admin(r: &RawAdmin, s: &mut Sink, base: &Path, fly: bool) -> Admin {
    let listen = r
        .listen
        .as_ref()
        .and_then(|l| addr(l.get_ref(), Some(l.span()), "admin.listen", s))
        .unwrap_or_else(|| ADMIN_LISTEN.parse().expect("a valid default"));
    if !listen.ip().is_loopback() && !r.expose {
        match &r.listen {
            Some(l) => s.at(
                l.span(),
                "admin.listen",
                "not a loopback address; set admin.expose = true to allow it",
            ),
            None => s.nowhere("admin.listen", "must be loopback"),
        }
    }
    if let Some(t) = &r.token {
        if t.get_ref().len() < 16 {
            s.at(t.span(), "admin.token", "use at least 16 characters");
        }
    }
    let metrics_listen = r.metrics_listen.as_ref().and_then(|l| {
        let a = addr(l.get_ref(), Some(l.span()), "admin.metrics_listen", s)?;
        // Without a token the metrics stay off the internet: loopback or a private network,
        // any address only where nothing public reaches it (a Fly Machine, whose public
        // traffic comes through Fly's proxy to the services fly.toml names) or with `expose`.
        let ok = r.expose
            || private(a.ip())
            || (a.ip().is_unspecified() && fly);
        if !ok {
            s.at(
                l.span(),
                "admin.metrics_listen",
                "serves /metrics without a token: use a loopback or private address (or set admin.expose = true)",
            );
        }
        Some(a)
    });
    Admin {
        listen: (r.enabled != Some(false)).then_some(listen),
        metrics_listen,
        token: r.token.as_ref().map(|t| t.get_ref().clone()),
        token_file: r.token_file.as_ref().map(|t| path(t, base)),
    }
}

/// Loopback, RFC 1918, link-local, or IPv6 unique-local (Fly's 6PN is fdaa::/16).
fn private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn bans(r: &RawBans, s: &mut Sink) -> Bans {
    let status = num(r.status.as_ref(), "bans.status", 100, 403u16, s);
    Bans {
        base_ttl: dur(
            r.base_ttl.as_ref(),
            "bans.base_ttl",
            Duration::from_secs(15 * 60),
            s,
        ),
        max_ttl: dur(
            r.max_ttl.as_ref(),
            "bans.max_ttl",
            Duration::from_secs(7 * 86400),
            s,
        ),
        factor: num(r.factor.as_ref(), "bans.factor", 1, 4u32, s),
        offences_to_ban: num(
            r.offences_to_ban.as_ref(),
            "bans.offences_to_ban",
            1,
            5u32,
            s,
        ),
        offence_window: dur(
            r.offence_window.as_ref(),
            "bans.offence_window",
            Duration::from_secs(600),
            s,
        ),
        prefix_threshold: num(
            r.prefix_threshold.as_ref(),
            "bans.prefix_threshold",
            0,
            5u32,
            s,
        ),
        prefix_window: dur(
            r.prefix_window.as_ref(),
            "bans.prefix_window",
            Duration::from_secs(600),
            s,
        ),
        status,
        body: r.body.clone().unwrap_or_else(|| "Forbidden\n".into()),
        allow: nets(&r.allow, "bans.allow", s),
    }
}

/// `[crowdsec]`: each bouncer key as long as an admin token, and no key twice (two bouncers
/// sharing one would see each other's changes as their own).
fn crowdsec(r: Option<&crate::raw::RawCrowdsec>, s: &mut Sink) -> Crowdsec {
    let mut keys: Vec<String> = Vec::new();
    for k in r.map(|r| r.bouncer_keys.as_slice()).unwrap_or_default() {
        let v = k.get_ref().trim();
        if v.len() < 16 {
            s.at(
                k.span(),
                "crowdsec.bouncer_keys",
                "a key needs at least 16 characters",
            );
        } else if keys.iter().any(|x| x == v) {
            s.at(
                k.span(),
                "crowdsec.bouncer_keys",
                "this key is listed twice",
            );
        } else {
            keys.push(v.to_string());
        }
    }
    Crowdsec { bouncer_keys: keys }
}
