//! `[cohorts]`: how clients are grouped for the `[[confirm]]` routes, and the thresholds of
//! their standing. The IP-to-ASN table is read and checked here, so a broken table is an
//! error at start naming its own line, not a silent fallback to grouping by prefix.

use crate::compile::{dur, num};
use crate::errors::{ConfigError, Sink};
use crate::model::CohortSettings;
use crate::raw::{RawCohorts, S};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn cohorts(r: &RawCohorts, s: &mut Sink, base: &Path) -> CohortSettings {
    let d = CohortSettings::default();
    let asn_table = r.asn_table.as_ref().and_then(|p| {
        let path = base.join(p.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                s.at(
                    p.span(),
                    "cohorts.asn_table",
                    format!("cannot read {}: {e}", path.display()),
                );
                return None;
            }
        };
        match moat_core::AsnTable::parse(&text) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                s.errors.push(ConfigError {
                    file: path.display().to_string(),
                    line: e.line,
                    column: 1,
                    field: "cohorts.asn_table".into(),
                    message: e.message,
                });
                None
            }
        }
    });
    let prefix =
        |v: Option<&S<u8>>, field: &str, range: std::ops::RangeInclusive<u8>, def, s: &mut Sink| {
            match v {
                Some(x) if !range.contains(x.get_ref()) => {
                    s.at(
                        x.span(),
                        field,
                        format!("must be between {} and {}", range.start(), range.end()),
                    );
                    def
                }
                Some(x) => *x.get_ref(),
                None => def,
            }
        };
    let ratio = |v: Option<&S<f64>>, field: &str, def: f32, s: &mut Sink| match v {
        Some(x) if !(0.0..=1.0).contains(x.get_ref()) => {
            s.at(x.span(), field, "must be a share between 0 and 1");
            def
        }
        Some(x) => *x.get_ref() as f32,
        None => def,
    };
    let confirmed_ratio = ratio(
        r.confirmed_ratio.as_ref(),
        "cohorts.confirmed_ratio",
        d.confirmed_ratio,
        s,
    );
    let silent_ratio = ratio(
        r.silent_ratio.as_ref(),
        "cohorts.silent_ratio",
        d.silent_ratio,
        s,
    );
    if silent_ratio > confirmed_ratio {
        let msg = format!("must not be above cohorts.confirmed_ratio ({confirmed_ratio})");
        match &r.silent_ratio {
            Some(x) => s.at(x.span(), "cohorts.silent_ratio", msg),
            None => s.nowhere("cohorts.silent_ratio", msg),
        }
    }
    let half_life = dur(r.half_life.as_ref(), "cohorts.half_life", d.half_life, s);
    if half_life.is_zero() {
        if let Some(h) = &r.half_life {
            s.at(h.span(), "cohorts.half_life", "must be longer than zero");
        }
    }
    CohortSettings {
        asn_table,
        prefix_v4: prefix(
            r.prefix_v4.as_ref(),
            "cohorts.prefix_v4",
            8..=32,
            d.prefix_v4,
            s,
        ),
        prefix_v6: prefix(
            r.prefix_v6.as_ref(),
            "cohorts.prefix_v6",
            16..=128,
            d.prefix_v6,
            s,
        ),
        confirmed_ratio,
        silent_after: num(
            r.silent_after.as_ref(),
            "cohorts.silent_after",
            1,
            d.silent_after,
            s,
        ),
        silent_ratio,
        lag: dur(r.lag.as_ref(), "cohorts.lag", d.lag, s),
        half_life,
        max_cohorts: num(
            r.max_cohorts.as_ref(),
            "cohorts.max_cohorts",
            1024,
            1_000_000,
            s,
        ) as usize,
    }
}
