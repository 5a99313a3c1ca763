//! Views derived from a replayed incident: the one-screen status and the
//! post-incident report. Their wording is `render::words`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Incident, IncidentState, RoleSlot, Task, TaskStatus};
use crate::audit::VerifyReport;
use crate::incident::render::words;
use crate::plan::Severity;

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
            TaskStatus::Contained => s.contained.push(item(words::CONTAINED_NOT_VERIFIED.into())),
            st if st.is_failure() => s.failed.push(item(words::failed_item(
                st.as_str(),
                t.detail.as_deref().unwrap_or_default(),
            ))),
            TaskStatus::Blocked => {
                let b = t.blocker.as_ref();
                s.blocked.push(item(words::blocked_item(
                    b.map(|b| b.reason.as_str()).unwrap_or_default(),
                    b.map(|b| b.by.as_str()).unwrap_or_default(),
                    b.map(|b| &b.since),
                )))
            }
            TaskStatus::AwaitingApproval => s
                .waiting
                .push(item(words::awaiting_approval_item(&t.waiting_for))),
            TaskStatus::Open | TaskStatus::Planned | TaskStatus::Running => {
                let who = match (&t.owner, t.status) {
                    (Some(o), _) => words::waiting_for(o),
                    (None, TaskStatus::Planned) => words::WAITING_FOR_APPLY.into(),
                    (None, TaskStatus::Running) => words::RUNNING_OR_INTERRUPTED.into(),
                    (None, _) => words::WAITING_FOR_OWNER.into(),
                };
                let due = match t.due {
                    Some(d) if t.overdue(now) => words::overdue(&d),
                    Some(d) => words::due(&d),
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
                what: words::role_item(r.role),
                detail: words::role_unassigned(r.role),
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
            what: words::STILL_OPEN.into(),
            detail: words::close_it(&inc.id),
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
            named.push(words::role_holders(role, &people));
        }
        if !named.is_empty() {
            item.detail = words::with_holders(&item.detail, &named);
        }
    }
}
