//! `plan` records: each step of a plan attached to the incident becomes a
//! task, detected when a finding first reported its credential (else now).

use super::{actor, Building, Objects, PlanRef, StepTrack, Task, TaskSource, TaskStatus};
use crate::audit::payload::PlanPayload;
use crate::audit::Record;
use crate::incident::render::words;

pub(super) fn written(
    b: &mut Building,
    r: &Record,
    payload: Option<PlanPayload>,
    objects: &dyn Objects,
) -> String {
    let Building {
        inc,
        steps,
        first_seen,
        index,
        found,
    } = b;
    let id = r.plan.clone().unwrap_or_default();
    let sha = payload.map(|p| p.sha256);
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
                    title: words::step_title(s.action.id(), &tgt),
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
                sha256: sha,
                reason: plan.reason.clone(),
            });
            words::plan_written(&id, plan.steps.len(), plan.reason.as_deref())
        }
        Err(e) => {
            inc.problems
                .push(words::plan_unreadable_problem(&id, r.seq, &e));
            words::plan_unreadable(&id)
        }
    }
}
