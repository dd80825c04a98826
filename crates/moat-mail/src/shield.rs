//! The mail shield's decisions: what Postfix and Dovecot are told, and what goes to the shared
//! engine. Every answer is computed from memory under short locks; nothing here waits on I/O
//! except writing the honey passwd-file when an account is created or expires.

use crate::authpolicy::{AuthRequest, FailType};
use crate::honey::{Adopted, Honey, HoneyConfig};
use crate::policy::PolicyRequest;
use crate::recipients::Recipients;
use arc_swap::ArcSwap;
use moat_core::metric::Sample;
use moat_core::shared_honey::{HoneyAccounts, HoneyNews, SharedHoney};
use moat_core::{EventKind, PrefixLens, Sensor, Subject};
use moat_detect::bruteforce::{BruteConfig, BruteForce, Verdict};
use moat_detect::enumeration::{EnumConfig, EnumJudge};
use moat_engine::{Engine, GuardVerdict};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// The refusal every recipient of a judged enumerator gets, valid or not. Temporary, so a
/// real sender caught by mistake retries and, once the judgement lapses, learns the truth.
pub const ENUM_REFUSAL: &str = "450 4.7.1 Service temporarily unavailable, try again later";

#[derive(Debug, Default)]
pub struct Stats {
    pub policy_requests: AtomicU64,
    pub enum_refusals: AtomicU64,
    pub captured_actions: AtomicU64,
    pub auth_requests: AtomicU64,
    pub auth_delays: AtomicU64,
    pub auth_rejects: AtomicU64,
    pub honey_created: AtomicU64,
    pub honey_logins: AtomicU64,
}

pub struct MailShield {
    cfg: moat_config::Mail,
    engine: Arc<Engine>,
    recipients: ArcSwap<Recipients>,
    /// The maps' modification times at the last load; `None` before the first.
    map_mtimes: Mutex<Option<Vec<Option<SystemTime>>>>,
    judge: Mutex<EnumJudge>,
    brute: Mutex<BruteForce>,
    honey: Mutex<Honey>,
    /// Serialises honey file writes: two accounts created at once must not race on the
    /// rename, and an older rendering must never land after a newer one.
    honey_write: Mutex<()>,
    /// `Ok` while Postfix's configuration was verified to pass every SASL service's mail
    /// through Moat; otherwise why not. No honey account exists while it is `Err`.
    honey_gate: Mutex<Result<(), String>>,
    /// The accounts made here and the ones found real, for a cluster to share.
    honey_news: tokio::sync::broadcast::Sender<HoneyNews>,
    pub stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the mail shield down with it: the data is counters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stats {
    /// Counters for the admin `/metrics`.
    pub fn metrics(&self) -> Vec<Sample> {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            Sample::counter(
                "moat_mail_policy_requests_total",
                "Postfix policy requests answered.",
                v(&self.policy_requests),
            ),
            Sample::counter(
                "moat_mail_enumeration_refusals_total",
                "Recipients refused to judged enumerators.",
                v(&self.enum_refusals),
            ),
            Sample::counter(
                "moat_mail_captured_actions_total",
                "Honey accounts' mail sent to capture (FILTER/HOLD).",
                v(&self.captured_actions),
            ),
            Sample::counter(
                "moat_mail_auth_requests_total",
                "Dovecot auth-policy requests.",
                v(&self.auth_requests),
            ),
            Sample::counter(
                "moat_mail_auth_delays_total",
                "Logins delayed (login under attack).",
                v(&self.auth_delays),
            ),
            Sample::counter(
                "moat_mail_auth_rejects_total",
                "Logins refused (banned address).",
                v(&self.auth_rejects),
            ),
            Sample::counter(
                "moat_mail_honey_created_total",
                "Honey accounts created.",
                v(&self.honey_created),
            ),
            Sample::counter(
                "moat_mail_honey_logins_total",
                "Logins to honey accounts.",
                v(&self.honey_logins),
            ),
        ]
    }
}

impl MailShield {
    pub fn new(cfg: moat_config::Mail, engine: Arc<Engine>, lens: PrefixLens) -> Self {
        let judge = EnumJudge::new(
            EnumConfig {
                window_secs: cfg.enum_window_secs,
                per_client: cfg.enum_per_client,
                per_network: cfg.enum_per_network,
                per_sender: cfg.enum_per_sender,
                judged_secs: cfg.enum_judged_secs,
                ..Default::default()
            },
            lens,
        );
        let brute = BruteForce::new(
            BruteConfig {
                window_secs: cfg.brute_window_secs,
                login_addresses: cfg.brute_login_addresses,
                login_passwords: cfg.brute_login_passwords,
                address_failures: cfg.brute_address_failures,
                network_failures: cfg.brute_network_failures,
                global_failures_per_minute: cfg.brute_global_per_minute,
                delay_secs: cfg.brute_delay_secs,
                attacked_secs: cfg.brute_window_secs,
                ..Default::default()
            },
            lens,
        );
        let mut honey = Honey::new(HoneyConfig {
            after_attempts: cfg.honey_after_attempts,
            after_addresses: cfg.honey_after_addresses,
            ttl_secs: cfg.honey_ttl_secs,
            nonce: cfg.auth_policy_nonce.clone(),
            protected: cfg.protected_logins.clone(),
            ..Default::default()
        });
        // Accounts from the previous run keep working (and keep expiring on time). Moat's own
        // copy is read first: Dovecot's file is emptied whenever Moat stops or the gate closes.
        let saved = std::fs::read_to_string(state_copy(&cfg.honey_passwd))
            .or_else(|_| std::fs::read_to_string(&cfg.honey_passwd));
        if let Ok(text) = saved {
            for (login, acc) in Honey::parse_passwd_file(&text) {
                honey.restore(login, acc);
            }
        }
        let shield = MailShield {
            map_mtimes: Mutex::new(None),
            recipients: ArcSwap::from_pointee(Recipients::default()),
            judge: Mutex::new(judge),
            brute: Mutex::new(brute),
            honey: Mutex::new(honey),
            honey_write: Mutex::new(()),
            honey_gate: Mutex::new(Err("Postfix's configuration not checked yet".into())),
            honey_news: tokio::sync::broadcast::channel(256).0,
            stats: Stats::default(),
            engine,
            cfg,
        };
        shield.reload_recipients();
        shield
    }

    /// Unix seconds from the engine's clock, the one every decision uses.
    fn now(&self) -> u64 {
        self.engine.now_ms() / 1000
    }

    pub fn config(&self) -> &moat_config::Mail {
        &self.cfg
    }

    /// Re-reads the recipient maps if any changed; cheap when none did.
    pub fn reload_recipients(&self) {
        let mut mtimes = lock(&self.map_mtimes);
        let now: Vec<Option<SystemTime>> = self
            .cfg
            .recipient_maps
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect();
        if mtimes.as_ref() == Some(&now) {
            return;
        }
        let mut r = Recipients::default();
        for a in &self.cfg.recipients {
            r.add(a);
        }
        for p in &self.cfg.recipient_maps {
            match std::fs::read_to_string(p) {
                Ok(text) => r.add_map_text(&text),
                Err(e) => {
                    tracing::warn!(map = %p.display(), error = %e, "cannot read recipient map")
                }
            }
        }
        tracing::info!(recipients = r.len(), "recipient list loaded");
        self.recipients.store(Arc::new(r));
        *mtimes = Some(now);
    }

    /// A decision's line, through the engine's bounded log (a brute force from rotating
    /// addresses is a flood of decisions too).
    /// Who an auth-policy event is about: the address and the login it tried.
    fn subject(&self, ip: IpAddr, req: &AuthRequest) -> Subject {
        Subject {
            ip,
            account: Some(req.login.clone()),
            email: None,
        }
    }

    fn decision(&self, client: IpAddr, rule: &str, action: &str, key: &str) {
        let key = moat_engine::decision_log::clip(key);
        let size = 180 + rule.len() + action.len() + key.len();
        let now = self.engine.now_ms();
        if self
            .engine
            .decision_log()
            .admit(now, rule, action, client, size)
        {
            tracing::info!(target: "moat::decision", client = %client, rule, action, key, "decision");
        }
    }

    /// The answer to one Postfix policy request (the `action=` value).
    pub fn policy(&self, req: &PolicyRequest) -> String {
        self.stats.policy_requests.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        let sasl = req.get("sasl_username");
        if !sasl.is_empty() && lock(&self.honey).is_honey(sasl, now) {
            self.stats.captured_actions.fetch_add(1, Ordering::Relaxed);
            return match self.cfg.capture_listen {
                Some(a) => format!("FILTER smtp:[{}]:{}", a.ip(), a.port()),
                // Parked in Postfix's hold queue: nothing is delivered, nothing leaves.
                None => "HOLD honey account".to_string(),
            };
        }
        let Ok(client) = req.get("client_address").parse::<IpAddr>() else {
            return "DUNNO".into();
        };
        let client = client.to_canonical();
        let verdict = self.engine.check(client);
        if verdict == GuardVerdict::Allowlisted || !sasl.is_empty() {
            return "DUNNO".into();
        }
        if req.get("protocol_state") != "RCPT" {
            return "DUNNO".into();
        }
        let sender = req.get("sender");
        let recipient = req.get("recipient");
        let refuse = |why: &str| {
            self.stats.enum_refusals.fetch_add(1, Ordering::Relaxed);
            if self.cfg.enum_discard {
                self.decision(client, why, "discard", recipient);
                return "DISCARD".to_string();
            }
            self.decision(client, why, "defer", recipient);
            ENUM_REFUSAL.to_string()
        };
        if matches!(verdict, GuardVerdict::Banned(_)) {
            return refuse("mail-banned");
        }
        if lock(&self.judge).is_judged(client, sender, now) {
            return refuse("mail-enumeration");
        }
        let recipients = self.recipients.load();
        if recipients.is_empty() || recipients.contains(recipient) {
            return "DUNNO".into();
        }
        if self.cfg.hide_recipients && recipients.is_local(recipient) {
            // The milter hides it: this `OK` skips the `reject_unlisted_recipient` that
            // follows in smtpd_recipient_restrictions, so the stranger sees the same `250` as
            // for a real mailbox; the milter counts it and drops it at the end of the
            // message. With Moat down the policy defaults to DUNNO and Postfix rejects
            // unknown recipients honestly again.
            return "OK".into();
        }
        if self.count_unknown(client, sender, now) {
            return refuse("mail-enumeration");
        }
        // Unknown and not (yet) an enumerator: Postfix answers 550 5.1.1 itself.
        "DUNNO".into()
    }

    /// Counts an unknown recipient towards the enumeration judgement: an offence for the
    /// client, a ban for its network. True once the client, network or sender is judged.
    fn count_unknown(&self, client: IpAddr, sender: &str, now: u64) -> bool {
        let judged = lock(&self.judge).unknown_recipient(client, sender, now);
        if judged.client {
            self.engine
                .emit(Sensor::Mail, Subject::ip(client), EventKind::Enumeration);
        }
        if let Some(net) = judged.network {
            self.engine.emit(
                Sensor::Mail,
                Subject::ip(client),
                EventKind::EnumerationNetwork { net },
            );
        }
        judged.client || judged.network.is_some() || judged.sender
    }

    /// The answer to `command=allow`: (status, message).
    pub fn auth_allow(&self, req: &AuthRequest) -> (i32, &'static str) {
        self.stats.auth_requests.fetch_add(1, Ordering::Relaxed);
        let Some(ip) = req.remote else {
            return (0, "");
        };
        match self.engine.check(ip) {
            GuardVerdict::Allowlisted => return (0, ""),
            GuardVerdict::Banned(_) => {
                self.stats.auth_rejects.fetch_add(1, Ordering::Relaxed);
                self.decision(ip, "mail-banned", "reject", &req.login);
                return (-1, "");
            }
            _ => {}
        }
        let now = self.now();
        if lock(&self.honey).is_honey(&req.login, now) {
            return (0, "");
        }
        match lock(&self.brute).allow(&req.login, &req.pwhash, Some(ip), &req.device_id, now) {
            Verdict::Accept => (0, ""),
            Verdict::Delay(n) => {
                self.stats.auth_delays.fetch_add(1, Ordering::Relaxed);
                self.decision(ip, "mail-brute-force", "delay", &req.login);
                (n, "")
            }
        }
    }

    /// A `command=report`: learn from the outcome.
    pub fn auth_report(&self, req: &AuthRequest) {
        self.stats.auth_requests.fetch_add(1, Ordering::Relaxed);
        let Some(ip) = req.remote else {
            return;
        };
        let now = self.now();
        let failed = req.success == Some(false) || req.fail_type != FailType::None;
        if !failed {
            let mut honey = lock(&self.honey);
            match honey.honey_password_matches(&req.login, &req.pwhash, now) {
                Some(true) => {
                    drop(honey);
                    self.stats.honey_logins.fetch_add(1, Ordering::Relaxed);
                    self.decision(ip, "mail-honey", "login", &req.login);
                    return;
                }
                // A honey account that someone entered with another password is a real
                // account Moat did not know: it stops being honey at once, so its owner's
                // mail is never captured, and it is never made honey again.
                Some(false) => {
                    honey.remove(&req.login);
                    drop(honey);
                    tracing::warn!(login = %req.login, "a honey account turned out to be real; removed");
                    self.write_honey();
                    let login = req.login.trim().to_ascii_lowercase();
                    let _ = self.honey_news.send(HoneyNews::Real(login));
                }
                None => drop(honey),
            }
            lock(&self.brute).success(&req.login, &req.pwhash, Some(ip), &req.device_id);
            lock(&self.honey).real_success(&req.login);
            return;
        }
        if self.engine.check(ip) == GuardVerdict::Allowlisted {
            return;
        }
        let esc = lock(&self.brute).failure(&req.login, &req.pwhash, ip, now);
        if esc.address_ban {
            // Banned in the shared store: refused here from now on, and at the HTTP shield.
            self.decision(ip, "mail-auth-failures", "ban", &req.login);
            self.engine
                .emit(Sensor::Mail, self.subject(ip, req), EventKind::AuthFailures);
        }
        if let Some(net) = esc.network {
            self.decision(ip, "mail-auth-failures", "ban-network", &net.to_string());
            self.engine.emit(
                Sensor::Mail,
                self.subject(ip, req),
                EventKind::AuthFailuresNetwork { net },
            );
        }
        if esc.login_attacked {
            self.decision(ip, "mail-brute-force", "login-attacked", &req.login);
        }
        // Dovecot 2.3.19 sends no `fail_type` in its reports (later versions say `account`
        // for a user that does not exist), so a login that is not a known mailbox counts too;
        // `credentials` (the user exists, the password was wrong) never does.
        if matches!(req.fail_type, FailType::Account | FailType::None) {
            // Without a recipient list Moat cannot tell a real login from an invented one, so
            // it makes no honey accounts at all rather than risk shadowing a real one.
            let recipients = self.recipients.load();
            let real = recipients.is_empty() || recipients.has_local_part(&req.login);
            // None is made, or even counted towards, while a SASL service could relay its
            // mail (the gate is closed).
            let real = real || !self.honey_allowed();
            let made = lock(&self.honey).attempt(&req.login, &req.pwhash, ip, now, real);
            if let Some((login, acc)) = made {
                self.stats.honey_created.fetch_add(1, Ordering::Relaxed);
                self.decision(ip, "mail-honey", "create", &login);
                self.write_honey();
                let _ = self.honey_news.send(HoneyNews::Made(SharedHoney {
                    login,
                    password: acc.password,
                    expires: acc.expires,
                }));
            }
        }
    }

    /// Drops expired honey accounts (and rewrites the file if any went).
    pub fn expire_honey(&self) {
        if lock(&self.honey).expire(self.now()) {
            self.write_honey();
        }
    }

    pub fn is_honey(&self, login: &str) -> bool {
        lock(&self.honey).is_honey(login, self.now())
    }

    /// The honey accounts made here and the ones found real, as they happen (a cluster
    /// shares them).
    pub fn follow_honey(&self) -> tokio::sync::broadcast::Receiver<HoneyNews> {
        self.honey_news.subscribe()
    }

    pub fn honey_allowed(&self) -> bool {
        lock(&self.honey_gate).is_ok()
    }

    /// The outcome of a Postfix audit. Closing the gate empties the passwd-file at once (the
    /// accounts stay in memory), so no honey login works while a service could relay its
    /// mail; reopening writes them back. Logged once per change.
    pub fn set_honey_gate(&self, gate: Result<(), String>) {
        let mut g = lock(&self.honey_gate);
        if *g == gate {
            return;
        }
        match &gate {
            Ok(()) => tracing::info!(
                "honey accounts enabled: every Postfix SASL service passes its mail through Moat"
            ),
            Err(why) => {
                tracing::warn!(reason = %why, "honey accounts disabled (ordinary brute-force defence only); `moat doctor mail` says how to fix it")
            }
        }
        *g = gate;
        drop(g);
        self.write_honey();
    }

    /// Creates the honey passwd-file if it is missing, readable by Dovecot, so Dovecot's
    /// second passdb never points at a file that does not exist.
    pub fn ensure_honey_file(&self) {
        if !self.cfg.honey_passwd.exists() {
            self.write_honey();
        }
    }

    /// Stopping: Dovecot's honey passdb is emptied, so no honey login works (and so none can
    /// send) while no milter or policy captures its mail. The accounts are kept in Moat's own
    /// copy and return at the next start.
    pub fn shutdown(&self) {
        *lock(&self.honey_gate) = Err("Moat stopped".into());
        self.write_honey();
    }

    fn write_honey(&self) {
        let _w = lock(&self.honey_write);
        let full = lock(&self.honey).passwd_file();
        if let Err(e) = write_atomic(&state_copy(&self.cfg.honey_passwd), full.as_bytes()) {
            tracing::error!(error = %e, "cannot save the honey accounts");
        }
        let text = if self.honey_allowed() {
            full
        } else {
            "# Moat's honey accounts: none while Postfix is not verified (see `moat doctor mail`).\n"
                .to_string()
        };
        if let Err(e) = write_atomic(&self.cfg.honey_passwd, text.as_bytes()) {
            tracing::error!(file = %self.cfg.honey_passwd.display(), error = %e, "cannot write the honey passwd-file");
        }
    }

    pub fn honey_path(&self) -> &Path {
        &self.cfg.honey_passwd
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.cfg.quarantine_dir.clone()
    }
}

/// Another instance's honey accounts are judged by this one's rules: its recipient list (none
/// taken without one, as none is made), its protected logins, the logins seen succeeding
/// here. Its own honey gate still decides whether Dovecot sees them.
impl HoneyAccounts for MailShield {
    fn adopt(&self, h: &SharedHoney, replace: bool) -> bool {
        let recipients = self.recipients.load();
        let real = recipients.is_empty() || recipients.has_local_part(&h.login);
        let now = self.now();
        let done = lock(&self.honey).adopt(&h.login, &h.password, h.expires, now, real, replace);
        match done {
            Adopted::Taken => {
                tracing::info!(login = %h.login, "cluster: took a honey account another instance made");
                self.write_honey();
                true
            }
            Adopted::Known => true,
            Adopted::Refused => {
                tracing::debug!(login = %h.login, "cluster: not taking another instance's honey account here");
                false
            }
        }
    }

    fn found_real(&self, login: &str) {
        let mut honey = lock(&self.honey);
        let had = honey.is_honey(login, 0);
        honey.remove(login);
        drop(honey);
        if had {
            tracing::warn!(login = %login, "cluster: a honey account turned out to be real on another instance; removed");
            self.write_honey();
        }
    }

    fn accounts(&self) -> Vec<SharedHoney> {
        let now = self.now();
        lock(&self.honey)
            .accounts()
            .iter()
            .filter(|(_, a)| a.expires > now)
            .map(|(login, a)| SharedHoney {
                login: login.clone(),
                password: a.password.clone(),
                expires: a.expires,
            })
            .collect()
    }
}

impl crate::milter::session::MilterPolicy for MailShield {
    fn is_honey(&self, login: &str) -> bool {
        MailShield::is_honey(self, login)
    }

    fn is_trusted(&self, client: IpAddr) -> bool {
        self.engine.check(client.to_canonical()) == GuardVerdict::Allowlisted
    }

    fn classify(&self, recipient: &str) -> crate::milter::session::RcptClass {
        use crate::milter::session::RcptClass;
        let r = self.recipients.load();
        if r.contains(recipient) {
            RcptClass::Known
        } else if r.is_local(recipient) {
            RcptClass::UnknownLocal
        } else {
            RcptClass::Foreign
        }
    }

    fn hide_recipients(&self) -> bool {
        self.cfg.hide_recipients
    }

    fn unknown_recipient(&self, client: IpAddr, sender: &str) {
        let client = client.to_canonical();
        self.decision(client, "mail-enumeration", "hide", sender);
        self.count_unknown(client, sender, self.now());
    }

    fn captured(&self, client: IpAddr, login: &str, id: &str) {
        self.engine.emit(
            Sensor::Mail,
            Subject {
                ip: client.to_canonical(),
                account: Some(login.to_string()),
                email: None,
            },
            EventKind::Captured { id: id.to_string() },
        );
    }
}

/// Moat's own copy of the honey accounts, beside Dovecot's file (`honey.passwd.moat`).
fn state_copy(passwd: &Path) -> PathBuf {
    let mut p = passwd.as_os_str().to_owned();
    p.push(".moat");
    PathBuf::from(p)
}

/// Temporary file, sync, rename: Dovecot re-reads the passwd-file when it changes and must
/// never see half of it. Readable by Dovecot (0644): it holds only bait.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    // 0644: Dovecot's auth process must read it; it holds only the passwords bots tried.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
