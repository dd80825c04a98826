//! A feed's reconciliation, queued beside the decider's channel rather than in it.
//!
//! The feed subscriber's policy decides what the followed feeds want in force: tens or
//! hundreds of thousands of bans and lifts when a large feed is followed or dropped. Sent as
//! commands they filled the decider's bounded channel (65,536): the rest were dropped, and
//! counted as dropped offences, until the next reapply 30 s later; and while the channel was
//! full, the sensors' offences were dropped too. Here the policy's latest wish replaces the
//! one before (it is computed from what is in force, so nothing is lost by replacing it), and
//! the decider takes it a chunk at a time after the sensors' commands.

use moat_core::{Origin, Scope};
use std::collections::VecDeque;
use std::time::Duration;

/// A ban a feed's policy wants made or extended.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedBan {
    pub scope: Scope,
    pub ttl: Duration,
    pub reason: String,
    pub origin: Origin,
}

/// What the feeds' policy still wants done: bans first (they protect), then lifts.
#[derive(Debug, Default)]
pub struct FeedWork {
    bans: VecDeque<FeedBan>,
    lifts: VecDeque<Scope>,
}

impl FeedWork {
    /// The policy's latest wish, in place of whatever of the last one is left.
    pub fn replace(&mut self, bans: Vec<FeedBan>, lifts: Vec<Scope>) {
        self.bans = bans.into();
        self.lifts = lifts.into();
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty() && self.lifts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bans.len() + self.lifts.len()
    }

    /// The next `n` at most, as the decider's commands.
    pub(crate) fn take(&mut self, n: usize) -> Vec<crate::decider::Command> {
        use crate::decider::Command;
        let bans = self.bans.len().min(n);
        let mut out: Vec<Command> = self
            .bans
            .drain(..bans)
            .map(|b| Command::Ban {
                scope: b.scope,
                ttl: Some(b.ttl),
                reason: b.reason,
                origin: b.origin,
            })
            .collect();
        let lifts = self.lifts.len().min(n - bans);
        out.extend(
            self.lifts
                .drain(..lifts)
                .map(|scope| Command::LiftFeed { scope }),
        );
        out
    }
}
