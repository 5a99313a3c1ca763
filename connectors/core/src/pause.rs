//! A connector's own waits inside a step (polling through a provider's
//! propagation delay) without holding the step's in-flight places.
//!
//! The engine bounds the steps talking to a provider at once. A step that
//! polls a credential still answering after its change ("IAM changes can
//! take time to propagate", 0.5 s doubling to 5 s) sends nothing while it
//! waits; holding its place meanwhile would let 32 such steps stall a
//! thousand-key run. The engine installs a hook that gives the places back
//! for the wait and takes them again after; a connector used on its own (no
//! engine) just sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

/// What the installed hook returns: the wait, ending with the step's places
/// held again.
pub type PauseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

static HOOK: OnceLock<fn(Duration) -> PauseFuture> = OnceLock::new();

/// Install the engine's wait (once per process; later calls are ignored:
/// there is one engine implementation).
pub fn install_pause(hook: fn(Duration) -> PauseFuture) {
    let _ = HOOK.set(hook);
}

/// Wait `d` inside a step. Use it for a connector's waits between reads of
/// the provider (never while a request is in flight).
pub async fn pause(d: Duration) {
    match HOOK.get() {
        Some(hook) => hook(d).await,
        None => tokio::time::sleep(d).await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn without_a_hook_it_sleeps() {
        let t = tokio::time::Instant::now();
        pause(Duration::from_millis(700)).await;
        assert!(t.elapsed() >= Duration::from_millis(700));
    }
}
