//! Replaying the audit log into incidents, and the status and report views
//! derived from them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cordon_connector::{DecisionClass, Outcome, Verification};
use serde::Serialize;

use super::events::{IncidentEvent, Role, TaskEvent};
use super::ID_PREFIX;
use crate::audit::payload::{FindingPayload, PlanPayload};
use crate::audit::{Kind, Record, VerifyReport};
use crate::gate::Principal;
use crate::plan::{Plan, Severity};

/// What the replay may read besides the log: the immutable objects the log
/// names by hash.
pub trait Objects {
    /// The plan stored under `id`, checked against its content address.
    fn plan(&self, id: &str) -> Result<Plan, String>;
    /// `Ok` when the evidence object is present and its bytes hash to `hash`.
    fn evidence(&self, hash: &str) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentState {
    Open,
    Closed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleSlot {
    pub role: Role,
    pub person: Option<String>,
    #[serde(with = "crate::timefmt::option")]
    pub since: Option<DateTime<Utc>>,
    pub assigned_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// A manual task nobody finished yet.
    Open,
    Blocked,
    Done,
    /// A step nobody applied yet.
    Planned,
    /// The gate wants approvals (see `waiting_for`).
    AwaitingApproval,
    Denied,
    /// Allowed, intent recorded, no outcome yet (running or interrupted).
    Running,
    Failed,
    /// The outcome is unknown (a lost response that re-reading did not settle).
    Unknown,
    /// Containment done, not yet verified.
    Contained,
    /// Containment done and the credential proven dead.
    Verified,
    /// Containment reported done, but the credential still works.
    StillAlive,
    NotVerified,
    /// The change is in place but contains the credential only in part (a
    /// token's access to one organisation removed; it works elsewhere).
    Partial,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Done => "done",
            TaskStatus::Planned => "planned",
            TaskStatus::AwaitingApproval => "awaiting-approval",
            TaskStatus::Denied => "denied",
            TaskStatus::Running => "running",
            TaskStatus::Failed => "failed",
            TaskStatus::Unknown => "unknown",
            TaskStatus::Contained => "contained",
            TaskStatus::Verified => "verified",
            TaskStatus::StillAlive => "still-alive",
            TaskStatus::NotVerified => "not-verified",
            TaskStatus::Partial => "partial",
        }
    }

    /// Finished for good: nothing left to do on the task.
    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Verified)
    }

    fn is_failure(self) -> bool {
        matches!(
            self,
            TaskStatus::Failed
                | TaskStatus::Unknown
                | TaskStatus::Denied
                | TaskStatus::StillAlive
                | TaskStatus::NotVerified
                | TaskStatus::Partial
        )
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskSource {
    /// Added with `cordon task add`.
    Manual,
    /// A step of a plan attached to the incident.
    Step {
        plan: String,
        step: String,
        action: String,
        target: String,
        class: DecisionClass,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    pub reason: String,
    pub by: String,
    #[serde(with = "crate::timefmt")]
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub source: TaskSource,
    pub owner: Option<String>,
    pub status: TaskStatus,
    /// The last outcome, verification or decision detail.
    pub detail: Option<String>,
    /// What the gate says is missing (approvals), for a step awaiting approval.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    pub blocker: Option<Blocker>,
    #[serde(with = "crate::timefmt::option")]
    pub due: Option<DateTime<Utc>>,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(with = "crate::timefmt")]
    pub updated_at: DateTime<Utc>,
}

impl Task {
    pub fn is_step(&self) -> bool {
        matches!(self.source, TaskSource::Step { .. })
    }

    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        !self.status.is_finished() && self.due.is_some_and(|d| d < now)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRef {
    pub id: String,
    pub seq: u64,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub requester: String,
    pub steps: usize,
    pub sha256: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub seq: u64,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub kind: Kind,
    pub actor: String,
    /// Whether the actor was proven (SSH signature, automation secret) or
    /// merely claimed with `--as`.
    pub actor_verified: bool,
    pub what: String,
    pub plan: Option<String>,
    pub step: Option<String>,
    /// The policy set in force for a decision.
    pub policy_hash: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// `name (key fingerprint)` of each approval a decision rested on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    pub break_glass: Option<String>,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakGlassUse {
    pub seq: u64,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub actor: String,
    pub actor_verified: bool,
    pub plan: Option<String>,
    pub step: Option<String>,
    pub target: Option<String>,
    pub reason: String,
    pub allowed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceRef {
    pub seq: u64,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub plan: Option<String>,
    pub step: Option<String>,
    pub target: Option<String>,
    pub sha256: String,
    /// `intact`, or what is wrong with the stored object.
    pub check: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Milestone {
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    /// Milliseconds since the credential was detected.
    pub after_detected_ms: i64,
}

/// Time to contain one credential: detected → planned → approved →
/// contained → verified. A milestone is absent until every containment step
/// of the credential reached it.
#[derive(Debug, Clone, Serialize)]
pub struct Credential {
    pub target: String,
    pub tasks: Vec<String>,
    pub status: TaskStatus,
    pub detected: Option<Milestone>,
    pub planned: Option<Milestone>,
    pub approved: Option<Milestone>,
    pub contained: Option<Milestone>,
    pub verified: Option<Milestone>,
    pub policy_hash: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
    pub break_glass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub state: IncidentState,
    #[serde(with = "crate::timefmt")]
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    #[serde(with = "crate::timefmt::option")]
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub summary: Option<String>,
    pub roles: Vec<RoleSlot>,
    pub tasks: Vec<Task>,
    pub plans: Vec<PlanRef>,
    pub timeline: Vec<TimelineEntry>,
    pub break_glass: Vec<BreakGlassUse>,
    pub evidence: Vec<EvidenceRef>,
    pub credentials: Vec<Credential>,
    /// Things the replay could not make sense of (an unreadable plan file).
    pub problems: Vec<String>,
    #[serde(with = "crate::timefmt")]
    pub last_change: DateTime<Utc>,
}

impl Incident {
    pub fn task(&self, id: &str) -> Result<&Task, String> {
        if let Some(t) = self.tasks.iter().find(|t| t.id == id) {
            return Ok(t);
        }
        // Step tasks may be named by a unique prefix of the plan id.
        let m: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| match &t.source {
                TaskSource::Step { plan, step, .. } => id
                    .split_once(':')
                    .is_some_and(|(p, s)| plan.starts_with(p) && !p.is_empty() && step == s),
                TaskSource::Manual => false,
            })
            .collect();
        match m.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("incident {} has no task `{id}`", self.id)),
            _ => Err(format!(
                "task `{id}` is ambiguous in incident {} ({} tasks match): give more of the plan id",
                self.id,
                m.len()
            )),
        }
    }

    pub fn role(&self, role: Role) -> Option<&str> {
        self.roles
            .iter()
            .find(|r| r.role == role)
            .and_then(|r| r.person.as_deref())
    }
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub incidents: Vec<Incident>,
}

impl Ledger {
    /// Find an incident by id; `inc-3` and `3` mean `INC-3`.
    pub fn get(&self, id: &str) -> Option<&Incident> {
        let want = normalise_id(id);
        self.incidents.iter().find(|i| i.id == want)
    }

    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.incidents
            .iter()
            .filter(|i| i.state == IncidentState::Open)
    }

    pub fn next_id(&self) -> String {
        let n = self
            .incidents
            .iter()
            .filter_map(|i| i.id.strip_prefix(ID_PREFIX)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("{ID_PREFIX}{}", n + 1)
    }
}

pub fn normalise_id(id: &str) -> String {
    let id = id.trim();
    if id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty() {
        return format!("{ID_PREFIX}{id}");
    }
    match id.get(..ID_PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(ID_PREFIX) => {
            format!("{ID_PREFIX}{}", &id[ID_PREFIX.len()..])
        }
        _ => id.to_owned(),
    }
}

/// Per-step facts gathered while replaying, for time-to-contain.
#[derive(Default)]
struct StepTrack {
    planned: Option<DateTime<Utc>>,
    allowed: Option<(DateTime<Utc>, String, Vec<String>, bool)>,
    contained: Option<DateTime<Utc>>,
    verified: Option<DateTime<Utc>>,
}

struct Building {
    inc: Incident,
    steps: HashMap<String, StepTrack>,
    first_seen: HashMap<String, DateTime<Utc>>,
    /// Task id -> position in `inc.tasks` (a containment run has thousands).
    index: HashMap<String, usize>,
    /// Credential id (key id or fingerprint, as in plan targets) -> when a
    /// `finding` record first reported it.
    found: HashMap<String, DateTime<Utc>>,
}

fn task_mut<'a>(
    tasks: &'a mut [Task],
    index: &HashMap<String, usize>,
    id: &str,
) -> Option<&'a mut Task> {
    index.get(id).and_then(|i| tasks.get_mut(*i))
}

fn actor(p: &Principal) -> String {
    p.name.clone()
}

/// Rebuild every incident from the log, in log order.
pub fn replay(records: &[Record], objects: &dyn Objects) -> Ledger {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Building> = BTreeMap::new();
    // plan id -> incident id, from the `plan` records.
    let mut plan_incident: HashMap<String, String> = HashMap::new();

    for r in records {
        let inc_id = match (&r.incident, &r.plan) {
            (Some(i), _) => Some(i.clone()),
            (None, Some(p)) => plan_incident.get(p).cloned(),
            _ => None,
        };
        let Some(inc_id) = inc_id else { continue };
        if r.kind == Kind::Incident {
            if let Some(Ok(IncidentEvent::Open { title, severity })) = event::<IncidentEvent>(r) {
                if !map.contains_key(&inc_id) {
                    order.push(inc_id.clone());
                    map.insert(
                        inc_id.clone(),
                        Building {
                            inc: Incident {
                                id: inc_id.clone(),
                                title,
                                severity,
                                state: IncidentState::Open,
                                opened_at: r.time,
                                opened_by: actor(&r.actor),
                                closed_at: None,
                                closed_by: None,
                                summary: None,
                                roles: Role::ALL
                                    .iter()
                                    .map(|role| RoleSlot {
                                        role: *role,
                                        person: None,
                                        since: None,
                                        assigned_by: None,
                                    })
                                    .collect(),
                                tasks: vec![],
                                plans: vec![],
                                timeline: vec![],
                                break_glass: vec![],
                                evidence: vec![],
                                credentials: vec![],
                                problems: vec![],
                                last_change: r.time,
                            },
                            steps: HashMap::new(),
                            first_seen: HashMap::new(),
                            index: HashMap::new(),
                            found: HashMap::new(),
                        },
                    );
                }
            }
        }
        let Some(b) = map.get_mut(&inc_id) else {
            continue;
        };
        if r.kind == Kind::Plan {
            if let Some(p) = &r.plan {
                plan_incident.insert(p.clone(), inc_id.clone());
            }
        }
        apply(b, r, objects);
    }
    let incidents = order
        .into_iter()
        .filter_map(|id| map.remove(&id))
        .map(finish)
        .collect();
    Ledger { incidents }
}

fn event<T: serde::de::DeserializeOwned>(r: &Record) -> Option<Result<T, String>> {
    r.data
        .as_ref()
        .map(|d| serde_json::from_value(d.clone()).map_err(|e| e.to_string()))
}

fn apply(b: &mut Building, r: &Record, objects: &dyn Objects) {
    let Building {
        inc,
        steps,
        first_seen,
        index,
        found,
    } = b;
    inc.last_change = r.time;
    let mut entry = TimelineEntry {
        seq: r.seq,
        at: r.time,
        kind: r.kind,
        actor: actor(&r.actor),
        actor_verified: r.actor.verified,
        what: String::new(),
        plan: r.plan.clone(),
        step: r.step.clone(),
        policy_hash: None,
        policies: vec![],
        approvers: r
            .approvers
            .iter()
            .map(|a| format!("{} ({})", a.id, a.key_fingerprint))
            .collect(),
        break_glass: r.break_glass.clone(),
        hash: r.hash.clone(),
    };
    let target = r.target.as_ref().map(|t| t.display_name());
    if let Some(t) = &target {
        first_seen.entry(t.clone()).or_insert(r.time);
    }
    let step_key = match (&r.plan, &r.step) {
        (Some(p), Some(s)) => Some(format!("{p}:{s}")),
        _ => None,
    };
    match r.kind {
        Kind::Incident => match event::<IncidentEvent>(r) {
            Some(Ok(IncidentEvent::Open { title, severity })) => {
                entry.what = format!("opened `{title}` (severity {})", severity.as_str());
            }
            Some(Ok(IncidentEvent::Assign { role, person })) => {
                if let Some(slot) = inc.roles.iter_mut().find(|s| s.role == role) {
                    slot.person = Some(person.clone());
                    slot.since = Some(r.time);
                    slot.assigned_by = Some(actor(&r.actor));
                }
                entry.what = format!("{person} is {}", role.as_str());
            }
            Some(Ok(IncidentEvent::Close { summary })) => {
                inc.state = IncidentState::Closed;
                inc.closed_at = Some(r.time);
                inc.closed_by = Some(actor(&r.actor));
                entry.what = format!("closed: {summary}");
                inc.summary = Some(summary);
            }
            Some(Err(e)) => {
                inc.problems
                    .push(format!("record {}: unreadable incident event: {e}", r.seq));
                entry.what = "unreadable incident event".into();
            }
            None => entry.what = r.message.clone().unwrap_or_default(),
        },
        Kind::Task => match event::<TaskEvent>(r) {
            Some(Ok(ev)) => entry.what = apply_task(inc, index, r, ev),
            Some(Err(e)) => {
                inc.problems
                    .push(format!("record {}: unreadable task event: {e}", r.seq));
                entry.what = "unreadable task event".into();
            }
            None => entry.what = r.message.clone().unwrap_or_default(),
        },
        Kind::Plan => {
            let id = r.plan.clone().unwrap_or_default();
            let sha = r
                .data
                .clone()
                .and_then(|d| serde_json::from_value::<PlanPayload>(d).ok())
                .map(|p| p.sha256);
            match objects.plan(&id) {
                Ok(plan) => {
                    for s in &plan.steps {
                        let key = format!("{id}:{}", s.id);
                        let tgt = s.target.display_name();
                        // Detected when a finding reported it (by key id or
                        // fingerprint), else when it was first planned.
                        let reported = [Some(&s.target.id), s.secret.as_ref()]
                            .into_iter()
                            .flatten()
                            .filter_map(|k| found.get(k))
                            .min()
                            .copied();
                        let seen = first_seen.entry(tgt.clone()).or_insert(r.time);
                        if let Some(t) = reported {
                            *seen = (*seen).min(t);
                        }
                        steps.insert(
                            key.clone(),
                            StepTrack {
                                planned: Some(r.time),
                                ..StepTrack::default()
                            },
                        );
                        index.insert(key.clone(), inc.tasks.len());
                        inc.tasks.push(Task {
                            id: key,
                            title: format!("{} {}", s.action.id(), tgt),
                            source: TaskSource::Step {
                                plan: id.clone(),
                                step: s.id.clone(),
                                action: s.action.id().to_owned(),
                                target: tgt,
                                class: s.action.class(),
                            },
                            owner: None,
                            status: TaskStatus::Planned,
                            detail: None,
                            waiting_for: vec![],
                            blocker: None,
                            due: None,
                            created_at: r.time,
                            created_by: actor(&r.actor),
                            updated_at: r.time,
                        });
                    }
                    inc.plans.push(PlanRef {
                        id: id.clone(),
                        seq: r.seq,
                        at: r.time,
                        requester: plan.requester.name.clone(),
                        steps: plan.steps.len(),
                        sha256: sha.clone(),
                        reason: plan.reason.clone(),
                    });
                    entry.what = format!(
                        "plan {id} written: {} step(s){}",
                        plan.steps.len(),
                        plan.reason
                            .as_ref()
                            .map(|x| format!(", reason: {x}"))
                            .unwrap_or_default()
                    );
                }
                Err(e) => {
                    inc.problems.push(format!(
                        "plan `{id}` (record {}) cannot be read, its steps are missing from the tasks: {e}",
                        r.seq
                    ));
                    entry.what = format!("plan {id} written (plan file unreadable)");
                }
            }
        }
        Kind::Approval => {
            entry.what = format!(
                "plan {} approved by {}",
                r.plan.clone().unwrap_or_default(),
                entry.approvers.join(", ")
            );
        }
        Kind::Decision => {
            if let Some(d) = &r.decision {
                entry.policy_hash = Some(d.policy_hash.clone());
                entry.policies = d.policies.clone();
                let subject = format!(
                    "{} {}",
                    r.action.clone().unwrap_or_default(),
                    target.clone().unwrap_or_default()
                );
                entry.what = if d.is_allow() {
                    format!(
                        "allowed {subject} by {}{}",
                        d.policies.join(", "),
                        if d.break_glass {
                            " under break-glass"
                        } else {
                            ""
                        }
                    )
                } else if d.awaits_people() {
                    format!("held {subject}: {}", d.why())
                } else {
                    format!("denied {subject}: {}", d.why())
                };
                if let Some(reason) = &r.break_glass {
                    inc.break_glass.push(BreakGlassUse {
                        seq: r.seq,
                        at: r.time,
                        actor: actor(&r.actor),
                        actor_verified: r.actor.verified,
                        plan: r.plan.clone(),
                        step: r.step.clone(),
                        target: target.clone(),
                        reason: reason.clone(),
                        allowed: d.is_allow(),
                    });
                }
                if let Some(key) = &step_key {
                    if let Some(t) = task_mut(&mut inc.tasks, index, key) {
                        t.updated_at = r.time;
                        if d.is_allow() {
                            t.status = TaskStatus::Running;
                            t.waiting_for.clear();
                            t.detail = None;
                            if let Some(s) = steps.get_mut(key) {
                                s.allowed.get_or_insert((
                                    r.time,
                                    d.policy_hash.clone(),
                                    entry.approvers.clone(),
                                    d.break_glass,
                                ));
                            }
                        } else if d.awaits_people() {
                            t.status = TaskStatus::AwaitingApproval;
                            t.waiting_for = d.missing.clone();
                            t.detail = None;
                        } else {
                            t.status = TaskStatus::Denied;
                            t.detail = Some(entry.what.clone());
                        }
                    }
                }
            }
        }
        Kind::Evidence => {
            let hash = r.evidence.clone().unwrap_or_default();
            let check = match objects.evidence(&hash) {
                Ok(()) => "intact".to_owned(),
                Err(e) => e,
            };
            entry.what = format!(
                "evidence sha256:{hash} of {}",
                target.clone().unwrap_or_default()
            );
            inc.evidence.push(EvidenceRef {
                seq: r.seq,
                at: r.time,
                plan: r.plan.clone(),
                step: r.step.clone(),
                target: target.clone(),
                sha256: hash,
                check,
            });
        }
        Kind::Intent => {
            entry.what = format!(
                "about to {} {}",
                r.action.clone().unwrap_or_default(),
                target.clone().unwrap_or_default()
            );
            if let Some(t) = step_key
                .as_ref()
                .and_then(|k| task_mut(&mut inc.tasks, index, k))
            {
                t.status = TaskStatus::Running;
                t.updated_at = r.time;
            }
        }
        Kind::Outcome => {
            if let Some(o) = &r.outcome {
                entry.what = format!("{}: {}", o.label(), o.detail());
                if let Some(key) = &step_key {
                    if let Some(t) = task_mut(&mut inc.tasks, index, key) {
                        t.updated_at = r.time;
                        t.detail = Some(o.detail().to_owned());
                        let contain = matches!(
                            t.source,
                            TaskSource::Step {
                                class: DecisionClass::Contain,
                                ..
                            }
                        );
                        t.status = match o {
                            Outcome::Done { .. } | Outcome::AlreadyContained { .. } => {
                                if let Some(s) = steps.get_mut(key) {
                                    s.contained.get_or_insert(r.time);
                                }
                                if contain {
                                    TaskStatus::Contained
                                } else {
                                    TaskStatus::Done
                                }
                            }
                            Outcome::Failed { .. } => TaskStatus::Failed,
                            Outcome::Unknown { .. } => TaskStatus::Unknown,
                        };
                    }
                }
            }
        }
        Kind::Verify => {
            if let Some(v) = &r.verification {
                let detail = match v {
                    Verification::Dead { detail }
                    | Verification::Partial { detail }
                    | Verification::Alive { detail }
                    | Verification::NotVerified { detail } => detail.clone(),
                };
                entry.what = format!("verified {}: {detail}", v.label());
                if let Some(key) = &step_key {
                    if let Some(t) = task_mut(&mut inc.tasks, index, key) {
                        t.updated_at = r.time;
                        t.detail = Some(detail);
                        t.status = match v {
                            Verification::Dead { .. } => {
                                if let Some(s) = steps.get_mut(key) {
                                    s.verified.get_or_insert(r.time);
                                }
                                TaskStatus::Verified
                            }
                            Verification::Alive { .. } => TaskStatus::StillAlive,
                            Verification::NotVerified { .. } => TaskStatus::NotVerified,
                            Verification::Partial { .. } => TaskStatus::Partial,
                        };
                    }
                }
            }
        }
        Kind::Finding => {
            let ids: Vec<String> =
                match r.data.clone().map(serde_json::from_value::<FindingPayload>) {
                    Some(Ok(p)) => p
                        .findings
                        .into_iter()
                        .filter_map(|f| f.credential)
                        .collect(),
                    Some(Err(e)) => {
                        inc.problems
                            .push(format!("record {}: unreadable finding record: {e}", r.seq));
                        vec![]
                    }
                    None => vec![],
                };
            for id in ids {
                found.entry(id).or_insert(r.time);
            }
            entry.what = r.message.clone().unwrap_or_else(|| "finding".into());
        }
        Kind::Note | Kind::Halt | Kind::ToolCall => {
            entry.what = r.message.clone().unwrap_or_default()
        }
    }
    inc.timeline.push(entry);
}

fn apply_task(
    inc: &mut Incident,
    index: &mut HashMap<String, usize>,
    r: &Record,
    ev: TaskEvent,
) -> String {
    let who = actor(&r.actor);
    match ev {
        TaskEvent::Add {
            task,
            title,
            owner,
            due,
        } => {
            let what = format!(
                "task {task} added: {title}{}{}",
                owner
                    .as_ref()
                    .map(|o| format!(", owner {o}"))
                    .unwrap_or_default(),
                due.map(|d| format!(", due {}", crate::timefmt::format(&d)))
                    .unwrap_or_default()
            );
            index.insert(task.clone(), inc.tasks.len());
            inc.tasks.push(Task {
                id: task,
                title,
                source: TaskSource::Manual,
                owner,
                status: TaskStatus::Open,
                detail: None,
                waiting_for: vec![],
                blocker: None,
                due,
                created_at: r.time,
                created_by: who,
                updated_at: r.time,
            });
            what
        }
        TaskEvent::Assign { task, owner } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.owner = Some(owner.clone());
                t.updated_at = r.time;
            }
            format!("task {task} assigned to {owner}")
        }
        TaskEvent::Block { task, reason } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.blocker = Some(Blocker {
                    reason: reason.clone(),
                    by: who,
                    since: r.time,
                });
                t.updated_at = r.time;
            }
            format!("task {task} blocked: {reason}")
        }
        TaskEvent::Unblock { task } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.blocker = None;
                t.updated_at = r.time;
            }
            format!("task {task} unblocked")
        }
        TaskEvent::Done { task } => {
            if let Some(t) = task_mut(&mut inc.tasks, index, &task) {
                t.status = TaskStatus::Done;
                t.blocker = None;
                t.updated_at = r.time;
            }
            format!("task {task} done")
        }
    }
}

fn milestone(at: Option<DateTime<Utc>>, detected: DateTime<Utc>) -> Option<Milestone> {
    at.map(|at| Milestone {
        at,
        after_detected_ms: (at - detected).num_milliseconds(),
    })
}

fn finish(mut b: Building) -> Incident {
    // A blocker shows on any task not finished yet; a step that failed
    // stays failed (the failure is the more useful news).
    for t in &mut b.inc.tasks {
        if t.blocker.is_some()
            && matches!(
                t.status,
                TaskStatus::Open | TaskStatus::Planned | TaskStatus::AwaitingApproval
            )
        {
            t.status = TaskStatus::Blocked;
        }
    }
    // Credentials: containment steps grouped by target, in first-seen order.
    let mut creds: Vec<Credential> = Vec::new();
    let mut cred_index: HashMap<String, usize> = HashMap::new();
    for t in &b.inc.tasks {
        let TaskSource::Step {
            class: DecisionClass::Contain,
            target,
            ..
        } = &t.source
        else {
            continue;
        };
        match cred_index.get(target) {
            Some(i) => creds[*i].tasks.push(t.id.clone()),
            None => {
                cred_index.insert(target.clone(), creds.len());
                creds.push(Credential {
                    target: target.clone(),
                    tasks: vec![t.id.clone()],
                    status: t.status,
                    detected: None,
                    planned: None,
                    approved: None,
                    contained: None,
                    verified: None,
                    policy_hash: None,
                    approvals: vec![],
                    break_glass: false,
                })
            }
        }
    }
    for c in &mut creds {
        let tracks: Vec<&StepTrack> = c.tasks.iter().filter_map(|k| b.steps.get(k)).collect();
        let statuses: Vec<TaskStatus> = c
            .tasks
            .iter()
            .filter_map(|k| b.index.get(k).and_then(|i| b.inc.tasks.get(*i)))
            .map(|t| t.status)
            .collect();
        c.status = least_progressed(&statuses);
        let all = |f: &dyn Fn(&StepTrack) -> Option<DateTime<Utc>>| -> Option<DateTime<Utc>> {
            let v: Vec<Option<DateTime<Utc>>> = tracks.iter().map(|t| f(t)).collect();
            if v.is_empty() || v.iter().any(Option::is_none) {
                None
            } else {
                v.into_iter().flatten().max()
            }
        };
        let planned = tracks.iter().filter_map(|t| t.planned).min();
        let detected = match (b.first_seen.get(&c.target).copied(), planned) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        };
        let Some(det) = detected else { continue };
        c.detected = milestone(Some(det), det);
        c.planned = milestone(planned, det);
        c.approved = milestone(all(&|t| t.allowed.as_ref().map(|a| a.0)), det);
        c.contained = milestone(all(&|t| t.contained), det);
        c.verified = milestone(all(&|t| t.verified), det);
        for t in &tracks {
            if let Some((_, hash, approvers, bg)) = &t.allowed {
                c.policy_hash.get_or_insert_with(|| hash.clone());
                for a in approvers {
                    if !c.approvals.contains(a) {
                        c.approvals.push(a.clone());
                    }
                }
                c.break_glass |= *bg;
            }
        }
    }
    b.inc.credentials = creds;
    b.inc
}

/// The status of the step that is furthest from done (a credential is only
/// as contained as its least contained step).
fn least_progressed(s: &[TaskStatus]) -> TaskStatus {
    let rank = |x: &TaskStatus| match x {
        TaskStatus::Failed | TaskStatus::Unknown | TaskStatus::StillAlive => 0,
        TaskStatus::Denied | TaskStatus::NotVerified | TaskStatus::Partial => 1,
        TaskStatus::Blocked => 2,
        TaskStatus::AwaitingApproval => 3,
        TaskStatus::Planned | TaskStatus::Open => 4,
        TaskStatus::Running => 5,
        TaskStatus::Contained => 6,
        TaskStatus::Done | TaskStatus::Verified => 7,
    };
    s.iter()
        .min_by_key(|x| rank(x))
        .copied()
        .unwrap_or(TaskStatus::Planned)
}

/// One line of the status screen or of the report's open items.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub task: String,
    pub what: String,
    pub detail: String,
}

/// The one-screen answer: contained, verified, failed, blocked, waiting for whom.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub state: IncidentState,
    #[serde(with = "crate::timefmt")]
    pub opened_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    pub last_change: DateTime<Utc>,
    pub roles: Vec<RoleSlot>,
    pub contained: Vec<Item>,
    pub verified: Vec<Item>,
    pub failed: Vec<Item>,
    pub blocked: Vec<Item>,
    pub waiting: Vec<Item>,
    pub tasks: Vec<Task>,
    pub problems: Vec<String>,
}

pub fn status_of(inc: &Incident, now: DateTime<Utc>) -> Status {
    let mut s = Status {
        id: inc.id.clone(),
        title: inc.title.clone(),
        severity: inc.severity,
        state: inc.state,
        opened_at: inc.opened_at,
        last_change: inc.last_change,
        roles: inc.roles.clone(),
        contained: vec![],
        verified: vec![],
        failed: vec![],
        blocked: vec![],
        waiting: vec![],
        tasks: inc.tasks.clone(),
        problems: inc.problems.clone(),
    };
    for t in &inc.tasks {
        let item = |detail: String| Item {
            task: t.id.clone(),
            what: t.title.clone(),
            detail,
        };
        match t.status {
            TaskStatus::Verified => s.verified.push(item(t.detail.clone().unwrap_or_default())),
            TaskStatus::Contained => s.contained.push(item("contained, not verified yet".into())),
            st if st.is_failure() => s.failed.push(item(format!(
                "{}: {}",
                st.as_str(),
                t.detail.clone().unwrap_or_default()
            ))),
            TaskStatus::Blocked => {
                let b = t.blocker.as_ref();
                s.blocked.push(item(format!(
                    "{} (blocked by {} since {})",
                    b.map(|b| b.reason.as_str()).unwrap_or_default(),
                    b.map(|b| b.by.as_str()).unwrap_or_default(),
                    b.map(|b| crate::timefmt::format(&b.since))
                        .unwrap_or_default()
                )))
            }
            TaskStatus::AwaitingApproval => s.waiting.push(item(format!(
                "waiting for approval: {}",
                t.waiting_for.join("; ")
            ))),
            TaskStatus::Open | TaskStatus::Planned | TaskStatus::Running => {
                let who = match (&t.owner, t.status) {
                    (Some(o), _) => format!("waiting for {o}"),
                    (None, TaskStatus::Planned) => "waiting for `cordon apply` (no owner)".into(),
                    (None, TaskStatus::Running) => {
                        "running or interrupted: re-run `cordon apply` to resume (no owner)".into()
                    }
                    (None, _) => "waiting for an owner (unassigned)".into(),
                };
                let due = match t.due {
                    Some(d) if t.overdue(now) => {
                        format!(", OVERDUE since {}", crate::timefmt::format(&d))
                    }
                    Some(d) => format!(", due {}", crate::timefmt::format(&d)),
                    None => String::new(),
                };
                s.waiting.push(item(format!("{who}{due}")));
            }
            _ => {}
        }
    }
    // Contained includes the verified ones: both lists answer a question.
    let verified: Vec<Item> = s.verified.clone();
    s.contained.extend(verified);
    for r in &inc.roles {
        if r.person.is_none() && inc.state == IncidentState::Open {
            s.waiting.push(Item {
                task: "-".into(),
                what: format!("role {}", r.role.as_str()),
                detail: format!(
                    "unassigned: `cordon incident assign {} PERSON`",
                    r.role.as_str()
                ),
            });
        }
    }
    s
}

/// The post-incident report: everything a regulator, board or insurer asks,
/// derived from the log.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(with = "crate::timefmt")]
    pub generated_at: DateTime<Utc>,
    pub incident: Incident,
    pub open_items: Vec<Item>,
    pub log_verify: VerifyReport,
}

pub fn build_report(inc: &Incident, verify: VerifyReport, now: DateTime<Utc>) -> Report {
    let st = status_of(inc, now);
    let mut open_items: Vec<Item> = Vec::new();
    open_items.extend(st.failed);
    open_items.extend(st.blocked);
    open_items.extend(st.waiting);
    open_items.extend(st.contained.into_iter().filter(|i| {
        inc.tasks
            .iter()
            .any(|t| t.id == i.task && t.status == TaskStatus::Contained)
    }));
    if inc.state == IncidentState::Open {
        open_items.push(Item {
            task: "-".into(),
            what: "incident still open".into(),
            detail: format!("`cordon incident close {} --summary ...`", inc.id),
        });
    }
    Report {
        generated_at: now,
        incident: inc.clone(),
        open_items,
        log_verify: verify,
    }
}

/// Say who can act on an item that names roster roles (the gate's "needs 1
/// approval from role `security`"): append the people holding each role, as
/// the roster has them now.
pub fn name_role_holders(items: &mut [Item], holders: &dyn Fn(&str) -> Vec<String>) {
    for item in items {
        let mut named: Vec<String> = Vec::new();
        let mut rest = item.detail.as_str();
        while let Some(i) = rest.find("role `") {
            rest = &rest[i + "role `".len()..];
            let Some(end) = rest.find('`') else { break };
            let role = &rest[..end];
            rest = &rest[end..];
            if named.iter().any(|n| n.starts_with(&format!("{role}: "))) {
                continue;
            }
            let people = holders(role);
            named.push(format!(
                "{role}: {}",
                if people.is_empty() {
                    "nobody in the roster".to_owned()
                } else {
                    people.join(", ")
                }
            ));
        }
        if !named.is_empty() {
            item.detail = format!("{} [who: {}]", item.detail, named.join("; "));
        }
    }
}
