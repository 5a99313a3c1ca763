//! `decision` records: what the authority gate decided for a step, on which
//! policies and approvals, and every use of break-glass.

use super::{actor, task_mut, At, BreakGlassUse, Building, TaskStatus, TimelineEntry};
use crate::incident::render::words;

pub(super) fn apply(b: &mut Building, at: &At<'_>, entry: &mut TimelineEntry) -> String {
    let r = at.r;
    let Some(d) = &r.decision else {
        return String::new();
    };
    let Building {
        inc, steps, index, ..
    } = b;
    entry.policy_hash = Some(d.policy_hash.clone());
    entry.policies = d.policies.clone();
    let subject = format!("{} {}", r.action.clone().unwrap_or_default(), at.target);
    let what = if d.is_allow() {
        words::allowed(&subject, &d.policies, d.break_glass)
    } else if d.awaits_people() {
        words::held(&subject, &d.why())
    } else {
        words::denied(&subject, &d.why())
    };
    if let Some(reason) = &r.break_glass {
        inc.break_glass.push(BreakGlassUse {
            seq: r.seq,
            at: r.time,
            actor: actor(&r.actor),
            actor_verified: r.actor.verified,
            plan: r.plan.clone(),
            step: r.step.clone(),
            target: r.target.as_ref().map(|t| t.display_name()),
            reason: reason.clone(),
            allowed: d.is_allow(),
        });
    }
    if let Some(key) = &at.step {
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
                t.detail = Some(what.clone());
            }
        }
    }
    what
}
