//! Which logins the trap lets succeed, without I/O.
//!
//! A bot that fails to log in moves on and sends nothing; one that "succeeds" sends its payload,
//! which is what the trap is for. But a server that accepts every password is recognisably fake,
//! so success follows what a weak real account would do: a common password works (the top N of
//! the shipped list), a persistent guesser gets in on its K-th try for one user name, and a user
//! name the mail shield made a honey account works with any password.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRules {
    /// Passwords among the N most common succeed (0 = none).
    pub top_passwords: usize,
    /// The K-th attempt on one user name succeeds, whatever the password (0 = never).
    pub kth_attempt: u32,
}

impl Default for LoginRules {
    fn default() -> Self {
        LoginRules {
            top_passwords: 1000,
            kth_attempt: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: the password is a common one.
    CommonPassword,
    /// Accepted: enough attempts on this user name.
    KthAttempt,
    /// Accepted: the mail shield made this login a honey account.
    Honey,
    Refused,
}

impl Verdict {
    pub fn accepted(self) -> bool {
        self != Verdict::Refused
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::CommonPassword => "common-password",
            Verdict::KthAttempt => "kth-attempt",
            Verdict::Honey => "honey",
            Verdict::Refused => "refused",
        }
    }
}

/// Attempt counts are kept for this many user names at most; past that the table is cleared,
/// which only delays a K-th-attempt success (bounded memory beats exactness against a flood).
const MAX_USERS: usize = 100_000;

#[derive(Debug)]
pub struct LoginPolicy {
    rules: LoginRules,
    common: HashSet<&'static str>,
    attempts: HashMap<String, u32>,
}

impl LoginPolicy {
    pub fn new(rules: LoginRules) -> Self {
        let common = moat_core::COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(rules.top_passwords)
            .collect();
        LoginPolicy {
            rules,
            common,
            attempts: HashMap::new(),
        }
    }

    /// Decides one attempt. `honey` says whether the mail shield knows this login as a honey
    /// account (the caller asks it; this module holds no shared state).
    pub fn decide(&mut self, username: &str, password: &str, honey: bool) -> Verdict {
        let user = username.trim().to_lowercase();
        if self.attempts.len() >= MAX_USERS && !self.attempts.contains_key(&user) {
            self.attempts.clear();
        }
        let n = self.attempts.entry(user.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let n = *n;
        let verdict = if honey {
            Verdict::Honey
        } else if self.common.contains(password) {
            Verdict::CommonPassword
        } else if self.rules.kth_attempt > 0 && n >= self.rules.kth_attempt {
            Verdict::KthAttempt
        } else {
            Verdict::Refused
        };
        if verdict.accepted() {
            // A later session for the same user starts counting again, as a real server would
            // not remember; it also keeps the table small.
            self.attempts.remove(&user);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_kth_attempt_and_honey() {
        let mut p = LoginPolicy::new(LoginRules {
            top_passwords: 10,
            kth_attempt: 3,
        });
        assert_eq!(p.decide("a@x", "123456", false), Verdict::CommonPassword);
        // Rank 10,000 is not in the top 10.
        let rare = moat_core::COMMON_PASSWORDS.lines().last().unwrap();
        assert_eq!(p.decide("b@x", rare, false), Verdict::Refused);
        assert_eq!(p.decide("B@x", "zz-1", false), Verdict::Refused);
        assert_eq!(p.decide("b@x", "zz-2", false), Verdict::KthAttempt);
        assert_eq!(p.decide("b@x", "zz-3", false), Verdict::Refused);
        assert_eq!(p.decide("c@x", "anything", true), Verdict::Honey);
    }

    #[test]
    fn nothing_succeeds_when_both_rules_are_off() {
        let mut p = LoginPolicy::new(LoginRules {
            top_passwords: 0,
            kth_attempt: 0,
        });
        for i in 0..20 {
            assert_eq!(p.decide("a", "123456", false), Verdict::Refused, "{i}");
        }
    }
}
