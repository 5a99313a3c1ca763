//! Rate limits, per-account concurrency and backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cordon_connector::PlanStep;
use rand::Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::slots::{Slot, Slots};

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
    /// The current rate (operations per second), between the floor and the
    /// ceiling.
    rate: f64,
    /// No throttling seen yet: the rate grows fast (doubling per half-second
    /// of full use) until the provider first pushes back.
    slow_start: bool,
    /// Answers and throttled answers in the current window.
    answers: u32,
    throttled: u32,
}

/// The lowest rate adaptation goes to: one operation every two seconds.
const FLOOR: f64 = 0.5;
/// Answers per window in which the throttled share is judged.
const WINDOW: u32 = 100;

/// Token buckets and concurrency slots keyed by `provider:account`.
///
/// The rate adapts per account, in the manner of the AWS SDK's adaptive
/// retry mode: it starts at the configured rate, rises while the provider
/// answers, and halves when the provider throttles, never above the ceiling
/// (`--rate` when given). One difference, on purpose: a large account sees
/// isolated throttles from other callers' load, and each of those is
/// retried; the rate halves when throttling is sustained (more than 10 of
/// the last 100 answers, or a quarter of at least 20), so a few stray 429s
/// do not collapse the rate while a provider at its limit is backed off
/// from within one window. (An answer is one operation: 2 % of requests
/// throttled at random is about 2 % of operations now that the kills read one
/// thing each; 5 of 100 was crossed by chance in most 1,000-key runs.)
pub struct Limiter {
    rate: f64,
    ceiling: f64,
    burst: f64,
    per_key: usize,
    buckets: Mutex<HashMap<String, Arc<Mutex<Bucket>>>>,
    slots: Mutex<HashMap<String, Arc<Slots>>>,
}

/// A library caller's NaN, zero or huge value must not hang or panic after
/// an intent (the CLI range-checks these in cli::args).
fn sane_rate(r: f64) -> f64 {
    if r.is_finite() {
        r.clamp(0.001, 1e6)
    } else {
        1e6
    }
}

impl Limiter {
    /// A fixed rate: `rate_per_sec` is start and ceiling.
    pub fn new(rate_per_sec: f64, burst: u32, per_key_concurrency: usize) -> Limiter {
        Limiter::adaptive(rate_per_sec, rate_per_sec, burst, per_key_concurrency)
    }

    /// Start at `start` per second and adapt up to `ceiling`.
    pub fn adaptive(start: f64, ceiling: f64, burst: u32, per_key_concurrency: usize) -> Limiter {
        let ceiling = sane_rate(ceiling);
        Limiter {
            rate: sane_rate(start).min(ceiling),
            ceiling,
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
    pub async fn slot(&self, key: &str) -> Option<Slot> {
        let pool = {
            let mut m = self.slots.lock().await;
            m.entry(key.to_owned())
                .or_insert_with(|| Slots::new(self.per_key))
                .clone()
        };
        pool.acquire().await
    }

    async fn bucket(&self, key: &str) -> Arc<Mutex<Bucket>> {
        let mut m = self.buckets.lock().await;
        m.entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Bucket {
                    tokens: self.burst,
                    last: Instant::now(),
                    rate: self.rate,
                    slow_start: true,
                    answers: 0,
                    throttled: 0,
                }))
            })
            .clone()
    }

    /// Take one token from the key's bucket, waiting for the refill if needed.
    pub async fn take(&self, key: &str) {
        let bucket = self.bucket(key).await;
        loop {
            let wait = {
                let mut b = bucket.lock().await;
                let now = Instant::now();
                let elapsed = now.duration_since(b.last).as_secs_f64();
                // The bucket holds up to a second of the current rate (at
                // least the configured burst).
                let cap = self.burst.max(b.rate);
                b.tokens = (b.tokens + elapsed * b.rate).min(cap);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / b.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Tell the key's bucket how the provider answered one operation:
    /// `throttled` for a throttle, a 5xx or a timeout (retryable or
    /// ambiguous), not for an answer that refused the request for good.
    pub async fn answered(&self, key: &str, throttled: bool) {
        let bucket = self.bucket(key).await;
        let mut b = bucket.lock().await;
        b.answers += 1;
        if throttled {
            b.throttled += 1;
        }
        let sustained =
            b.throttled * 100 > 10 * WINDOW || (b.answers >= 20 && b.throttled * 4 > b.answers);
        if sustained {
            b.rate = (b.rate / 2.0).max(FLOOR.min(self.ceiling));
            b.tokens = b.tokens.min(b.rate.max(1.0));
            b.slow_start = false;
            b.answers = 0;
            b.throttled = 0;
            tracing::debug!(key, rate = b.rate, "throttled: rate halved");
            return;
        }
        if b.answers >= WINDOW {
            b.answers = 0;
            b.throttled = 0;
        }
        if !throttled {
            // Slow start: +2 per answer doubles the rate every half-second of
            // full use; after the first halving, +10 % per second of full use.
            let step = if b.slow_start { 2.0 } else { 0.1 };
            b.rate = (b.rate + step).min(self.ceiling);
        }
    }

    /// Count answers the provider gave outside the engine (identification,
    /// before the run) as if they had come through this key's bucket: the same
    /// rule as [`Limiter::answered`], one answer at a time, so a run after a
    /// throttled identification starts lower and one after a clean one starts
    /// where the slow start would have taken it. Never above the ceiling.
    pub async fn prime(&self, key: &str, answers: cordon_connector::Answers) {
        if answers.answered == 0 {
            return;
        }
        // The throttled answers spread evenly among the others, as a provider
        // throttling a share of requests would.
        let every = (answers.answered / answers.throttled.max(1)).max(1);
        let mut throttled_left = answers.throttled;
        for n in 1..=answers.answered.min(100_000) {
            let throttled = throttled_left > 0 && n % every == 0;
            if throttled {
                throttled_left -= 1;
            }
            self.answered(key, throttled).await;
        }
        tracing::debug!(
            key,
            answered = answers.answered,
            throttled = answers.throttled,
            rate = self.current_rate(key).await,
            "rate primed by the provider's earlier answers"
        );
    }

    /// The key's current rate (for reports and tests).
    pub async fn current_rate(&self, key: &str) -> f64 {
        self.bucket(key).await.lock().await.rate
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

    #[tokio::test(start_paused = true)]
    async fn rate_rises_while_answered_and_never_passes_the_ceiling() {
        let l = Limiter::adaptive(10.0, 50.0, 10, 4);
        for _ in 0..15 {
            l.take("aws:1").await;
            l.answered("aws:1", false).await;
        }
        let r = l.current_rate("aws:1").await;
        assert!((39.0..=41.0).contains(&r), "{r}");
        for _ in 0..100 {
            l.answered("aws:1", false).await;
        }
        assert_eq!(l.current_rate("aws:1").await, 50.0);
        // A fixed rate stays fixed.
        let fixed = Limiter::new(10.0, 10, 4);
        for _ in 0..50 {
            fixed.answered("aws:1", false).await;
        }
        assert_eq!(fixed.current_rate("aws:1").await, 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_throttling_halves_the_rate_and_stray_throttles_do_not() {
        let l = Limiter::adaptive(100.0, 500.0, 10, 4);
        // 2 in 100 (a stray throttle now and then): retried, no halving;
        // nor 9 in 100 (what 2 % of requests makes of five-request reads).
        for i in 0..300 {
            l.answered("aws:1", i % 50 == 0).await;
        }
        let before = l.current_rate("aws:1").await;
        for i in 0..100 {
            l.answered("aws:1", i % 12 == 0).await;
        }
        assert!(l.current_rate("aws:1").await >= before, "{before}");
        let r = l.current_rate("aws:1").await;
        assert!(r > 100.0, "{r}");
        // A provider at its limit: every other answer throttled.
        let before = l.current_rate("aws:1").await;
        for i in 0..20 {
            l.answered("aws:1", i % 2 == 0).await;
        }
        let after = l.current_rate("aws:1").await;
        assert!(after <= before / 2.0 + 10.0, "{before} -> {after}");
        // After the halving the rate grows back slowly (no slow start).
        for _ in 0..10 {
            l.answered("aws:1", false).await;
        }
        let regrown = l.current_rate("aws:1").await;
        assert!(regrown - after <= 1.01, "{after} -> {regrown}");
        // Never below the floor.
        for _ in 0..2000 {
            l.answered("aws:1", true).await;
        }
        assert!(l.current_rate("aws:1").await >= FLOOR);
    }

    #[tokio::test(start_paused = true)]
    async fn primed_answers_count_as_the_buckets_own() {
        let answers = |answered, throttled| cordon_connector::Answers {
            answered,
            throttled,
        };
        // Nothing answered: the safe start.
        let l = Limiter::adaptive(20.0, 1000.0, 10, 32);
        l.prime("aws:1", answers(0, 0)).await;
        assert_eq!(l.current_rate("aws:1").await, 20.0);
        // 100 clean answers: where the slow start would be after them.
        l.prime("aws:1", answers(100, 0)).await;
        assert_eq!(l.current_rate("aws:1").await, 220.0);
        // 501 (1,000 keys of 500 users identified by listing): the ceiling,
        // never past it.
        l.prime("aws:2", answers(501, 0)).await;
        assert_eq!(l.current_rate("aws:2").await, 1000.0);
        // A provider that throttled a third of identification: the rate
        // halves as it would have had those answers come through the bucket,
        // and ends below the safe start.
        l.prime("aws:3", answers(300, 100)).await;
        let r = l.current_rate("aws:3").await;
        assert!(r < 20.0, "{r}");
        // Another account is untouched.
        assert_eq!(l.current_rate("aws:4").await, 20.0);
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_paces_at_the_current_rate() {
        // Halved from 10 to 5 per second: 20 operations after the burst take
        // about 4 s (virtual).
        let l = Limiter::adaptive(10.0, 10.0, 1, 4);
        for _ in 0..11 {
            l.answered("aws:1", true).await;
        }
        assert_eq!(l.current_rate("aws:1").await, 5.0);
        l.take("aws:1").await;
        let start = Instant::now();
        for _ in 0..20 {
            l.take("aws:1").await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(3800), "{took:?}");
        assert!(took <= Duration::from_millis(4400), "{took:?}");
    }
}
