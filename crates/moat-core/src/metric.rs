//! What a sensor reports on the admin listener's `/metrics`, without depending on the HTTP
//! crate that serves it (or on a metrics library): a value, its name and help, and whether it
//! is a counter or a gauge.

/// The OpenMetrics type of a [`Sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only ever goes up (until a restart). Its name ends in `_total`, as exposed.
    Counter,
    /// A level that goes up and down: sessions open, bytes held.
    Gauge,
}

/// One value for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// As exposed, e.g. `moat_trap_sessions_total` (a counter's name ends in `_total`).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub value: u64,
}

impl Sample {
    /// A counter; `name` ends in `_total`.
    pub const fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Sample {
            name,
            help,
            kind: MetricKind::Counter,
            value,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str, value: u64) -> Self {
        Sample {
            name,
            help,
            kind: MetricKind::Gauge,
            value,
        }
    }
}

/// This process's resident memory in KiB (Linux `/proc/self/status`), 0 where it cannot be
/// read: what the memory examples and benches print.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
