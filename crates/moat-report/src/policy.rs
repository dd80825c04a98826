//! Delivery decisions, free of I/O and of the clock (the caller passes `now`): what an answer
//! means, when to try again, and whether the rate limit lets a report go now.

use crate::config::RetryConfig;

pub const HOUR_MS: u64 = 3_600_000;

/// What an attempt's outcome means for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted by the receiver.
    Accepted,
    /// Refused for good: trying again would get the same answer.
    Permanent,
    /// Worth another try, not before `min_delay_ms` if the receiver said so (Retry-After).
    Retry { min_delay_ms: Option<u64> },
}

/// An HTTP status: 2xx accepted (Spamhaus' 208 "already reported" included), 429 and 5xx
/// retried, any other answer permanent.
pub fn classify_http(status: u16, retry_after_ms: Option<u64>) -> Verdict {
    match status {
        200..=299 => Verdict::Accepted,
        429 | 500..=599 => Verdict::Retry {
            min_delay_ms: retry_after_ms,
        },
        _ => Verdict::Permanent,
    }
}

/// The delay after the `attempts`-th failed attempt: `base · 2^(attempts−1)`, capped.
pub fn backoff_ms(retry: &RetryConfig, attempts: u32) -> u64 {
    let base = retry.base_secs.saturating_mul(1000);
    let cap = retry.max_secs.saturating_mul(1000).max(base);
    let shift = attempts.saturating_sub(1).min(32);
    base.saturating_mul(1u64 << shift).min(cap)
}

/// When to try again after a retryable failure, or `None` when the attempts are used up.
/// A receiver's Retry-After is honoured, up to a day.
pub fn next_attempt(
    retry: &RetryConfig,
    attempts: u32,
    now_ms: u64,
    min_delay_ms: Option<u64>,
) -> Option<u64> {
    if attempts >= retry.max_attempts {
        return None;
    }
    let delay = backoff_ms(retry, attempts).max(min_delay_ms.unwrap_or(0).min(24 * HOUR_MS));
    Some(now_ms.saturating_add(delay))
}

/// With `recent` the times of this target's attempts (any order), whether one more may go at
/// `now`; if not, the time it may (when the oldest attempt of the last hour leaves the window).
pub fn rate_limit(recent: &[u64], now_ms: u64, max_per_hour: u32) -> Result<(), u64> {
    let since = now_ms.saturating_sub(HOUR_MS);
    let mut inside: Vec<u64> = recent
        .iter()
        .copied()
        .filter(|&t| t > since && t <= now_ms)
        .collect();
    if (inside.len() as u64) < u64::from(max_per_hour) {
        return Ok(());
    }
    inside.sort_unstable();
    // The attempt that must leave the window before one more fits.
    let idx = inside.len() - max_per_hour as usize;
    Err(inside
        .get(idx)
        .map(|t| t + HOUR_MS + 1)
        .unwrap_or(now_ms + HOUR_MS))
}

/// Seconds or an HTTP date in a Retry-After header, as a delay from `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    let ms = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            base_secs: 10,
            max_secs: 25,
        }
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify_http(200, None), Verdict::Accepted);
        assert_eq!(classify_http(208, None), Verdict::Accepted);
        assert_eq!(
            classify_http(429, Some(5)),
            Verdict::Retry {
                min_delay_ms: Some(5)
            }
        );
        assert_eq!(
            classify_http(503, None),
            Verdict::Retry { min_delay_ms: None }
        );
        assert_eq!(classify_http(401, None), Verdict::Permanent);
        assert_eq!(classify_http(422, None), Verdict::Permanent);
        assert_eq!(classify_http(302, None), Verdict::Permanent);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = retry();
        assert_eq!(backoff_ms(&r, 1), 10_000);
        assert_eq!(backoff_ms(&r, 2), 20_000);
        assert_eq!(backoff_ms(&r, 3), 25_000);
        assert_eq!(backoff_ms(&r, 200), 25_000);
    }

    #[test]
    fn attempts_run_out() {
        let r = retry();
        assert_eq!(next_attempt(&r, 1, 1000, None), Some(11_000));
        assert_eq!(next_attempt(&r, 1, 1000, Some(60_000)), Some(61_000));
        assert_eq!(next_attempt(&r, 4, 1000, None), None);
    }

    #[test]
    fn the_rate_limit_holds_until_the_window_frees() {
        let now = 10 * HOUR_MS;
        assert_eq!(rate_limit(&[], now, 2), Ok(()));
        assert_eq!(rate_limit(&[now - 10], now, 2), Ok(()));
        let recent = [now - 100, now - 10];
        assert_eq!(rate_limit(&recent, now, 2), Err(now - 100 + HOUR_MS + 1));
        // Attempts older than an hour do not count.
        assert_eq!(rate_limit(&[now - HOUR_MS, now - 10], now, 2), Ok(()));
        assert!(rate_limit(&[], now, 0).is_err());
    }

    #[test]
    fn retry_after_is_read() {
        assert_eq!(parse_retry_after("120", 0), Some(120_000));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40_000),
            Some(60_000)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
