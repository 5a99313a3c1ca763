//! Plans: the immutable statement of what cordon intends to do.
//!
//! A plan is written once as canonical JSON (object keys sorted, no
//! insignificant whitespace, one trailing newline). Its id is the first 16 hex
//! digits of the SHA-256 of those bytes, so any edit to the file changes the id
//! and [`Plan::from_bytes`] refuses a file whose bytes no longer match the id it
//! is stored under. Approvals are signatures over the same bytes.
//!
//! Plans never hold raw secrets: a step that needs one names it by fingerprint
//! and the secret is supplied at apply time.

mod build;

#[cfg(feature = "cli")]
pub use build::identify_keys;
pub use build::{add_steps, github_token_step, PlanMeta};

use chrono::{DateTime, Utc};
use cordon_connector::PlanStep;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const PLAN_VERSION: u32 = 1;

/// Who asked for the plan. `verified` is never taken from the plan file: the
/// gate decides it from signatures (see `policy`), so a plan can only *claim*
/// a requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub name: String,
    pub kind: PrincipalKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    Person,
    Automation,
}

impl PrincipalKind {
    /// The kind a requester name stands for: `ci`, `agent` and `assistant`
    /// are cordon's automation principals, every other name a person. The one
    /// place that tells them apart by name.
    pub fn of_name(name: &str) -> PrincipalKind {
        if matches!(name, "ci" | "agent" | "assistant") {
            PrincipalKind::Automation
        } else {
            PrincipalKind::Person
        }
    }
}

/// Where the request came from (a Cedar context attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Manual,
    Runbook,
    Ci,
    Agent,
    /// An AI assistant through `cordon mcp`.
    Assistant,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "manual",
            Source::Runbook => "runbook",
            Source::Ci => "ci",
            Source::Agent => "agent",
            Source::Assistant => "assistant",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub version: u32,
    /// RFC 3339, UTC, milliseconds.
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    pub requester: Requester,
    pub source: Source,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub steps: Vec<PlanStep>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan is not valid JSON: {0}")]
    Json(String),
    #[error("plan version {0} is not supported (this cordon reads version {PLAN_VERSION})")]
    Version(u32),
    #[error("plan has no steps")]
    Empty,
    #[error("plan step ids must be unique: `{0}` appears twice")]
    DuplicateStep(String),
    #[error(
        "plan bytes do not hash to id `{expected}` (they hash to `{actual}`): the file was modified after it was written"
    )]
    Digest { expected: String, actual: String },
    #[error("plan is not in canonical form: it was edited or written by another tool")]
    NotCanonical,
}

impl Plan {
    /// Canonical bytes: what is written, hashed and signed.
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, PlanError> {
        canonical_json(self).map_err(|e| PlanError::Json(e.to_string()))
    }

    /// Parse plan bytes and check them: version, unique step ids, canonical
    /// form, and — when `expected_id` is given — that they hash to it.
    pub fn from_bytes(bytes: &[u8], expected_id: Option<&str>) -> Result<Plan, PlanError> {
        if let Some(expected) = expected_id {
            let actual = plan_id(bytes);
            if actual != expected {
                return Err(PlanError::Digest {
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        let plan: Plan =
            serde_json::from_slice(bytes).map_err(|e| PlanError::Json(e.to_string()))?;
        if plan.version != PLAN_VERSION {
            return Err(PlanError::Version(plan.version));
        }
        plan.validate()?;
        if plan.to_canonical_bytes()? != bytes {
            return Err(PlanError::NotCanonical);
        }
        Ok(plan)
    }

    pub fn validate(&self) -> Result<(), PlanError> {
        if self.steps.is_empty() {
            return Err(PlanError::Empty);
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.steps {
            if !seen.insert(s.id.as_str()) {
                return Err(PlanError::DuplicateStep(s.id.clone()));
            }
        }
        Ok(())
    }

    pub fn step(&self, id: &str) -> Option<&PlanStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// Serialize with sorted object keys and no whitespace, plus a trailing newline.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    // serde_json's Value map is a BTreeMap (the `preserve_order` feature is
    // off), so going through Value sorts every object's keys.
    let v = serde_json::to_value(value)?;
    let mut out = serde_json::to_vec(&v)?;
    out.push(b'\n');
    Ok(out)
}

/// Full lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The plan id: the first 16 hex digits of SHA-256(bytes).
pub fn plan_id(bytes: &[u8]) -> String {
    let mut h = sha256_hex(bytes);
    h.truncate(16);
    h
}

/// Now, truncated to milliseconds (the precision of every timestamp cordon writes).
pub fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cordon_connector::{Action, Provider, Target};

    fn sample() -> Plan {
        Plan {
            version: PLAN_VERSION,
            created_at: now_ms(),
            requester: Requester {
                name: "alice".into(),
                kind: PrincipalKind::Person,
            },
            source: Source::Manual,
            severity: Severity::High,
            incident: None,
            reason: Some("leak in ci log".into()),
            steps: vec![PlanStep {
                id: "s1".into(),
                action: Action::TestContain,
                target: Target::new(Provider::Test, "item", "one"),
                secret: None,
                params: Default::default(),
            }],
        }
    }

    #[test]
    fn canonical_round_trip_and_any_edit_changes_the_id() {
        let bytes = sample().to_canonical_bytes().unwrap();
        let id = plan_id(&bytes);
        let back = Plan::from_bytes(&bytes, Some(&id)).unwrap();
        assert_eq!(back, sample_with(back.created_at));
        let mut edited = bytes.clone();
        let pos = edited.iter().position(|b| *b == b'o').unwrap();
        edited[pos] = b'x';
        assert!(matches!(
            Plan::from_bytes(&edited, Some(&id)),
            Err(PlanError::Digest { .. })
        ));
    }

    fn sample_with(t: DateTime<Utc>) -> Plan {
        Plan {
            created_at: t,
            ..sample()
        }
    }

    #[test]
    fn pretty_printed_plan_is_refused_as_not_canonical() {
        let p = sample();
        let pretty = serde_json::to_vec_pretty(&p).unwrap();
        assert!(matches!(
            Plan::from_bytes(&pretty, None),
            Err(PlanError::NotCanonical)
        ));
    }

    #[test]
    fn duplicate_step_ids_and_empty_plans_are_refused() {
        let mut p = sample();
        p.steps.push(p.steps[0].clone());
        assert!(matches!(p.validate(), Err(PlanError::DuplicateStep(_))));
        p.steps.clear();
        assert!(matches!(p.validate(), Err(PlanError::Empty)));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let bytes = sample().to_canonical_bytes().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["secret_value"] = serde_json::json!("x");
        let b = canonical_json(&v).unwrap();
        assert!(matches!(
            Plan::from_bytes(&b, None),
            Err(PlanError::Json(_))
        ));
    }
}
