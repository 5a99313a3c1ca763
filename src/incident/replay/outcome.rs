//! A step's `evidence`, `intent`, `outcome` and `verify` records: the task's
//! status as the engine recorded it, and the contained and verified
//! milestones of its credential.

use cordon_connector::{DecisionClass, Outcome, Verification};

use super::{task_mut, At, Building, EvidenceRef, Objects, TaskSource, TaskStatus};
use crate::incident::render::words;

pub(super) fn evidence(b: &mut Building, at: &At<'_>, objects: &dyn Objects) -> String {
    let r = at.r;
    let hash = r.evidence.clone().unwrap_or_default();
    let check = match objects.evidence(&hash) {
        Ok(()) => "intact".to_owned(),
        Err(e) => e,
    };
    let what = words::evidence(&hash, at.target);
    b.inc.evidence.push(EvidenceRef {
        seq: r.seq,
        at: r.time,
        plan: r.plan.clone(),
        step: r.step.clone(),
        target: r.target.as_ref().map(|t| t.display_name()),
        sha256: hash,
        check,
    });
    what
}

pub(super) fn intent(b: &mut Building, at: &At<'_>) -> String {
    let r = at.r;
    if let Some(t) = at
        .step
        .as_ref()
        .and_then(|k| task_mut(&mut b.inc.tasks, &b.index, k))
    {
        t.status = TaskStatus::Running;
        t.updated_at = r.time;
    }
    words::about_to(r.action.as_deref().unwrap_or_default(), at.target)
}

pub(super) fn outcome(b: &mut Building, at: &At<'_>) -> String {
    let r = at.r;
    let Some(o) = &r.outcome else {
        return String::new();
    };
    let Building {
        inc, steps, index, ..
    } = b;
    if let Some(key) = &at.step {
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
    words::outcome(o.label(), o.detail())
}

pub(super) fn verify(b: &mut Building, at: &At<'_>) -> String {
    let r = at.r;
    let Some(v) = &r.verification else {
        return String::new();
    };
    let Building {
        inc, steps, index, ..
    } = b;
    let detail = match v {
        Verification::Dead { detail }
        | Verification::Partial { detail }
        | Verification::Alive { detail }
        | Verification::NotVerified { detail } => detail.clone(),
    };
    let what = words::verified(v.label(), &detail);
    if let Some(key) = &at.step {
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
    what
}
