//! Honey accounts shared by the instances of a cluster (`moat-cluster`), so a bot that spreads
//! its guesses over several mail servers of one domain finds the same account "working" on
//! each, instead of learning from the difference which one lies.
//!
//! Each instance decides for itself whether it takes an account another made: its own
//! recipient list, protected logins and logins seen succeeding rule it out, and its own honey
//! gate (the Postfix audit) decides whether Dovecot sees it at all. The mail shield implements
//! [`HoneyAccounts`]; the cluster only carries the news.

/// One honey account as the instances share it. The password is one of the common passwords
/// bots try (the receiver checks that), `expires` is in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedHoney {
    pub login: String,
    pub password: String,
    pub expires: u64,
}

/// What an instance tells the others about its honey accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoneyNews {
    /// It made this account.
    Made(SharedHoney),
    /// Someone logged in to this honey account with another password: it is a real account,
    /// and must stop being honey everywhere at once.
    Real(String),
}

/// The mail shield, as the cluster sees it.
pub trait HoneyAccounts: Send + Sync {
    /// Another instance made `h`: kept here if this instance's own rules allow it. `replace`
    /// says the cluster settled on `h` for its login (the shared hash's copy), which then
    /// replaces an account of the same login made here with another password.
    fn adopt(&self, h: &SharedHoney, replace: bool) -> bool;
    /// Another instance found `login` real.
    fn found_real(&self, login: &str);
    /// The live accounts made or taken here, for the catch-up after a reconnection.
    fn accounts(&self) -> Vec<SharedHoney>;
}
