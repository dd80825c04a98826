//! Honey accounts, made on the fly for the logins bots try.
//!
//! A policy server cannot turn a failed login into a success, but a second Dovecot passdb can:
//! Moat writes the honey accounts to a passwd-file that Dovecot reads after the real one. A
//! login that does not exist (`fail_type=account`), tried often enough from enough addresses,
//! becomes a honey account whose password is the common password the bots are actually trying
//! (recognised from Dovecot's salted hash), so the next attempt "succeeds". Its mail is then
//! captured by the Postfix policy (`FILTER` to Moat's capture listener) and never delivered.
//!
//! Never honey: real recipients, logins that ever succeeded, configured protected names, and
//! attempts from allowlisted addresses (the caller filters those).

use crate::authpolicy;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct HoneyConfig {
    pub after_attempts: u32,
    pub after_addresses: u32,
    pub ttl_secs: u64,
    pub nonce: Option<String>,
    pub protected: Vec<String>,
    pub max_candidates: usize,
    pub max_accounts: usize,
}

impl Default for HoneyConfig {
    fn default() -> Self {
        HoneyConfig {
            after_attempts: 5,
            after_addresses: 3,
            ttl_secs: 7 * 24 * 3600,
            nonce: None,
            protected: ["root", "postmaster", "abuse", "hostmaster", "admin"]
                .map(String::from)
                .to_vec(),
            max_candidates: 100_000,
            max_accounts: 10_000,
        }
    }
}

#[derive(Debug, Default)]
struct Candidate {
    attempts: u32,
    addresses: Vec<IpAddr>,
    /// How often each password hash was tried.
    hashes: Vec<(String, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub password: String,
    pub expires: u64,
}

/// What [`Honey::adopt`] did with another instance's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// Now a honey account here too.
    Taken,
    /// Already here, with the same password.
    Known,
    /// Not taken: see [`Honey::adopt`] for why it would be.
    Refused,
}

#[derive(Debug)]
pub struct Honey {
    cfg: HoneyConfig,
    candidates: HashMap<String, Candidate>,
    accounts: BTreeMap<String, Account>,
    passwords: Vec<&'static str>,
    /// Logins seen succeeding for real: never honey.
    real: std::collections::HashSet<String>,
}

pub use moat_core::COMMON_PASSWORDS;

impl Honey {
    pub fn new(cfg: HoneyConfig) -> Self {
        Honey {
            cfg,
            candidates: HashMap::new(),
            accounts: BTreeMap::new(),
            real: Default::default(),
            passwords: COMMON_PASSWORDS
                .lines()
                .map(str::trim)
                .filter(|p| !p.is_empty() && valid_password(p))
                .collect(),
        }
    }

    fn protected(&self, login: &str) -> bool {
        let local = login.split('@').next().unwrap_or(login);
        self.real.contains(login)
            || self
                .cfg
                .protected
                .iter()
                .any(|p| p.eq_ignore_ascii_case(login) || p.eq_ignore_ascii_case(local))
    }

    /// A failed attempt on a login that does not exist. `is_real` says whether the name belongs
    /// to a real mailbox anyway (Moat's recipient list), which rules it out. Returns the new
    /// account when this attempt created one.
    pub fn attempt(
        &mut self,
        login: &str,
        pwhash: &str,
        from: IpAddr,
        now: u64,
        is_real: bool,
    ) -> Option<(String, Account)> {
        let login = login.trim().to_ascii_lowercase();
        if login.is_empty()
            || is_real
            || self.protected(&login)
            || !valid_login(&login)
            || self.accounts.contains_key(&login)
        {
            return None;
        }
        if !self.candidates.contains_key(&login) && self.candidates.len() >= self.cfg.max_candidates
        {
            self.candidates.clear();
        }
        let c = self.candidates.entry(login.clone()).or_default();
        c.attempts += 1;
        if !c.addresses.contains(&from) && c.addresses.len() < 64 {
            c.addresses.push(from);
        }
        if !pwhash.is_empty() {
            match c.hashes.iter().position(|(h, _)| h == pwhash) {
                Some(i) => c.hashes[i].1 += 1,
                None if c.hashes.len() < 32 => c.hashes.push((pwhash.to_string(), 1)),
                None => {}
            }
        }
        if c.attempts < self.cfg.after_attempts
            || (c.addresses.len() as u32) < self.cfg.after_addresses
            || self.accounts.len() >= self.cfg.max_accounts
        {
            return None;
        }
        let c = self.candidates.remove(&login)?;
        let password = self.password_for(&login, &c);
        let acc = Account {
            password,
            expires: now + self.cfg.ttl_secs,
        };
        self.accounts.insert(login.clone(), acc.clone());
        Some((login, acc))
    }

    /// The common password the bots tried most, if the hashes are whole and a nonce is known;
    /// otherwise the most common password of all.
    fn password_for(&self, login: &str, c: &Candidate) -> String {
        if let Some(nonce) = &self.cfg.nonce {
            let mut tried: Vec<&(String, u32)> = c.hashes.iter().collect();
            tried.sort_by_key(|t| std::cmp::Reverse(t.1));
            if tried.iter().any(|(h, _)| h.len() == 64) {
                let table: HashMap<String, &str> = self
                    .passwords
                    .iter()
                    .map(|p| (authpolicy::pwhash(nonce, login, p), *p))
                    .collect();
                if let Some(p) = tried.iter().find_map(|(h, _)| table.get(h)) {
                    return p.to_string();
                }
            }
        }
        self.passwords.first().unwrap_or(&"123456").to_string()
    }

    /// A login that succeeded for real is never made a honey account.
    pub fn real_success(&mut self, login: &str) {
        let l = login.to_ascii_lowercase();
        self.candidates.remove(&l);
        if self.real.len() < 1_000_000 {
            self.real.insert(l);
        }
    }

    /// For a successful login on a honey account: whether it used the honey password
    /// (`Some(true)`: a bot), another one (`Some(false)`: a real account Moat did not know),
    /// or cannot be told (`None`: not honey, or no nonce to compare hashes with, in which case
    /// it counts as the bot).
    pub fn honey_password_matches(&self, login: &str, pwhash: &str, now: u64) -> Option<bool> {
        let l = login.trim().to_ascii_lowercase();
        let acc = self.accounts.get(&l).filter(|a| a.expires > now)?;
        let Some(nonce) = &self.cfg.nonce else {
            return Some(true);
        };
        if pwhash.len() != 64 {
            return Some(true);
        }
        Some(
            authpolicy::pwhash(nonce, login, &acc.password) == pwhash
                || authpolicy::pwhash(nonce, &l, &acc.password) == pwhash,
        )
    }

    pub fn remove(&mut self, login: &str) {
        let l = login.trim().to_ascii_lowercase();
        self.accounts.remove(&l);
        self.real_success(&l);
    }

    pub fn is_honey(&self, login: &str, now: u64) -> bool {
        self.accounts
            .get(&login.trim().to_ascii_lowercase())
            .is_some_and(|a| a.expires > now)
    }

    /// Drops expired accounts; true if any went (the file must be rewritten).
    pub fn expire(&mut self, now: u64) -> bool {
        let before = self.accounts.len();
        self.accounts.retain(|_, a| a.expires > now);
        self.accounts.len() != before
    }

    pub fn accounts(&self) -> &BTreeMap<String, Account> {
        &self.accounts
    }

    /// An account another instance of a cluster made. Refused where this instance would never
    /// have made it: a real or protected login, one seen succeeding here, a login or password
    /// the passwd-file could not hold safely, a password that is not one the bots try, an
    /// expired account, a full table. Its expiry is capped at this instance's own `ttl`.
    /// `replace` lets it replace an account of the same login with another password (the
    /// cluster settled on this one).
    pub fn adopt(
        &mut self,
        login: &str,
        password: &str,
        expires: u64,
        now: u64,
        is_real: bool,
        replace: bool,
    ) -> Adopted {
        let login = login.to_ascii_lowercase();
        if is_real
            || login.is_empty()
            || !valid_login(&login)
            || self.protected(&login)
            || expires <= now
            || !valid_password(password)
            || !self.passwords.contains(&password)
        {
            return Adopted::Refused;
        }
        match self.accounts.get(&login) {
            Some(a) if a.password == password => return Adopted::Known,
            Some(_) if !replace => return Adopted::Refused,
            None if self.accounts.len() >= self.cfg.max_accounts => return Adopted::Refused,
            _ => {}
        }
        self.candidates.remove(&login);
        let acc = Account {
            password: password.to_string(),
            expires: expires.min(now.saturating_add(self.cfg.ttl_secs)),
        };
        self.accounts.insert(login, acc);
        Adopted::Taken
    }

    /// Restores accounts from a previous run (read back from the passwd-file's comments).
    pub fn restore(&mut self, login: String, acc: Account) {
        self.accounts.insert(login, acc);
    }

    /// The passwd-file Dovecot reads (`passdb { driver = passwd-file args = scheme=PLAIN … }`):
    /// `login:{PLAIN}password::::::`, each preceded by a comment with its expiry so a restart
    /// can restore them.
    pub fn passwd_file(&self) -> String {
        let mut s = String::from(
            "# Moat honey accounts: logins bots tried that do not exist. Written by Moat; edits are overwritten.\n",
        );
        for (login, a) in &self.accounts {
            s.push_str(&format!(
                "# expires {}\n{login}:{{PLAIN}}{}::::::\n",
                a.expires, a.password
            ));
        }
        s
    }

    /// Parses what [`Honey::passwd_file`] wrote.
    pub fn parse_passwd_file(text: &str) -> Vec<(String, Account)> {
        let mut out = Vec::new();
        let mut expires = None;
        for line in text.lines() {
            if let Some(e) = line.strip_prefix("# expires ") {
                expires = e.trim().parse::<u64>().ok();
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut f = line.splitn(3, ':');
            let (Some(login), Some(pw)) = (f.next(), f.next()) else {
                continue;
            };
            if let (Some(exp), Some(pw)) = (expires.take(), pw.strip_prefix("{PLAIN}")) {
                out.push((
                    login.to_string(),
                    Account {
                        password: pw.to_string(),
                        expires: exp,
                    },
                ));
            }
        }
        out
    }
}

/// passwd-file fields are `:`-separated; a login or password that could break the line is
/// never written.
fn valid_password(p: &str) -> bool {
    !p.contains([':', '\n', '\r', '\0']) && !p.starts_with('{')
}

fn valid_login(l: &str) -> bool {
    l.len() <= 128
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.-_+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u8) -> IpAddr {
        IpAddr::from([127, 10, i, 5])
    }

    #[test]
    fn the_password_bots_try_becomes_the_honey_password() {
        let mut h = Honey::new(HoneyConfig {
            nonce: Some("n0nce".into()),
            ..Default::default()
        });
        let tried = authpolicy::pwhash("n0nce", "info@moat.test", "qwerty");
        let other = authpolicy::pwhash("n0nce", "info@moat.test", "not-common-Zq9");
        let mut made = None;
        for i in 0..5u8 {
            let hash = if i == 2 { &other } else { &tried };
            made = h.attempt("Info@moat.test", hash, ip(i % 3), 100, false);
        }
        let (login, acc) = made.expect("created on the fifth attempt from three addresses");
        assert_eq!(login, "info@moat.test");
        assert_eq!(acc.password, "qwerty");
        assert!(h.is_honey("INFO@moat.test", 101));
        assert!(!h.is_honey("info@moat.test", 100 + 7 * 24 * 3600));
        let file = h.passwd_file();
        assert!(
            file.contains("info@moat.test:{PLAIN}qwerty::::::"),
            "{file}"
        );
        assert_eq!(Honey::parse_passwd_file(&file), vec![(login, acc)]);
    }

    #[test]
    fn a_success_with_another_password_tells_a_real_account() {
        let mut h = Honey::new(HoneyConfig {
            nonce: Some("n".into()),
            ..Default::default()
        });
        let tried = authpolicy::pwhash("n", "sam", "123456");
        for i in 0..5u8 {
            h.attempt("sam", &tried, ip(i), 1, false);
        }
        assert!(h.is_honey("sam", 2));
        assert_eq!(h.honey_password_matches("sam", &tried, 2), Some(true));
        let real = authpolicy::pwhash("n", "sam", "Sam's own long password");
        assert_eq!(h.honey_password_matches("sam", &real, 2), Some(false));
        h.remove("sam");
        assert!(!h.is_honey("sam", 2));
        for i in 0..10u8 {
            assert!(
                h.attempt("sam", &tried, ip(i), 3, false).is_none(),
                "never again"
            );
        }
        assert_eq!(h.honey_password_matches("nobody", &tried, 2), None);
    }

    #[test]
    fn another_instances_account_is_taken_only_where_this_one_would_have_made_it() {
        let mut h = Honey::new(HoneyConfig::default());
        let (now, week) = (1_000, 7 * 24 * 3600);
        assert_eq!(
            h.adopt("Info@moat.test", "qwerty", now + 60, now, false, false),
            Adopted::Taken
        );
        assert!(h.is_honey("info@moat.test", now + 1));
        assert!(!h.is_honey("info@moat.test", now + 61), "its own expiry");
        assert_eq!(
            h.adopt("info@moat.test", "qwerty", now + 60, now, false, false),
            Adopted::Known
        );
        // Another password for the same login: only when the cluster settled on it.
        assert_eq!(
            h.adopt("info@moat.test", "123456", now + 60, now, false, false),
            Adopted::Refused
        );
        assert_eq!(
            h.adopt("info@moat.test", "123456", now + 60, now, false, true),
            Adopted::Taken
        );
        assert_eq!(h.accounts()["info@moat.test"].password, "123456");
        // Capped at this instance's ttl.
        assert_eq!(
            h.adopt("sales", "123456", u64::MAX, now, false, false),
            Adopted::Taken
        );
        assert_eq!(h.accounts()["sales"].expires, now + week);
        h.real_success("support");
        for (login, pw, exp, real) in [
            ("alice", "123456", now + 60, true),       // a real mailbox here
            ("postmaster", "123456", now + 60, false), // protected
            ("support", "123456", now + 60, false),    // seen succeeding here
            ("old", "123456", now, false),             // expired
            ("x:y", "123456", now + 60, false),        // would break the line
            ("evil", "pw::::::\nroot", now + 60, false),
            ("evil", "{PLAIN}123456", now + 60, false),
            ("evil", "Sam's own long password", now + 60, false), // not one bots try
        ] {
            assert_eq!(
                h.adopt(login, pw, exp, now, real, true),
                Adopted::Refused,
                "{login} {pw}"
            );
        }
        let file = h.passwd_file();
        assert_eq!(Honey::parse_passwd_file(&file).len(), 2, "{file}");
    }

    #[test]
    fn real_protected_and_too_few_are_never_honey() {
        let mut h = Honey::new(HoneyConfig::default());
        for i in 0..10u8 {
            assert!(
                h.attempt("alice", "x", ip(i), 1, true).is_none(),
                "a real mailbox"
            );
            assert!(h
                .attempt("postmaster@moat.test", "x", ip(i), 1, false)
                .is_none());
            assert!(h.attempt("bad:name", "x", ip(i), 1, false).is_none());
            // Many attempts, one address: not yet.
            assert!(h.attempt("sales", "x", ip(0), 1, false).is_none());
        }
        h.real_success("support");
        for i in 0..10u8 {
            assert!(h.attempt("support", "x", ip(i), 1, false).is_none());
        }
        // Without a nonce the most common password is used.
        let mut made = None;
        for i in 0..5u8 {
            made = made.or(h.attempt("info", "", ip(i), 1, false));
        }
        assert_eq!(made.unwrap().1.password, "123456");
        assert!(h.expire(1 + 7 * 24 * 3600));
        assert!(h.accounts().is_empty());
    }
}
