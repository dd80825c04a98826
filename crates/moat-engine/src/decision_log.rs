//! Decision log lines, bounded whatever the attack's rate.
//!
//! Every decision is counted in the metrics; the log gets the first few per rule and client
//! each minute one by one, and the rest as one summary line per rule at the end of the minute.
//! A byte budget (a token bucket: `BYTES_BURST`, refilled at `BYTES_PER_MINUTE`) bounds the
//! one-by-one lines of any 60 seconds to 900 KiB, so a flood from rotating addresses (each of
//! them new, each with a long made-up user agent) writes no more than a flood from one: at
//! full speed about 26 MB/s of JSON before this.

use ipnet::IpNet;
use moat_core::{prefix_of, PrefixLens};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

/// Lines per rule and client per minute, logged one by one.
pub const PER_CLIENT_PER_MINUTE: u32 = 10;
/// The budget's refill: what one-by-one lines may add up to per minute once a flood has used
/// the burst (estimated sizes).
pub const BYTES_PER_MINUTE: usize = 600 * 1024;
/// The budget's size: lines that may come at once. Any 60 seconds hold at most
/// `BYTES_BURST + BYTES_PER_MINUTE` (900 KiB), below 1 MB with room for the summaries.
pub const BYTES_BURST: usize = 300 * 1024;
/// Rule-and-client pairs remembered per minute; past it, a new pair is summarised at once.
const MAX_PAIRS: usize = 50_000;
/// Distinct clients counted per summary line.
const MAX_CLIENTS: usize = 10_000;
/// The longest attacker-chosen text (user agent, path, key) put in a line.
pub const MAX_FIELD: usize = 256;

#[derive(Default)]
struct Summary {
    action: String,
    count: u64,
    clients: HashSet<IpAddr>,
}

#[derive(Default)]
struct Window {
    minute: u64,
    /// Every decision of the minute, by rule, then client: two lookups by borrowed keys, so
    /// counting a decision allocates nothing once its pair is known.
    rules: HashMap<Box<str>, RuleCounts>,
    /// Rule-and-client pairs in `rules`, up to `MAX_PAIRS`.
    pairs: usize,
    held: HashMap<Box<str>, Summary>,
}

#[derive(Default)]
struct RuleCounts {
    /// The rule's action, for `top`.
    action: Box<str>,
    clients: HashMap<IpAddr, u32>,
    /// Decisions of clients that found the pairs full: counted for `top` all the same.
    unpaired: u64,
}

/// What was held back in a minute, one entry per rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub minute: u64,
    pub rule: String,
    pub action: String,
    pub count: u64,
    pub clients: usize,
}

/// The byte budget, in bytes, refilled by the millisecond.
struct Bucket {
    bytes: usize,
    at_ms: u64,
}

pub struct DecisionLog {
    w: Mutex<(Window, Bucket)>,
    /// The minute before the current one, for `top`: a live view must not go blank when a
    /// minute turns.
    last: Mutex<Window>,
}

impl Default for DecisionLog {
    fn default() -> Self {
        DecisionLog {
            w: Mutex::new((
                Window::default(),
                Bucket {
                    bytes: BYTES_BURST,
                    at_ms: 0,
                },
            )),
            last: Mutex::new(Window::default()),
        }
    }
}

impl DecisionLog {
    /// Whether this decision gets a line of its own (`bytes`: the line's estimated size). A
    /// decision that does not is counted for its rule's summary line. The minute before is
    /// summarised first if it is over.
    pub fn admit(
        &self,
        now_ms: u64,
        rule: &str,
        action: &str,
        client: IpAddr,
        bytes: usize,
    ) -> bool {
        let Ok(mut g) = self.w.lock() else {
            return false;
        };
        let (w, b) = &mut *g;
        let minute = now_ms / 60_000;
        if minute != w.minute {
            emit(self.take(w, minute));
        }
        if now_ms > b.at_ms {
            let refill = (now_ms - b.at_ms) as usize * BYTES_PER_MINUTE / 60_000;
            b.bytes = (b.bytes + refill).min(BYTES_BURST);
            b.at_ms = now_ms;
        }
        let r = match w.rules.get_mut(rule) {
            Some(r) => r,
            None => w.rules.entry(rule.into()).or_insert_with(|| RuleCounts {
                action: action.into(),
                ..RuleCounts::default()
            }),
        };
        let seen = match r.clients.get_mut(&client) {
            Some(n) => n,
            None if w.pairs < MAX_PAIRS => {
                w.pairs += 1;
                r.clients.entry(client).or_insert(0)
            }
            None => {
                r.unpaired += 1;
                hold(w, rule, action, client);
                return false;
            }
        };
        *seen += 1;
        if *seen <= PER_CLIENT_PER_MINUTE && bytes <= b.bytes {
            b.bytes -= bytes;
            return true;
        }
        hold(w, rule, action, client);
        false
    }

    /// Summarises what the current minute held back, now (at shutdown: nothing is left
    /// uncounted in the log).
    pub fn flush(&self) -> Vec<Held> {
        let Ok(mut g) = self.w.lock() else {
            return Vec::new();
        };
        let minute = g.0.minute;
        let held = self.take(&mut g.0, minute);
        emit(held.clone());
        held
    }

    /// Summarises the minute if it is over (called every few seconds, so the summary comes
    /// even when the flood has stopped).
    pub fn tick(&self, now_ms: u64) -> Vec<Held> {
        let Ok(mut g) = self.w.lock() else {
            return Vec::new();
        };
        let minute = now_ms / 60_000;
        if minute == g.0.minute {
            return Vec::new();
        }
        let held = self.take(&mut g.0, minute);
        emit(held.clone());
        held
    }

    /// Ends the window, starting `minute`; returns what it held back and keeps its counts
    /// for `top` (only if it was the minute just before: an older one is not "live").
    fn take(&self, w: &mut Window, minute: u64) -> Vec<Held> {
        let old = std::mem::replace(
            w,
            Window {
                minute,
                ..Window::default()
            },
        );
        let held = summaries(&old);
        if let Ok(mut last) = self.last.lock() {
            *last = if old.minute + 1 == minute {
                old
            } else {
                Window::default()
            };
        }
        held
    }

    /// The most frequent rules, clients and networks (`lens`) among the decisions of the
    /// current minute and the one before, `n` of each. Costs a pass over at most
    /// 2 × `MAX_PAIRS` pairs; meant for an operator's `moat top`, every few seconds.
    pub fn top(&self, now_ms: u64, n: usize, lens: PrefixLens) -> Top {
        let mut rules: HashMap<&str, (String, u64)> = HashMap::new();
        let mut clients: HashMap<IpAddr, u64> = HashMap::new();
        let mut nets: HashMap<IpNet, (u64, HashSet<IpAddr>)> = HashMap::new();
        let cur = self.w.lock();
        let last = self.last.lock();
        let (Ok(cur), Ok(last)) = (cur, last) else {
            return Top::default();
        };
        let now_minute = now_ms / 60_000;
        let mut windows: Vec<&Window> = Vec::new();
        // Only windows that are still "the last two minutes" at `now_ms`.
        for w in [&*last, &cur.0] {
            if w.minute + 1 >= now_minute && w.minute <= now_minute {
                windows.push(w);
            }
        }
        let mut total = 0u64;
        let mut since = u64::MAX;
        for w in windows {
            since = since.min(w.minute * 60_000);
            for (rule, r) in &w.rules {
                let e = rules
                    .entry(rule)
                    .or_insert_with(|| (r.action.to_string(), 0));
                e.1 += r.unpaired;
                total += r.unpaired;
                for (ip, c) in &r.clients {
                    let c = u64::from(*c);
                    total += c;
                    e.1 += c;
                    *clients.entry(*ip).or_default() += c;
                    let net = nets.entry(prefix_of(*ip, lens)).or_default();
                    net.0 += c;
                    if net.1.len() < MAX_CLIENTS {
                        net.1.insert(*ip);
                    }
                }
            }
        }
        let mut top = Top {
            since_ms: if since == u64::MAX { now_ms } else { since },
            decisions: total,
            ..Top::default()
        };
        top.rules = ranked(
            rules.into_iter().map(|(r, (a, c))| (c, (r.to_string(), a))),
            n,
        )
        .map(|(count, (rule, action))| TopRule {
            rule,
            action,
            count,
        })
        .collect();
        top.clients = ranked(clients.into_iter().map(|(ip, c)| (c, ip)), n)
            .map(|(count, client)| TopClient { client, count })
            .collect();
        top.networks = ranked(
            nets.into_iter()
                .map(|(net, (c, ips))| (c, (net, ips.len()))),
            n,
        )
        .map(|(count, (network, clients))| TopNetwork {
            network,
            count,
            clients,
        })
        .collect();
        top
    }
}

/// The `n` largest by count, largest first; ties in the order of `T` so output is stable.
fn ranked<T: Ord>(
    items: impl Iterator<Item = (u64, T)>,
    n: usize,
) -> impl Iterator<Item = (u64, T)> {
    let mut v: Vec<(u64, T)> = items.collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    v.truncate(n);
    v.into_iter()
}

/// What `DecisionLog::top` found: decisions since `since_ms` (the start of the minute before).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Top {
    pub since_ms: u64,
    pub decisions: u64,
    pub rules: Vec<TopRule>,
    pub clients: Vec<TopClient>,
    pub networks: Vec<TopNetwork>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopRule {
    pub rule: String,
    pub action: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopClient {
    pub client: IpAddr,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopNetwork {
    pub network: IpNet,
    pub count: u64,
    /// Distinct addresses seen in it.
    pub clients: usize,
}

fn hold(w: &mut Window, rule: &str, action: &str, client: IpAddr) {
    let s = match w.held.get_mut(rule) {
        Some(s) => s,
        None => w.held.entry(rule.into()).or_default(),
    };
    if s.action != action {
        s.action = action.to_string();
    }
    s.count += 1;
    if s.clients.len() < MAX_CLIENTS {
        s.clients.insert(client);
    }
}

/// What a finished window held back, one entry per rule.
fn summaries(old: &Window) -> Vec<Held> {
    let mut out: Vec<Held> = old
        .held
        .iter()
        .map(|(rule, s)| Held {
            minute: old.minute,
            rule: rule.to_string(),
            action: s.action.clone(),
            count: s.count,
            clients: s.clients.len(),
        })
        .collect();
    out.sort_by(|a, b| a.rule.cmp(&b.rule));
    out
}

fn emit(held: Vec<Held>) {
    for h in held {
        tracing::info!(
            target: "moat::decision",
            rule = %h.rule,
            action = %h.action,
            count = h.count,
            clients = h.clients,
            minute_start_ms = h.minute * 60_000,
            "decisions summarised"
        );
    }
}

/// `s` cut to `MAX_FIELD` bytes at a character boundary.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_client_gets_its_first_lines_and_the_rest_is_one_summary() {
        let l = DecisionLog::default();
        let t = 60_000 * 100;
        let logged = (0..50)
            .filter(|_| l.admit(t, "decoy", "decoy", ip(1), 300))
            .count();
        assert_eq!(logged, PER_CLIENT_PER_MINUTE as usize);
        assert!(l.admit(t, "other-rule", "block", ip(1), 300), "per rule");
        assert!(l.admit(t, "decoy", "decoy", ip(2), 300), "per client");
        assert_eq!(l.tick(t + 59_999), vec![], "the minute is not over");
        assert_eq!(
            l.tick(t + 60_000),
            vec![Held {
                minute: 100,
                rule: "decoy".into(),
                action: "decoy".into(),
                count: 40,
                clients: 1
            }]
        );
        assert!(
            l.admit(t + 60_000, "decoy", "decoy", ip(1), 300),
            "a new minute"
        );
    }

    #[test]
    fn rotating_clients_cannot_pass_the_byte_budget() {
        let l = DecisionLog::default();
        let t = 60_000 * 7;
        let line = 1200;
        let mut bytes = 0;
        for n in 0..200_000 {
            if l.admit(t, "decoy", "decoy", ip(n), line) {
                bytes += line;
            }
        }
        assert!(bytes <= BYTES_BURST, "{bytes}");
        assert!(bytes > BYTES_BURST - line, "the burst is used");
        let held = l.tick(t + 60_000);
        assert_eq!(held[0].count as usize, 200_000 - bytes / line);
        assert_eq!(
            held[0].clients, MAX_CLIENTS,
            "distinct clients counted up to the cap"
        );
    }

    #[test]
    fn any_sixty_seconds_of_flood_stay_under_the_budget() {
        // 1,000 decisions a second from new addresses for three minutes, across minute
        // boundaries: every 60-second span is checked.
        let l = DecisionLog::default();
        let line = 600;
        let mut logged = Vec::new();
        for ms in (0..180_000u64).step_by(1) {
            if l.admit(1_000_000 + ms, "decoy", "decoy", ip(ms as u32), line) {
                logged.push(ms);
            }
        }
        let most = (0..120_000u64)
            .step_by(1000)
            .map(|from| {
                logged
                    .iter()
                    .filter(|&&t| t >= from && t < from + 60_000)
                    .count()
                    * line
            })
            .max()
            .unwrap();
        assert!(most <= BYTES_BURST + BYTES_PER_MINUTE, "{most}");
        assert!(most < 1_000_000);
    }

    #[test]
    fn clip_keeps_whole_characters() {
        let s = "é".repeat(200);
        let c = clip(&s);
        assert!(c.len() <= MAX_FIELD && c.len().is_multiple_of(2));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn top_counts_every_decision_of_the_last_two_minutes_logged_or_not() {
        let l = DecisionLog::default();
        let t = 60_000 * 200 + 30_000;
        let lens = PrefixLens::default();
        // 40 decisions from 198.51.100.1, 5 each from ten addresses of 203.0.113.0/24 (one
        // minute earlier), 3 "block" decisions of another rule.
        let a = IpAddr::from([198, 51, 100, 1]);
        for host in 0..10u8 {
            for _ in 0..5 {
                l.admit(
                    t - 60_000,
                    "ghost-decoy",
                    "decoy",
                    IpAddr::from([203, 0, 113, host]),
                    300,
                );
            }
        }
        for _ in 0..40 {
            l.admit(t, "ghost-decoy", "decoy", a, 300);
        }
        for _ in 0..3 {
            l.admit(t, "bad-ua", "block", a, 300);
        }
        let top = l.top(t, 3, lens);
        assert_eq!(top.decisions, 40 + 50 + 3);
        assert_eq!(top.since_ms, 60_000 * 199);
        assert_eq!(
            (
                top.rules[0].rule.as_str(),
                top.rules[0].action.as_str(),
                top.rules[0].count
            ),
            ("ghost-decoy", "decoy", 90)
        );
        assert_eq!(
            (top.rules[1].rule.as_str(), top.rules[1].count),
            ("bad-ua", 3)
        );
        assert_eq!((top.clients[0].client, top.clients[0].count), (a, 43));
        assert_eq!(top.clients.len(), 3, "n of each");
        assert_eq!(top.networks[0].network.to_string(), "203.0.113.0/24");
        assert_eq!((top.networks[0].count, top.networks[0].clients), (50, 10));
        assert_eq!(top.networks[1].network.to_string(), "198.51.100.0/24");

        // Two minutes on, the earlier minute is no longer live; three minutes on, nothing is.
        let later = l.top(t + 60_000, 3, lens);
        assert_eq!(later.decisions, 43, "only the minute at t is still live");
        assert_eq!(l.top(t + 120_000, 3, lens).decisions, 0);
    }

    #[test]
    fn top_counts_pairs_past_the_cap_by_rule() {
        let l = DecisionLog::default();
        let t = 60_000 * 300;
        for n in 0..(MAX_PAIRS as u32 + 100) {
            l.admit(t, "decoy", "decoy", ip(n), 300);
        }
        let top = l.top(t, 1, PrefixLens::default());
        assert_eq!(top.decisions, MAX_PAIRS as u64 + 100);
        assert_eq!(top.rules[0].count, MAX_PAIRS as u64 + 100);
        assert_eq!(top.rules[0].action, "decoy");
    }
}
