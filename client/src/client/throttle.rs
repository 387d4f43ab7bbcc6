//! A budget for retrying refusals for lack of room, as gRPC's retry throttling does (its
//! proposal A6): every refusal spends a token, every answered call earns back a fraction of
//! one, and a refused call is retried only while more than half the tokens are left. Under a
//! passing burst the library still retries; under a sustained overload it stops adding its own
//! retries to the load and reports the refusal (`ClientError::Overloaded`, nothing written)
//! instead of retrying until the deadline, when attempts time out and outcomes turn unknown
//! (docs/performance.md, "Back-pressure": 1.1 million unknown outcomes in 20 s without it).

use std::sync::atomic::{AtomicU64, Ordering};

/// How many refusals for lack of room a client retries ([`crate::ClientConfig::overload_retries`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryThrottle {
    /// Tokens when full; a refusal spends one, and retries stop at half.
    pub max_tokens: u32,
    /// Tokens an answered call earns back (gRPC's default: 0.1, one in ten).
    pub token_ratio: f64,
}

impl Default for RetryThrottle {
    /// gRPC's usual setting: 10 tokens, 0.1 a success.
    fn default() -> RetryThrottle {
        RetryThrottle {
            max_tokens: 10,
            token_ratio: 0.1,
        }
    }
}

/// Milli-tokens, shared by every call of one client.
#[derive(Debug)]
pub(super) struct Budget {
    throttle: Option<RetryThrottle>,
    milli: AtomicU64,
}

impl Budget {
    pub(super) fn new(throttle: Option<RetryThrottle>) -> Budget {
        Budget {
            throttle,
            milli: AtomicU64::new(throttle.map_or(0, |t| u64::from(t.max_tokens) * 1000)),
        }
    }

    fn max(&self) -> u64 {
        self.throttle.map_or(0, |t| u64::from(t.max_tokens) * 1000)
    }

    /// A call was answered (a reply or a definite error): earn back a fraction of a token.
    pub(super) fn answered(&self) {
        let Some(throttle) = self.throttle else {
            return;
        };
        let earned = (throttle.token_ratio.clamp(0.0, 1.0) * 1000.0) as u64;
        let max = self.max();
        let _ = self
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                (now < max).then(|| (now + earned).min(max))
            });
    }

    /// An attempt was refused for lack of room: spend a token. Whether a retry is allowed.
    pub(super) fn refused(&self) -> bool {
        if self.throttle.is_none() {
            return true;
        }
        let left = self
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_sub(1000))
            })
            .map_or(0, |before| before.saturating_sub(1000));
        left > self.max() / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_stop_retries_at_half_and_answers_bring_them_back() {
        let budget = Budget::new(Some(RetryThrottle::default()));
        // 10 tokens: retries allowed while more than 5 are left after the refusal.
        let allowed: Vec<bool> = (0..6).map(|_| budget.refused()).collect();
        assert_eq!(allowed, [true, true, true, true, false, false]);
        // 4 tokens left; 5.1 needed: 11 answers (0.1 each) earn 1.1.
        for _ in 0..10 {
            budget.answered();
        }
        assert!(!budget.refused(), "5 - 1 = 4 left: still no retry");
        for _ in 0..30 {
            budget.answered();
        }
        assert!(budget.refused(), "4 + 3 = 7 before, 6 after: a retry");
        // Never above the maximum, never below zero.
        for _ in 0..1_000 {
            budget.answered();
        }
        assert_eq!(budget.milli.load(Ordering::Relaxed), 10_000);
        for _ in 0..100 {
            budget.refused();
        }
        assert_eq!(budget.milli.load(Ordering::Relaxed), 0);
        let unthrottled = Budget::new(None);
        assert!((0..100).all(|_| unthrottled.refused()));
    }
}
