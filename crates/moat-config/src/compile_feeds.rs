//! `[feed]` (publishing), `[feeds]` (subscriptions and their trust policy) and `[cluster]`:
//! what joins this instance to others. A pinned key is parsed here, so a key pasted wrong is an
//! error at its line, not a feed refused later.

use crate::compile::{dur, nets};
use crate::errors::Sink;
use crate::model::{feed_url, valid_feed_name, Cluster, FeedPublish, Feeds, Subscription};
use crate::raw::{RawCluster, RawFeed, RawFeeds};
use moat_core::shared::WhenUnreachable;
use std::time::Duration;

pub(crate) fn feed(r: Option<&RawFeed>, s: &mut Sink) -> FeedPublish {
    let d = FeedPublish::default();
    let Some(r) = r else { return d };
    let name = r.name.as_ref().and_then(|n| {
        moat_feed::note::check_name(n.get_ref())
            .map_err(|e| s.at(n.span(), "feed.name", e.to_string()))
            .ok()
            .map(|()| n.get_ref().clone())
    });
    let interval = dur(r.interval.as_ref(), "feed.interval", d.interval, s);
    let lifetime = dur(r.lifetime.as_ref(), "feed.lifetime", d.lifetime, s);
    if let Some(l) = &r.lifetime {
        if lifetime < Duration::from_secs(120) {
            s.at(
                l.span(),
                "feed.lifetime",
                "at least 2m (it is re-signed after half of it)",
            );
        }
    }
    if let Some(i) = &r.interval {
        if interval < Duration::from_secs(1) {
            s.at(i.span(), "feed.interval", "at least 1s");
        }
    }
    FeedPublish {
        enabled: r.publish.as_ref().is_none_or(|p| *p.get_ref()),
        republish: r.republish.as_ref().is_some_and(|p| *p.get_ref()),
        name,
        interval,
        lifetime,
    }
}

pub(crate) fn feeds(r: Option<&RawFeeds>, s: &mut Sink) -> Feeds {
    let d = Feeds::default();
    let Some(r) = r else { return d };
    let quorum = match &r.quorum {
        Some(q) if !(*q.get_ref() > 0.0 && *q.get_ref() <= 1000.0) => {
            s.at(q.span(), "feeds.quorum", "a weight above 0, e.g. 1 or 2.5");
            d.quorum
        }
        Some(q) => *q.get_ref(),
        None => d.quorum,
    };
    let poll = dur(r.poll.as_ref(), "feeds.poll", d.poll, s);
    if let Some(p) = &r.poll {
        if poll < Duration::from_secs(1) {
            s.at(p.span(), "feeds.poll", "at least 1s");
        }
    }
    let mut subscribe: Vec<Subscription> = Vec::new();
    for sub in &r.subscribe {
        let name = sub.name.get_ref().trim();
        if !valid_feed_name(name) {
            s.at(
                sub.name.span(),
                "feeds.subscribe.name",
                "1 to 64 letters, digits, `.`, `_` or `-`",
            );
            continue;
        }
        if subscribe.iter().any(|x| x.name == name) {
            s.at(
                sub.name.span(),
                "feeds.subscribe.name",
                format!("`{name}` is subscribed twice"),
            );
            continue;
        }
        let url = match feed_url(sub.url.get_ref()) {
            Ok(u) => u,
            Err(e) => {
                s.at(sub.url.span(), "feeds.subscribe.url", e);
                continue;
            }
        };
        let key = match sub.key.get_ref().parse::<moat_feed::VerifierKey>() {
            Ok(k) => k,
            Err(e) => {
                s.at(sub.key.span(), "feeds.subscribe.key", e.to_string());
                continue;
            }
        };
        let weight = match &sub.weight {
            Some(w) if !(*w.get_ref() > 0.0 && *w.get_ref() <= 1000.0) => {
                s.at(
                    w.span(),
                    "feeds.subscribe.weight",
                    "a weight above 0, e.g. 0.5 or 1",
                );
                continue;
            }
            Some(w) => *w.get_ref(),
            None => 1.0,
        };
        subscribe.push(Subscription {
            name: name.to_string(),
            url,
            key,
            weight,
        });
    }
    Feeds {
        quorum,
        max_ttl: dur(r.max_ttl.as_ref(), "feeds.max_ttl", d.max_ttl, s),
        poll,
        never_block: nets(&r.never_block, "feeds.never_block", s),
        subscribe,
    }
}

pub(crate) fn cluster(r: &RawCluster, s: &mut Sink) -> Cluster {
    let url = r.redis.get_ref().trim().to_string();
    let known = ["redis://", "redis+unix://", "unix://"];
    if !known.iter().any(|k| url.starts_with(k)) || url.len() <= "redis://".len() {
        s.at(
            r.redis.span(),
            "cluster.redis",
            "a Redis URL: redis://host:6379/0 or redis+unix:///run/redis/redis.sock (TLS: rediss:// is not supported; use a private network or a local tunnel)",
        );
    }
    let prefix = match &r.prefix {
        Some(p) => {
            let v = p.get_ref();
            if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                s.at(
                    p.span(),
                    "cluster.prefix",
                    "1 to 64 printable characters, no spaces",
                );
            }
            v.clone()
        }
        None => "moat:".into(),
    };
    let timeout = dur(
        r.timeout.as_ref(),
        "cluster.timeout",
        Duration::from_millis(50),
        s,
    );
    if let Some(t) = &r.timeout {
        if timeout.is_zero() || timeout > Duration::from_secs(10) {
            s.at(t.span(), "cluster.timeout", "from 1ms to 10s");
        }
    }
    let on_unreachable = match r.on_unreachable.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "local")) => WhenUnreachable::Local,
        Some((_, "closed")) => WhenUnreachable::Closed,
        Some((v, other)) => {
            s.at(
                v.span(),
                "cluster.on_unreachable",
                format!("`{other}`: `local` (count with this instance's own limiters) or `closed` (refuse what the limits cover)"),
            );
            WhenUnreachable::Local
        }
    };
    Cluster {
        redis: url,
        prefix,
        timeout,
        on_unreachable,
    }
}

/// `[digest]`.
pub(crate) fn digest(
    r: Option<&crate::raw::RawDigest>,
    report: Option<&moat_report::ReportConfig>,
    s: &mut Sink,
) -> crate::model::Digest {
    let d = crate::model::Digest::default();
    let Some(r) = r else { return d };
    let every = dur(r.every.as_ref(), "digest.every", d.every, s);
    if let Some(e) = &r.every {
        if every < Duration::from_secs(1) {
            s.at(e.span(), "digest.every", "at least 1s");
        }
    }
    let webhook = r.webhook.as_ref().and_then(|w| {
        let url = w.get_ref().trim();
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
        if !ok {
            s.at(
                w.span(),
                "digest.webhook",
                "an http:// or https:// URL with a host",
            );
        }
        ok.then(|| url.to_string())
    });
    // By mail only through the relay the reports use: Moat keeps one outgoing mail path, and a
    // digest with nowhere to go is an error at start, not a silent nothing every day.
    let mail_to = r.mail_to.as_ref().and_then(|m| {
        let Some(addr) = moat_report::sanitize::email(m.get_ref()) else {
            s.at(m.span(), "digest.mail_to", "an email address");
            return None;
        };
        if !report
            .and_then(|r| r.arf.as_ref())
            .is_some_and(|a| a.is_ready())
        {
            s.at(
                m.span(),
                "digest.mail_to",
                "the digest goes by mail through the report relay: set [report.arf] from and \
                 [report.arf.smtp] host",
            );
            return None;
        }
        Some(addr)
    });
    crate::model::Digest {
        every,
        webhook,
        mail_to,
    }
}
