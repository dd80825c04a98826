//! Which recipients exist, so Moat can tell an enumeration probe from a delivery.
//!
//! Read from a configured list and from Postfix lookup-table source files
//! (`virtual_mailbox_maps`, `virtual_alias_maps`: `key value…` per line, `#` comments, blank
//! lines; a key `@domain` is a catch-all that makes every address of that domain valid).
//! Addresses compare case-insensitively, as mail systems treat them.

use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    addresses: HashSet<String>,
    /// Domains with a catch-all (`@domain` key).
    catch_all: HashSet<String>,
    /// Every domain we receive for: those of the addresses and the catch-alls.
    domains: HashSet<String>,
}

impl Recipients {
    pub fn add(&mut self, address: &str) {
        let a = address.trim().to_ascii_lowercase();
        if let Some(domain) = a.strip_prefix('@') {
            self.catch_all.insert(domain.to_string());
            self.domains.insert(domain.to_string());
        } else if !a.is_empty() {
            if let Some((_, d)) = a.rsplit_once('@') {
                self.domains.insert(d.to_string());
            }
            self.addresses.insert(a);
        }
    }

    /// Adds the keys of a Postfix map source file.
    pub fn add_map_text(&mut self, text: &str) {
        for line in text.lines() {
            // Continuation lines (leading whitespace) hold values, not keys.
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(key) = line.split_whitespace().next() {
                if key.contains('@') {
                    self.add(key);
                }
            }
        }
    }

    pub fn contains(&self, address: &str) -> bool {
        let a = address.trim().trim_matches(|c| c == '<' || c == '>');
        let a = a.to_ascii_lowercase();
        if self.addresses.contains(&a) {
            return true;
        }
        a.rsplit_once('@')
            .is_some_and(|(_, d)| self.catch_all.contains(d))
    }

    /// Whether `login` (a bare name or an address) names a real mailbox: a honey account must
    /// never shadow one.
    pub fn has_local_part(&self, login: &str) -> bool {
        let l = login.to_ascii_lowercase();
        if l.contains('@') {
            return self.contains(&l);
        }
        self.addresses
            .iter()
            .any(|a| a.split('@').next() == Some(l.as_str()))
    }

    /// Whether `address` is in one of our domains (known or not).
    pub fn is_local(&self, address: &str) -> bool {
        let a = address.trim().trim_matches(|c| c == '<' || c == '>');
        a.rsplit_once('@')
            .is_some_and(|(_, d)| self.domains.contains(&d.to_ascii_lowercase()))
    }

    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.catch_all.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_maps_and_lists() {
        let mut r = Recipients::default();
        r.add_map_text(
            "# virtual_mailbox_maps\nalice@moat.test  alice/\nBob@Moat.Test bob/\n\n@catch.test whatever\n  continued@value.test\nnot-an-address x\n",
        );
        r.add("carol@other.test");
        assert!(r.contains("alice@moat.test"));
        assert!(r.contains("<BOB@moat.test>"));
        assert!(r.contains("anyone@catch.test"));
        assert!(r.contains("carol@other.test"));
        assert!(!r.contains("mallory@moat.test"));
        assert!(
            !r.contains("continued@value.test"),
            "a continuation line is not a key"
        );
        assert!(r.has_local_part("alice") && r.has_local_part("Alice@moat.test"));
        assert!(!r.has_local_part("info"));
        assert!(r.is_local("<nobody@MOAT.test>") && r.is_local("x@catch.test"));
        assert!(!r.is_local("victim@outside.example") && !r.is_local("no-domain"));
    }
}
