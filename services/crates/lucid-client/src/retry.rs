//! Exponential backoff with full jitter (AWS architecture blog's "full jitter"): spreads
//! retries of many clients so a recovering peer is not hit by all of them at once.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`SERVICE_RETRY_COUNT`).
    pub retries: u32,
    /// First delay's upper bound (`SERVICE_RETRY_DELAY_SECONDS`).
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Upper bound of the delay before retry `n` (1-based): base * 2^(n-1), capped.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A random delay in `[0, ceiling(n)]`.
    pub fn delay(&self, n: u32) -> Duration {
        let ceiling = self.ceiling(n);
        if ceiling.is_zero() {
            return ceiling;
        }
        Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_cap() {
        let p = RetryPolicy {
            retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        };
        let c: Vec<u64> = (1..=5).map(|n| p.ceiling(n).as_secs()).collect();
        assert_eq!(c, vec![1, 2, 4, 5, 5]);
        for n in 1..=5 {
            assert!(p.delay(n) <= p.ceiling(n));
        }
    }
}
