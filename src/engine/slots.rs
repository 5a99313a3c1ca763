//! In-flight slots that a step gives back while it waits out a backoff.
//!
//! `--concurrency` (and the per-account bound) limit the steps that are
//! talking to a provider. A step told to come back later (a throttle's
//! `Retry-After`, a 5xx) sends nothing while it waits, so it gives its slots
//! back for the wait and another step runs meanwhile: under 2 % throttling at
//! 1,000 keys about 7 of 32 slots were otherwise asleep at any time, and the
//! kills ran a quarter slower (BENCHMARKS.md, "The fault proxy's own stall,
//! removed"). The same holds for a connector polling a credential through
//! its provider's propagation delay (`cordon_connector::pause`, which the
//! engine points here). The AWS SDK's adaptive retry mode works the same way: its
//! client-side rate limiter paces requests, and a retry waiting out its
//! backoff holds no other resource. The rate itself stays with the
//! [`super::Limiter`]'s token bucket, which a throttle still halves.
//!
//! A step coming back from its wait goes ahead of the steps that have not
//! started: the next slot given back is handed to it directly. Without that
//! it would queue behind every waiting step of the plan (a thousand keys,
//! then the cut-offs and the quarantine), and a throttled key would be
//! refused last instead of a second later.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// A pool of `n` slots: first come, first served for steps that start,
/// ahead of them for steps coming back from a backoff.
pub struct Slots {
    sem: Arc<Semaphore>,
    /// Steps back from a wait, oldest first, each waiting to be handed the
    /// next slot given back.
    resuming: Mutex<VecDeque<oneshot::Sender<OwnedSemaphorePermit>>>,
}

/// One slot held; given back when dropped (to a resuming step first).
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Slots {
    pub fn new(n: usize) -> Arc<Slots> {
        Arc::new(Slots {
            sem: Arc::new(Semaphore::new(n.clamp(1, 1 << 16))),
            resuming: Mutex::new(VecDeque::new()),
        })
    }

    /// A slot for a step that starts: in turn with the other such steps.
    /// `None` only if the pool was closed (it never is).
    pub async fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.sem.clone().acquire_owned().await.ok()?;
        Some(self.slot(permit))
    }

    /// A slot for a step coming back from a wait: a free one at once, else
    /// the next one given back. It also waits in the ordinary queue, so a
    /// slot given back between the two checks (to the pool, with nobody
    /// resuming yet) still reaches it.
    pub async fn resume(self: &Arc<Self>) -> Option<Slot> {
        if let Ok(permit) = self.sem.clone().try_acquire_owned() {
            return Some(self.slot(permit));
        }
        let (tx, rx) = oneshot::channel();
        self.queue().push_back(tx);
        let permit = tokio::select! {
            biased;
            handed = rx => handed.ok()?,
            taken = self.sem.clone().acquire_owned() => taken.ok()?,
        };
        Some(self.slot(permit))
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            permit: Some(permit),
            slots: self.clone(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<OwnedSemaphorePermit>>> {
        self.resuming.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand a slot given back to the oldest resuming step still waiting, or
    /// return it to the pool.
    fn give_back(&self, mut permit: OwnedSemaphorePermit) {
        let mut q = self.queue();
        while let Some(tx) = q.pop_front() {
            match tx.send(permit) {
                Ok(()) => return,
                // That step got a slot another way (or is gone): next.
                Err(back) => permit = back,
            }
        }
        drop(q);
        drop(permit);
    }

    /// Slots free now (tests).
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.slots.give_back(permit);
        }
    }
}

/// The slots the running step holds: the run's and its account's.
#[derive(Default)]
pub(crate) struct Held {
    pub run: Option<Slot>,
    pub account: Option<Slot>,
}

tokio::task_local! {
    /// Set around each unit of work by `Engine::apply` (the units are polled
    /// inside one task by `join_all`; the scope is per future).
    pub(crate) static HELD: RefCell<Held>;
}

/// Hold `slot` as the running step's account slot until the returned guard
/// drops. Outside a unit (no [`HELD`] scope) the guard holds it itself.
pub(crate) fn hold_account(slot: Option<Slot>) -> AccountHold {
    let mut slot = slot;
    let kept = HELD
        .try_with(|h| {
            h.borrow_mut().account = slot.take();
        })
        .is_ok();
    AccountHold {
        own: if kept { None } else { slot },
    }
}

/// Gives the account slot back when the unit is done with it.
pub(crate) struct AccountHold {
    own: Option<Slot>,
}

impl Drop for AccountHold {
    fn drop(&mut self) {
        if self.own.take().is_none() {
            let _ = HELD.try_with(|h| h.borrow_mut().account.take());
        }
    }
}

/// Wait `d` without holding the running step's slots: give them back, sleep,
/// then take them again (the run's first, then the account's: the order they
/// were first taken in), ahead of steps that have not started.
pub(crate) async fn wait_released(d: Duration) {
    let given = HELD
        .try_with(|h| {
            let mut h = h.borrow_mut();
            // The account slot first: the reverse of the order taken.
            let account = h.account.take().map(|s| s.slots.clone());
            let run = h.run.take().map(|s| s.slots.clone());
            (run, account)
        })
        .ok();
    tokio::time::sleep(d).await;
    let Some((run, account)) = given else {
        return;
    };
    let run = match run {
        Some(pool) => pool.resume().await,
        None => None,
    };
    let account = match account {
        Some(pool) => pool.resume().await,
        None => None,
    };
    let _ = HELD.try_with(|h| {
        let mut h = h.borrow_mut();
        h.run = run;
        h.account = account;
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_step_back_from_its_wait_goes_ahead_of_steps_not_started() {
        let pool = Slots::new(1);
        let held = pool.acquire().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |resuming: bool| {
            let (pool, order) = (pool.clone(), order.clone());
            tokio::spawn(async move {
                let slot = if resuming {
                    pool.resume().await
                } else {
                    pool.acquire().await
                };
                assert!(slot.is_some());
                order
                    .lock()
                    .unwrap()
                    .push(if resuming { "resumed" } else { "started" });
            })
        };
        // A step queued to start, then one back from its wait.
        let starter = spawn(false);
        tokio::task::yield_now().await;
        let resumer = spawn(true);
        tokio::task::yield_now().await;
        drop(held);
        resumer.await.unwrap();
        starter.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["resumed", "started"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_given_back_with_nobody_resuming_still_reaches_the_resumer() {
        let pool = Slots::new(1);
        let held = pool.acquire().await.unwrap();
        let resumer = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.resume().await.is_some() })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert!(resumer.await.unwrap());
        assert_eq!(pool.available(), 1, "the slot went back to the pool after");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_gives_the_slots_back_and_takes_them_again() {
        let run = Slots::new(1);
        let account = Slots::new(1);
        let held = RefCell::new(Held {
            run: run.acquire().await,
            account: account.acquire().await,
        });
        let (r2, a2) = (run.clone(), account.clone());
        let (r3, a3) = (run.clone(), account.clone());
        HELD.scope(held, async move {
            let other = tokio::spawn(async move {
                // Runs only while the first step waits: both slots are free.
                let _r = r2.acquire().await.unwrap();
                let _a = a2.acquire().await.unwrap();
                "ran during the wait"
            });
            wait_released(Duration::from_secs(1)).await;
            assert_eq!(other.await.unwrap(), "ran during the wait");
            HELD.with(|h| {
                let h = h.borrow();
                assert!(h.run.is_some() && h.account.is_some(), "both taken again");
            });
            assert_eq!(r3.available(), 0);
            assert_eq!(a3.available(), 0);
        })
        .await;
        assert_eq!(run.available(), 1, "given back when the unit ended");
        assert_eq!(account.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn outside_a_unit_the_wait_is_a_plain_sleep() {
        let t = tokio::time::Instant::now();
        wait_released(Duration::from_millis(1500)).await;
        assert!(t.elapsed() >= Duration::from_millis(1500));
    }
}
