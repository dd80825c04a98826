//! Work by the hundred thousand, queued beside the decider's channel rather than in it: a
//! feed's reconciliation, and a cluster instance catching up on the bans the others made.
//!
//! Sent as commands, such work filled the decider's bounded channel (65,536): the rest was
//! dropped, and counted as dropped offences (the feeds' until their next reapply 30 s later,
//! a catch-up's until the next reconnection), and while the channel was full the sensors'
//! offences were dropped too. Here it waits in memory, and the decider takes it a chunk at a
//! time after the sensors' commands.
//!
//! The feeds' policy's latest wish replaces the one before: it is computed from what is in
//! force, so nothing is lost by replacing what is left of the last one. A catch-up's bans are
//! added to those still waiting.

use moat_core::{Decision, Origin, Scope};
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

/// What is still to be done, taken in this order: other instances' bans and the feeds' bans
/// (they protect), then the feeds' lifts.
#[derive(Debug, Default)]
pub struct BulkWork {
    adopts: VecDeque<Decision>,
    bans: VecDeque<FeedBan>,
    lifts: VecDeque<Scope>,
}

impl BulkWork {
    /// The feeds' policy's latest wish, in place of whatever of the last one is left.
    pub fn replace_feeds(&mut self, bans: Vec<FeedBan>, lifts: Vec<Scope>) {
        self.bans = bans.into();
        self.lifts = lifts.into();
    }

    /// Other instances' bans, after those already waiting.
    pub fn adopt(&mut self, decisions: Vec<Decision>) {
        self.adopts.extend(decisions);
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.adopts.len() + self.bans.len() + self.lifts.len()
    }

    /// The next `n` at most, as the decider's commands.
    pub(crate) fn take(&mut self, n: usize) -> Vec<crate::decider::Command> {
        use crate::decider::Command;
        let adopts = self.adopts.len().min(n);
        let mut out: Vec<Command> = self.adopts.drain(..adopts).map(Command::Adopt).collect();
        let bans = self.bans.len().min(n - out.len());
        out.extend(self.bans.drain(..bans).map(|b| Command::Ban {
            scope: b.scope,
            ttl: Some(b.ttl),
            reason: b.reason,
            origin: b.origin,
        }));
        let lifts = self.lifts.len().min(n - out.len());
        out.extend(
            self.lifts
                .drain(..lifts)
                .map(|scope| Command::LiftFeed { scope }),
        );
        out
    }
}
