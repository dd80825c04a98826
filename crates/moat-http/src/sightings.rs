//! What the dashboard shows about clients that the decision log does not keep: the user agents
//! and header shapes behind the last minutes' decisions (the Who page: a script that never
//! changes its user agent stands out), and the browser proof's outcomes, above all any client a
//! rule stopped that has since passed the proof (the People page and the digest: a person may
//! have been blocked).
//!
//! Bounded whatever the attack: each minute keeps at most [`MAX_KEYS`] user agents and as many
//! shapes (the rest count under [`OTHER`]), each user agent cut to the decision log's 256
//! bytes; the stopped clients remembered for a rescue are at most 2 × [`MAX_STOPPED`], and the
//! rescues kept to show at most [`MAX_RESCUES`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Distinct user agents (and shapes) counted per minute.
pub const MAX_KEYS: usize = 5_000;
/// Where the user agents (or shapes) past [`MAX_KEYS`] are counted.
pub const OTHER: &str = "(others)";
/// Stopped clients per generation; two generations are kept (see [`Stopped`]).
pub const MAX_STOPPED: usize = 50_000;
/// How long a stop is remembered for a rescue, at most (one generation's span).
pub const STOP_MEMORY_MS: u64 = 3_600_000;
/// Rescues kept to show, newest last.
pub const MAX_RESCUES: usize = 200;

/// One minute's decisions by user agent and by header shape.
#[derive(Default)]
struct Window {
    minute: u64,
    agents: HashMap<Box<str>, Seen>,
    shapes: HashMap<Box<str>, Seen>,
}

#[derive(Default, Clone)]
struct Seen {
    count: u64,
    /// By action (`block`, `decoy`, `log`...): few per key, so a short list.
    actions: Vec<(&'static str, u64)>,
}

impl Seen {
    fn add(&mut self, action: &'static str, n: u64) {
        self.count += n;
        match self.actions.iter_mut().find(|(a, _)| *a == action) {
            Some((_, c)) => *c += n,
            None => self.actions.push((action, n)),
        }
    }
}

fn count(map: &mut HashMap<Box<str>, Seen>, key: &str, action: &'static str) {
    if let Some(s) = map.get_mut(key) {
        s.add(action, 1);
        return;
    }
    let key = if map.len() < MAX_KEYS { key } else { OTHER };
    map.entry(key.into()).or_default().add(action, 1);
}

/// A user agent or a shape among the most frequent, with what was decided for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopSeen {
    pub value: String,
    pub count: u64,
    /// Decisions by action, most first.
    pub actions: Vec<(String, u64)>,
}

/// Clients a rule stopped, for telling a rescue when one passes the proof. Two generations:
/// a lookup reads both, a stop goes in the current one, and the current one becomes the old
/// one when it is full or an hour old. Constant time per stop, a bounded memory, and a stop is
/// remembered between one and two generations.
#[derive(Default)]
struct Stopped {
    since_ms: u64,
    cur: HashMap<IpAddr, (u64, Box<str>)>,
    old: HashMap<IpAddr, (u64, Box<str>)>,
}

/// A client a rule stopped that then passed the browser proof: a person, most likely, or a
/// script that solves the proof (the rule's hits say which).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rescue {
    pub client: IpAddr,
    /// The rule or limit that stopped it, and its action.
    pub rule: String,
    pub stopped_ms: u64,
    pub passed_ms: u64,
    /// `work` (proof of work, JavaScript on) or `nojs` (the waiting path).
    pub proof: &'static str,
}

/// What the browser proof's endpoints answered, told from the answer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofOutcome {
    Passed(&'static str),
    Failed,
}

impl ProofOutcome {
    /// `POST /.moat/verify` answers 200 with a clearance cookie to a good solution and 403 to
    /// a bad one; `GET /.moat/nojs` redirects (303) with a cookie once the wait is over, and
    /// answers 403 to a bad ticket (a page saying "wait" is neither).
    pub fn of(method: &http::Method, path: &str, status: http::StatusCode) -> Option<Self> {
        match (method.as_str(), path, status.as_u16()) {
            ("POST", "/.moat/verify", 200) => Some(Self::Passed("work")),
            ("GET", "/.moat/nojs", 303) => Some(Self::Passed("nojs")),
            ("POST", "/.moat/verify", 403) | ("GET", "/.moat/nojs", 403) => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Sightings {
    windows: Mutex<(Window, Window)>,
    stopped: Mutex<Stopped>,
    rescues: Mutex<VecDeque<Rescue>>,
    passed_work: AtomicU64,
    passed_nojs: AtomicU64,
    failed: AtomicU64,
    rescued: AtomicU64,
}

impl Sightings {
    /// Counts a decision under its user agent and header shape; remembers the client when the
    /// action stopped it (a `log` did not; a `challenge`, a `retry` or a per-action proof asks
    /// for the proof, so passing it then is the ordinary way through, not a rescue).
    pub fn decision(
        &self,
        now_ms: u64,
        client: IpAddr,
        rule: &str,
        action: &'static str,
        agent: &str,
        shape: &str,
    ) {
        let agent = moat_engine::decision_log::clip(agent);
        if let Ok(mut g) = self.windows.lock() {
            let (last, cur) = &mut *g;
            let minute = now_ms / 60_000;
            if cur.minute != minute {
                let old = std::mem::replace(
                    cur,
                    Window {
                        minute,
                        ..Window::default()
                    },
                );
                *last = if old.minute + 1 == minute {
                    old
                } else {
                    Window::default()
                };
            }
            count(&mut cur.agents, agent, action);
            count(&mut cur.shapes, shape, action);
        }
        if matches!(
            action,
            "log" | "allow" | "skip" | "challenge" | "retry" | "action-proof" | "wait"
        ) {
            return;
        }
        if let Ok(mut s) = self.stopped.lock() {
            if s.cur.len() >= MAX_STOPPED || now_ms.saturating_sub(s.since_ms) >= STOP_MEMORY_MS {
                s.old = std::mem::take(&mut s.cur);
                s.since_ms = now_ms;
            }
            // A client stopped again (a flood from one address) only has its time moved: no
            // allocation per decision.
            match s.cur.get_mut(&client) {
                Some(seen) => seen.0 = now_ms,
                None => {
                    s.cur
                        .insert(client, (now_ms, format!("{rule} ({action})").into()));
                }
            }
        }
    }

    /// Counts what the proof's endpoint answered; a pass from a client a rule stopped is a
    /// rescue, logged and kept to show.
    pub fn proof(&self, now_ms: u64, client: IpAddr, outcome: ProofOutcome) {
        let how = match outcome {
            ProofOutcome::Failed => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            ProofOutcome::Passed(how) => how,
        };
        match how {
            "work" => &self.passed_work,
            _ => &self.passed_nojs,
        }
        .fetch_add(1, Ordering::Relaxed);
        let stop = self.stopped.lock().ok().and_then(|mut s| {
            s.cur
                .remove(&client)
                .or_else(|| s.old.remove(&client))
                .filter(|(at, _)| now_ms.saturating_sub(*at) < 2 * STOP_MEMORY_MS)
        });
        let Some((stopped_ms, rule)) = stop else {
            return;
        };
        self.rescued.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target: "moat::proof", client = %client, rule = %rule, proof = how,
            "a client a rule stopped has since passed the browser proof: a person, perhaps \
             (the dashboard's People page lists them; `moat allow` lets them in)");
        if let Ok(mut r) = self.rescues.lock() {
            if r.len() == MAX_RESCUES {
                r.pop_front();
            }
            r.push_back(Rescue {
                client,
                rule: rule.into(),
                stopped_ms,
                passed_ms: now_ms,
                proof: how,
            });
        }
    }

    /// The `n` most frequent user agents and header shapes behind the decisions of this
    /// minute and the one before.
    pub fn top(&self, now_ms: u64, n: usize) -> (Vec<TopSeen>, Vec<TopSeen>) {
        let Ok(g) = self.windows.lock() else {
            return Default::default();
        };
        let minute = now_ms / 60_000;
        let live: Vec<&Window> = [&g.0, &g.1]
            .into_iter()
            .filter(|w| w.minute + 1 >= minute && w.minute <= minute)
            .collect();
        let rank = |pick: fn(&Window) -> &HashMap<Box<str>, Seen>| {
            let mut all: HashMap<&str, Seen> = HashMap::new();
            for w in &live {
                for (k, s) in pick(w) {
                    let e = all.entry(k).or_default();
                    for (a, c) in &s.actions {
                        e.add(a, *c);
                    }
                }
            }
            let mut v: Vec<(&str, Seen)> = all.into_iter().collect();
            v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
            v.truncate(n);
            v.into_iter()
                .map(|(k, mut s)| {
                    s.actions.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    TopSeen {
                        value: k.to_string(),
                        count: s.count,
                        actions: s
                            .actions
                            .into_iter()
                            .map(|(a, c)| (a.to_string(), c))
                            .collect(),
                    }
                })
                .collect::<Vec<_>>()
        };
        (rank(|w| &w.agents), rank(|w| &w.shapes))
    }

    /// The proof's counts since start, and the rescues kept, newest first.
    pub fn proof_counts(&self) -> ProofCounts {
        ProofCounts {
            passed_work: self.passed_work.load(Ordering::Relaxed),
            passed_nojs: self.passed_nojs.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            rescued: self.rescued.load(Ordering::Relaxed),
            rescues: self
                .rescues
                .lock()
                .map(|r| r.iter().rev().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProofCounts {
    pub passed_work: u64,
    pub passed_nojs: u64,
    pub failed: u64,
    pub rescued: u64,
    pub rescues: Vec<Rescue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, StatusCode};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn agents_and_shapes_rank_with_their_actions_over_two_minutes() {
        let s = Sightings::default();
        let t = 100 * 60_000;
        for _ in 0..30 {
            s.decision(
                t,
                ip("192.0.2.1"),
                "r",
                "block",
                "python-requests/2.32",
                "1p05",
            );
        }
        for _ in 0..10 {
            s.decision(
                t + 61_000,
                ip("192.0.2.2"),
                "r",
                "log",
                "aiohttp/3.9",
                "1p05",
            );
        }
        s.decision(
            t + 61_000,
            ip("192.0.2.3"),
            "r",
            "decoy",
            "python-requests/2.32",
            "1p05",
        );
        let (agents, shapes) = s.top(t + 62_000, 5);
        assert_eq!(agents[0].value, "python-requests/2.32");
        assert_eq!(agents[0].count, 31);
        assert_eq!(
            agents[0].actions,
            vec![("block".to_string(), 30), ("decoy".to_string(), 1)]
        );
        assert_eq!(agents[1].value, "aiohttp/3.9");
        assert_eq!(shapes[0].count, 41);
        // Two minutes later the first minute is gone.
        let (agents, _) = s.top(t + 121_000, 5);
        assert_eq!(agents.len(), 2);
        assert_eq!(
            (agents[0].value.as_str(), agents[0].count),
            ("aiohttp/3.9", 10)
        );
    }

    #[test]
    fn distinct_agents_are_bounded_and_long_ones_clipped() {
        let s = Sightings::default();
        for i in 0..MAX_KEYS + 500 {
            s.decision(0, ip("192.0.2.1"), "r", "block", &format!("bot-{i}"), "x");
        }
        s.decision(0, ip("192.0.2.1"), "r", "block", &"é".repeat(5_000), "x");
        let (agents, _) = s.top(0, MAX_KEYS + 10);
        assert_eq!(agents.len(), MAX_KEYS + 1);
        let other = agents.iter().find(|a| a.value == OTHER).unwrap();
        assert_eq!(other.count, 501);
        assert!(agents
            .iter()
            .all(|a| a.value.len() <= moat_engine::decision_log::MAX_FIELD));
    }

    #[test]
    fn a_stopped_client_that_passes_the_proof_is_a_rescue_once() {
        let s = Sightings::default();
        s.decision(
            1_000,
            ip("192.0.2.7"),
            "signup-limit",
            "block",
            "Firefox",
            "x",
        );
        s.decision(1_000, ip("192.0.2.8"), "nav", "challenge", "Firefox", "x");
        s.decision(1_000, ip("192.0.2.8"), "signup", "retry", "Firefox", "x");
        s.proof(2_000, ip("192.0.2.8"), ProofOutcome::Passed("work"));
        s.proof(3_000, ip("192.0.2.7"), ProofOutcome::Passed("work"));
        s.proof(4_000, ip("192.0.2.7"), ProofOutcome::Passed("nojs"));
        s.proof(5_000, ip("192.0.2.9"), ProofOutcome::Failed);
        let c = s.proof_counts();
        assert_eq!((c.passed_work, c.passed_nojs, c.failed), (2, 1, 1));
        assert_eq!(
            c.rescued, 1,
            "a challenge passed is not a rescue; a rescue counts once"
        );
        assert_eq!(
            c.rescues,
            vec![Rescue {
                client: ip("192.0.2.7"),
                rule: "signup-limit (block)".into(),
                stopped_ms: 1_000,
                passed_ms: 3_000,
                proof: "work",
            }]
        );
    }

    #[test]
    fn stops_are_remembered_in_bounded_generations() {
        let s = Sightings::default();
        s.decision(0, ip("10.0.0.1"), "r", "block", "a", "x");
        // A flood of other stops fills a generation twice: the first stop is forgotten.
        for i in 0..(2 * MAX_STOPPED as u32 + 2) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            s.decision(10, a, "r", "block", "a", "x");
        }
        s.proof(20, ip("10.0.0.1"), ProofOutcome::Passed("work"));
        assert_eq!(s.proof_counts().rescued, 0);
        let g = s.stopped.lock().unwrap();
        assert!(g.cur.len() + g.old.len() <= 2 * MAX_STOPPED);
        drop(g);
        // After an hour a stop moves to the old generation and still counts.
        let s = Sightings::default();
        s.decision(0, ip("10.0.0.2"), "r", "decoy", "a", "x");
        s.decision(STOP_MEMORY_MS, ip("10.0.0.3"), "r", "decoy", "a", "x");
        s.proof(
            STOP_MEMORY_MS + 1,
            ip("10.0.0.2"),
            ProofOutcome::Passed("nojs"),
        );
        assert_eq!(s.proof_counts().rescued, 1);
    }

    #[test]
    fn outcomes_are_read_from_the_endpoints_answers() {
        let (get, post) = (Method::GET, Method::POST);
        let o = ProofOutcome::of;
        assert_eq!(
            o(&post, "/.moat/verify", StatusCode::OK),
            Some(ProofOutcome::Passed("work"))
        );
        assert_eq!(
            o(&post, "/.moat/verify", StatusCode::FORBIDDEN),
            Some(ProofOutcome::Failed)
        );
        assert_eq!(
            o(&get, "/.moat/nojs", StatusCode::SEE_OTHER),
            Some(ProofOutcome::Passed("nojs"))
        );
        assert_eq!(
            o(&get, "/.moat/nojs", StatusCode::OK),
            None,
            "still waiting"
        );
        assert_eq!(o(&get, "/.moat/challenge", StatusCode::OK), None);
    }
}
