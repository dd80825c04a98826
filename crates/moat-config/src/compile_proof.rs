//! The `[proof]` table: defaults chosen so that turning on a challenge rule is all a user does.

use crate::compile::dur;
use crate::errors::Sink;
use crate::model::{Policy, Proof};
use crate::raw::RawProof;
use std::net::SocketAddr;
use std::time::Duration;

const EXEMPT_PATHS: &[&str] = &[
    "/.well-known/",
    "/robots.txt",
    "/favicon.ico",
    "/assets/",
    "/static/",
    "/content/images/",
    "/public/",
];

/// Feed segments anywhere in a path: Ghost's `/tag/x/rss/`, WordPress's `/category/x/feed/`.
const EXEMPT_SEGMENTS: &[&str] = &["rss", "feed", "atom"];

const EXEMPT_EXTENSIONS: &[&str] = &[
    "xml", "rss", "atom", "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "webp", "avif",
    "svg", "ico", "woff", "woff2", "ttf", "otf", "eot", "mp4", "webm", "mp3", "ogg", "pdf", "txt",
];

pub(crate) fn proof(r: &RawProof, policy: &Policy, s: &mut Sink) -> Proof {
    let difficulty = bits(r.difficulty.as_ref(), "proof.difficulty", 16, s);
    let max_difficulty = bits(r.max_difficulty.as_ref(), "proof.max_difficulty", 22, s);
    if max_difficulty < difficulty {
        if let Some(m) = &r.max_difficulty {
            s.at(
                m.span(),
                "proof.max_difficulty",
                format!("must be at least proof.difficulty ({difficulty})"),
            );
        }
    }
    let clearance_ttl = dur(
        r.clearance_ttl.as_ref(),
        "proof.clearance_ttl",
        Duration::from_secs(24 * 3600),
        s,
    );
    let key_rotation = dur(
        r.key_rotation.as_ref(),
        "proof.key_rotation",
        Duration::from_secs(7 * 24 * 3600),
        s,
    );
    // The previous key verifies for one rotation period; a token must not outlive it.
    if key_rotation < clearance_ttl {
        let msg = format!(
            "must be at least proof.clearance_ttl ({}s), or tokens would outlive their key",
            clearance_ttl.as_secs()
        );
        match &r.key_rotation {
            Some(k) => s.at(k.span(), "proof.key_rotation", msg),
            None => s.nowhere("proof.key_rotation", msg),
        }
    }
    let nojs_delay = match r.nojs.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("delay", _)) => Some(dur(
            r.nojs_delay.as_ref(),
            "proof.nojs_delay",
            Duration::from_secs(5),
            s,
        )),
        Some(("off", _)) => None,
        Some((other, span)) => {
            s.at(span, "proof.nojs", format!("`{other}`: use delay or off"));
            None
        }
    };
    let challenges = |a: &crate::Action| matches!(a, crate::Action::Challenge { .. });
    let uses_proof = policy.rules.iter().any(|r| {
        r.require_clearance || challenges(&r.action) || r.expr.source().contains("moat.clearance")
    });
    let reads_bots = policy
        .rules
        .iter()
        .any(|r| r.expr.source().contains("moat.good_bot"));
    let limits_challenge = policy.rate_limits.iter().any(|l| challenges(&l.action));
    let inject = match &r.inject {
        Some(list) => prefixes(list, "proof.inject", s),
        None if uses_proof => vec!["/".to_string()],
        None => Vec::new(),
    };
    let dns_server = r.dns_server.as_ref().and_then(|d| {
        let v = d.get_ref();
        v.parse::<SocketAddr>()
            .or_else(|_| {
                v.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| {
                s.at(
                    d.span(),
                    "proof.dns_server",
                    format!("`{v}` is not an address such as 127.0.0.1 or 127.0.0.1:5353"),
                )
            })
            .ok()
    });
    Proof {
        active: uses_proof || reads_bots || limits_challenge || !inject.is_empty(),
        inject,
        difficulty,
        max_difficulty: max_difficulty.max(difficulty),
        pressure_threshold: r
            .pressure_threshold
            .as_ref()
            .map_or(60, |v| (*v.get_ref()).max(1)),
        action_threshold: r
            .action_threshold
            .as_ref()
            .map_or(6, |v| (*v.get_ref()).max(1)),
        max_action_difficulty: r
            .max_action_difficulty
            .as_ref()
            .map_or(20, |v| *v.get_ref())
            .clamp(difficulty, 32),
        clearance_ttl: clearance_ttl.max(Duration::from_secs(1)),
        challenge_ttl: dur(
            r.challenge_ttl.as_ref(),
            "proof.challenge_ttl",
            Duration::from_secs(300),
            s,
        )
        .max(Duration::from_secs(5)),
        key_rotation,
        nojs_delay,
        exempt_paths: match &r.exempt_paths {
            Some(list) => prefixes(list, "proof.exempt_paths", s),
            None => EXEMPT_PATHS.iter().map(|p| p.to_string()).collect(),
        },
        exempt_extensions: match &r.exempt_extensions {
            Some(list) => list
                .iter()
                .map(|e| e.get_ref().trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            None => EXEMPT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        },
        exempt_segments: match &r.exempt_segments {
            Some(list) => list
                .iter()
                .map(|e| e.get_ref().to_ascii_lowercase())
                .collect(),
            None => EXEMPT_SEGMENTS.iter().map(|e| e.to_string()).collect(),
        },
        nojs_ttl: dur(
            r.nojs_ttl.as_ref(),
            "proof.nojs_ttl",
            Duration::from_secs(15 * 60),
            s,
        )
        .max(Duration::from_secs(1)),
        good_bots: r.good_bots.unwrap_or(true),
        dns_server,
    }
}

fn bits(v: Option<&toml::Spanned<u8>>, field: &str, default: u8, s: &mut Sink) -> u8 {
    match v {
        Some(b) if *b.get_ref() > 40 => {
            s.at(
                b.span(),
                field,
                "at most 40 bits (2^40 hashes would take a phone days)",
            );
            default
        }
        Some(b) => *b.get_ref(),
        None => default,
    }
}

fn prefixes(list: &[toml::Spanned<String>], field: &str, s: &mut Sink) -> Vec<String> {
    list.iter()
        .filter_map(|p| {
            if p.get_ref().starts_with('/') {
                Some(p.get_ref().clone())
            } else {
                s.at(p.span(), field, "a path prefix starts with /");
                None
            }
        })
        .collect()
}
