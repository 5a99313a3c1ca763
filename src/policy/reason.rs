//! Why a step was not allowed, as a type: one enum for every deny and hold,
//! worded in one place ([`fmt::Display`]) and named by a stable machine code
//! ([`Reason::code`], the `code` key in `--json` and in the audit log).
//!
//! The gate (`decide`), the automation bounds (`bounds`), a policy that does
//! not load and the respond pipeline build these; every front end (the
//! `apply`/`respond` tables and their `--json`, dry runs, `pending`, the
//! incident timeline) shows them through [`crate::gate::Decision::why`] or
//! this `Display`, never by wording them again.
//!
//! A reason is either *final* (only a change to the policy, its files or the
//! setup changes it: exit 3, "denied") or one *a person can lift* (an
//! approval, escalation, break-glass, proving the requester, a person
//! overriding an automation limit: exit 5, "awaiting approval", or 10 for a
//! stop condition). [`Reason::is_final`] tells which.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One reason a step was denied or held. Serialised with its code as `code`
/// beside its fields: `{"code":"no-rule","action":...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Reason {
    /// The policy directory does not load (its summary names the findings).
    PolicyNotLoaded { detail: String },
    /// The roster still holds a published example secret, refused outside
    /// a demo (`CORDON_DEMO`).
    ExampleSecretRefused { detail: String },
    /// Building or evaluating the Cedar request failed: deny (fail closed).
    EvaluationError { detail: String },
    /// An explicit `forbid` matched.
    Forbidden { policy: String },
    /// Break-glass was declared, and a forbid written for break-glass matched.
    BreakGlassForbidden { policy: String },
    /// The requester's name is only claimed (`--as`); proving it would allow
    /// the step, alone or with what `then` says.
    RequesterUnproven {
        name: String,
        automation: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        then: Option<Box<Reason>>,
    },
    /// An approval already given by the backup role counts once the class
    /// escalates.
    Escalation {
        in_minutes: i64,
        backup_role: String,
        class: String,
        after_minutes: i64,
    },
    /// More approvals would allow it: `count` more; `need` says from whom
    /// ("needs 1 approval from role `security`").
    NeedsApprovals {
        count: usize,
        need: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        alternative: bool,
    },
    /// The requester may declare break-glass for it (`--break-glass`).
    BreakGlassAvailable {
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        alternative: bool,
    },
    /// Only a verified member of one of `roles` may declare break-glass for
    /// it, and the requester `name` is not one.
    BreakGlassOnlyFor {
        roles: Vec<String>,
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        alternative: bool,
    },
    /// No permit matched and nothing within reach changes that.
    NoRule {
        action: String,
        target: String,
        name: String,
        verified: bool,
    },
    /// A forbid matched: approvals, escalation and break-glass cannot lift it.
    ForbidIsFinal,
    /// The halt switch is on (`halt` is who, when and why).
    Halted { halt: String },
    /// The halt switch cannot be read: automation stops (fail closed).
    HaltUnreadable { error: String },
    /// A limit of the automation principal (`[limits.NAME]` in the roster).
    Limit {
        limit: String,
        principal: String,
        detail: String,
        plan: String,
        owner_role: String,
    },
    /// The usage count of the limits could not be read.
    UsageUnavailable,
    /// The principal has limits, and the gate has no state to count them.
    LimitsWithoutState { principal: String },
    /// An automation principal that did not prove itself (its secret is
    /// missing or wrong): a broken setup, refused, never "awaiting approval".
    AutomationUnproven { name: String },
}

impl Reason {
    /// The stable machine code (kebab-case), as serialised in `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::PolicyNotLoaded { .. } => "policy-not-loaded",
            Reason::ExampleSecretRefused { .. } => "example-secret-refused",
            Reason::EvaluationError { .. } => "evaluation-error",
            Reason::Forbidden { .. } => "forbidden",
            Reason::BreakGlassForbidden { .. } => "break-glass-forbidden",
            Reason::RequesterUnproven { .. } => "requester-unproven",
            Reason::Escalation { .. } => "escalation",
            Reason::NeedsApprovals { .. } => "needs-approvals",
            Reason::BreakGlassAvailable { .. } => "break-glass-available",
            Reason::BreakGlassOnlyFor { .. } => "break-glass-only-for",
            Reason::NoRule { .. } => "no-rule",
            Reason::ForbidIsFinal => "forbid-is-final",
            Reason::Halted { .. } => "halted",
            Reason::HaltUnreadable { .. } => "halt-unreadable",
            Reason::Limit { .. } => "limit",
            Reason::UsageUnavailable => "usage-unavailable",
            Reason::LimitsWithoutState { .. } => "limits-without-state",
            Reason::AutomationUnproven { .. } => "automation-unproven",
        }
    }

    /// True when no person can lift it (no approval, escalation,
    /// break-glass or proof): only a change to the policy or the setup. A
    /// forbid alone is not final (a forbid may be written `unless` approvals
    /// or break-glass); the gate adds [`Reason::ForbidIsFinal`] or
    /// [`Reason::NoRule`] when nothing within reach lifts the deny.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Reason::PolicyNotLoaded { .. }
                | Reason::ExampleSecretRefused { .. }
                | Reason::EvaluationError { .. }
                | Reason::NoRule { .. }
                | Reason::ForbidIsFinal
                | Reason::AutomationUnproven { .. }
        )
    }

    /// True for the stop conditions of automation (the halt switch, limits):
    /// the policy allowed the step, a person's word lets it run.
    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            Reason::Halted { .. }
                | Reason::HaltUnreadable { .. }
                | Reason::Limit { .. }
                | Reason::UsageUnavailable
                | Reason::LimitsWithoutState { .. }
        )
    }

    /// True for the reasons a failed evaluation or load gives (a decision's
    /// `errors`), as opposed to what would change the answer (`missing`).
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            Reason::PolicyNotLoaded { .. }
                | Reason::ExampleSecretRefused { .. }
                | Reason::EvaluationError { .. }
        )
    }

    /// For a stop condition: what stopped it, without what lifts it
    /// (`Decision.stopped`).
    pub fn stop_condition(&self) -> Option<String> {
        Some(match self {
            Reason::Halted { halt } => halt.clone(),
            Reason::HaltUnreadable { error } => {
                format!("halted: the halt switch cannot be read ({error})")
            }
            Reason::Limit {
                limit,
                principal,
                detail,
                ..
            } => format!("stopped by limit `{limit}` of `{principal}`: {detail}"),
            Reason::UsageUnavailable => "stopped: the usage count is unavailable".into(),
            Reason::LimitsWithoutState { principal } => format!(
                "stopped: `{principal}` has limits, and this gate has no state to count them against"
            ),
            _ => return None,
        })
    }
}

fn or(alternative: bool) -> &'static str {
    if alternative {
        "or "
    } else {
        ""
    }
}

fn roles(roles: &[String]) -> String {
    let quoted: Vec<String> = roles.iter().map(|r| format!("`{r}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = self.stop_condition() {
            let lift = match self {
                Reason::Halted { .. } => "no automation principal acts until a person runs `cordon resume`; people may act under their own names meanwhile".to_owned(),
                Reason::HaltUnreadable { .. } => "automation stops when it cannot tell (fail closed); fix or remove the file with `cordon resume`".to_owned(),
                Reason::Limit { plan, owner_role, .. } => format!(
                    "it waits for a person: one approval of plan `{plan}` from role `{owner_role}` lifts the limits for it (`cordon approve`), then `cordon apply` continues"
                ),
                Reason::UsageUnavailable => "a person approves the plan".to_owned(),
                _ => "run it through a command that opens the state directory".to_owned(),
            };
            return write!(f, "{why}: {lift}");
        }
        match self {
            Reason::PolicyNotLoaded { detail }
            | Reason::ExampleSecretRefused { detail }
            | Reason::EvaluationError { detail } => f.write_str(detail),
            Reason::Forbidden { policy } => write!(f, "forbidden by `{policy}`"),
            Reason::BreakGlassForbidden { policy } => {
                write!(f, "break-glass refused: forbidden by `{policy}`")
            }
            Reason::RequesterUnproven {
                name,
                automation,
                then,
            } => {
                if *automation {
                    write!(f, "`{name}` is only claimed (`--as`): the automation principal must present its configured secret or key")?;
                } else {
                    write!(f, "`{name}` is only claimed (`--as`): the requester must sign the plan with a key listed for `{name}` in allowed_signers")?;
                }
                match then.as_deref() {
                    None => Ok(()),
                    Some(Reason::BreakGlassAvailable { .. }) => write!(
                        f,
                        "; proven, `{name}` may declare break-glass (`--break-glass`)"
                    ),
                    Some(next) => write!(f, ", and {next}"),
                }
            }
            Reason::Escalation {
                in_minutes,
                backup_role,
                class,
                after_minutes,
            } => write!(
                f,
                "allowed in {in_minutes} min, when the approval from backup role `{backup_role}` counts (the `{class}` class escalates after {after_minutes} min)"
            ),
            Reason::NeedsApprovals {
                need, alternative, ..
            } => write!(f, "{}it {need}", or(*alternative)),
            Reason::BreakGlassAvailable { name, alternative } => write!(
                f,
                "{}break-glass: `{name}` may declare it (`--break-glass`); the decision is recorded as break-glass",
                or(*alternative)
            ),
            // Worded as the condition that is not met: break-glass was not
            // declared, and the requester could not declare it (issue 21).
            Reason::BreakGlassOnlyFor {
                roles: r,
                name,
                alternative,
            } => write!(
                f,
                "{}break-glass, which only a verified member of role {} may declare (`--break-glass`); `{name}` is not one",
                or(*alternative),
                roles(r)
            ),
            Reason::NoRule {
                action,
                target,
                name,
                verified,
            } => write!(
                f,
                "no rule in authority.cedar allows `{action}` on `{target}` for {} `{name}`, and no approval, escalation or break-glass within reach changes that",
                if *verified { "verified" } else { "unverified" }
            ),
            Reason::ForbidIsFinal => f.write_str(
                "no approval, escalation or break-glass lifts a forbid: only a change to the policy does",
            ),
            Reason::AutomationUnproven { name } => write!(
                f,
                "`{name}` is an automation principal but did not prove itself: its secret is missing or wrong (roster.toml names the variable in `secret_env`), so nothing it asked for is allowed; fix the secret and run again"
            ),
            // Stop conditions are worded above.
            Reason::Halted { .. }
            | Reason::HaltUnreadable { .. }
            | Reason::Limit { .. }
            | Reason::UsageUnavailable
            | Reason::LimitsWithoutState { .. } => Ok(()),
        }
    }
}
