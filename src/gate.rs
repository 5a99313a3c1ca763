//! The authority gate: the one interface between a plan and the engine.
//!
//! The engine asks the gate once per step, records the decision in the audit
//! log, and acts only on Allow. Any error while deciding is a Deny carrying the
//! error (fail closed).

use chrono::{DateTime, Utc};
use cordon_connector::PlanStep;
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, PrincipalKind};
pub use crate::policy::reason::Reason;

/// The requester as the gate sees it: a name, and whether that name was
/// proven (an SSH signature from a key in `allowed_signers`, or an automation
/// principal's configured secret) or merely claimed with `--as`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub verified: bool,
    /// How it was proven: `ssh:SHA256:...`, `automation-secret`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

impl Principal {
    /// A name as claimed (`--as`), not proven.
    pub fn claim(name: &str, kind: PrincipalKind) -> Principal {
        Principal {
            name: name.to_owned(),
            kind,
            verified: false,
            proof: None,
        }
    }
}

/// An approval whose SSH signature over the plan bytes was verified against
/// `allowed_signers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedApproval {
    /// The principal named in `allowed_signers`.
    pub signer: String,
    /// `SHA256:...` of the signing key, as `ssh-keygen -l` shows it.
    pub key_fingerprint: String,
    /// When cordon recorded the signature.
    #[serde(with = "crate::timefmt")]
    pub signed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    pub reason: String,
}

/// Everything the gate may look at for one step.
pub struct GateInput<'a> {
    pub plan_id: &'a str,
    pub plan: &'a Plan,
    pub step: &'a PlanStep,
    pub requester: &'a Principal,
    pub approvals: &'a [VerifiedApproval],
    pub break_glass: Option<&'a BreakGlass>,
    /// Injected so that tests can move the clock (escalation delays).
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: Effect,
    /// Ids of the policies that decided (the permit(s) for allow, the
    /// forbid(s) for an explicit deny; empty for default deny).
    pub policies: Vec<String>,
    /// SHA-256 of the policy set in force (hex).
    pub policy_hash: String,
    /// Load or evaluation errors (each one means deny).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// What would change the answer: "needs 1 approval from role security".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// True when the allow rests on break-glass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    /// Set when the policy allowed the step but a stop condition of an
    /// automation principal held it back (a limit of `[limits.NAME]` in the
    /// roster, or the halt switch): "stopped by limit ...", "halted by ...".
    /// The step waits for a person; `missing` says who and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The same, typed: every reason behind `errors`, `missing` and
    /// `stopped`, each with its stable `code`. Those three are this list
    /// rendered (kept for the records written before it, which lack it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// A deny for one reason (a policy that does not load, an error).
    pub fn deny(policy_hash: impl Into<String>, reason: Reason) -> Decision {
        let mut d = Decision {
            effect: Effect::Deny,
            policies: vec![],
            policy_hash: policy_hash.into(),
            errors: vec![],
            missing: vec![],
            break_glass: false,
            stopped: None,
            reasons: vec![],
        };
        d.push(reason);
        d
    }

    /// Add a reason to a deny, rendered into `errors` (a failed load or
    /// evaluation) or `missing` (what would change the answer).
    pub fn push(&mut self, reason: Reason) {
        if reason.is_error() {
            self.errors.push(reason.to_string());
        } else {
            self.missing.push(reason.to_string());
        }
        self.reasons.push(reason);
    }

    /// The step was allowed by the rules but a stop condition (`reason`, one
    /// of [`Reason::is_stop`]) holds it back.
    pub fn stop(mut self, reason: Reason) -> Decision {
        self.effect = Effect::Deny;
        self.missing = vec![reason.to_string()];
        self.stopped = reason.stop_condition();
        self.reasons = vec![reason];
        self
    }

    /// Why a deny, in words: the one rendering every front end shows. A
    /// record written before typed reasons falls back to its stored words.
    pub fn why(&self) -> String {
        if !self.reasons.is_empty() {
            return self
                .reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
        }
        let mut parts = self.missing.clone();
        parts.extend(self.errors.iter().cloned());
        if parts.is_empty() {
            return if self.policies.is_empty() {
                "no policy permits this".into()
            } else {
                format!("forbidden by {}", self.policies.join(", "))
            };
        }
        parts.join("; ")
    }

    /// A deny a person can lift (approvals, escalation, break-glass, a
    /// proof, overriding a limit), as opposed to one only a change to the
    /// policy or the setup lifts: "awaiting approval" (5), not "denied" (3).
    pub fn awaits_people(&self) -> bool {
        if self.is_allow() {
            return false;
        }
        if self.reasons.is_empty() {
            // Written before typed reasons: what it said was missing.
            return !self.missing.is_empty();
        }
        !self.reasons.iter().any(Reason::is_final)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }
}

pub trait Gate: Send + Sync {
    fn decide(&self, input: &GateInput<'_>) -> Decision;
}

/// The engine unit tests' gate (no authority policy loaded): it denies
/// everything except the engine's own test connector, and says so in every
/// decision. Compiled into tests only; the Cedar gate in `crate::policy` is
/// the only gate a build of cordon has.
#[cfg(test)]
pub struct TestOnlyGate;

#[cfg(test)]
impl Gate for TestOnlyGate {
    fn decide(&self, input: &GateInput<'_>) -> Decision {
        if input.step.action.provider() == cordon_connector::Provider::Test {
            Decision {
                effect: Effect::Allow,
                policies: vec!["builtin:test-connector-only".into()],
                policy_hash: "builtin:test-only".into(),
                errors: vec![],
                missing: vec![],
                break_glass: false,
                stopped: None,
                reasons: vec![],
            }
        } else {
            Decision::deny(
                "builtin:test-only",
                crate::policy::Reason::PolicyNotLoaded {
                    detail:
                        "no authority policy is loaded: only the built-in test connector may act"
                            .into(),
                },
            )
        }
    }
}
