use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Action, Outcome, PlanStep, Provider, Secret};

/// Everything a connector gets for one step.
pub struct StepContext<'a> {
    pub plan_id: &'a str,
    pub step: &'a PlanStep,
    /// The secret the step refers to by fingerprint, when it was supplied at
    /// apply time. A connector must never log, format or return it.
    pub secret: Option<&'a Secret>,
    /// For restore steps: the evidence snapshot taken before containment.
    pub evidence: Option<&'a serde_json::Value>,
    /// For `execute`: what this run's `describe` read a moment ago (the
    /// step's evidence), so a connector may act on it instead of reading the
    /// same state again before a kill. `None` when no snapshot was taken
    /// (a resumed step, a change allowed without evidence, a direct call):
    /// the connector then reads what it needs itself.
    pub observed: Option<&'a serde_json::Value>,
}

/// What `describe` saw, without changing anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// True when the step's action has already taken effect (for a restore
    /// action: when the target is already restored).
    pub contained: bool,
    /// The evidence snapshot: the identity's state as read, with no secret in it.
    pub evidence: serde_json::Value,
}

/// Result of proving a credential is dead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Verification {
    /// The credential is refused by the provider (or the control is read back in place).
    Dead { detail: String },
    /// The change is read back in place, but it contains the credential only
    /// in part (a fine-grained token's access to one organisation removed: the
    /// token still works elsewhere). Never reported as dead.
    Partial { detail: String },
    /// The credential still works.
    Alive { detail: String },
    /// Could not be decided within the bound; never reported as success.
    NotVerified { detail: String },
}

impl Verification {
    pub fn label(&self) -> &'static str {
        match self {
            Verification::Dead { .. } => "dead",
            Verification::Partial { .. } => "partial",
            Verification::Alive { .. } => "alive",
            Verification::NotVerified { .. } => "not-verified",
        }
    }
}

/// How the engine may react to a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// Throttling, 5xx, connection refused before sending: safe to retry.
    Retryable,
    /// The request may have been applied (timeout after sending, response
    /// lost). The engine re-reads the state with `describe` before any retry.
    Ambiguous,
    /// 4xx other than throttling, invalid input, missing permission: retrying
    /// cannot help.
    Permanent,
}

/// A connector failure. `message` must never contain a secret: connectors build
/// it from status codes, error codes and non-secret identifiers only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub class: ErrorClass,
    pub message: String,
    /// The provider's Retry-After, when it sent one.
    pub retry_after: Option<Duration>,
}

impl ConnectorError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ConnectorError {
            class: ErrorClass::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn ambiguous(message: impl Into<String>) -> Self {
        ConnectorError {
            class: ErrorClass::Ambiguous,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ConnectorError {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.class != ErrorClass::Permanent
    }
}

/// The per-step result of [`Connector::execute_batch`].
pub type BatchResult = Result<Outcome, ConnectorError>;

/// How a provider answered requests a connector made for one account outside
/// the engine (identification, while the plan was written): answers, and of
/// those, how many were throttled (a throttle, a 5xx or a timeout, as the
/// engine's adaptive rate counts them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answers {
    pub answered: u32,
    pub throttled: u32,
}

/// A system cordon can act on.
///
/// Contract (checked by [`crate::testkit`] against a live peer):
/// * `describe` has no side effects;
/// * `execute` is idempotent: on an already-contained target it returns
///   [`Outcome::AlreadyContained`] and changes nothing;
/// * `execute` returns only `Done` or `AlreadyContained`; failures are
///   [`ConnectorError`]s classified by the connector (the engine owns retries);
/// * no secret appears in any returned value or error.
#[async_trait]
pub trait Connector: Send + Sync {
    fn provider(&self) -> Provider;

    fn supports(&self, action: Action) -> bool {
        action.provider() == self.provider()
    }

    /// How many steps of `action` [`Connector::execute_batch`] accepts in one
    /// call (GitHub's revocation API takes 1,000 tokens a request).
    fn batch_limit(&self, _action: Action) -> usize {
        1
    }

    /// How the provider has just answered this connector's own requests for
    /// `account` (`None`: the account of the connector's own credentials) made
    /// outside the engine, handed over once: the engine's adaptive rate for
    /// that account starts from them, as if they had been its own operations,
    /// instead of from nothing. Default: none.
    fn take_answers(&self, _account: Option<&str>) -> Answers {
        Answers::default()
    }

    /// Read the target's state and snapshot it as evidence. No side effects.
    async fn describe(&self, ctx: &StepContext<'_>) -> Result<crate::TargetState, ConnectorError>;

    /// Apply the step's action, idempotently.
    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError>;

    /// Apply the same action to several steps in as few provider calls as the
    /// provider allows. The default runs them one by one.
    async fn execute_batch(&self, ctxs: &[StepContext<'_>]) -> Vec<BatchResult> {
        let mut out = Vec::with_capacity(ctxs.len());
        for ctx in ctxs {
            out.push(self.execute(ctx).await);
        }
        out
    }

    /// Prove the step's effect: for a leaked secret, that it is refused.
    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError>;
}
