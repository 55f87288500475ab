//! When to fetch keys again: the timing rules of SPEC §2 as pure functions of
//! [`RefreshPolicy`], unit-tested without a clock. Every `refresh` (jittered ±10 %, sooner
//! when the JWKS's `max-age` is shorter, never more often than `min_refetch_interval`); a
//! failed fetch is retried with jittered exponential backoff; after `max_stale` without a
//! success the set is dropped and the issuer fails closed.

use std::time::{Duration, Instant};

use crate::config::IssuerConfig;

/// The refresh timing rules of one issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    pub refresh: Duration,
    pub min_refetch_interval: Duration,
    pub max_stale: Duration,
    /// The first retry delay after a failure; it doubles per failure up to `refresh`.
    pub initial_backoff: Duration,
}

/// No schedule ever fetches more often than this, whatever the config or the issuer's
/// `max-age` say: a zero interval must not become a busy loop.
pub(super) const FLOOR: Duration = Duration::from_secs(1);

impl RefreshPolicy {
    pub fn of(issuer: &IssuerConfig) -> RefreshPolicy {
        RefreshPolicy {
            refresh: issuer.refresh,
            min_refetch_interval: issuer.min_refetch_interval,
            max_stale: issuer.max_stale,
            initial_backoff: Duration::from_secs(1),
        }
    }

    /// Delay from a successful fetch to the next scheduled one. `jitter` in [-1, 1] moves
    /// it by up to ±10 %.
    pub fn after_success(&self, max_age: Option<Duration>, jitter: f64) -> Duration {
        let base = match max_age {
            Some(max_age) if max_age < self.refresh => max_age,
            _ => self.refresh,
        };
        jittered(base, jitter)
            .max(self.min_refetch_interval)
            .max(FLOOR)
    }

    /// Delay from the `failures`-th consecutive failed fetch (1 for the first) to the
    /// next attempt: `initial_backoff` doubled per failure, at most `refresh`, ±10 %.
    pub fn after_failure(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.refresh.max(self.initial_backoff));
        jittered(base, jitter).max(Duration::from_millis(100))
    }

    /// When keys last fetched at `last_success` stop being served.
    pub fn stale_at(&self, last_success: Instant) -> Option<Instant> {
        last_success.checked_add(self.max_stale)
    }

    /// Whether keys last fetched at `last_success` must be dropped at `now`.
    pub fn is_stale(&self, last_success: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last_success) >= self.max_stale
    }
}

fn jittered(base: Duration, jitter: f64) -> Duration {
    let factor = 1.0 + 0.1 * jitter.clamp(-1.0, 1.0);
    base.mul_f64(factor)
}

/// A jitter value in [-1, 1].
pub(super) fn random_jitter() -> f64 {
    fastrand::f64() * 2.0 - 1.0
}
