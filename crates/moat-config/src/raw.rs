//! The configuration exactly as written in TOML. Every table denies unknown fields so a typo is an
//! error with a line number instead of a silently ignored setting. Values that need checking keep
//! their source span (`Spanned`) so `compile` can point at them.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub limits: RawLimits,
    pub tls: Option<RawTls>,
    pub acme: Option<RawAcme>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub bans: RawBans,
    #[serde(default)]
    pub proof: RawProof,
    pub mail: Option<RawMail>,
    pub trap: Option<RawTrap>,
    /// The log watcher: fail2ban's jails read in place, and Moat's own.
    pub logs: Option<RawLogs>,
    /// Bans in the kernel (nftables).
    pub nftables: Option<RawNftables>,
    /// CrowdSec's bouncers fed Moat's decisions (the Local API subset they poll).
    pub crowdsec: Option<RawCrowdsec>,
    /// Several instances as one shield, through Redis or Valkey.
    pub cluster: Option<RawCluster>,
    /// The summary that comes to the owner.
    pub digest: Option<RawDigest>,
    /// This instance's signed feed at `/.well-known/moat/feed/`.
    pub feed: Option<RawFeed>,
    /// Peers' feeds this instance follows, and the trust policy for them.
    pub feeds: Option<RawFeeds>,
    /// Abuse reports from what the trap captured: `moat-report`'s own settings, checked by
    /// its `validate`. Dry run (outbox only) unless `send = true`.
    pub report: Option<S<moat_report::ReportConfig>>,
    /// Names of embedded presets (`ghost`, `wordpress`, `generic-form`).
    #[serde(default)]
    pub presets: Vec<S<String>>,
    /// Paths of rule files, relative to this config file.
    #[serde(default)]
    pub rule_files: Vec<S<String>>,
    #[serde(default)]
    pub rule: Vec<RawRule>,
    #[serde(default)]
    pub rate_limit: Vec<RawRateLimit>,
    #[serde(default)]
    pub decoy: Vec<RawDecoy>,
    #[serde(default)]
    pub confirm: Vec<RawConfirm>,
    #[serde(default)]
    pub cohorts: RawCohorts,
}

/// A rule file (and every preset) holds only policy: rules, rate limits and decoys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleFile {
    #[serde(default)]
    pub rule: Vec<RawRule>,
    #[serde(default)]
    pub rate_limit: Vec<RawRateLimit>,
    #[serde(default)]
    pub decoy: Vec<RawDecoy>,
    #[serde(default)]
    pub confirm: Vec<RawConfirm>,
}

/// `[[confirm]]`: a send (the app mails a link) and its click (the link followed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfirm {
    pub id: S<String>,
    #[serde(default)]
    pub description: String,
    pub send: S<String>,
    pub click: S<String>,
    pub click_cookie: Option<S<String>>,
}

/// `[crowdsec]`: the keys of the bouncers allowed to read Moat's decisions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCrowdsec {
    #[serde(default)]
    pub bouncer_keys: Vec<S<String>>,
}

/// `[cluster]`: see `model::Cluster`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis: S<String>,
    pub prefix: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub on_unreachable: Option<S<String>>,
}

/// `[digest]`: see `model::Digest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    pub every: Option<S<String>>,
    pub webhook: Option<S<String>>,
    pub mail_to: Option<S<String>>,
}

/// `[feed]`: see `model::FeedPublish`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    pub publish: Option<S<bool>>,
    pub republish: Option<S<bool>>,
    pub name: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub lifetime: Option<S<String>>,
}

/// `[feeds]`: see `model::Feeds`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeeds {
    pub quorum: Option<S<f64>>,
    pub max_ttl: Option<S<String>>,
    pub poll: Option<S<String>>,
    #[serde(default)]
    pub never_block: Vec<S<String>>,
    #[serde(default)]
    pub subscribe: Vec<RawSubscription>,
}

/// `[[feeds.subscribe]]`: one peer's feed, its key pinned.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscription {
    pub name: S<String>,
    pub url: S<String>,
    pub key: S<String>,
    pub weight: Option<S<f64>>,
}

/// `[cohorts]`: see `CohortSettings`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCohorts {
    /// An iptoasn.com TSV table, relative to the config file.
    pub asn_table: Option<S<String>>,
    pub prefix_v4: Option<S<u8>>,
    pub prefix_v6: Option<S<u8>>,
    pub confirmed_ratio: Option<S<f64>>,
    pub silent_after: Option<S<u32>>,
    pub silent_ratio: Option<S<f64>>,
    pub lag: Option<S<String>>,
    pub half_life: Option<S<String>>,
    pub max_cohorts: Option<S<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Vec<S<String>>>,
    pub upstream: Option<S<String>>,
    pub state_dir: Option<S<String>>,
    /// `sqlite` (default) or `memory`.
    pub store: Option<S<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<S<String>>,
    /// Which headers a trusted proxy may set: x-forwarded-for, forwarded, fly-client-ip,
    /// cf-connecting-ip.
    pub client_ip_headers: Option<Vec<S<String>>>,
    /// The nameserver for outbound names when /etc/resolv.conf is missing or names none.
    pub dns_fallback: Option<S<String>>,
    #[serde(default)]
    pub proxy_protocol: bool,
    pub prefix_v4: Option<S<u8>>,
    pub prefix_v6: Option<S<u8>>,
    /// Serving threads; absent means half the cores.
    pub workers: Option<S<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_timeout: Option<S<String>>,
    pub body_timeout: Option<S<String>>,
    pub idle_timeout: Option<S<String>>,
    pub upstream_timeout: Option<S<String>>,
    pub max_header_bytes: Option<S<u64>>,
    pub max_body_bytes: Option<S<u64>>,
    pub max_json_body_bytes: Option<S<u64>>,
    pub max_body_memory_bytes: Option<S<u64>>,
    pub max_connections: Option<S<u64>>,
    pub tarpit_max_concurrent: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Option<Vec<S<String>>>,
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub domains: Vec<S<String>>,
    pub email: Option<S<String>>,
    pub directory: Option<S<String>>,
    /// `http-01` (default) or `tls-alpn-01`.
    pub challenge: Option<S<String>>,
    pub renew_before: Option<S<String>>,
    /// A PEM CA bundle to trust for the directory (private or test CAs).
    pub directory_ca: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `false`: no admin listener at all (SIGHUP still reloads).
    pub enabled: Option<bool>,
    pub listen: Option<S<String>>,
    /// A listener for `/metrics` alone, without a token (a scraper that cannot send one).
    pub metrics_listen: Option<S<String>>,
    pub token: Option<S<String>>,
    pub token_file: Option<S<String>>,
    /// Must be set to listen on a non-loopback address: admin interfaces stay local by default.
    #[serde(default)]
    pub expose: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBans {
    pub base_ttl: Option<S<String>>,
    pub max_ttl: Option<S<String>>,
    pub factor: Option<S<u32>>,
    pub offences_to_ban: Option<S<u32>>,
    pub offence_window: Option<S<String>>,
    pub prefix_threshold: Option<S<u32>>,
    pub prefix_window: Option<S<String>>,
    pub status: Option<S<u16>>,
    pub body: Option<String>,
    #[serde(default)]
    pub allow: Vec<S<String>>,
}

/// The mail shield: Postfix policy, Dovecot auth policy, honey accounts, capture.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    /// Postfix `check_policy_service inet:ADDR`, or `unix:/absolute/path` for a socket.
    pub policy_listen: Option<S<String>>,
    /// Dovecot `auth_policy_server_url = http://ADDR/`.
    pub auth_policy_listen: Option<S<String>>,
    /// Dovecot sends it as `auth_policy_server_api_header = Authorization: Bearer TOKEN`;
    /// generated into state_dir/mail-policy.token when absent.
    pub auth_policy_token: Option<S<String>>,
    /// Dovecot's `auth_policy_hash_nonce`, to recognise which common password is tried.
    pub auth_policy_nonce: Option<String>,
    /// Where Postfix hands honey accounts' mail (`FILTER smtp:[ADDR]`).
    pub capture_listen: Option<S<String>>,
    pub quarantine_dir: Option<S<String>>,
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Postfix map source files (virtual_mailbox_maps, virtual_alias_maps), reloaded on change.
    #[serde(default)]
    pub recipient_maps: Vec<S<String>>,
    pub honey_passwd: Option<S<String>>,
    pub honey_after_attempts: Option<S<u32>>,
    pub honey_after_addresses: Option<S<u32>>,
    pub honey_ttl: Option<S<String>>,
    pub protected_logins: Option<Vec<String>>,
    pub enum_window: Option<S<String>>,
    pub enum_per_client: Option<S<u32>>,
    pub enum_per_network: Option<S<u32>>,
    pub enum_per_sender: Option<S<u32>>,
    pub enum_judged: Option<S<String>>,
    /// What a judged enumerator gets: `defer` (450 for every recipient, the default) or
    /// `discard` (accept and drop; Postfix still rejects unknown recipients itself, so this
    /// leaks — kept to show why `defer` is the default).
    pub enum_response: Option<S<String>>,
    pub brute_window: Option<S<String>>,
    pub brute_login_addresses: Option<S<u32>>,
    pub brute_login_passwords: Option<S<u32>>,
    pub brute_address_failures: Option<S<u32>>,
    pub brute_network_failures: Option<S<u32>>,
    pub brute_global_per_minute: Option<S<u32>>,
    pub brute_delay: Option<S<String>>,
    pub idle_timeout: Option<S<String>>,
    /// Open connections per mail listener (policy, auth policy, milter); more wait in the
    /// kernel's backlog until one closes.
    pub max_connections: Option<S<u64>>,
    /// Postfix `smtpd_milters = inet:ADDR`: Moat sees every SMTP service of the instance, with
    /// the SASL login and the whole message, whatever `master.cf` overrides per service.
    pub milter_listen: Option<S<String>>,
    /// Where Moat reads Postfix's effective configuration (`postconf -c DIR`) to verify that
    /// every SASL service passes its mail through Moat before it makes honey accounts.
    pub postfix_config_dir: Option<S<String>>,
    /// Unauthenticated clients get the same answer at RCPT for valid and unknown recipients;
    /// unknown ones are dropped at the end of the message (default true with a milter).
    pub hide_recipients: Option<bool>,
    /// Where Moat submits delivery status notifications for dropped unknown recipients (an
    /// SMTP server that relays for Moat: Postfix's own port 25 on loopback). Default
    /// 127.0.0.1:25; "" turns DSNs off.
    pub dsn_relay: Option<S<String>>,
    /// The name DSNs are reported from (`Reporting-MTA`); default: this machine's hostname.
    pub hostname: Option<S<String>>,
    /// The DNS server for SPF and DKIM checks; default: the first nameserver in /etc/resolv.conf.
    pub dns_server: Option<S<String>>,
    #[serde(default)]
    pub expose: bool,
}

/// The SMTP trap: a fake MTA for bots, feeding the quarantine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrap {
    /// Relative to the state directory; default `quarantine` (shared with `mail.capture_listen`).
    pub quarantine_dir: Option<S<String>>,
    /// Disk quota for captured content, in MiB (default 1024; 0 = none).
    pub quota_mb: Option<S<u64>>,
    /// The name in the banner and EHLO reply.
    pub hostname: Option<S<String>>,
    /// PEM files; without them a self-signed pair is generated into the state directory.
    pub tls_cert: Option<S<String>>,
    pub tls_key: Option<S<String>>,
    /// Logins succeed with one of the N most common passwords (default 1000; 0 = never).
    pub top_passwords: Option<S<u32>>,
    /// ...or on the K-th attempt for one user name (default 5; 0 = never).
    pub kth_attempt: Option<S<u32>>,
    pub max_sessions: Option<S<u32>>,
    pub max_sessions_per_ip: Option<S<u32>>,
    pub max_message_mb: Option<S<u32>>,
    pub max_recipients: Option<S<u32>>,
    pub command_timeout: Option<S<String>>,
    pub session_timeout: Option<S<String>>,
    /// Wait before a refused login is answered (default 2s, as Dovecot).
    pub auth_failure_delay: Option<S<String>>,
    #[serde(default)]
    pub listener: Vec<RawTrapListener>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrapListener {
    pub listen: S<String>,
    /// `starttls` (default), `implicit` (port 465 style) or `none`.
    pub tls: Option<S<String>>,
    pub name: Option<String>,
}

/// The browser proof (clearance cookie, page script, challenge page).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProof {
    /// Path prefixes whose HTML pages get the page script. Default: `["/"]` when a rule asks
    /// for clearance or a challenge, else none.
    pub inject: Option<Vec<S<String>>>,
    /// Leading zero bits of SHA-256 asked for when nothing is under attack.
    pub difficulty: Option<S<u8>>,
    pub max_difficulty: Option<S<u8>>,
    /// Requests per minute that lacked clearance before difficulty starts to rise.
    pub pressure_threshold: Option<S<u64>>,
    /// Sends per minute on a `per_action` route beyond which each needs its own proof (or
    /// three times the route's learned usual rate, when higher).
    pub action_threshold: Option<S<u64>>,
    /// The most work a per-action proof asks for, in bits.
    pub max_action_difficulty: Option<S<u8>>,
    pub clearance_ttl: Option<S<String>>,
    pub challenge_ttl: Option<S<String>>,
    pub key_rotation: Option<S<String>>,
    /// `delay` (default): browsers without JavaScript wait `nojs_delay` instead; `off`.
    pub nojs: Option<S<String>>,
    pub nojs_delay: Option<S<String>>,
    /// Path prefixes never challenged (feeds, robots.txt, /.well-known/ by default).
    pub exempt_paths: Option<Vec<S<String>>>,
    /// File extensions never challenged (static assets and feeds by default).
    pub exempt_extensions: Option<Vec<S<String>>>,
    /// Path segments never challenged wherever they appear (`rss`, `feed`, `atom` by default).
    pub exempt_segments: Option<Vec<S<String>>>,
    /// Lifetime of a no-JavaScript clearance (default 15m).
    pub nojs_ttl: Option<S<String>>,
    /// Verify crawlers that claim to be a known good bot by forward-confirmed reverse DNS.
    pub good_bots: Option<bool>,
    /// The DNS server for those lookups; default: the first nameserver in /etc/resolv.conf.
    pub dns_server: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: S<String>,
    #[serde(default)]
    pub description: String,
    pub expression: S<String>,
    pub action: Option<S<String>>,
    pub status: Option<S<u16>>,
    pub body: Option<String>,
    pub decoy: Option<S<String>>,
    pub delay: Option<S<String>>,
    /// For `tarpit`: what follows the delay (`block` or `decoy`).
    pub then: Option<S<String>>,
    /// For `challenge`: what a request other than a GET navigation gets (`block`, `decoy`,
    /// `tarpit`, or `retry`: a 403 the page script answers by solving and retrying).
    pub fallback: Option<S<String>>,
    /// A match counts as an offence towards a ban of the client address.
    #[serde(default)]
    pub offence: bool,
    /// The rule applies only to requests without a valid clearance cookie.
    #[serde(default)]
    pub require_clearance: bool,
    /// With `require_clearance`: the no-JavaScript clearance counts too (it always does for a
    /// `challenge`).
    #[serde(default)]
    pub allow_nojs: bool,
    /// With `require_clearance`: when the route is under pressure, each request needs a proof
    /// of its own, bound to this key of it (`json:email`: one proof per sign-in mail).
    pub per_action: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub id: S<String>,
    #[serde(default)]
    pub description: String,
    /// Which requests count; all when absent.
    pub expression: Option<S<String>>,
    /// ip, prefix, global, header:NAME, json:FIELD, json_domain:FIELD
    pub key: S<String>,
    pub requests: S<u32>,
    pub period: S<String>,
    pub burst: Option<S<u32>>,
    pub max_keys: Option<S<u64>>,
    /// Exceeding the limit also counts as an offence towards a ban of the address.
    #[serde(default)]
    pub ban: bool,
    pub action: Option<S<String>>,
    pub status: Option<S<u16>>,
    pub body: Option<String>,
    pub decoy: Option<S<String>>,
    pub delay: Option<S<String>>,
    /// For `tarpit`: what follows the delay (`block` or `decoy`).
    pub then: Option<S<String>>,
    /// For `challenge`: what a request other than a GET navigation gets (`block`, `decoy`,
    /// `tarpit`, or `retry`: a 403 the page script answers by solving and retrying).
    pub fallback: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecoy {
    pub id: S<String>,
    #[serde(default)]
    pub description: String,
    pub status: Option<S<u16>>,
    #[serde(default)]
    pub body: String,
    /// The app's success headers: a table, or a list of `[name, value]` pairs to keep the
    /// app's order (`date` and `content-length` are regenerated where they stand).
    pub headers: Option<S<RawHeaders>>,
    /// An expression naming the route whose first genuine success is recorded and replayed.
    pub learn: Option<S<String>>,
    /// How long the app takes to answer, until Moat has timed its genuine successes.
    pub delay: Option<S<String>>,
}

/// Response headers as a table (any order) or as `[name, value]` pairs (in order).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHeaders {
    Table(BTreeMap<String, String>),
    List(Vec<(String, String)>),
}

/// Borrowed view of the action fields, which rules and rate limits both carry. serde's `flatten`
/// would share them, but it cannot be combined with `deny_unknown_fields` or `Spanned`.
pub struct RawAction<'a> {
    pub action: Option<&'a S<String>>,
    pub status: Option<&'a S<u16>>,
    pub body: Option<&'a String>,
    pub decoy: Option<&'a S<String>>,
    pub delay: Option<&'a S<String>>,
    pub then: Option<&'a S<String>>,
    pub fallback: Option<&'a S<String>>,
}

macro_rules! action_view {
    ($t:ty) => {
        impl $t {
            pub fn action_view(&self) -> RawAction<'_> {
                RawAction {
                    action: self.action.as_ref(),
                    status: self.status.as_ref(),
                    body: self.body.as_ref(),
                    decoy: self.decoy.as_ref(),
                    delay: self.delay.as_ref(),
                    then: self.then.as_ref(),
                    fallback: self.fallback.as_ref(),
                }
            }
        }
    };
}
action_view!(RawRule);
action_view!(RawRateLimit);

/// The log watcher (`moat-logs`): jails over log files or the journal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogs {
    /// A fail2ban configuration directory whose enabled jails Moat runs, read in place
    /// (typically `/etc/fail2ban`).
    pub fail2ban: Option<S<String>>,
    /// Where filters named by a jail are found; default `<fail2ban>/filter.d`, else
    /// `/etc/fail2ban/filter.d`.
    pub filter_dir: Option<S<String>>,
    /// Time zone of log dates written without one (fail2ban's `logtimezone`); default local.
    pub timezone: Option<S<String>>,
    /// A file seen for the first time is read from its `end` (default, as fail2ban) or its
    /// `beginning`.
    pub start: Option<S<String>>,
    #[serde(default)]
    pub jail: Vec<RawLogJail>,
}

/// One of Moat's own jails (`[[logs.jail]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogJail {
    pub name: S<String>,
    /// A fail2ban filter by name (in `filter_dir`) or path, with options: `sshd[mode=aggressive]`.
    pub filter: Option<S<String>>,
    /// Or the filter inline: fail2ban's regex syntax with `<HOST>` and the other tags.
    #[serde(default)]
    pub failregex: Vec<S<String>>,
    #[serde(default)]
    pub ignoreregex: Vec<S<String>>,
    pub prefregex: Option<S<String>>,
    pub datepattern: Option<S<String>>,
    /// Log files (globs allowed).
    #[serde(default)]
    pub logpath: Vec<S<String>>,
    /// Read the journal instead, with these matches (`_SYSTEMD_UNIT=ssh.service`, ...).
    pub journalmatch: Option<Vec<S<String>>>,
    pub maxretry: Option<S<u32>>,
    pub findtime: Option<S<String>>,
    pub bantime: Option<S<String>>,
    #[serde(default)]
    pub ignoreip: Vec<S<String>>,
}

/// Kernel enforcement with nftables: a table Moat owns, its sets following the bans.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNftables {
    /// `true`: nftables must work, or Moat does not start; `false`: off. Unset: used where
    /// the machine allows it, said once where it does not.
    pub enabled: Option<S<bool>>,
    /// The table's name in family `inet` (default `moat`).
    pub table: Option<S<String>>,
    /// Banned addresses' connections to these ports go to the trap instead of the drop.
    #[serde(default)]
    pub trap_redirect: Vec<RawTrapRedirect>,
}

/// `[[nftables.trap_redirect]]`: `ports = [25, 587]`, `to = 2525` (a `[[trap.listener]]`'s port).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrapRedirect {
    pub ports: S<Vec<S<u16>>>,
    pub to: S<u16>,
}
