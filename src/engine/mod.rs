//! The engine: executes a plan's allowed steps.
//!
//! For every step: ask the gate (and record the decision) → snapshot the
//! target (evidence) → append an `intent` record and fsync → call the
//! connector, with retries owned here → append the `outcome` record → verify.
//! A re-run reconciles: a step with an outcome is not touched again; a step
//! with an intent but no outcome (the process died in between) is re-read
//! with `describe` first, and only executed if the change is not in place.
//! Connectors are idempotent, so even an unlucky re-execute changes nothing
//! twice.
//!
//! Steps run concurrently up to `concurrency`, and calls to each provider
//! account pass a token bucket (`rate` per second, `burst`) and a
//! per-account concurrency bound, so a thousand steps stay inside the
//! provider's limits. A step waiting out a backoff gives both places back
//! for the wait (`slots`).

mod crash;
mod journal;
mod limits;
mod slots;

pub use crash::CrashPoints;
pub use journal::{Journal, StepJournal};
pub use limits::{Backoff, Limiter};

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cordon_connector::{
    Connector, ConnectorError, DecisionClass, ErrorClass, Outcome, PlanStep, Secret, StepContext,
    Verification,
};
use serde::Serialize;

use crate::audit::payload::OutcomePayload;
use crate::audit::{Approver, AuditError, AuditLog, Kind, RecordDraft};
use crate::connectors::Registry;
use crate::gate::{BreakGlass, Decision, Gate, GateInput, Principal, VerifiedApproval};
use crate::plan::{canonical_json, sha256_hex, Plan};
use crate::state::{ObjectKind, Store};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Steps in flight at once, across all accounts.
    pub concurrency: usize,
    /// Steps in flight at once against one provider account; `None`: the
    /// same as `concurrency` (so the CLI's `--concurrency` bounds each account
    /// too: a plan's steps are mostly in one account).
    pub per_account_concurrency: Option<usize>,
    /// Connector operations per second per provider account (token bucket
    /// refill). An operation is one snapshot (`describe`), one change
    /// (`execute`, or one batched call) or one `verify`: a few provider
    /// requests each (an AWS user snapshot is ~10 IAM reads).
    pub rate_per_sec: f64,
    /// The rate adapts from `rate_per_sec` up to this ceiling (rising while
    /// the provider answers, halving when it throttles); `None`: a fixed rate.
    pub rate_ceiling: Option<f64>,
    pub burst: u32,
    pub backoff: Backoff,
}

impl EngineConfig {
    /// Where the adaptive rate starts: safe for real IAM, whose
    /// control-plane limits are a few tens of requests per second per account
    /// with small bursts. It doubles every half-second while the provider
    /// answers (a second throttled answer in ten halves it), so a run finds
    /// the provider's pace within a few seconds instead of spreading its kills
    /// over the whole run.
    pub const START_RATE: f64 = 20.0;
    /// How high the adaptive rate may go without `--rate`: above what the
    /// concurrency bound allows at WAN latency (32 in flight at 50 ms is 640
    /// operations a second), so the bound, not the ceiling, paces a fast peer.
    pub const DEFAULT_CEILING: f64 = 1000.0;

    /// The rate settings for `--rate` (a cap) or its absence (adaptive up to
    /// [`Self::DEFAULT_CEILING`]): the rate starts at [`Self::START_RATE`] or
    /// at the cap when that is lower.
    pub fn with_rate_cap(self, cap: Option<f64>) -> EngineConfig {
        let ceiling = cap.unwrap_or(Self::DEFAULT_CEILING);
        let start = Self::START_RATE.min(ceiling);
        EngineConfig {
            rate_per_sec: start,
            rate_ceiling: Some(ceiling),
            burst: (start.ceil() as u32).max(1),
            ..self
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        // Safe for real IAM, whose control-plane limits are a few tens of
        // requests per second per account with small bursts: the limiter
        // starts at START_RATE operations a second (a kill is three: its
        // read, its change, its proof) and rises from there while IAM answers,
        // instead of finding the limit by being throttled.
        EngineConfig {
            concurrency: 32,
            per_account_concurrency: None,
            rate_per_sec: Self::START_RATE,
            rate_ceiling: Some(Self::DEFAULT_CEILING),
            burst: 10,
            backoff: Backoff::default(),
        }
    }
}

/// Secrets supplied at apply time, by fingerprint.
#[derive(Default)]
pub struct SecretBag {
    map: HashMap<String, Secret>,
}

impl SecretBag {
    pub fn insert(&mut self, s: Secret) {
        self.map.insert(s.fingerprint(), s);
    }

    pub fn get(&self, fingerprint: &str) -> Option<&Secret> {
        self.map.get(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

pub struct ApplyRequest<'a> {
    pub plan_id: &'a str,
    pub plan: &'a Plan,
    pub requester: &'a Principal,
    pub approvals: &'a [VerifiedApproval],
    pub break_glass: Option<&'a BreakGlass>,
    pub secrets: &'a SecretBag,
    /// Evidence snapshots for restore steps, by step id.
    pub restore_evidence: &'a HashMap<String, serde_json::Value>,
    pub now: DateTime<Utc>,
    /// When the clock of time-to-dead started (the agent: the webhook's
    /// receipt); `None`: when this apply started.
    pub since: Option<std::time::Instant>,
    /// Counts the plan's steps as they finish (a batch counts each of its
    /// steps), for a progress bar on a terminal.
    pub steps_done: Option<&'a std::sync::atomic::AtomicUsize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub action: String,
    pub target: String,
    pub decision: Option<Decision>,
    pub outcome: Option<Outcome>,
    pub verification: Option<Verification>,
    /// Hash of the evidence snapshot taken before the change.
    pub evidence: Option<String>,
    /// The outcome was recorded by an earlier run and nothing was done now.
    pub from_earlier_run: bool,
    /// This run finished a step an earlier run had started (intent without outcome).
    pub resumed: bool,
    /// Calls of the action itself (1 unless it was retried).
    pub attempts: u32,
    /// Reads of the target's state (the snapshot, and re-reads), retries included.
    pub reads: u32,
    /// The change went ahead without an evidence snapshot, because none could
    /// be taken and the policy allowed it: why there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_evidence: Option<String>,
    /// Milliseconds from the start (`ApplyRequest::since`: the process's for the
    /// CLI, the webhook's receipt for the agent, else the run's) until this
    /// step's credential was verified refused; only for steps
    /// that end a credential and were verified dead in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_after_ms: Option<u64>,
    #[serde(skip)]
    dead_at: Option<std::time::Instant>,
}

impl StepReport {
    pub fn denied(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| !d.is_allow()) && self.outcome.is_none()
    }

    /// The step's action ends a credential (see `Action::ends_credential`).
    pub fn ends_credential(&self) -> bool {
        cordon_connector::Action::from_id(&self.action)
            .is_some_and(cordon_connector::Action::ends_credential)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub plan: String,
    pub steps: Vec<StepReport>,
    /// How long the leaked credentials stayed usable during this run.
    pub time_to_dead: TimeToDead,
}

/// Time to dead: from the start (`ApplyRequest::since`) until
/// each credential-ending step was verified refused, first and last. Steps
/// settled by an earlier run are not counted (their time is in that run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TimeToDead {
    /// Credential-ending steps acted on in this run.
    pub credentials: usize,
    /// Of those, verified dead in this run.
    pub dead: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
}

impl TimeToDead {
    fn of(steps: &mut [StepReport], t0: std::time::Instant) -> TimeToDead {
        let mut t = TimeToDead::default();
        for s in steps.iter_mut() {
            if !s.ends_credential() || s.from_earlier_run || s.outcome.is_none() {
                continue;
            }
            t.credentials += 1;
            if let Some(at) = s.dead_at {
                let ms =
                    u64::try_from(at.saturating_duration_since(t0).as_millis()).unwrap_or(u64::MAX);
                s.dead_after_ms = Some(ms);
                t.dead += 1;
                t.first_ms = Some(t.first_ms.map_or(ms, |f| f.min(ms)));
                t.last_ms = Some(t.last_ms.map_or(ms, |l| l.max(ms)));
            }
        }
        t
    }

    /// One line for a person: "time to dead: 2 of 2 credentials refused,
    /// the first after 0.41 s, the last after 1.20 s".
    pub fn describe(&self) -> Option<String> {
        if self.credentials == 0 {
            return None;
        }
        let secs = |ms: u64| format!("{:.2} s", ms as f64 / 1000.0);
        Some(match (self.first_ms, self.last_ms) {
            (Some(f), Some(l)) if self.dead == 1 => format!(
                "time to dead: 1 of {} credential{} verified refused after {}",
                self.credentials,
                if self.credentials == 1 { "" } else { "s" },
                secs(f.max(l))
            ),
            (Some(f), Some(l)) => format!(
                "time to dead: {} of {} credentials verified refused, the first after {}, the last after {}",
                self.dead,
                self.credentials,
                secs(f),
                secs(l)
            ),
            _ => format!(
                "time to dead: none of {} credential{} verified refused in this run",
                self.credentials,
                if self.credentials == 1 { "" } else { "s" }
            ),
        })
    }
}

impl ApplyReport {
    pub fn all_succeeded(&self) -> bool {
        self.steps
            .iter()
            .all(|s| s.outcome.as_ref().is_some_and(Outcome::is_success))
    }
    pub fn any_succeeded(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.outcome.as_ref().is_some_and(Outcome::is_success))
    }
    pub fn any_denied(&self) -> bool {
        self.steps.iter().any(StepReport::denied)
    }
}

/// One step as `cordon verify` found it: the report (its recorded outcome,
/// and the verification made now), the verification recorded before, how
/// many checks were made, and why it was not checked (not contained, a
/// restore step).
#[derive(Debug, Clone, Serialize)]
pub struct Recheck {
    #[serde(flatten)]
    pub step: StepReport,
    pub before: Option<Verification>,
    pub checks: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The audit log could not be written: nothing further was done.
    #[error("audit log write failed, so no further action was taken: {0}")]
    Audit(#[from] AuditError),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

/// One step on its way through the engine's state machine.
struct StepRun<'p> {
    step: &'p PlanStep,
    /// The evidence an interrupted earlier run recorded, if any.
    evidence: Option<String>,
    /// What this run's snapshot read (handed to `execute` as
    /// `StepContext::observed`).
    observed: Option<serde_json::Value>,
    /// Part of a batched call (its `after-call` crash point fires per step
    /// after the one call, not inside a retry loop).
    batched: bool,
    rep: StepReport,
}

/// Where a step is after a state of the machine.
enum Phase<'p> {
    /// Nothing more to do for it.
    Finished(StepReport),
    /// On to the next state.
    Next(StepRun<'p>),
}

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub log: Arc<AuditLog>,
    pub gate: Arc<dyn Gate>,
    pub registry: Registry,
    pub config: EngineConfig,
    pub crash: CrashPoints,
    limiter: Limiter,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        log: Arc<AuditLog>,
        gate: Arc<dyn Gate>,
        registry: Registry,
        config: EngineConfig,
    ) -> Engine {
        let limiter = Limiter::adaptive(
            config.rate_per_sec,
            config.rate_ceiling.unwrap_or(config.rate_per_sec),
            config.burst,
            config
                .per_account_concurrency
                .unwrap_or(config.concurrency)
                .max(1),
        );
        // A connector's waits inside a step (propagation polls) give the
        // step's places back too.
        cordon_connector::install_pause(|d| Box::pin(slots::wait_released(d)));
        Engine {
            store,
            log,
            gate,
            registry,
            config,
            crash: CrashPoints::from_env(),
            limiter,
        }
    }

    pub async fn apply(&self, req: &ApplyRequest<'_>) -> Result<ApplyReport, EngineError> {
        // One process at a time per plan, claimed before the journal is read:
        // a second apply waits, then reads the first one's outcomes and
        // repeats nothing (issue 21: ten concurrent applies wrote three
        // intents for one step).
        let store = self.store.clone();
        let id = req.plan_id.to_owned();
        let mut claim = tokio::task::spawn_blocking(move || store.claim_plan(&id))
            .await
            .map_err(|e| crate::state::StateError::Io {
                op: "claim plan",
                path: std::path::PathBuf::from(req.plan_id),
                source: std::io::Error::other(e.to_string()),
            })??;
        let t0 = req.since.unwrap_or_else(std::time::Instant::now);
        // A shared state's lease taken over from a machine that stopped
        // holding it: the takeover is part of the record.
        if let Some(msg) = claim.takeover.take() {
            let mut d = RecordDraft::note("cordon", msg);
            d.plan = Some(req.plan_id.to_owned());
            d.incident = req.plan.incident.clone();
            self.append(d).await?;
        }
        let _claim = claim;
        let records = self.log.read_all()?;
        let journal = Journal::for_plan(&records, req.plan_id);
        let pool = slots::Slots::new(self.config.concurrency);

        // Batchable steps (same action, connector accepts batches) go together.
        let mut units: Vec<Vec<&PlanStep>> = Vec::new();
        let mut batch_index: HashMap<cordon_connector::Action, usize> = HashMap::new();
        for step in &req.plan.steps {
            let limit = self
                .registry
                .for_action(step.action)
                .map_or(1, |c| c.batch_limit(step.action));
            if limit > 1 {
                match batch_index.get(&step.action) {
                    Some(&i) if units[i].len() < limit => units[i].push(step),
                    _ => {
                        batch_index.insert(step.action, units.len());
                        units.push(vec![step]);
                    }
                }
            } else {
                units.push(vec![step]);
            }
        }
        // Kill first: units that end a credential go ahead of quarantine and
        // restore work, and among them the leaked credentials themselves
        // (keys, tokens) ahead of session cut-offs (`Action::kill_order`; a
        // stable sort keeps plan order within each group). Permits are handed
        // out first come, first served, so the killing steps start before the
        // slower work and every leaked credential is refused as early as the
        // limits allow; each still takes its own evidence before its change.
        units.sort_by_key(|u| u.first().map_or(u8::MAX, |s| s.action.kill_order()));

        // What the provider has just answered for each account (identification,
        // while the plan was written) counts toward that account's adaptive rate,
        // so the kills start at the pace the provider has shown it accepts rather
        // than climbing back to it from the safe default.
        let mut primed: std::collections::HashSet<String> = std::collections::HashSet::new();
        for step in &req.plan.steps {
            let key = self.limiter.key(step);
            if primed.contains(&key) {
                continue;
            }
            if let Some(conn) = self.registry.for_action(step.action) {
                let answers = conn.take_answers(step.target.account.as_deref());
                self.limiter.prime(&key, answers).await;
                primed.insert(key);
            }
        }

        // Each unit holds one of the run's slots (and, in `run_unit`, one of
        // its account's) while it talks to the provider, and gives both back
        // while it waits out a backoff (`slots::wait_released`).
        let futures = units.into_iter().map(|unit| {
            let pool = pool.clone();
            let journal = &journal;
            slots::HELD.scope(
                std::cell::RefCell::new(slots::Held::default()),
                async move {
                    let slot = pool.acquire().await;
                    let _ = slots::HELD.try_with(|h| h.borrow_mut().run = slot);
                    // Given back when the scope (and its `Held`) ends.
                    let done = self.run_unit(req, &unit, journal).await;
                    if let Some(n) = req.steps_done {
                        n.fetch_add(unit.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                    done
                },
            )
        });
        let results = futures::future::join_all(futures).await;
        let mut steps = Vec::new();
        for r in results {
            steps.extend(r?);
        }
        // Report in plan order.
        let order: HashMap<&str, usize> = req
            .plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        steps.sort_by_key(|s| order.get(s.step.as_str()).copied().unwrap_or(usize::MAX));
        let time_to_dead = TimeToDead::of(&mut steps, t0);
        Ok(ApplyReport {
            plan: req.plan_id.to_owned(),
            steps,
            time_to_dead,
        })
    }

    /// `cordon verify PLAN` (issue 16 item 6): re-check, later, every
    /// containment step the audit log records as done. A credential that
    /// still works is checked again (0.5 s, doubling to 5 s) until it is
    /// refused or `deadline` has passed; then the result says "not yet
    /// dead", never "dead". Each re-check is a `verify` record. Nothing is
    /// changed and the gate is not asked: no step is executed.
    pub async fn reverify(
        &self,
        req: &ApplyRequest<'_>,
        deadline: std::time::Duration,
    ) -> Result<Vec<Recheck>, EngineError> {
        let records = self.log.read_all()?;
        let journal = Journal::for_plan(&records, req.plan_id);
        let sem = Arc::new(tokio::sync::Semaphore::new(
            self.config.concurrency.clamp(1, 1 << 16),
        ));
        let futures = req.plan.steps.iter().map(|step| {
            let sem = sem.clone();
            let j = journal.step(&step.id);
            async move {
                let _permit = sem.acquire().await;
                self.recheck(req, step, j, deadline).await
            }
        });
        futures::future::join_all(futures)
            .await
            .into_iter()
            .collect()
    }

    async fn recheck(
        &self,
        req: &ApplyRequest<'_>,
        step: &PlanStep,
        j: Option<&StepJournal>,
        deadline: std::time::Duration,
    ) -> Result<Recheck, EngineError> {
        let mut rep = Self::report(step);
        rep.from_earlier_run = true;
        rep.outcome = j.and_then(|j| j.outcome.clone());
        rep.evidence = j.and_then(|j| j.evidence.clone());
        rep.no_evidence = j.and_then(|j| j.no_evidence.clone());
        let before = j.and_then(|j| j.verification.clone());
        let mut out = Recheck {
            step: rep,
            before: before.clone(),
            checks: 0,
            skipped: None,
        };
        if step.action.class() != DecisionClass::Contain {
            out.step.verification = before;
            out.skipped = Some("a restore step: nothing to prove dead".into());
            return Ok(out);
        }
        if !out.step.outcome.as_ref().is_some_and(Outcome::is_success) {
            out.skipped = Some(match &out.step.outcome {
                Some(o) => format!(
                    "not contained ({}): nothing to verify; `cordon apply {}` retries it",
                    o.label(),
                    req.plan_id
                ),
                None => format!(
                    "never run: nothing to verify; `cordon apply {}` runs it",
                    req.plan_id
                ),
            });
            return Ok(out);
        }
        let Some(conn) = self.registry.for_action(step.action) else {
            out.skipped = Some(format!(
                "no connector for `{}` is configured in this run",
                step.action.id()
            ));
            return Ok(out);
        };
        let ctx = self.ctx(req, step);
        let key = self.limiter.key(step);
        let start = std::time::Instant::now();
        let mut wait = std::time::Duration::from_millis(500);
        let v = loop {
            out.checks += 1;
            self.limiter.take(&key).await;
            let mut reads = 0;
            let v = match self
                .with_retries(&key, || conn.verify(&ctx), &mut reads)
                .await
            {
                Ok(v) => v,
                Err(e) => Verification::NotVerified {
                    detail: format!("verification failed: {e}"),
                },
            };
            match v {
                Verification::Alive { detail } => {
                    let waited = start.elapsed();
                    if waited + wait > deadline {
                        break Verification::NotVerified {
                            detail: format!(
                                "not yet dead: {detail} ({} checks over {} s, deadline {} s): \
                                 check again later with `cordon verify {}`",
                                out.checks,
                                waited.as_secs(),
                                deadline.as_secs(),
                                req.plan_id
                            ),
                        };
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
                other => break other,
            }
        };
        let mut d = self.draft(req, Kind::Verify, step);
        d.verification = Some(v.clone());
        d.message = Some(format!(
            "re-checked by `cordon verify` ({} check{} over {} s, deadline {} s; recorded before: {})",
            out.checks,
            if out.checks == 1 { "" } else { "s" },
            start.elapsed().as_secs(),
            deadline.as_secs(),
            before.as_ref().map_or("nothing", Verification::label)
        ));
        self.append(d).await?;
        out.step.verification = Some(v);
        Ok(out)
    }

    fn draft(&self, req: &ApplyRequest<'_>, kind: Kind, step: &PlanStep) -> RecordDraft {
        let mut d = RecordDraft::new(kind, req.requester.clone());
        d.plan = Some(req.plan_id.to_owned());
        d.incident = req.plan.incident.clone();
        d.step = Some(step.id.clone());
        d.action = Some(step.action.id().to_owned());
        d.target = Some(step.target.clone());
        d
    }

    /// Append off the runtime's worker threads: an append waits for an fsync
    /// (or for the group commit that carries it), and concurrent steps'
    /// appends then go to disk together instead of stalling the I/O driver.
    async fn append(&self, d: RecordDraft) -> Result<(), EngineError> {
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || log.append(d)).await {
            Ok(r) => r.map(|_| ()).map_err(EngineError::from),
            Err(e) => Err(EngineError::Audit(AuditError::Encode(format!(
                "the audit append task did not finish: {e}"
            )))),
        }
    }

    async fn decide(
        &self,
        req: &ApplyRequest<'_>,
        step: &PlanStep,
    ) -> Result<Decision, EngineError> {
        let decision = self.gate.decide(&GateInput {
            plan_id: req.plan_id,
            plan: req.plan,
            step,
            requester: req.requester,
            approvals: req.approvals,
            break_glass: req.break_glass,
            now: req.now,
        });
        let mut d = self.draft(req, Kind::Decision, step);
        d.approvers = req.approvals.iter().map(Approver::from).collect();
        if decision.break_glass {
            d.break_glass = req.break_glass.map(|b| b.reason.clone());
        }
        d.decision = Some(decision.clone());
        self.append(d).await?;
        Ok(decision)
    }

    fn ctx<'r>(&self, req: &'r ApplyRequest<'_>, step: &'r PlanStep) -> StepContext<'r> {
        StepContext {
            plan_id: req.plan_id,
            step,
            secret: step.secret.as_deref().and_then(|fp| req.secrets.get(fp)),
            evidence: req.restore_evidence.get(&step.id),
            observed: None,
        }
    }

    fn report(step: &PlanStep) -> StepReport {
        StepReport {
            step: step.id.clone(),
            action: step.action.id().to_owned(),
            target: step.target.display_name(),
            decision: None,
            outcome: None,
            verification: None,
            evidence: None,
            from_earlier_run: false,
            resumed: false,
            attempts: 0,
            reads: 0,
            no_evidence: None,
            dead_after_ms: None,
            dead_at: None,
        }
    }

    /// Run one unit of work: a single step, or the steps of one batched call.
    /// Every step goes through the same machine ([`Engine::admit`] →
    /// [`Engine::prepare`] → change → [`Engine::settle`]); only the change
    /// itself differs (one `execute` per step, or one `execute_batch` for
    /// all), so evidence, intent, outcome, verification and resume behave the
    /// same whether a step was batched or not.
    async fn run_unit<'p>(
        &self,
        req: &ApplyRequest<'p>,
        unit: &[&'p PlanStep],
        journal: &Journal,
    ) -> Result<Vec<StepReport>, EngineError> {
        let mut reports = Vec::new();
        // Decisions first, for every step of the unit.
        let mut admitted: Vec<StepRun<'p>> = Vec::new();
        for step in unit {
            match self.admit(req, step, journal.step(&step.id)).await? {
                Phase::Finished(r) => reports.push(r),
                Phase::Next(run) => admitted.push(run),
            }
        }
        let Some(first) = admitted.first() else {
            return Ok(reports);
        };
        let Some(conn) = self.registry.for_action(first.step.action) else {
            for run in admitted {
                let outcome = Outcome::Failed {
                    retryable: false,
                    error: format!(
                        "no connector for `{}` is configured in this run",
                        run.step.action.id()
                    ),
                };
                self.record_outcome(req, run.step, &outcome, 0).await?;
                let mut rep = run.rep;
                rep.outcome = Some(outcome);
                reports.push(rep);
            }
            return Ok(reports);
        };
        let conn = conn.as_ref();
        let key = self.limiter.key(first.step);
        let _slot = slots::hold_account(self.limiter.slot(&key).await);
        let batch = (unit.len() > 1).then_some(unit.len());

        // Evidence and intent for every step before any change. A step found
        // already contained (after an interrupted run, or done by someone
        // else) is finished here: nothing is sent for it again.
        let mut ready: Vec<StepRun<'p>> = Vec::new();
        for run in admitted {
            match self.prepare(req, run, conn, &key, batch).await? {
                Phase::Finished(r) => reports.push(r),
                Phase::Next(run) => ready.push(run),
            }
        }

        // The change: the only part that differs between the two paths.
        let outcomes = match (batch, ready.as_mut_slice()) {
            (_, []) => Vec::new(),
            (None, [run]) => {
                let mut ctx = self.ctx(req, run.step);
                ctx.observed = run.observed.as_ref();
                vec![
                    self.execute_with_retries(&key, conn, &ctx, &mut run.rep.attempts)
                        .await,
                ]
            }
            (_, runs) => self.execute_batch_with_retries(req, &key, conn, runs).await,
        };

        for (run, outcome) in ready.into_iter().zip(outcomes) {
            reports.push(self.settle(req, run, conn, outcome).await?);
        }
        Ok(reports)
    }

    /// The first state: a step finished by an earlier run is reported from
    /// the journal (and verified, if that run died before verifying); any
    /// other step is decided by the gate, and a denied step ends here.
    async fn admit<'p>(
        &self,
        req: &ApplyRequest<'p>,
        step: &'p PlanStep,
        j: Option<&StepJournal>,
    ) -> Result<Phase<'p>, EngineError> {
        let mut rep = Self::report(step);
        if let Some(outcome) = j.and_then(|j| j.outcome.clone()) {
            rep.outcome = Some(outcome);
            rep.from_earlier_run = true;
            rep.verification = j.and_then(|j| j.verification.clone());
            rep.evidence = j.and_then(|j| j.evidence.clone());
            rep.no_evidence = j.and_then(|j| j.no_evidence.clone());
            if rep.verification.is_none() && rep.outcome.as_ref().is_some_and(Outcome::is_success) {
                if let Some(conn) = self.registry.for_action(step.action) {
                    rep.verification = self.verify(req, step, conn.as_ref()).await?;
                }
            }
            return Ok(Phase::Finished(rep));
        }
        rep.resumed = j.is_some_and(|j| j.intent);
        let decision = self.decide(req, step).await?;
        let allowed = decision.is_allow();
        rep.decision = Some(decision);
        if !allowed {
            return Ok(Phase::Finished(rep));
        }
        Ok(Phase::Next(StepRun {
            step,
            evidence: j.and_then(|j| j.evidence.clone()),
            observed: None,
            batched: false,
            rep,
        }))
    }

    /// The second state: snapshot the target (the evidence, and the
    /// reconcile read after an interrupted run), then record the intent.
    /// A step whose change is already in place is settled here.
    async fn prepare<'p>(
        &self,
        req: &ApplyRequest<'p>,
        mut run: StepRun<'p>,
        conn: &dyn Connector,
        key: &str,
        batch: Option<usize>,
    ) -> Result<Phase<'p>, EngineError> {
        let step = run.step;
        let ctx = self.ctx(req, step);
        self.limiter.take(key).await;
        let snapshot = self
            .with_retries(key, || conn.describe(&ctx), &mut run.rep.reads)
            .await;
        let earlier = run.evidence.take().filter(|_| run.rep.resumed);
        let state = match snapshot {
            Ok(s) => Some(s),
            // A resumed step has the snapshot its interrupted run took before
            // any change: that is its evidence, and the change (idempotent)
            // goes ahead without the reconcile read.
            Err(_) if earlier.is_some() => None,
            Err(e) => match self.without_evidence(req, step, &e).await? {
                Ok(reason) => {
                    run.rep.no_evidence = Some(reason);
                    None
                }
                Err(outcome) => {
                    self.record_outcome(req, step, &outcome, run.rep.attempts)
                        .await?;
                    run.rep.outcome = Some(outcome);
                    return Ok(Phase::Finished(run.rep));
                }
            },
        };
        // An interrupted run's evidence is the state before any change: keep
        // it. A fresh snapshot is recorded only when there is none yet.
        run.rep.evidence = match (earlier, &state) {
            (Some(earlier), _) => Some(earlier),
            (None, Some(state)) => Some(self.record_evidence(req, step, &state.evidence).await?),
            (None, None) => None,
        };
        if state.as_ref().is_some_and(|s| s.contained) {
            let outcome = Outcome::AlreadyContained {
                detail: if run.rep.resumed {
                    "found in place after an interrupted run; nothing done again".into()
                } else {
                    "already in place before cordon acted; nothing changed".into()
                },
            };
            return self
                .settle(req, run, conn, outcome)
                .await
                .map(Phase::Finished);
        }
        run.observed = state.map(|s| s.evidence);
        self.crash.hit("before-intent", &step.id);
        let mut d = self.draft(req, Kind::Intent, step);
        d.evidence = run.rep.evidence.clone();
        let mut notes = Vec::new();
        if let Some(n) = batch {
            notes.push(format!("batched with {n} steps"));
        }
        if run.rep.resumed {
            notes.push("resuming after an interrupted run".to_owned());
        }
        // Last, so that the journal finds the reason as the message's tail.
        if let Some(why) = &run.rep.no_evidence {
            notes.push(format!("{NO_EVIDENCE}{why}"));
        }
        if !notes.is_empty() {
            d.message = Some(notes.join("; "));
        }
        self.append(d).await?;
        self.crash.hit("after-intent", &step.id);
        run.batched = batch.is_some();
        Ok(Phase::Next(run))
    }

    /// The evidence rule (issue 16 item 7), in one place for single and
    /// batched steps: when a step's snapshot cannot be taken, the policy
    /// decides whether its change goes ahead without one (the decision is
    /// recorded). `Ok(reason)`: it goes ahead, and its intent and outcome
    /// records say `no-evidence: <reason>`; `Err(outcome)`: the step stops
    /// with that failed outcome and nothing is changed.
    ///
    /// A restore never goes ahead without the state it undoes, and is not
    /// asked about. Going ahead also means going ahead without the reconcile
    /// read of a resumed step: connectors are idempotent (an execute on a
    /// contained target changes nothing), so that costs a call, not a
    /// second change.
    async fn without_evidence(
        &self,
        req: &ApplyRequest<'_>,
        step: &PlanStep,
        e: &ConnectorError,
    ) -> Result<Result<String, Outcome>, EngineError> {
        let reason = format!("the evidence snapshot could not be taken: {}", e.message);
        if step.action.class() != DecisionClass::Contain {
            return Ok(Err(Outcome::Failed {
                retryable: e.is_retryable(),
                error: format!(
                    "{reason}; a restore is not attempted without the current state, so nothing was changed"
                ),
            }));
        }
        let mut decision = self.gate.decide_without_evidence(&GateInput {
            plan_id: req.plan_id,
            plan: req.plan,
            step,
            requester: req.requester,
            approvals: req.approvals,
            break_glass: req.break_glass,
            now: req.now,
        });
        let allowed = decision.is_allow();
        // What the policy says is missing names forbids and approvals; no
        // approval brings the snapshot back, so this refusal is not a plan
        // waiting for approval (`pending`): the reasons go into the message.
        let why_not = {
            let mut parts = std::mem::take(&mut decision.missing);
            parts.extend(decision.errors.iter().cloned());
            if parts.is_empty() {
                parts.push(format!(
                    "no policy permits it (policies: {})",
                    decision.policies.join(", ")
                ));
            }
            parts.join("; ")
        };
        let mut d = self.draft(req, Kind::Decision, step);
        d.approvers = req.approvals.iter().map(Approver::from).collect();
        if decision.break_glass {
            d.break_glass = req.break_glass.map(|b| b.reason.clone());
        }
        d.message = Some(if allowed {
            format!("may the change go ahead without evidence? allowed: {reason}")
        } else {
            format!("may the change go ahead without evidence? refused ({why_not}): {reason}")
        });
        d.decision = Some(decision);
        self.append(d).await?;
        if allowed {
            Ok(Ok(reason))
        } else {
            Ok(Err(Outcome::Failed {
                retryable: e.is_retryable(),
                error: format!(
                    "{reason}; the policy does not let this change go ahead without evidence \
                     ({why_not}), so nothing was changed"
                ),
            }))
        }
    }

    /// The last state: record the outcome, then prove the effect.
    async fn settle(
        &self,
        req: &ApplyRequest<'_>,
        run: StepRun<'_>,
        conn: &dyn Connector,
        outcome: Outcome,
    ) -> Result<StepReport, EngineError> {
        let StepRun {
            step,
            mut rep,
            batched,
            ..
        } = run;
        if batched {
            // A single step's `after-call` fires inside its retry loop.
            self.crash.hit("after-call", &step.id);
        }
        self.crash.hit("before-outcome", &step.id);
        self.record_outcome_noting(
            req,
            step,
            &outcome,
            rep.attempts,
            rep.no_evidence.as_deref(),
        )
        .await?;
        self.crash.hit("after-outcome", &step.id);
        let success = outcome.is_success();
        rep.outcome = Some(outcome);
        if success {
            rep.verification = self.verify(req, step, conn).await?;
            if matches!(rep.verification, Some(Verification::Dead { .. })) {
                rep.dead_at = Some(std::time::Instant::now());
            }
        }
        Ok(rep)
    }

    /// One `execute_batch` for the prepared steps, retried as a whole only
    /// when every step failed retryably (a refused request); mixed results
    /// are final per step.
    async fn execute_batch_with_retries(
        &self,
        req: &ApplyRequest<'_>,
        key: &str,
        conn: &dyn Connector,
        runs: &mut [StepRun<'_>],
    ) -> Vec<Outcome> {
        let ctxs: Vec<StepContext<'_>> = runs
            .iter()
            .map(|r| StepContext {
                observed: r.observed.as_ref(),
                ..self.ctx(req, r.step)
            })
            .collect();
        let mut attempts = 0u32;
        let results = loop {
            attempts += 1;
            self.limiter.take(key).await;
            let r = conn.execute_batch(&ctxs).await;
            // One batched call is one answer: throttled when every part was.
            let throttled = !r.is_empty()
                && r.iter()
                    .all(|x| matches!(x, Err(e) if e.class != ErrorClass::Permanent));
            self.limiter.answered(key, throttled).await;
            let all_retryable = r
                .iter()
                .all(|x| matches!(x, Err(e) if e.class == ErrorClass::Retryable));
            if all_retryable && attempts < self.config.backoff.max_attempts {
                let after = r
                    .iter()
                    .filter_map(|x| x.as_ref().err().and_then(|e| e.retry_after))
                    .max();
                slots::wait_released(self.config.backoff.delay(attempts, after)).await;
                continue;
            }
            break r;
        };
        for run in runs.iter_mut() {
            run.rep.attempts = attempts;
        }
        let mut outcomes: Vec<Outcome> = results
            .into_iter()
            .map(|r| match r {
                Ok(o) => o,
                Err(e) => failed(&e),
            })
            .collect();
        // A connector that answers for fewer steps than it was given breaks
        // its contract; the missing steps may or may not have been changed.
        while outcomes.len() < runs.len() {
            outcomes.push(Outcome::Unknown {
                error: "the connector returned no result for this step of the batch".into(),
            });
        }
        outcomes
    }

    async fn record_evidence(
        &self,
        req: &ApplyRequest<'_>,
        step: &PlanStep,
        evidence: &serde_json::Value,
    ) -> Result<String, EngineError> {
        let bytes = canonical_json(evidence)
            .map_err(|e| AuditError::Encode(format!("evidence of step `{}`: {e}", step.id)))?;
        let hash = sha256_hex(&bytes);
        let store = self.store.clone();
        let name = format!("{hash}.json");
        // The store fsyncs too: off the worker threads like the appends.
        match tokio::task::spawn_blocking(move || {
            store.put_new(ObjectKind::Evidence, &name, &bytes)
        })
        .await
        {
            Ok(r) => r?,
            Err(e) => {
                return Err(EngineError::Audit(AuditError::Encode(format!(
                    "storing evidence of step `{}` did not finish: {e}",
                    step.id
                ))))
            }
        }
        let mut d = self.draft(req, Kind::Evidence, step);
        d.evidence = Some(hash.clone());
        self.append(d).await?;
        Ok(hash)
    }

    async fn record_outcome(
        &self,
        req: &ApplyRequest<'_>,
        step: &PlanStep,
        outcome: &Outcome,
        attempts: u32,
    ) -> Result<(), EngineError> {
        self.record_outcome_noting(req, step, outcome, attempts, None)
            .await
    }

    /// The outcome record; a change made without evidence says so, and why.
    async fn record_outcome_noting(
        &self,
        req: &ApplyRequest<'_>,
        step: &PlanStep,
        outcome: &Outcome,
        attempts: u32,
        no_evidence: Option<&str>,
    ) -> Result<(), EngineError> {
        let mut d = self.draft(req, Kind::Outcome, step);
        d.outcome = Some(outcome.clone());
        d.message = no_evidence.map(|why| format!("{NO_EVIDENCE}{why}"));
        d.approvers = req.approvals.iter().map(Approver::from).collect();
        if req.break_glass.is_some() {
            d.break_glass = req.break_glass.map(|b| b.reason.clone());
        }
        d.data = Some(
            serde_json::to_value(OutcomePayload { attempts })
                .map_err(|e| AuditError::Encode(format!("outcome of step `{}`: {e}", step.id)))?,
        );
        self.append(d).await?;
        Ok(())
    }

    async fn verify(
        &self,
        req: &ApplyRequest<'_>,
        step: &PlanStep,
        conn: &dyn Connector,
    ) -> Result<Option<Verification>, EngineError> {
        if step.action.class() != DecisionClass::Contain {
            return Ok(None);
        }
        let ctx = self.ctx(req, step);
        let key = self.limiter.key(step);
        self.limiter.take(&key).await;
        // A throttled or refused read-back is retried like the snapshot: it
        // says nothing about whether the credential is dead.
        let mut reads = 0;
        let v = match self
            .with_retries(&key, || conn.verify(&ctx), &mut reads)
            .await
        {
            Ok(v) => v,
            Err(e) => Verification::NotVerified {
                detail: format!("verification failed: {e}"),
            },
        };
        let mut d = self.draft(req, Kind::Verify, step);
        d.verification = Some(v.clone());
        self.append(d).await?;
        Ok(Some(v))
    }

    /// Tell the account's adaptive rate how the provider answered.
    async fn answered<T>(&self, key: &str, r: &Result<T, ConnectorError>) {
        let throttled = matches!(r, Err(e) if e.class != ErrorClass::Permanent);
        self.limiter.answered(key, throttled).await;
    }

    async fn with_retries<T, F, Fut>(
        &self,
        key: &str,
        mut f: F,
        attempts: &mut u32,
    ) -> Result<T, ConnectorError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ConnectorError>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            *attempts += 1;
            let r = f().await;
            self.answered(key, &r).await;
            match r {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && n < self.config.backoff.max_attempts => {
                    tracing::debug!(error = %e, attempt = n, "retrying read");
                    slots::wait_released(self.config.backoff.delay(n, e.retry_after)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn execute_with_retries(
        &self,
        key: &str,
        conn: &dyn Connector,
        ctx: &StepContext<'_>,
        attempts: &mut u32,
    ) -> Outcome {
        let mut n = 0;
        loop {
            n += 1;
            *attempts += 1;
            self.limiter.take(key).await;
            let r = conn.execute(ctx).await;
            self.answered(key, &r).await;
            self.crash.hit("after-call", &ctx.step.id);
            let e = match r {
                Ok(o) => return o,
                Err(e) => e,
            };
            if e.class == ErrorClass::Permanent || n >= self.config.backoff.max_attempts {
                return failed(&e);
            }
            tracing::debug!(step = %ctx.step.id, error = %e, attempt = n, "retrying");
            slots::wait_released(self.config.backoff.delay(n, e.retry_after)).await;
            if e.class == ErrorClass::Ambiguous {
                // The change may have happened: read before trying again.
                self.limiter.take(key).await;
                if let Ok(st) = conn.describe(ctx).await {
                    if st.contained {
                        return Outcome::Done {
                            detail: format!(
                                "change confirmed by re-reading the target after an ambiguous response ({e})"
                            ),
                        };
                    }
                }
            }
        }
    }
}

/// How the records of a change made without evidence begin their message.
pub const NO_EVIDENCE: &str = "no-evidence: ";

fn failed(e: &ConnectorError) -> Outcome {
    match e.class {
        ErrorClass::Ambiguous => Outcome::Unknown {
            error: e.message.clone(),
        },
        c => Outcome::Failed {
            retryable: c == ErrorClass::Retryable,
            error: e.message.clone(),
        },
    }
}

#[cfg(test)]
mod tests;
