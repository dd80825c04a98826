//! The compiled, typed configuration that the rest of Moat runs on. Nothing here is optional in
//! the sense of "maybe invalid": `compile` has already checked and defaulted every value.

use ipnet::IpNet;
use moat_core::PrefixLens;
use moat_rules::Expr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub limits: Limits,
    pub tls: Option<Tls>,
    pub acme: Option<Acme>,
    pub admin: Admin,
    pub bans: Bans,
    pub proof: Proof,
    pub mail: Option<Mail>,
    pub trap: Option<Trap>,
    pub logs: Option<Logs>,
    pub nftables: Nftables,
    /// Reports: relative paths resolve against the state directory (the report database,
    /// `reports.sqlite`, lives there).
    pub report: Option<moat_report::ReportConfig>,
    pub policy: Policy,
    pub cohorts: CohortSettings,
    pub crowdsec: Crowdsec,
    pub feed: FeedPublish,
    pub feeds: Feeds,
    pub cluster: Option<Cluster>,
    pub digest: Digest,
}

pub use crate::model_join::{
    feed_url, valid_feed_name, Cluster, Digest, FeedPublish, Feeds, Subscription,
};

/// `[crowdsec]`: CrowdSec's bouncers (firewall, nginx, Traefik, custom) enforce Moat's
/// decisions by polling the Local API subset the admin listener serves
/// (`/v1/decisions/stream`, `/v1/decisions`) with one of these keys (`X-Api-Key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crowdsec {
    pub bouncer_keys: Vec<String>,
}

/// The trap's defaults: one place for both `[trap]` and `moat trap`'s flags.
pub mod trap_defaults {
    use std::time::Duration;
    pub const QUOTA_MB: u64 = 1024;
    pub const HOSTNAME: &str = "mail.localdomain";
    pub const TOP_PASSWORDS: u32 = 1000;
    pub const KTH_ATTEMPT: u32 = 5;
    pub const MAX_SESSIONS: u32 = 10_000;
    pub const MAX_SESSIONS_PER_IP: u32 = 20;
    pub const MAX_MESSAGE_MB: u32 = 10;
    pub const MAX_RECIPIENTS: u32 = 100;
    pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
    pub const SESSION_TIMEOUT: Duration = Duration::from_secs(600);
    /// As Dovecot's `auth_failure_delay`.
    pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(2);
}

/// The SMTP trap (see `moat-trap`). Paths are resolved against the state directory.
#[derive(Debug, Clone)]
pub struct Trap {
    pub quarantine_dir: PathBuf,
    pub quota_bytes: u64,
    pub hostname: String,
    /// Configured certificate and key; `None`: self-signed in the state directory.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub top_passwords: u32,
    pub kth_attempt: u32,
    pub max_sessions: u32,
    pub max_sessions_per_ip: u32,
    pub max_message_bytes: u64,
    pub max_recipients: u32,
    pub command_timeout: Duration,
    pub session_timeout: Duration,
    pub auth_failure_delay: Duration,
    pub listeners: Vec<TrapListener>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapTls {
    StartTls,
    Implicit,
    None,
}

#[derive(Debug, Clone)]
pub struct TrapListener {
    pub name: String,
    pub listen: SocketAddr,
    pub tls: TrapTls,
}

/// The mail shield (see `moat-mail`). Paths are resolved against the state directory.
#[derive(Debug, Clone)]
pub struct Mail {
    pub policy_listen: Option<SocketAddr>,
    /// `policy_listen = "unix:/path"`: Postfix's `check_policy_service unix:/path`.
    pub policy_socket: Option<PathBuf>,
    pub auth_policy_listen: Option<SocketAddr>,
    pub auth_policy_token: Option<String>,
    pub auth_policy_nonce: Option<String>,
    pub capture_listen: Option<SocketAddr>,
    pub quarantine_dir: PathBuf,
    pub recipients: Vec<String>,
    pub recipient_maps: Vec<PathBuf>,
    pub honey_passwd: PathBuf,
    pub honey_after_attempts: u32,
    pub honey_after_addresses: u32,
    pub honey_ttl_secs: u64,
    pub protected_logins: Vec<String>,
    pub enum_window_secs: u64,
    pub enum_per_client: u32,
    pub enum_per_network: u32,
    pub enum_per_sender: u32,
    pub enum_judged_secs: u64,
    /// True: accept-and-discard instead of the 450 deferral.
    pub enum_discard: bool,
    pub brute_window_secs: u64,
    pub brute_login_addresses: u32,
    pub brute_login_passwords: u32,
    pub brute_address_failures: u32,
    pub brute_network_failures: u32,
    pub brute_global_per_minute: u32,
    pub brute_delay_secs: i32,
    pub idle_timeout: Duration,
    /// Open connections per mail listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Postfix's `smtpd_milters = inet:ADDR` (see `moat_mail::milter`).
    pub milter_listen: Option<SocketAddr>,
    /// `milter_listen = "unix:/path"`: Postfix's `smtpd_milters = unix:/path` (fewer system
    /// calls per SMTP session than a loopback connection; see BENCHMARKS.md).
    pub milter_socket: Option<PathBuf>,
    /// Postfix's configuration directory, read with `postconf -c` (default /etc/postfix).
    pub postfix_config_dir: PathBuf,
    /// Same RCPT answer for valid and unknown recipients from unauthenticated clients; unknown
    /// ones dropped at end of message (only with a milter).
    pub hide_recipients: bool,
    /// Where DSNs for dropped recipients are submitted; `None`: no DSNs.
    pub dsn_relay: Option<SocketAddr>,
    /// `Reporting-MTA` of those DSNs.
    pub hostname: String,
    /// For SPF/DKIM lookups; `None`: /etc/resolv.conf.
    pub dns_server: Option<SocketAddr>,
}

/// `[cohorts]`: how clients are grouped, and when a group's sends and clicks (the policy's
/// `[[confirm]]` routes) make it confirmed or silent. See `moat_detect::cohort`.
#[derive(Debug, Clone)]
pub struct CohortSettings {
    /// The autonomous system announcing an address groups it, where the table covers it.
    pub asn_table: Option<Arc<moat_core::AsnTable>>,
    /// Elsewhere, the address's prefix of these lengths does.
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// Clicks at least this share of settled sends (and one at least) confirm a cohort.
    pub confirmed_ratio: f32,
    /// Settled sends before a cohort can be called silent.
    pub silent_after: u32,
    /// Clicks under this share of settled sends make such a cohort silent.
    pub silent_ratio: f32,
    /// How long a send waits for its click before it counts.
    pub lag: Duration,
    /// Sends and clicks count half after this long.
    pub half_life: Duration,
    pub max_cohorts: usize,
}

impl Default for CohortSettings {
    fn default() -> Self {
        CohortSettings {
            asn_table: None,
            prefix_v4: 16,
            prefix_v6: 32,
            confirmed_ratio: 0.3,
            silent_after: 10,
            silent_ratio: 0.05,
            lag: Duration::from_secs(15 * 60),
            half_life: Duration::from_secs(7 * 24 * 3600),
            max_cohorts: 1_000_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Proof {
    /// Something uses the proof (a rule requiring clearance, a challenge, a `moat.clearance` or
    /// `moat.good_bot` field, or injection): only then do its key file and endpoints exist.
    pub active: bool,
    /// Path prefixes whose HTML pages get the page script; empty: none.
    pub inject: Vec<String>,
    pub difficulty: u8,
    pub max_difficulty: u8,
    pub pressure_threshold: u64,
    /// Sends per minute on a `per_action` route before each needs its own proof.
    pub action_threshold: u64,
    /// The ceiling of per-action proofs: what a phone still solves within a few seconds.
    pub max_action_difficulty: u8,
    pub clearance_ttl: Duration,
    pub challenge_ttl: Duration,
    pub key_rotation: Duration,
    /// `Some(delay)`: browsers without JavaScript get a clearance after waiting this long.
    pub nojs_delay: Option<Duration>,
    pub exempt_paths: Vec<String>,
    /// Lowercased, without the dot.
    pub exempt_extensions: Vec<String>,
    /// Path segments that mark a feed wherever they appear (`/tag/x/rss/`).
    pub exempt_segments: Vec<String>,
    /// Lifetime of a no-JavaScript clearance: shorter, because waiting costs a script no CPU.
    pub nojs_ttl: Duration,
    pub good_bots: bool,
    pub dns_server: Option<SocketAddr>,
}

impl Proof {
    /// Feeds, robots.txt, `/.well-known/` and static assets are never challenged: feed readers
    /// and crawlers cannot run a proof, and a page's own assets must load for its script to run.
    /// Only reads are exempt: `POST /login.php/x.css` reaches PHP as `/login.php`, so a write
    /// is never let through by its path's looks.
    pub fn exempt(&self, method: &http::Method, path: &str) -> bool {
        use http::Method;
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return false;
        }
        let ext = path
            .rsplit('/')
            .next()
            .and_then(|last| last.rsplit_once('.'))
            .map(|(_, e)| e);
        self.exempt_paths.iter().any(|p| prefix_matches(path, p))
            || ext.is_some_and(|e| {
                self.exempt_extensions
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(e))
            })
            || path.split('/').any(|seg| {
                self.exempt_segments
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(seg))
            })
    }

    /// Whether a GET for `path` may get the page script (the caller checks it is a navigation).
    pub fn injects(&self, path: &str) -> bool {
        self.inject.iter().any(|p| prefix_matches(path, p))
            && !self.exempt(&http::Method::GET, path)
    }
}

/// `/feed` covers `/feed` and `/feed/…`, not `/feedback`; a prefix ending in `/` covers what
/// is below it.
fn prefix_matches(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod proof_tests {
    use super::*;
    use http::Method;

    fn proof() -> Proof {
        Proof {
            active: true,
            inject: vec!["/".into()],
            difficulty: 16,
            max_difficulty: 22,
            pressure_threshold: 60,
            action_threshold: 6,
            max_action_difficulty: 20,
            clearance_ttl: Duration::from_secs(60),
            challenge_ttl: Duration::from_secs(60),
            key_rotation: Duration::from_secs(60),
            nojs_delay: None,
            exempt_paths: vec![
                "/robots.txt".into(),
                "/.well-known/".into(),
                "/assets/".into(),
            ],
            exempt_extensions: vec!["css".into(), "xml".into()],
            exempt_segments: vec!["rss".into(), "feed".into()],
            nojs_ttl: Duration::from_secs(60),
            good_bots: false,
            dns_server: None,
        }
    }

    #[test]
    fn reads_of_feeds_and_assets_are_exempt_writes_never() {
        let p = proof();
        for path in [
            "/robots.txt",
            "/.well-known/x",
            "/assets/a.js",
            "/x/app.CSS",
            "/tag/news/rss/",
            "/feed",
            "/sitemap.xml",
        ] {
            assert!(p.exempt(&Method::GET, path), "{path}");
        }
        for path in [
            "/robots.txt.php",
            "/feedback",
            "/rssx/",
            "/assets",
            "/login",
        ] {
            assert!(!p.exempt(&Method::GET, path), "{path}");
        }
        assert!(!p.exempt(&Method::POST, "/wp-login.php/x.css"));
        assert!(!p.exempt(&Method::POST, "/feed"));
        assert!(p.injects("/blog/post/") && !p.injects("/tag/x/rss/"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    XForwardedFor,
    Forwarded,
    FlyClientIp,
    CfConnectingIp,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub upstream: http::Uri,
    pub state_dir: PathBuf,
    pub store: StoreKind,
    pub trusted_proxies: Vec<IpNet>,
    pub client_ip_headers: Vec<ClientIpHeader>,
    /// `FLY_APP_NAME` is set and the config names no proxies: `Fly-Client-IP` is read from
    /// Fly's proxy (`FLY_PROXY_NETS`), and the start line says so.
    pub fly_proxy: bool,
    /// Outbound names' nameserver when /etc/resolv.conf names none (`moat_dns::host`).
    pub dns_fallback: Option<SocketAddr>,
    pub proxy_protocol: bool,
    pub prefix_lens: PrefixLens,
    /// Serving threads; `None` leaves it to Moat (half the cores, at least one).
    pub workers: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub upstream_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub max_json_body_bytes: usize,
    /// Memory for bodies read before deciding, across every connection and stream.
    pub max_body_memory_bytes: usize,
    pub max_connections: usize,
    pub tarpit_max_concurrent: usize,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: Vec<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallengeKind {
    Http01,
    TlsAlpn01,
}

#[derive(Debug, Clone)]
pub struct Acme {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    pub challenge: AcmeChallengeKind,
    pub renew_before: Duration,
    pub directory_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Admin {
    /// `None`: `admin.enabled = false`.
    pub listen: Option<SocketAddr>,
    /// `/metrics` without a token, on a loopback or private address (or any, with `expose`).
    pub metrics_listen: Option<SocketAddr>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Bans {
    pub base_ttl: Duration,
    pub max_ttl: Duration,
    pub factor: u32,
    pub offences_to_ban: u32,
    pub offence_window: Duration,
    pub prefix_threshold: u32,
    pub prefix_window: Duration,
    pub status: u16,
    pub body: String,
    pub allow: Vec<IpNet>,
}

/// Rules, rate limits and decoys from the config, its rule files and presets, in that order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub rate_limits: Vec<RateLimit>,
    pub decoys: Vec<Decoy>,
    pub confirms: Vec<Confirm>,
}

impl Policy {
    /// Whether any rule or limit reads the JSON body; only then does the proxy buffer bodies.
    pub fn needs_body(&self) -> bool {
        self.rules.iter().any(|r| {
            r.expr.needs_body()
                || matches!(
                    r.per_action,
                    Some(LimitKey::Json(_) | LimitKey::JsonDomain(_))
                )
        }) || self.rate_limits.iter().any(|l| {
            matches!(l.key, LimitKey::Json(_) | LimitKey::JsonDomain(_))
                || l.expr.as_ref().is_some_and(|e| e.needs_body())
        }) || self
            .decoys
            .iter()
            .any(|d| d.learn.as_ref().is_some_and(|e| e.needs_body()))
            || self
                .confirms
                .iter()
                .any(|c| c.send.needs_body() || c.click.needs_body())
    }

    pub fn decoy(&self, id: &str) -> Option<usize> {
        self.decoys.iter().position(|d| d.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub expr: Arc<Expr>,
    pub action: Action,
    pub offence: bool,
    /// Applies only to requests without a valid clearance (and never to exempt paths or
    /// verified good bots).
    pub require_clearance: bool,
    /// A no-JavaScript clearance satisfies `require_clearance` here (it always satisfies a
    /// `challenge`, whose page offers the no-JavaScript path).
    pub allow_nojs: bool,
    /// Under pressure, each request needs its own proof, bound to this key of it (the target
    /// email): a clearance then no longer authorises any number of sends.
    pub per_action: Option<LimitKey>,
    /// The file (or `preset:NAME`) the rule came from, for `moat rules test` and logs.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Forward at once: no further rules and no rate limits.
    Allow,
    /// Stop evaluating rules; rate limits still apply.
    Skip,
    /// Record the match and go on.
    Log,
    Block {
        status: u16,
        body: String,
    },
    /// Index into `Policy::decoys`.
    Decoy(usize),
    Tarpit {
        delay: Duration,
        then: Box<Action>,
    },
    /// Clients with a valid clearance pass on to the next rule. Others: a GET navigation gets
    /// the challenge page; any other request gets `fallback`, because a POST must never be
    /// turned into a GET behind the user's back.
    Challenge {
        fallback: Box<Action>,
    },
    /// A 403 with a JSON body and `Moat-Clearance: required`, which the page script answers by
    /// solving and sending the request again. Only a challenge's fallback.
    Retry,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Skip => "skip",
            Action::Log => "log",
            Action::Block { .. } => "block",
            Action::Decoy(_) => "decoy",
            Action::Tarpit { .. } => "tarpit",
            Action::Challenge { .. } => "challenge",
            Action::Retry => "retry",
        }
    }
    /// Whether the request stops here without reaching the upstream.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Action::Log | Action::Skip | Action::Allow)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    Ip,
    Prefix,
    Global,
    Header(String),
    /// A JSON body field, lowercased and trimmed (the target email).
    Json(String),
    /// The domain part of an email in a JSON body field.
    JsonDomain(String),
    /// The client's cohort (`moat_detect::cohort`): its network, user agent and language.
    Cohort,
}

impl LimitKey {
    /// The key as the config spells it (`moat rules`, the admin API).
    pub fn spelling(&self) -> String {
        match self {
            LimitKey::Ip => "ip".into(),
            LimitKey::Prefix => "prefix".into(),
            LimitKey::Global => "global".into(),
            LimitKey::Header(h) => format!("header:{h}"),
            LimitKey::Json(f) => format!("json:{f}"),
            LimitKey::JsonDomain(f) => format!("json_domain:{f}"),
            LimitKey::Cohort => "cohort".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub id: String,
    pub description: String,
    pub expr: Option<Arc<Expr>>,
    pub key: LimitKey,
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
    pub max_keys: usize,
    pub ban: bool,
    pub action: Action,
    pub origin: String,
}

/// `[[confirm]]`: a request that asks the app to mail a link, and the request that follows
/// the link. Moat counts both per cohort (`moat_detect::cohort`).
#[derive(Debug, Clone)]
pub struct Confirm {
    pub id: String,
    pub description: String,
    /// A send: counted when the app answers it with a success (2xx).
    pub send: Arc<Expr>,
    /// A click: counted when the app answers it without an error (below 400) and, when
    /// `click_cookie` is set, sets that cookie; a made-up token gets neither.
    pub click: Arc<Expr>,
    pub click_cookie: Option<String>,
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct Decoy {
    pub id: String,
    pub status: u16,
    pub body: String,
    /// Lowercased names, in the order the app sends them.
    pub headers: Vec<(String, String)>,
    pub learn: Option<Arc<Expr>>,
    /// The app's usual answer time on the route, used (with jitter) until genuine successes
    /// on the `learn` route have been timed; a decoy answered at once tells a script it was
    /// caught.
    pub delay: Duration,
}

/// The log watcher's settings; `moat-logs` turns them into running jails.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    pub fail2ban: Option<PathBuf>,
    pub filter_dir: PathBuf,
    pub timezone: Option<String>,
    /// Read a new file from its beginning rather than its end.
    pub from_beginning: bool,
    pub jails: Vec<LogJail>,
    /// Where the log positions are kept (in the state directory).
    pub checkpoints: PathBuf,
}

#[derive(Debug, Clone)]
pub struct LogJail {
    pub name: String,
    pub filter: LogFilter,
    /// Files; empty with `journal` set.
    pub logpath: Vec<String>,
    pub journal: Option<Vec<String>>,
    pub max_retry: u32,
    pub find_time: std::time::Duration,
    pub ban_time: std::time::Duration,
    pub ignore: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub enum LogFilter {
    /// A fail2ban filter spec (`name[opt=value]` or a path).
    Named(String),
    Inline {
        failregex: Vec<String>,
        ignoreregex: Vec<String>,
        prefregex: Option<String>,
        datepattern: Option<String>,
    },
}

/// Kernel enforcement (see `moat-nftables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nftables {
    /// `None`: where the machine allows it.
    pub enabled: Option<bool>,
    pub table: String,
    /// Banned addresses' connections to some ports go to the trap instead of the drop.
    pub trap_redirect: Vec<TrapRedirect>,
}

impl Default for Nftables {
    fn default() -> Self {
        Nftables {
            enabled: None,
            table: "moat".into(),
            trap_redirect: Vec::new(),
        }
    }
}

/// `[[nftables.trap_redirect]]`, checked against the trap's listeners: TCP connections from
/// banned addresses to `ports` go to the trap's listener on `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapRedirect {
    pub ports: Vec<u16>,
    pub to: u16,
    /// The listener taking IPv4 connections on `to` (`0.0.0.0`, `[::]` or one address);
    /// `None`: IPv4 connections are not redirected.
    pub listen4: Option<std::net::IpAddr>,
    /// The listener taking IPv6 connections on `to`; `None`: not redirected.
    pub listen6: Option<std::net::IpAddr>,
}
