//! Stop conditions for automation principals, applied at the gate.
//!
//! The Cedar rules say *whether* `ci`, `agent` or `assistant` may take an
//! action; the stop conditions say *how much* they may do before a person
//! looks (`[limits.NAME]` in `roster.toml`), and the halt switch
//! (`crate::halt`) stops them all at once. Both apply here, after the rules,
//! to every step the engine asks about, whatever command or front end wrote
//! the plan: `respond`, `apply`, `revoke`, the agent and `cordon mcp` all go
//! through [`super::PolicyGate`].
//!
//! Past a limit the step is denied with [`Decision::stopped`] set ("stopped
//! by limit ..."): it waits for a person. An approval of the plan by the
//! contain owner role (or its backup once escalated) lifts the limits for that
//! plan; nothing but `cordon resume` lifts a halt (people act under their own
//! names meanwhile).
//!
//! The per-window count is of distinct credentials the principal was
//! *allowed* to act on (a step's target; a key's session cut-off counts as
//! the key) (decision records of the contain class, in this state
//! directory's audit log, plus this run's allows as they are made), so steps
//! decided concurrently cannot overshoot it. Runs of automation principals
//! that share a state directory take [`AUTOMATION_LOCK`] for the whole run,
//! so two runs cannot both spend the same remainder. Machines with separate
//! state directories count separately until the shared state (S3) exists.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use cordon_connector::{Action, DecisionClass, PlanStep};

use super::reason::Reason;
use super::roster::LimitsDef;
use super::Policy;
use crate::audit::{Kind, Record};
use crate::gate::{Decision, GateInput};
use crate::plan::{Plan, PrincipalKind};

/// Lock file (in the state directory) held by a run of an automation principal.
pub const AUTOMATION_LOCK: &str = "automation.lock";

/// principal → (target, when it was allowed), oldest first.
type Usage = BTreeMap<String, Vec<(String, DateTime<Utc>)>>;

/// Usage and the halt switch of one state directory, for one run.
#[derive(Debug)]
pub struct Bounds {
    root: PathBuf,
    used: Mutex<Usage>,
    /// The halt the audit log says is in force (a shared state's switch).
    log_halt: Option<crate::halt::Halt>,
    /// Held until the run ends (dropped with the gate).
    _lock: Option<File>,
}

/// Whether a decision record counts against a principal's window: an allowed
/// contain-class step requested by an automation principal. Counted as the
/// credential the step contains (see [`credential_of`]); `plans` reads the
/// plan a record belongs to from the state directory.
fn counts<'r>(
    r: &'r Record,
    plans: &mut impl FnMut(&str) -> Option<Plan>,
) -> Option<(&'r str, String)> {
    if r.kind != Kind::Decision || r.actor.kind != PrincipalKind::Automation {
        return None;
    }
    let d = r.decision.as_ref()?;
    let a = Action::from_id(r.action.as_deref()?)?;
    if !d.is_allow() || !is_contain(a) {
        return None;
    }
    let target = r.target.as_ref()?.display_name();
    let credential = match (r.plan.as_deref(), r.step.as_deref()) {
        (Some(plan_id), Some(step_id)) => plans(plan_id)
            .and_then(|plan| {
                let step = plan.steps.iter().find(|s| s.id == step_id)?;
                Some(credential_of(&plan, step))
            })
            .unwrap_or(target),
        _ => target,
    };
    Some((r.actor.name.as_str(), credential))
}

/// The credential a step contains, as the limits count it. A leaked `AKIA`
/// key is planned as two steps: disable the key, then end the sessions it
/// minted (`aws:revoke-user-sessions` on its user). Both contain one
/// credential, so the cut-off counts as the key of the same plan that names
/// its user; any other step counts as its own target.
fn credential_of(plan: &Plan, step: &PlanStep) -> String {
    if step.action == Action::AwsRevokeUserSessions {
        let key = plan.steps.iter().find(|s| {
            s.action == Action::AwsDisableAccessKey
                && s.target.account == step.target.account
                && s.param_str("user") == Some(step.target.id.as_str())
        });
        if let Some(k) = key {
            return k.target.display_name();
        }
    }
    step.target.display_name()
}

fn is_contain(a: Action) -> bool {
    a.class() == DecisionClass::Contain && a != Action::GithubProbeToken
}

impl Bounds {
    /// Bounds for the state directory `root`, with the usage its audit log
    /// `records` show. `lock`: the run's [`AUTOMATION_LOCK`], kept until the
    /// bounds are dropped.
    pub fn new(root: &Path, records: &[Record], lock: Option<File>) -> Bounds {
        let mut used: Usage = BTreeMap::new();
        let mut cache: BTreeMap<String, Option<Plan>> = BTreeMap::new();
        let mut plans = |id: &str| -> Option<Plan> {
            cache
                .entry(id.to_owned())
                .or_insert_with(|| {
                    let bytes =
                        std::fs::read(root.join("plans").join(format!("{id}.json"))).ok()?;
                    Plan::from_bytes(&bytes, Some(id)).ok()
                })
                .clone()
        };
        for r in records {
            if let Some((who, target)) = counts(r, &mut plans) {
                used.entry(who.to_owned())
                    .or_default()
                    .push((target, r.time));
            }
        }
        Bounds {
            root: root.to_path_buf(),
            used: Mutex::new(used),
            log_halt: crate::halt::from_log(records),
            _lock: lock,
        }
    }

    /// Apply the halt switch and the principal's limits to the rules'
    /// decision `d`. Only an allow changes (into a stopped deny); people are
    /// never stopped.
    pub fn check(&self, policy: &Policy, input: &GateInput<'_>, d: Decision) -> Decision {
        if input.requester.kind != PrincipalKind::Automation || !d.is_allow() {
            return d;
        }
        let name = input.requester.name.as_str();
        match crate::halt::read(&self.root) {
            Ok(Some(h)) => {
                return d.stop(Reason::Halted {
                    halt: crate::halt::describe(&h),
                })
            }
            Err(e) => {
                return d.stop(Reason::HaltUnreadable {
                    error: e.to_string(),
                })
            }
            Ok(None) => {
                if let Some(h) = &self.log_halt {
                    return d.stop(Reason::Halted {
                        halt: crate::halt::describe(h),
                    });
                }
            }
        }
        let Some(limits) = policy.roster().limits.get(name) else {
            return d;
        };
        let target = credential_of(input.plan, input.step);
        let lifted = policy.owner_approvals(input) >= 1;
        if !lifted {
            if let Some(reason) = stateless(policy, name, limits, input) {
                return d.stop(reason);
            }
        }
        let Some(max) = limits.max_credentials_per_window else {
            return d;
        };
        if !is_contain(input.step.action) {
            return d;
        }
        let Ok(mut used) = self.used.lock() else {
            return d.stop(Reason::UsageUnavailable);
        };
        let mine = used.entry(name.to_owned()).or_default();
        let since = input.now - Duration::minutes(i64::from(limits.window_minutes));
        let mut in_window: Vec<&str> = mine
            .iter()
            .filter(|(_, t)| *t > since)
            .map(|(t, _)| t.as_str())
            .collect();
        in_window.sort_unstable();
        in_window.dedup();
        if in_window.contains(&target.as_str()) {
            return d;
        }
        if in_window.len() as u64 >= u64::from(max) && !lifted {
            let detail = format!(
                "at most {max} credentials per {} min, and {} were acted on",
                limits.window_minutes,
                in_window.len()
            );
            return d.stop(limit(
                policy,
                input,
                "max_credentials_per_window",
                name,
                detail,
            ));
        }
        mine.push((target, input.now));
        d
    }
}

/// The limits that need no count: severity, environment, accounts per plan.
fn stateless(
    policy: &Policy,
    name: &str,
    limits: &LimitsDef,
    input: &GateInput<'_>,
) -> Option<Reason> {
    if let Some(min) = limits.min_severity {
        if input.plan.severity < min {
            return Some(limit(
                policy,
                input,
                "min_severity",
                name,
                format!(
                    "the plan's severity is `{}`, and `{name}` acts alone only from `{}`",
                    input.plan.severity.as_str(),
                    min.as_str()
                ),
            ));
        }
    }
    if let Some(envs) = &limits.environments {
        let env = input.step.target.environment.as_deref();
        if !env.is_some_and(|e| envs.iter().any(|x| x == e)) {
            return Some(limit(
                policy,
                input,
                "environments",
                name,
                format!(
                    "the target is in {}, and `{name}` acts only in {}",
                    env.map_or("no labelled environment".to_owned(), |e| format!("`{e}`")),
                    envs.iter()
                        .map(|e| format!("`{e}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    if let Some(max) = limits.max_accounts_per_plan {
        let mut accounts: Vec<String> = Vec::new();
        for s in &input.plan.steps {
            if let Some(a) = &s.target.account {
                let k = format!("{}:{a}", s.target.provider.as_str());
                if !accounts.contains(&k) {
                    accounts.push(k);
                }
            }
        }
        if let Some(a) = &input.step.target.account {
            let k = format!("{}:{a}", input.step.target.provider.as_str());
            let pos = accounts.iter().position(|x| *x == k).unwrap_or(0);
            if pos as u64 >= u64::from(max) {
                return Some(limit(
                    policy,
                    input,
                    "max_accounts_per_plan",
                    name,
                    format!(
                        "the plan spans {} accounts, and `{name}` acts in at most {max} per plan (this step is in `{k}`)",
                        accounts.len()
                    ),
                ));
            }
        }
    }
    None
}

/// A limit that holds the step back until a person of the class's owner
/// role approves the plan (worded by [`Reason`]).
fn limit(
    policy: &Policy,
    input: &GateInput<'_>,
    which: &str,
    principal: &str,
    detail: String,
) -> Reason {
    let owner_role = policy
        .roster()
        .class(super::decide::class_name(input.step.action))
        .map(|c| c.owner.clone())
        .unwrap_or_else(|| "security".into());
    Reason::Limit {
        limit: which.into(),
        principal: principal.into(),
        detail,
        plan: input.plan_id.into(),
        owner_role,
    }
}

/// The limits in words: "at most 20 credentials per 60 min, ...".
pub fn describe_limits(l: &LimitsDef) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.max_credentials_per_window {
        parts.push(format!(
            "at most {n} credentials per {} min",
            l.window_minutes
        ));
    }
    if let Some(n) = l.max_accounts_per_plan {
        parts.push(format!("at most {n} accounts per plan"));
    }
    if let Some(s) = l.min_severity {
        parts.push(format!("alone only from severity `{}`", s.as_str()));
    }
    if let Some(e) = &l.environments {
        parts.push(format!("only in environments {}", e.join(", ")));
    }
    if parts.is_empty() {
        "no limit set".into()
    } else {
        parts.join(", ")
    }
}
