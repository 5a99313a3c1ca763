//! Replaying the audit log into incidents, and the status and report views
//! derived from them.
//!
//! One file per record kind: each reads its record's typed payload
//! ([`payload`]) and changes the incident; what it says in the timeline,
//! task titles and problems is worded in `render::words`.
//!
//! - `incident`: open, assign a role, close
//! - `task`: manual tasks and the owner or blocker of a step
//! - `plan`: a plan written (its steps become tasks) and approved
//! - `decision`: the authority gate's decisions, break-glass
//! - `outcome`: evidence, intent, outcome and verification of a step
//! - `finding`: when a scanner reported a credential
//! - `views`: the status screen and the report, derived from an incident

mod decision;
mod finding;
mod incident;
mod outcome;
mod payload;
mod plan;
mod task;
mod views;

pub use payload::Payload;
pub use views::{build_report, name_role_holders, status_of, Item, Report, Status};

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cordon_connector::DecisionClass;
use serde::Serialize;

use super::events::{IncidentEvent, Role};
use super::render::words;
use super::ID_PREFIX;
use crate::audit::{Kind, Record};
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
pub(super) struct StepTrack {
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

pub(super) fn task_mut<'a>(
    tasks: &'a mut [Task],
    index: &HashMap<String, usize>,
    id: &str,
) -> Option<&'a mut Task> {
    index.get(id).and_then(|i| tasks.get_mut(*i))
}

pub(super) fn actor(p: &Principal) -> String {
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
        let payload = Payload::read(r);
        if let Payload::Incident(IncidentEvent::Open { title, severity }) = &payload {
            {
                let (title, severity) = (title.clone(), *severity);
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
        apply(b, r, payload, objects);
    }
    let incidents = order
        .into_iter()
        .filter_map(|id| map.remove(&id))
        .map(finish)
        .collect();
    Ledger { incidents }
}

/// One record applied to its incident: the state it changes, and one
/// timeline entry.
fn apply(b: &mut Building, r: &Record, payload: Payload, objects: &dyn Objects) {
    b.inc.last_change = r.time;
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
        b.first_seen.entry(t.clone()).or_insert(r.time);
    }
    let at = At {
        r,
        target: target.as_deref().unwrap_or_default(),
        step: match (&r.plan, &r.step) {
            (Some(p), Some(s)) => Some(format!("{p}:{s}")),
            _ => None,
        },
    };
    entry.what = match payload {
        Payload::Incident(ev) => incident::apply(b, r, ev),
        Payload::Task(ev) => task::apply(b, r, ev),
        Payload::Plan(p) => plan::written(b, r, p, objects),
        Payload::Finding(f) => finding::apply(b, r, f),
        Payload::Unreadable { what, error } => {
            b.inc
                .problems
                .push(words::unreadable_problem(r.seq, what, &error));
            match r.kind {
                Kind::Finding => words::finding(r.message.as_deref()),
                _ => words::unreadable(what),
            }
        }
        Payload::None => match r.kind {
            Kind::Approval => {
                words::approved(r.plan.as_deref().unwrap_or_default(), &entry.approvers)
            }
            Kind::Decision => decision::apply(b, &at, &mut entry),
            Kind::Evidence => outcome::evidence(b, &at, objects),
            Kind::Intent => outcome::intent(b, &at),
            Kind::Outcome => outcome::outcome(b, &at),
            Kind::Verify => outcome::verify(b, &at),
            Kind::Finding => words::finding(r.message.as_deref()),
            Kind::Plan => plan::written(b, r, None, objects),
            Kind::Incident | Kind::Task | Kind::Note | Kind::Halt | Kind::ToolCall => {
                r.message.clone().unwrap_or_default()
            }
        },
    };
    b.inc.timeline.push(entry);
}

/// What the handlers of a step's records share: the record, its target as
/// displayed, and its task id (`PLAN:STEP`).
pub(super) struct At<'a> {
    pub r: &'a Record,
    pub target: &'a str,
    pub step: Option<String>,
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
