//! The detectors' verdicts: what each kind of event counts for. Sensors say what they saw
//! ([`EventKind`]); this is the one place that says whether it counts towards a ban of the
//! address (and so goes through the decider's threshold and escalation) or is a judgement that
//! bans a scope at once.
//!
//! The counting itself is `moat-detect`'s, which the sensors call inline (the HTTP rules and
//! limits must answer the request they judge, the brute-force and enumeration tables answer
//! Postfix and Dovecot, a jail counts its log lines). What they conclude reaches the decider
//! only as an event, through here.

use moat_core::{Event, EventKind, Finding, Origin, PrefixLens, Scope};

/// The finding an event leads to, if any: what the trap sees is recorded, never banned for
/// (the trap exists to keep bots talking).
pub fn finding(e: &Event, lens: PrefixLens) -> Option<Finding> {
    let ip = e.subject.ip;
    let ban = |scope: Scope, ttl, reason: &str, origin: Origin| Finding::Ban {
        scope,
        ttl,
        reason: reason.to_string(),
        origin,
    };
    Some(match &e.kind {
        EventKind::TrapLogin { .. } | EventKind::Captured { .. } => return None,
        EventKind::RuleOffence { rule } => Finding::Offence {
            ip,
            detector: rule.clone(),
        },
        EventKind::RateLimited { limit } => Finding::Offence {
            ip,
            detector: limit.clone(),
        },
        EventKind::Enumeration => Finding::Offence {
            ip,
            detector: MAIL_ENUMERATION.into(),
        },
        EventKind::EnumerationNetwork { net } => ban(
            Scope::Prefix(*net),
            None,
            MAIL_ENUMERATION,
            Origin::Rule(MAIL_ENUMERATION.into()),
        ),
        EventKind::AuthFailures => ban(
            crate::decider::offender(ip, lens),
            None,
            MAIL_AUTH_FAILURES,
            Origin::Rule(MAIL_AUTH_FAILURES.into()),
        ),
        EventKind::AuthFailuresNetwork { net } => ban(
            Scope::Prefix(*net),
            None,
            MAIL_AUTH_FAILURES,
            Origin::Rule(MAIL_AUTH_FAILURES.into()),
        ),
        EventKind::JailTripped {
            jail,
            scope,
            ttl,
            reason,
        } => ban(
            scope.clone(),
            Some(*ttl),
            reason,
            Origin::Jail(jail.clone()),
        ),
    })
}

/// The names mail findings are recorded under (reasons and origins in `moat bans`).
pub const MAIL_ENUMERATION: &str = "mail-enumeration";
pub const MAIL_AUTH_FAILURES: &str = "mail-auth-failures";

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{Sensor, Subject};

    fn event(kind: EventKind) -> Event {
        Event {
            at_ms: 0,
            sensor: Sensor::Mail,
            subject: Subject::ip("2001:db8::7".parse().unwrap()),
            kind,
        }
    }

    #[test]
    fn auth_failures_ban_the_offender_scope_and_enumeration_counts_as_an_offence() {
        let lens = PrefixLens::default();
        match finding(&event(EventKind::AuthFailures), lens) {
            Some(Finding::Ban { scope, origin, .. }) => {
                // An IPv6 client is banned by its /64, as every other address ban.
                assert_eq!(
                    scope,
                    crate::decider::offender("2001:db8::7".parse().unwrap(), lens)
                );
                assert_eq!(origin, Origin::Rule(MAIL_AUTH_FAILURES.into()));
            }
            f => panic!("{f:?}"),
        }
        assert!(matches!(
            finding(&event(EventKind::Enumeration), lens),
            Some(Finding::Offence { detector, .. }) if detector == MAIL_ENUMERATION
        ));
        assert_eq!(
            finding(&event(EventKind::TrapLogin { accepted: true }), lens),
            None,
            "the trap never bans"
        );
    }

    #[test]
    fn a_tripped_jail_bans_its_scope_for_its_time_under_its_name() {
        let scope = Scope::parse("2001:db8::/64").unwrap();
        let f = finding(
            &event(EventKind::JailTripped {
                jail: "sshd".into(),
                scope: scope.clone(),
                ttl: std::time::Duration::from_secs(600),
                reason: "sshd: 5 failures".into(),
            }),
            PrefixLens::default(),
        );
        assert_eq!(
            f,
            Some(Finding::Ban {
                scope,
                ttl: Some(std::time::Duration::from_secs(600)),
                reason: "sshd: 5 failures".into(),
                origin: Origin::Jail("sshd".into()),
            })
        );
    }
}
