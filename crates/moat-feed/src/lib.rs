//! Moat's signed intelligence feed, free of I/O (the binary fetches, writes and serves).
//!
//! Every instance publishes at `/.well-known/moat/feed/`: `head`, a signed note (C2SP
//! signed-note, Ed25519) naming a snapshot and the deltas after it by SHA-256, and those files,
//! immutable, at `by-hash/SHA256` as gzip'd JSON lines. Subscribers pin the publisher's key,
//! poll `head` with `If-None-Match`, refuse rollbacks, forks, expired heads and tampered files,
//! and let a local [`policy`] decide which addresses become bans.
//!
//! - [`note`]: keys and signed notes;
//! - [`head`]: the head's text;
//! - [`indicator`]: what is published, and the files;
//! - [`publish`]: the publisher's state;
//! - [`subscribe`]: one peer's verified view;
//! - [`policy`]: quorum, never-block set, expiry.

pub mod head;
pub mod indicator;
pub mod note;
pub mod policy;
pub mod publish;
pub mod subscribe;

/// Where a feed is served, on the HTTP front door.
pub const URL_PATH: &str = "/.well-known/moat/feed/";
/// In the state directory: the published head and files (`head`, `by-hash/SHA256`).
pub const DIR: &str = "feed";
pub const HEAD_FILE: &str = "head";
pub const BY_HASH_DIR: &str = "by-hash";
/// In the state directory: the instance's signing key (0600).
pub const KEY_FILE: &str = "feed.key";

pub use head::{FileRef, Head};
pub use indicator::{Indicator, Kind};
pub use note::{SignerKey, VerifierKey};
pub use policy::Policy;
pub use publish::Publisher;
pub use subscribe::{PeerView, Plan, Refusal};

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::Scope;
    use std::collections::HashMap;

    fn ip(value: &str, expires: u64) -> Indicator {
        Indicator {
            kind: if value.contains('/') {
                Kind::Prefix
            } else {
                Kind::Ip
            },
            value: value.into(),
            detector: "jail:postfix-sasl".into(),
            count: 1,
            first_seen: 100,
            last_seen: 100,
            expires,
        }
    }

    /// A publisher's output as a server would hold it.
    #[derive(Default)]
    struct Served {
        head: String,
        files: HashMap<String, Vec<u8>>,
    }

    impl Served {
        fn take(&mut self, out: publish::Output) {
            self.head = out.head;
            self.files.extend(out.files);
        }
        fn poll(&self, view: &mut PeerView, key: &VerifierKey, now: u64) -> Result<bool, Refusal> {
            let Some(plan) = view.check_head(key, &self.head, now)? else {
                return Ok(false);
            };
            let files: Vec<Vec<u8>> = plan
                .fetch
                .iter()
                .map(|r| self.files[&r.sha256].clone())
                .collect();
            view.apply(plan, &files)?;
            Ok(true)
        }
    }

    #[test]
    fn a_subscriber_follows_snapshot_and_deltas() {
        let key = SignerKey::generate("alice").unwrap();
        let vkey = key.verifier();
        let mut p = Publisher::new(key, None, 3600);
        let mut s = Served::default();
        let mut view = PeerView::default();

        s.take(p.update(vec![ip("203.0.113.7", 5000)], 1000).unwrap());
        assert!(s.poll(&mut view, &vkey, 1000).unwrap());
        assert_eq!(view.live(1000).count(), 1);
        assert!(
            !s.poll(&mut view, &vkey, 1001).unwrap(),
            "the same head again"
        );
        assert!(p.update(vec![ip("203.0.113.7", 5000)], 1002).is_none());

        let out = p
            .update(
                vec![ip("198.51.100.0/24", 6000), ip("203.0.113.8", 6000)],
                1010,
            )
            .unwrap();
        assert_eq!(out.files.len(), 1, "one delta");
        s.take(out);
        let plan = view.check_head(&vkey, &s.head, 1010).unwrap().unwrap();
        assert!(!plan.from_snapshot && plan.fetch.len() == 1);
        assert!(s.poll(&mut view, &vkey, 1010).unwrap());
        let values: Vec<&str> = view.live(1010).map(|i| i.value.as_str()).collect();
        assert_eq!(values, ["203.0.113.8", "198.51.100.0/24"]);

        // Half the lifetime later, the head is re-signed with nothing new.
        let out = p
            .update(
                vec![ip("198.51.100.0/24", 6000), ip("203.0.113.8", 6000)],
                1010 + 1801,
            )
            .unwrap();
        assert!(out.files.is_empty());
        s.take(out);
        assert!(s.poll(&mut view, &vkey, 2811).unwrap());
        // Expired indicators no longer count; a frozen head makes none count.
        assert_eq!(view.live(5500).count(), 2);
        assert_eq!(view.live(10_000).count(), 0);
    }

    #[test]
    fn rollback_fork_expiry_and_tampering_are_refused() {
        let key = SignerKey::generate("alice").unwrap();
        let vkey = key.verifier();
        let mut p = Publisher::new(key, None, 3600);
        let mut s = Served::default();
        let mut view = PeerView::default();
        s.take(p.update(vec![ip("203.0.113.7", 9000)], 1000).unwrap());
        let old_head = s.head.clone();
        s.take(p.update(vec![ip("203.0.113.9", 9000)], 1001).unwrap());
        assert!(s.poll(&mut view, &vkey, 1001).unwrap());

        let before = view.clone();
        assert!(matches!(
            view.check_head(&vkey, &old_head, 1002),
            Err(Refusal::Rollback { .. })
        ));
        // Another head with the same seq, from the same key (a fork).
        let mut p2 = Publisher::new(
            SignerKey::parse(&p.key().to_secret_text()).unwrap(),
            None,
            3600,
        );
        let _ = p2.update(vec![], 1000).unwrap();
        let fork = p2.update(vec![ip("192.0.2.1", 9000)], 1000).unwrap().head;
        assert!(matches!(
            view.check_head(&vkey, &fork, 1002),
            Err(Refusal::Fork { .. })
        ));
        // Not yet seen, but past its expiry.
        assert!(matches!(
            PeerView::default().check_head(&vkey, &s.head, 1001 + 3600),
            Err(Refusal::Expired { .. })
        ));

        // A tampered delta: the head is fine, the file is not.
        s.take(p.update(vec![ip("203.0.113.10", 9000)], 1003).unwrap());
        let plan = view.check_head(&vkey, &s.head, 1003).unwrap().unwrap();
        let mut bytes = s.files[&plan.fetch[0].sha256].clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            view.apply(plan, &[bytes]),
            Err(Refusal::Tampered { .. })
        ));
        assert_eq!(view, before, "nothing of a refused poll is applied");
        // A head signed by another key.
        let mallory = SignerKey::generate("alice").unwrap();
        let forged = mallory.sign("moat-feed/1\n");
        assert!(matches!(
            view.check_head(&vkey, &forged, 1003),
            Err(Refusal::Signature(_))
        ));
    }

    #[test]
    fn a_restarted_publisher_goes_on_from_its_last_head() {
        let key = SignerKey::generate("alice").unwrap();
        let vkey = key.verifier();
        let text = key.to_secret_text();
        let mut p = Publisher::new(key, None, 3600);
        let mut s = Served::default();
        let mut view = PeerView::default();
        s.take(p.update(vec![ip("203.0.113.7", 9000)], 1000).unwrap());
        s.take(p.update(vec![ip("203.0.113.8", 9000)], 1001).unwrap());
        assert!(s.poll(&mut view, &vkey, 1001).unwrap());
        let last = Head::parse(vkey.open(&s.head).unwrap()).unwrap();

        let mut again = Publisher::new(SignerKey::parse(&text).unwrap(), Some(last), 3600);
        let out = again.update(vec![ip("203.0.113.9", 9000)], 1100).unwrap();
        s.take(out);
        let plan = view.check_head(&vkey, &s.head, 1100).unwrap().unwrap();
        assert!(plan.from_snapshot, "a new snapshot after a restart");
        assert!(s.poll(&mut view, &vkey, 1100).unwrap());
        let values: Vec<&str> = view.live(1100).map(|i| i.value.as_str()).collect();
        assert_eq!(values, ["203.0.113.9"]);
    }

    #[test]
    fn the_policy_needs_a_quorum_and_never_blocks_what_it_must_not() {
        let mut a = PeerView::default();
        let mut b = PeerView::default();
        for (view, values) in [
            (
                &mut a,
                &[
                    "203.0.113.7",
                    "66.249.66.1",
                    "10.1.2.3",
                    "198.51.0.0/15",
                    "192.0.2.0/24",
                ][..],
            ),
            (&mut b, &["203.0.113.7", "203.0.113.99"][..]),
        ] {
            view.seq = 1;
            view.expires = 10_000;
            for v in values {
                let i = ip(v, 5000);
                view.indicators.insert((i.kind, i.value.clone()), i);
            }
        }
        let allow: ipnet::IpNet = "192.0.2.128/25".parse().unwrap();
        let policy = Policy::new(1.0, 600, [allow]);
        let peers = [
            policy::Peer {
                name: "a",
                weight: 1.0,
                view: &a,
            },
            policy::Peer {
                name: "b",
                weight: 0.5,
                view: &b,
            },
        ];
        let (wanted, refused) = policy::decide(&policy, &peers, 1000);
        let scopes: Vec<String> = wanted.iter().map(|w| w.scope.to_string()).collect();
        assert_eq!(scopes, ["203.0.113.7"], "b alone weighs 0.5");
        assert_eq!(wanted[0].peers, ["a", "b"]);
        assert_eq!(wanted[0].expires, 1600, "capped at max_ttl");
        let refused: Vec<String> = refused.iter().map(|r| r.scope.to_string()).collect();
        assert_eq!(
            refused,
            ["10.1.2.3", "66.249.66.1", "192.0.2.0/24", "198.51.0.0/15"]
        );

        let strict = Policy::new(2.0, 600, []);
        assert!(policy::decide(&strict, &peers, 1000).0.is_empty());
        assert!(strict
            .refuses(&Scope::Ip("::ffff:127.0.0.1".parse().unwrap()))
            .is_some());
    }
}
