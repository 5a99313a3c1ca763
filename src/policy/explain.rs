//! `cordon policy explain`: a what-if decision without a plan or signatures.
//!
//! The approvers named are treated as verified: the question is "what would
//! the policy say if these people approved", not "have they".

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cordon_connector::{Action, Provider, Target};
use serde::Serialize;

use super::decide::{Case, RequestContext, Subject};
use super::roster::Member;
use super::Policy;
use crate::gate::{Decision, Principal};
use crate::plan::{PrincipalKind, Severity, Source};

/// A what-if question.
#[derive(Debug, Clone)]
pub struct WhatIf {
    /// The requester's name (a roster person or automation principal).
    pub principal: String,
    /// Treat the requester as proven (`true`) or as a bare `--as` claim.
    pub verified: bool,
    /// An action id, e.g. `aws:quarantine-role`.
    pub action: String,
    /// `provider:kind/id`, e.g. `aws:role/deploy-prod`.
    pub target: String,
    pub environment: Option<String>,
    pub account: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub severity: Severity,
    /// Defaults to `ci` for the `ci` principal, `agent` for `agent`, else `manual`.
    pub source: Option<Source>,
    pub incident: Option<String>,
    /// Approvers, treated as verified.
    pub approvers: Vec<String>,
    /// Minutes since the (hypothetical) plan was created.
    pub elapsed_minutes: i64,
    pub break_glass: bool,
    /// The decision time (hour and weekday in the context).
    pub now: DateTime<Utc>,
}

impl WhatIf {
    pub fn new(
        principal: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        WhatIf {
            principal: principal.into(),
            verified: true,
            action: action.into(),
            target: target.into(),
            environment: None,
            account: None,
            tags: BTreeMap::new(),
            severity: Severity::High,
            source: None,
            incident: None,
            approvers: vec![],
            elapsed_minutes: 0,
            break_glass: false,
            now: crate::plan::now_ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("unknown action `{0}`: use one of {1}")]
    UnknownAction(String, String),
    #[error("target `{0}` is not `provider:kind/id` (e.g. `aws:role/deploy-prod`, `github:token/<fingerprint>`)")]
    BadTarget(String),
    #[error("unknown provider `{0}` in the target: use aws, github or test")]
    UnknownProvider(String),
}

/// The answer, with everything that went into it.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    pub principal: Principal,
    pub action: String,
    pub decision_class: &'static str,
    pub target: Target,
    /// The Cedar context the request carried (`None` only when it could not
    /// be built, which the decision's errors then say).
    pub context: Option<RequestContext>,
    /// Remarks on the question: approvers ignored, names not in the roster.
    pub notes: Vec<String>,
}

/// Parse `provider:kind/id`.
pub fn parse_target(s: &str) -> Result<Target, ExplainError> {
    let (provider, rest) = s
        .split_once(':')
        .ok_or_else(|| ExplainError::BadTarget(s.to_owned()))?;
    let (kind, id) = rest
        .split_once('/')
        .ok_or_else(|| ExplainError::BadTarget(s.to_owned()))?;
    if kind.is_empty() || id.is_empty() {
        return Err(ExplainError::BadTarget(s.to_owned()));
    }
    let provider = match provider {
        "aws" => Provider::Aws,
        "github" => Provider::Github,
        "test" => Provider::Test,
        other => return Err(ExplainError::UnknownProvider(other.to_owned())),
    };
    Ok(Target::new(provider, kind, id))
}

impl Policy {
    /// Answer a what-if question.
    pub fn explain(&self, q: &WhatIf) -> Result<Explanation, ExplainError> {
        let action = Action::from_id(&q.action).ok_or_else(|| {
            ExplainError::UnknownAction(
                q.action.clone(),
                Action::ALL
                    .iter()
                    .map(|a| format!("`{}`", a.id()))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
        let mut target = parse_target(&q.target)?;
        target.environment = q.environment.clone();
        target.account = q.account.clone();
        target.tags = q.tags.clone();

        let mut notes = Vec::new();
        let kind = match self.roster.member(&q.principal) {
            Some(Member::Automation(_)) => PrincipalKind::Automation,
            Some(Member::Person(_)) => PrincipalKind::Person,
            None => {
                notes.push(format!(
                    "`{}` is not in roster.toml: treated as a person with no role",
                    q.principal
                ));
                PrincipalKind::Person
            }
        };
        let source = q.source.unwrap_or(match q.principal.as_str() {
            "ci" if kind == PrincipalKind::Automation => Source::Ci,
            "agent" if kind == PrincipalKind::Automation => Source::Agent,
            "assistant" if kind == PrincipalKind::Automation => Source::Assistant,
            _ => Source::Manual,
        });
        for a in &q.approvers {
            if *a == q.principal {
                notes.push(format!(
                    "approver `{a}` is the requester: ignored (no self-approval)"
                ));
            } else if matches!(self.roster.member(a), Some(Member::Automation(_))) {
                notes.push(format!(
                    "approver `{a}` is an automation principal: ignored (approvals are a human decision)"
                ));
            } else if self.roster.member(a).is_none() {
                notes.push(format!(
                    "approver `{a}` is not in roster.toml: counted, with no role"
                ));
            }
            if !self.signers.has_principal(a) && *a != q.principal {
                notes.push(format!(
                    "approver `{a}` has no key in allowed_signers: a real approval from them could not be verified"
                ));
            }
        }
        let names: Vec<&str> = q.approvers.iter().map(String::as_str).collect();
        let approvers = self.approvers_of(&q.principal, &names);
        let case = Case {
            subject: Subject {
                name: q.principal.clone(),
                kind,
                verified: q.verified,
                roles: None,
            },
            action,
            target: &target,
            severity: q.severity,
            source,
            incident: q.incident.as_deref(),
            approvers,
            minutes: q.elapsed_minutes.max(0),
            now: q.now,
            break_glass: q.break_glass,
            without_evidence: false,
        };
        let decision = self.decide_case(&case);
        if let Some(l) = self.roster.limits.get(&q.principal) {
            notes.push(format!(
                "`{}` acts within stop conditions (roster.toml [limits.{}]): {}; past them, or while `cordon halt` is set, an allowed step waits for a person",
                q.principal,
                q.principal,
                super::bounds::describe_limits(l)
            ));
        }
        Ok(Explanation {
            decision,
            principal: principal_of(q, kind),
            action: q.action.clone(),
            decision_class: super::decide::class_name(action),
            context: self.context_of(&case).ok(),
            target,
            notes,
        })
    }
}

fn principal_of(q: &WhatIf, kind: PrincipalKind) -> Principal {
    Principal {
        name: q.principal.clone(),
        kind,
        verified: q.verified,
        proof: q.verified.then(|| "what-if (assumed)".to_owned()),
    }
}
