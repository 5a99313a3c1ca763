//! Rate limits, per-account concurrency and backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cordon_connector::PlanStep;
use rand::Rng;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Exponential backoff with full jitter; a provider's Retry-After is a floor.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
            max_attempts: 6,
        }
    }
}

impl Backoff {
    /// Delay before attempt `attempt + 1`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.cap);
        let jittered = rand::thread_rng().gen_range(Duration::ZERO..=exp);
        match retry_after {
            Some(ra) => ra.max(jittered).min(self.cap.max(ra)),
            None => jittered,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets and concurrency slots keyed by `provider:account`.
pub struct Limiter {
    rate: f64,
    burst: f64,
    per_key: usize,
    buckets: Mutex<HashMap<String, Arc<Mutex<Bucket>>>>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Limiter {
    pub fn new(rate_per_sec: f64, burst: u32, per_key_concurrency: usize) -> Limiter {
        Limiter {
            // The CLI range-checks these (cli::args); a library caller's NaN,
            // zero or huge value must not hang or panic after an intent.
            rate: if rate_per_sec.is_finite() {
                rate_per_sec.clamp(0.001, 1e6)
            } else {
                1e6
            },
            burst: f64::from(burst.max(1)),
            per_key: per_key_concurrency.clamp(1, 1 << 16),
            buckets: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(&self, step: &PlanStep) -> String {
        format!(
            "{}:{}",
            step.target.provider.as_str(),
            step.target.account.as_deref().unwrap_or("-")
        )
    }

    /// Hold one of the key's concurrency slots.
    pub async fn slot(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut m = self.slots.lock().await;
            m.entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_key)))
                .clone()
        };
        sem.acquire_owned().await.ok()
    }

    /// Take one token from the key's bucket, waiting for the refill if needed.
    pub async fn take(&self, key: &str) {
        let bucket = {
            let mut m = self.buckets.lock().await;
            m.entry(key.to_owned())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Bucket {
                        tokens: self.burst,
                        last: Instant::now(),
                    }))
                })
                .clone()
        };
        loop {
            let wait = {
                let mut b = bucket.lock().await;
                let now = Instant::now();
                let elapsed = now.duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_honours_retry_after_and_cap() {
        let b = Backoff::default();
        for a in 1..10 {
            assert!(b.delay(a, None) <= b.cap);
        }
        assert!(b.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_limits_rate_after_the_burst() {
        let l = Limiter::new(10.0, 5, 4);
        let start = Instant::now();
        for _ in 0..25 {
            l.take("aws:1").await;
        }
        // 5 from the burst, 20 at 10/s: about 2 s of (virtual) time.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took <= Duration::from_millis(2200), "{took:?}");
    }
}
